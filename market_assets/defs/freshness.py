"""Freshness at a glance: is the last session loaded the last session NYSE completed?

Why custom checks and not Dagster's time-partition freshness checks: partitions are calendar days while the
market has sessions (weekends, holidays and 13:00 half days), so "the latest partition is materialized" is the
wrong question. Each check compares the table's last session with the last completed NYSE session, allowing
`GRACE` after the close for the after-close run (half days close at 13:00, and the calendar knows it). The
checks run hourly (`freshness_schedule`, on by default) and after every daily run, and fail (ERROR, not
blocking) when the data is stale, so the asset turns red in the UI without anyone opening a table.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetSelection,
    DefaultScheduleStatus,
    MetadataValue,
    ScheduleDefinition,
    asset_check,
    define_asset_job,
)

from market_assets.domain.sessions import NEW_YORK, last_completed_session
from market_assets.warehouse import tables
from market_assets.warehouse.queries.status import last_loaded
from market_assets.warehouse.resource import WarehouseResource

GRACE = timedelta(hours=2)  # the after-close schedule ticks 30 min after the close; a run takes minutes
FRESH_TABLES = {
    "daily_bars": tables.BARS_DAILY,
    "technical_indicators": tables.INDICATORS_DAILY,
    "options_flow": tables.OPTIONS_FLOW_DAILY,
}


def freshness_result(table: tables.Table, loaded: object, now: datetime) -> AssetCheckResult:
    """Pass when `loaded` (the table's last session) is no older than the last session closed `GRACE` ago."""
    expected = last_completed_session(now - GRACE)
    fresh = expected is None or (loaded is not None and loaded >= expected)
    return AssetCheckResult(
        passed=bool(fresh),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "table": table.name,
            "last_session_loaded": str(loaded) if loaded else "none",
            "last_completed_session": str(expected) if expected else "none",
            "grace_minutes": MetadataValue.int(int(GRACE.total_seconds() // 60)),
        },
        description=None if fresh else f"{table.name} ends at {loaded or 'nothing'}, NYSE completed {expected}",
    )


def _freshness_check(asset_name: str, table: tables.Table) -> AssetChecksDefinition:
    @asset_check(
        asset=asset_name,
        name="fresh",
        description=f"{table.name} holds the last completed NYSE session (within {GRACE} after its close).",
    )
    def _check(warehouse: WarehouseResource) -> AssetCheckResult:
        return freshness_result(table, last_loaded(warehouse, table), datetime.now().astimezone())

    return _check


freshness_checks = [_freshness_check(name, table) for name, table in FRESH_TABLES.items()]

freshness_job = define_asset_job(
    "freshness_job",
    selection=AssetSelection.checks(*freshness_checks),
    description="Only the freshness checks: is every daily table at the last completed NYSE session?",
)

freshness_schedule = ScheduleDefinition(
    name="freshness_schedule",
    job=freshness_job,
    cron_schedule="15 * * * *",
    execution_timezone=NEW_YORK,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Hourly freshness checks, so stale data turns red in the UI even when nothing ran.",
)
