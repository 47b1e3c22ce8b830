"""The CLI's Dagster instance (`runtime.launch.cli_instance`), on real PostgreSQL storages."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from dagster import AssetKey, DagsterInstance, PartitionKeyRange
from dagster._core.events import AssetCheckEvaluationPlanned, DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.test_utils import instance_for_test
from dagster._serdes import deserialize_value

from market_assets.defs.partitions import daily_partitions
from market_assets.runtime.launch import _store_planned_serialized_once, plan_checks_serialized_once
from market_assets.runtime.services import _with_database, _with_driver
from market_assets.warehouse.resource import to_conninfo

COLUMNS = "asset_key, check_name, partition, run_id, execution_status, evaluation_event, evaluation_event_timestamp"


@pytest.fixture
def dagster_instance(database_url: str) -> Iterator[tuple[DagsterInstance, str]]:
    """A Dagster instance whose storages live in a database of their own on the test server."""
    name = f"dag_{uuid.uuid4().hex[:8]}"
    admin = to_conninfo(_with_database(database_url, "postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(database_url, name)
    try:
        storage = {"postgres": {"postgres_url": _with_driver(url, "psycopg2")}}  # dagster-postgres runs on psycopg2
        with instance_for_test(overrides={"storage": storage}) as instance:
            yield instance, to_conninfo(url)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _planned(run_id: str) -> EventLogEntry:
    """A planned check over five NYSE sessions: the event carries our partitions definition, holidays and all."""
    subset = daily_partitions.empty_subset().with_partition_key_range(
        daily_partitions, PartitionKeyRange("2025-12-22", "2025-12-29")
    )
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
        job_name="technicals_job",
        event_specific_data=AssetCheckEvaluationPlanned(
            asset_key=AssetKey("support_resistance_levels"),
            check_name="levels_consistent",
            partitions_subset=subset.to_serializable_subset(),
        ),
    )
    return EventLogEntry(
        error_info=None,
        level="DEBUG",
        user_message="",
        run_id=run_id,
        timestamp=time.time(),
        dagster_event=event,
    )


def _rows(conninfo: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(
            f"SELECT {COLUMNS}, evaluation_event_storage_id FROM asset_check_executions ORDER BY id"
        ).fetchall()


def test_planned_checks_are_stored_as_dagster_stores_them_with_one_serialization(
    dagster_instance: tuple[DagsterInstance, str],
) -> None:
    instance, conninfo = dagster_instance
    entry = _planned(run_id=uuid.uuid4().hex)
    instance.event_log_storage.store_event(entry)  # Dagster's own method
    dagster_rows = _rows(conninfo)
    with psycopg.connect(conninfo) as conn:
        conn.execute("DELETE FROM asset_check_executions")

    # the method we replace must still be Dagster's (a rename upstream would leave ours unused, silently)
    assert "_store_asset_check_evaluation_planned" in vars(SqlEventLogStorage)
    plan_checks_serialized_once(instance)
    assert instance.event_log_storage._store_asset_check_evaluation_planned.__func__ is _store_planned_serialized_once
    instance.event_log_storage.store_event(entry)  # ours
    our_rows = _rows(conninfo)

    # one row per session of 2025-12-22 .. 12-29 (the 25th is a holiday, the 27th and 28th a weekend)
    assert [r[2] for r in our_rows] == ["2025-12-22", "2025-12-23", "2025-12-24", "2025-12-26", "2025-12-29"]
    # the same rows but for the stored event's id, which is the id of the event each store wrote
    assert [r[:-1] for r in our_rows] == [r[:-1] for r in dagster_rows]
    with psycopg.connect(conninfo) as conn:
        first, second = (r[0] for r in conn.execute("SELECT id FROM event_logs ORDER BY id").fetchall())
    assert {r[-1] for r in dagster_rows} == {first} and {r[-1] for r in our_rows} == {second}
    assert deserialize_value(our_rows[0][5], EventLogEntry) == entry
