"""Technicals assets: daily indicators, chart patterns, support/resistance and pivot levels.

Thin by design, like the bar assets: read the partition's bars plus the history the analytics
need from the warehouse (not through IO managers, so a partition can be recomputed alone and SQL
users see what the asset saw), shape the partition's rows with the pure functions in
`market_assets.analytics.technicals` (`rows.py`), replace exactly the partition's rows with the
warehouse's one writer, and report checks (named queries in `market_assets.warehouse.queries
.technicals`) and metadata (`market_assets.reporting.technicals`).

Why incremental equals full history:

* Every indicator depends on a finite trailing window or on a recursive filter whose seed is
  forgotten to < 1e-13 of the price after `LOOKBACK_SESSIONS` bars; a partition therefore reads
  that many NYSE sessions before its first day (counted on the exchange calendar, not in
  calendar days, so holidays do not shorten it).
* OBV and A/D are cumulative from a symbol's first stored bar. A partition continues the stored
  series from the latest stored value before it (the "anchor"); a symbol without one (first run,
  wiped table, out-of-order backfill) is read from its first stored bar instead, which is exactly
  the definition. After bars are backfilled further into the past, recompute from the start.
* Support/resistance for a session is computed from exactly the `LOOKBACK_SESSIONS` sessions
  ending on it, whatever the partition range, so a backfill and a daily run give identical rows.
"""

import time
from collections.abc import Sequence
from datetime import date
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from market_assets.analytics.technicals.frame import LOOKBACK_SESSIONS, compute_daily_technicals
from market_assets.analytics.technicals.rows import (
    WARMUP,
    WARMUP_DEFAULT,
    indicator_rows,
    levels_for_sessions,
    pattern_rows,
    pivot_rows,
)
from market_assets.defs.checks import none_found_check
from market_assets.defs.partition_report import report_partitions, run_totals
from market_assets.defs.partitions import BACKFILL_POLICY, daily_partitions, partition_dates
from market_assets.defs.universe import run_universe
from market_assets.domain.sessions import session_before, sessions_between
from market_assets.reporting import technicals as report
from market_assets.warehouse import tables
from market_assets.warehouse.queries import technicals as queries
from market_assets.warehouse.queries.bars import daily_bars, symbols_with_daily_bars_before
from market_assets.warehouse.resource import WarehouseResource

GROUP = "technicals"
DAILY_BARS = AssetKey("daily_bars")
# the factors of the partition's actions are stored before its bars are read adjusted (MARKET_PRICE_ADJUSTMENT)
CORPORATE_ACTIONS = AssetKey("corporate_actions")
INTRADAY_BARS = AssetKey("intraday_bars")
_EPOCH = date(1900, 1, 1)  # "from the first stored bar" for a session range


def history_start(first: date, sessions: int) -> date:
    """The first session of the history a partition starting at `first` reads (see the module doc)."""
    return session_before(first, sessions)


_RUN_BARS: dict[tuple[Any, ...], pd.DataFrame] = {}


def lookback_bars(
    context: AssetExecutionContext, warehouse: WarehouseResource, universe: Sequence[str], first: date, last: date
) -> pd.DataFrame:
    """The daily bars of `universe` from `LOOKBACK_SESSIONS` sessions before `first` to `last`, read once per run.

    Why a memo: the four technicals assets of a run read exactly these rows (about 1 s per read for a one-year
    chunk of 500 symbols). The in-process executor runs them one after the other in one process, after the bars
    and corporate actions they depend on, so within a run the rows cannot change; the one entry is keyed by the
    run (and the adjustment setting), so another run never sees it. Callers get a copy: none can alter another's.
    """
    key = (context.run.run_id, warehouse.price_adjustment, tuple(universe), first, last)
    if key not in _RUN_BARS:
        _RUN_BARS.clear()
        _RUN_BARS[key] = daily_bars(warehouse, universe, history_start(first, LOOKBACK_SESSIONS), last)
    return _RUN_BARS[key].copy()


