"""Run a named job of the code location in this process, recorded as a run of that job in the instance.

Why not `dagster.materialize`: its runs belong to `__ephemeral_asset_job__` with no code-location origin, so the
UI cannot re-execute them and the Overview page does not count them. Here the run carries the origin of the
location `market-data dev` loads (`dagster dev -m market_assets.definitions`: location and module share the name),
so the UI finds the job and offers "Re-execute"; execution still happens here, synchronously, like before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MethodType
from typing import Any

from dagster import DagsterInstance
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import execute_run
from dagster._core.execution.job_execution_result import JobExecutionResult
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

MODULE = "market_assets.definitions"
LOCATION_NAME = MODULE  # the code location name `dagster dev -m market_assets.definitions` gives
REPOSITORY_NAME = "__repository__"  # what a Definitions object's repository is called
# steps in this process, as `materialize` did: a subprocess per step re-imports the project (~20 s each)
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
POOL_RECYCLE_SECONDS = 3600  # a pooled connection older than this is replaced (server restarts, idle cut-offs)


def cli_instance() -> DagsterInstance:
    """The Dagster instance of a process that runs jobs one after another in itself (the CLI).

    Why pooled: Dagster's PostgreSQL storages default to no connection pool (one instance per webserver request
    must not hoard connections), so every stored event opened a new connection: about 1 s of a one-session run of
    bars and technicals went to connection set-up. A CLI holds one instance for its whole life, so its storages
    keep a small pool instead (what `dagster-webserver` does for itself); `statement_timeout` 0 leaves run steps
    unbounded, as without the pool. A SQLite-backed instance ignores it.
    """
    instance = DagsterInstance.get()
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS, max_overflow=4)
    plan_checks_serialized_once(instance)
    return instance


def plan_checks_serialized_once(instance: DagsterInstance) -> None:
    """Make the instance's event log store a planned check's rows with the event serialized once, not per partition.

    Why: when a run is created, Dagster 1.13 (`SqlEventLogStorage._store_asset_check_evaluation_planned`) writes one
    `asset_check_executions` row per (check, partition) and calls `serialize_value(event)` inside that loop, although
    the event is the same for every row. Our event carries the partitions definition, whose NYSE holiday exclusions
    make it 13.5 KB, so a one-year chunk of the technicals step (252 partitions x 6 checks) serialized 20 MB of JSON
    before its first step started: 17 s of a three-year backfill's 35 s of Dagster time. The replacement writes the
    very same rows (same columns, same values; tests/runtime/test_launch.py compares both against one database) and
    is installed only on the CLI's instance, only where the storage is Dagster's SQL event log.
    """
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage):
        storage._store_asset_check_evaluation_planned = MethodType(_store_planned_serialized_once, storage)  # type: ignore[method-assign]


def _store_planned_serialized_once(storage: Any, event: Any, event_id: int | None) -> None:
    """Dagster 1.13's `_store_asset_check_evaluation_planned`, with `serialize_value(event)` taken out of the loop."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
    from dagster._serdes import serialize_value

    planned = event.dagster_event.event_specific_data
    partition_keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
    serialized = serialize_value(event)
    timestamp = storage._event_insert_timestamp(event)
    with storage.index_connection() as conn:
        conn.execute(
            AssetCheckExecutionsTable.insert().values(
                [
                    {
                        "asset_key": planned.asset_key.to_string(),
                        "check_name": planned.check_name,
                        "partition": partition_key,
                        "run_id": event.run_id,
                        "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
                        "evaluation_event": serialized,
                        "evaluation_event_timestamp": timestamp,
                        "evaluation_event_storage_id": event_id,
                    }
                    for partition_key in partition_keys
                ]
            )
        )


def job_origin(job_name: str) -> RemoteJobOrigin:
    return RemoteJobOrigin(
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin(LOCATION_NAME), REPOSITORY_NAME), job_name
    )


def launch_job(
    job_name: str,
    *,
    instance: DagsterInstance,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> JobExecutionResult:
    """Execute `job_name` of the composition root as a run the UI can re-execute; returns its result."""
    repository = ReconstructableRepository.for_module(MODULE, "defs", working_directory=os.getcwd())
    recon_job = repository.get_reconstructable_job(job_name)
    run = instance.create_run_for_job(
        job_def=recon_job.get_definition(),
        run_config={**IN_PROCESS, **(run_config or {})},
        tags=dict(tags or {}),
        remote_job_origin=job_origin(job_name),
        job_code_origin=recon_job.get_python_origin(),
    )
    return execute_run(recon_job, run, instance)
