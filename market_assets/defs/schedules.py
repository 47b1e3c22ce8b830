"""Jobs and schedules: the daily partition runs once the NYSE session has closed.

Why two cron ticks: exchange_calendars knows which sessions close at 13:00 (half days); the
schedule ticks 30 minutes after both possible closes and only the tick matching today's real
close requests a run, so half days are ingested at 13:30 and holidays and weekends are skipped
with a reason visible in the UI.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pandas as pd
from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from market_assets.defs.freshness import freshness_checks
from market_assets.defs.partitions import daily_partitions
from market_assets.defs.universe import universe_tags
from market_assets.domain.sessions import NEW_YORK, after_close_due
from market_assets.warehouse.queries.bars import active_symbols
from market_assets.warehouse.resource import WarehouseResource

AFTER_CLOSE = timedelta(minutes=30)

daily_market_job = define_asset_job(
    "daily_market_job",
    selection=AssetSelection.groups("ingestion", "technicals", "reporting", "options", "cache")
    - AssetSelection.assets("symbols")
    - AssetSelection.checks(*freshness_checks),  # they run on their own schedule (freshness_job)
    partitions_def=daily_partitions,
    description="Ingest and derive one New York trading day (the partition).",
)


def evaluate_after_close(scheduled: pd.Timestamp, universe: Sequence[str] | None = None) -> RunRequest | SkipReason:
    """The decision of the after-close schedule at one tick (the calendar part is `after_close_due`).

    `universe`, resolved at the tick, travels with the run as a tag: its steps never re-read market.symbols,
    so a universe change (or a CLI run) while it runs cannot change what it ingests.
    """
    day = after_close_due(scheduled, AFTER_CLOSE)
    if isinstance(day, str):
        return SkipReason(day)
    tags = {"market/session": str(day), **(universe_tags(universe) if universe else {})}
    return RunRequest(run_key=f"daily-{day}", partition_key=day.isoformat(), tags=tags)


@schedule(
    cron_schedule="30 13,16 * * 1-5",
    execution_timezone=NEW_YORK,
    job=daily_market_job,
    # on by default: a deployed platform must run by itself (stop it in the UI or with `dagster schedule stop`)
    default_status=DefaultScheduleStatus.RUNNING,
    description="After each NYSE close (13:30 on half days, 16:30 otherwise): the session's partition.",
)
def after_close_schedule(context: ScheduleEvaluationContext, warehouse: WarehouseResource) -> RunRequest | SkipReason:
    scheduled = pd.Timestamp(context.scheduled_execution_time)
    if isinstance(after_close_due(scheduled, AFTER_CLOSE), str):
        return evaluate_after_close(scheduled)  # a skip: no need to ask the warehouse
    return evaluate_after_close(scheduled, active_symbols(warehouse))