def read_indicator_inputs(
    warehouse: WarehouseResource,
    universe: Sequence[str],
    first: date,
    last: date,
    lookback: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], date]:
    """Bars the partition's indicators need, the OBV/A-D anchors, the symbols read in full, and the history start.

    Anchored symbols: `LOOKBACK_SESSIONS` sessions before `first` (taken from `lookback` when given: the run's
    `lookback_bars`). Unanchored symbols whose bars reach further back: from their first stored bar, because the
    cumulative OBV/A-D are defined from there (see the module doc).
    """
    start = history_start(first, LOOKBACK_SESSIONS)
    anchors = queries.obv_ad_anchors(warehouse, universe, start, first)
    anchored = set(anchors["symbol"])
    full = symbols_with_daily_bars_before(warehouse, [s for s in universe if s not in anchored], start)
    in_full = set(full)
    windowed = [s for s in universe if s not in in_full]
    recent = (
        lookback[lookback["symbol"].isin(windowed)].reset_index(drop=True)
        if lookback is not None
        else daily_bars(warehouse, windowed, start, last)
    )
    parts = [recent, daily_bars(warehouse, full, _EPOCH, last)]
    bars = pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    return bars, anchors, full, start


def indicator_checks(
    warehouse: WarehouseResource, universe: Sequence[str], first: date, last: date
) -> list[AssetCheckResult]:
    """The partition's checks, run on what is stored (what SQL users and downstream assets read)."""
    rsi, nulls, counts = queries.indicator_audit(warehouse, universe, first, last, WARMUP)
    failing = {k: v for k, v in nulls.items() if v}
    return [
        AssetCheckResult(
            check_name="rsi_in_range",
            passed=rsi["bad"] == 0,
            metadata={
                "out_of_range": rsi["bad"],
                "defined": rsi["defined"],
                "min": MetadataValue.float(rsi["min"]) if rsi["min"] is not None else "none",
                "max": MetadataValue.float(rsi["max"]) if rsi["max"] is not None else "none",
            },
        ),
        AssetCheckResult(
            check_name="no_nulls_after_warmup",
            passed=not failing,
            metadata={
                "null_cells": MetadataValue.int(sum(failing.values())),
                "columns": MetadataValue.json(failing) if failing else "none",
                "warmup_sessions": WARMUP_DEFAULT,
            },
        ),
        AssetCheckResult(
            check_name="rows_match_bars",
            passed=counts["bars"] == counts["rows"] and counts["missing"] == 0 and counts["orphans"] == 0,
            metadata={k: MetadataValue.int(v) for k, v in counts.items()},
        ),
    ]


def _finish(
    context: AssetExecutionContext,
    table: tables.Table,
    rows: pd.DataFrame,
    t0: float,
    metadata: dict[str, Any],
    checks: list[AssetCheckResult],
) -> MaterializeResult:
    """Each partition's own counts; the preview and other callables of `metadata` on the run's last partition only,
    called only when one is stored (see `partition_report`).

    No charts here: they are drawn from the stored rows by `technicals_charts` (defs/charts.py), off the data path.
    """
    deferred = {name: metadata.pop(name) for name in [n for n, v in metadata.items() if callable(v)]}

    def latest() -> dict[str, Any]:
        return {name: make() for name, make in deferred.items()}

    report_partitions(context, rows, date_column=str(table.partition_column), table=table, latest=latest)
    metadata["seconds"] = MetadataValue.float(round(time.perf_counter() - t0, 3))
    return MaterializeResult(metadata=run_totals(metadata), check_results=checks)


