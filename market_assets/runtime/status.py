"""`market-data status`: per table, the last session loaded, rows, quarantined rows, the last run and its
result; then whether the schedules and sensors are on.

Why: "is the data fresh, did last night's run work, is anything switched off?" should be one command, not a
tour of the UI and psql. Facts come from the warehouse (the registry's tables, the named status queries) and
from Dagster's instance (materializations, runs, schedule/sensor state), never from logs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from market_assets.warehouse import tables

# (table, the asset that writes it)
STATUS_TABLES = (
    (tables.BARS_DAILY, "daily_bars"),
    (tables.BARS_MINUTE, "intraday_bars"),
    (tables.INDICATORS_DAILY, "technical_indicators"),
    (tables.PATTERNS, "chart_patterns"),
    (tables.SUPPORT_RESISTANCE, "support_resistance_levels"),
    (tables.PIVOT_POINTS, "pivot_levels"),
    (tables.OPTION_CHAIN, "option_chain"),
    (tables.OPTION_GREEKS, "option_greeks"),
    (tables.OPTIONS_FLOW_DAILY, "options_flow"),
)


def _last_run(instance: Any, asset: str) -> tuple[str, str]:
    """(when and which job last materialized `asset`, that run's status) from Dagster's storage."""
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey(asset))
    if event is None:
        return "never", "-"
    run = instance.get_run_by_id(event.run_id)
    when = datetime.fromtimestamp(event.timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
    job = run.job_name if run else "?"
    return f"{when} {job}", run.status.value if run else "?"


def instigator_states(instance: Any) -> list[tuple[str, str, str]]:
    """(kind, name, 'on'/'off' and whether that is the code default) for every schedule and sensor."""
    from dagster import DefaultScheduleStatus, DefaultSensorStatus
    from dagster._core.scheduler.instigation import InstigatorStatus

    from market_assets.definitions import defs

    stored = {state.instigator_name: state.status for state in instance.all_instigator_state()}
    repo = defs.get_repository_def()
    rows = []
    for kind, items, running in (
        ("schedule", repo.schedule_defs, DefaultScheduleStatus.RUNNING),
        ("sensor", repo.sensor_defs, DefaultSensorStatus.RUNNING),
    ):
        for item in items:
            status = stored.get(item.name)
            if status in (None, InstigatorStatus.DECLARED_IN_CODE):
                state = ("on" if item.default_status == running else "off") + " (default)"
            else:
                state = "on" if status == InstigatorStatus.RUNNING else "off (switched off)"
            rows.append((kind, item.name, state))
    return rows


def print_status(warehouse: Any, instance: Any, out: Callable[[str], None] = print) -> None:
    from market_assets.warehouse.queries.status import last_loaded, quarantined_rows

    out(f"  {'table':<28} {'last session':<12} {'rows':>10} {'quarantined':>11}  {'last run':<42} result")
    for table, asset in STATUS_TABLES:
        loaded = last_loaded(warehouse, table)
        rows, _ = warehouse.count_rows(table, (datetime.min.date(), datetime.max.date()))
        quarantined = quarantined_rows(warehouse, table.name.split(".")[1])
        when, result = _last_run(instance, asset)
        out(f"  {table.name:<28} {loaded or 'none'!s:<12} {rows:>10} {quarantined:>11}  {when:<42} {result}")
    out("")
    for kind, name, state in instigator_states(instance):
        out(f"  {kind:<9} {name:<38} {state}")
