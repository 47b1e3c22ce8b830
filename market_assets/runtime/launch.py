"""Run a named job of the code location in this process, recorded as a run of that job in the instance.

Why not `dagster.materialize`: its runs belong to `__ephemeral_asset_job__` with no code-location origin, so the
UI cannot re-execute them and the Overview page does not count them. Here the run carries the origin of the
location `market-data dev` loads (`dagster dev -m market_assets.definitions`: location and module share the name),
so the UI finds the job and offers "Re-execute"; execution still happens here, synchronously, like before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
    return instance


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