@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[DAILY_BARS, INTRADAY_BARS, CORPORATE_ACTIONS],
    check_specs=[
        AssetCheckSpec(
            "rsi_in_range",
            asset="technical_indicators",
            blocking=True,
            description="Every stored RSI-14 of the partition lies in [0, 100].",
        ),
        AssetCheckSpec(
            "no_nulls_after_warmup",
            asset="technical_indicators",
            blocking=True,
            description="A symbol with >= 200 stored sessions (252 for 52-week columns) has every "
            "indicator defined (non-NULL).",
        ),
        AssetCheckSpec(
            "rows_match_bars",
            asset="technical_indicators",
            blocking=True,
            description="Exactly one indicator row per daily bar of the partition, same (symbol, ts).",
        ),
    ],
    description=(
        "Daily technical indicators (market.indicators_daily): RSI, MACD, SMAs/EMAs, Bollinger, ATR, stochastic, "
        "volume activity, OBV/A-D, returns, volatility, 52-week distances and the minute-bar VWAP, one row per "
        "daily bar. Reads LOOKBACK_SESSIONS sessions of history so a partition equals a full-history run."
    ),
)
def technical_indicators(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    t0 = time.perf_counter()
    first, last = partition_dates(context)
    universe = run_universe(context, warehouse)
    lookback = lookback_bars(context, warehouse, universe, first, last)
    bars, anchors, full, start = read_indicator_inputs(warehouse, universe, first, last, lookback)
    technicals = compute_daily_technicals(bars, anchors if not anchors.empty else None)
    vwap = queries.intraday_vwap(warehouse, universe, first, last)
    frame = indicator_rows(bars, technicals, vwap, first, last).assign(run_id=context.run.run_id)
    result = warehouse.replace_partition(tables.INDICATORS_DAILY, frame, sessions=(first, last), symbols=universe)
    checks = indicator_checks(warehouse, universe, first, last)
    metadata: dict[str, Any] = {
        "rows_written": MetadataValue.int(result.rows_written),
        "rows_replaced": MetadataValue.int(result.rows_deleted),
        "symbols": MetadataValue.int(len(universe)),
        "symbols_with_rows": MetadataValue.int(int(frame["symbol"].nunique()) if len(frame) else 0),
        "window": f"{first} .. {last}",
        "history_start": str(start),
        "lookback_sessions": LOOKBACK_SESSIONS,
        "bars_read": MetadataValue.int(len(bars)),
        "obv_ad_anchored_symbols": MetadataValue.int(int(anchors["symbol"].nunique())),
        "full_history_symbols": MetadataValue.int(len(full)),
        "rows_with_intraday_vwap": MetadataValue.int(int(frame["vwap_intraday"].notna().sum()) if len(frame) else 0),
        "preview": lambda: MetadataValue.md(report.indicator_preview(frame, bars)),
    }
    context.log.info("technical_indicators %s..%s: %d rows, %d symbols in full", first, last, len(frame), len(full))
    return _finish(context, tables.INDICATORS_DAILY, frame, t0, metadata, checks)


@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[DAILY_BARS, CORPORATE_ACTIONS],
    check_specs=[
        AssetCheckSpec(
            "patterns_on_bars",
            asset="chart_patterns",
            blocking=True,
            description="Every stored pattern is dated on a stored daily bar of the same symbol.",
        ),
    ],
    description=(
        "Candlestick (TA-Lib CDL*) and chart/signal patterns (market.patterns): MA and MACD crosses, RSI zones, "
        "breakouts, double tops/bottoms, head and shoulders; dated on the bar where each becomes knowable."
    ),
)
def chart_patterns(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    t0 = time.perf_counter()
    first, last = partition_dates(context)
    universe = run_universe(context, warehouse)
    start = history_start(first, LOOKBACK_SESSIONS)
    bars = lookback_bars(context, warehouse, universe, first, last)
    found, _ = pattern_rows(bars, first, last, since=last)  # chart markers: read from the table by technicals_charts
    found["run_id"] = context.run.run_id
    result = warehouse.replace_partition(tables.PATTERNS, found, sessions=(first, last), symbols=universe)
    orphans = queries.pattern_orphans(warehouse, universe, first, last)
    stored = found.drop_duplicates(["symbol", "ts", "pattern"], keep="last")
    metadata: dict[str, Any] = {
        "rows_written": MetadataValue.int(result.rows_written),
        "symbols": MetadataValue.int(len(universe)),
        "symbols_with_patterns": MetadataValue.int(int(stored["symbol"].nunique()) if len(stored) else 0),
        "window": f"{first} .. {last}",
        "history_start": str(start),
        "by_pattern": lambda: MetadataValue.md(report.pattern_counts(stored)),
        "preview": lambda: MetadataValue.md(report.pattern_preview(stored)),
    }
    checks = [none_found_check("patterns_on_bars", orphans, "orphans")]
    return _finish(context, tables.PATTERNS, stored, t0, metadata, checks)


@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[DAILY_BARS, CORPORATE_ACTIONS],
    check_specs=[
        AssetCheckSpec(
            "levels_consistent",
            asset="support_resistance_levels",
            blocking=True,
            description="Support at or below the as-of close, resistance above it, touches dated "
            "no later than the as-of bar.",
        ),
    ],
    description=(
        "Support/resistance levels (market.support_resistance) per symbol and session: swing highs/lows of the "
        "last 252 sessions clustered within 0.5 x ATR-14, with touches, first/last touch and strength."
    ),
)
def support_resistance_levels(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    t0 = time.perf_counter()
    first, last = partition_dates(context)
    universe = run_universe(context, warehouse)
    bars = lookback_bars(context, warehouse, universe, first, last)
    sessions = sessions_between(first, last)
    levels = levels_for_sessions(bars, sessions, LOOKBACK_SESSIONS)
    levels["run_id"] = context.run.run_id
    result = warehouse.replace_partition(tables.SUPPORT_RESISTANCE, levels, sessions=(first, last), symbols=universe)
    violations = queries.level_violations(warehouse, universe, first, last)
    metadata: dict[str, Any] = {
        "rows_written": MetadataValue.int(result.rows_written),
        "symbols": MetadataValue.int(len(universe)),
        "sessions": MetadataValue.int(len(sessions)),
        "window": f"{first} .. {last}",
        "levels_per_symbol_latest": lambda: MetadataValue.md(report.levels_per_symbol(report.latest_levels(levels))),
        "preview": lambda: MetadataValue.md(report.levels_preview(report.latest_levels(levels))),
    }
    checks = [none_found_check("levels_consistent", violations, "violations")]
    return _finish(context, tables.SUPPORT_RESISTANCE, levels, t0, metadata, checks)


@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[DAILY_BARS, CORPORATE_ACTIONS],
    check_specs=[
        AssetCheckSpec(
            "pivots_ordered",
            asset="pivot_levels",
            blocking=True,
            description="s3 <= s2 <= s1 <= pivot <= r1 <= r2 <= r3 on every stored row.",
        ),
        AssetCheckSpec(
            "pivots_cover_bars",
            asset="pivot_levels",
            description="Every daily bar of the partition that has a previous bar has pivot levels.",
        ),
    ],
    description=(
        "Classic floor pivot points (market.pivot_points) to trade each session, from the previous session's "
        "high, low and close."
    ),
)
def pivot_levels(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    t0 = time.perf_counter()
    first, last = partition_dates(context)
    universe = run_universe(context, warehouse)
    bars = lookback_bars(context, warehouse, universe, first, last)
    bars = bars[bars["session"] >= history_start(first, 1)].reset_index(drop=True)
    pivots = pivot_rows(bars, first, last)
    pivots["run_id"] = context.run.run_id
    result = warehouse.replace_partition(tables.PIVOT_POINTS, pivots, sessions=(first, last), symbols=universe)
    faults = queries.pivot_faults(warehouse, universe, first, last)
    checks = [
        none_found_check("pivots_ordered", faults["unordered"], "unordered"),
        none_found_check("pivots_cover_bars", faults["missing"], "missing", severity=AssetCheckSeverity.WARN),
    ]
    metadata: dict[str, Any] = {
        "rows_written": MetadataValue.int(result.rows_written),
        "symbols": MetadataValue.int(len(universe)),
        "window": f"{first} .. {last}",
        "preview": lambda: MetadataValue.md(report.pivots_preview(pivots)),
    }
    return _finish(context, tables.PIVOT_POINTS, pivots, t0, metadata, checks)
