"""Technicals assets: daily indicators, chart patterns, support/resistance and pivot levels.

Thin by design, like the bar assets: read the partition's bars plus the history the analytics
need from the warehouse (not through IO managers, so a partition can be recomputed alone and SQL
users see what the asset saw), call the pure functions in `market_assets.analytics`, replace
exactly the partition's rows with the warehouse's one writer, and report checks and metadata.

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

import json
import math
import time
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    MaterializeResult,
    MetadataValue,
    asset,
)

from market_assets.analytics.technicals.frame import (
    LOOKBACK_SESSIONS,
    TECHNICAL_COLUMNS,
    compute_daily_technicals,
    detect_patterns,
    pivot_points,
    support_resistance,
)
from market_assets.defs.bars import BACKFILL_POLICY, active_symbols, partition_dates
from market_assets.defs.partitions import daily_partitions
from market_assets.domain.sessions import NEW_YORK, nyse, sessions_between
from market_assets.reporting.charts import technical_chart_markdown
from market_assets.warehouse import tables
from market_assets.warehouse.resource import WarehouseResource

GROUP = "technicals"
DAILY_BARS = AssetKey("daily_bars")
INTRADAY_BARS = AssetKey("intraday_bars")
BARS_TABLE = "market.bars_daily"
INDICATORS_TABLE = "market.indicators_daily"
PATTERNS_TABLE = "market.patterns"
LEVELS_TABLE = "market.support_resistance"
PIVOTS_TABLE = "market.pivot_points"

CHART_SYMBOLS = 3
CHART_SESSIONS = 126
PREVIEW_ROWS = 12
_EPOCH = date(1900, 1, 1)  # "from the first stored bar" for read_bars' session range

INDICATOR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("symbol", "text"),
    ("ts", "timestamptz"),
    ("session", "date"),
    *((name, "bool" if name == "volume_spike" else "float8") for name in TECHNICAL_COLUMNS),
    ("vwap_intraday", "float8"),
    ("minute_bars", "int4"),
    ("run_id", "text"),
)
PATTERN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("symbol", "text"),
    ("ts", "timestamptz"),
    ("session", "date"),
    ("pattern", "text"),
    ("direction", "text"),
    ("strength", "float8"),
    ("details", "jsonb"),
    ("run_id", "text"),
)
LEVEL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("symbol", "text"),
    ("as_of", "date"),
    ("session", "date"),
    ("kind", "text"),
    ("level", "float8"),
    ("touches", "int4"),
    ("first_touch", "timestamptz"),
    ("last_touch", "timestamptz"),
    ("strength", "float8"),
    ("run_id", "text"),
)
PIVOT_LEVELS = ("pivot", "r1", "r2", "r3", "s1", "s2", "s3")
PIVOT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("symbol", "text"),
    ("ts", "timestamptz"),
    ("session", "date"),
    *((name, "float8") for name in PIVOT_LEVELS),
    ("run_id", "text"),
)

# Bars of history (including the row's own) after which a column must be defined: 200 covers
# every indicator up to SMA-200; the 52-week columns need a full 252-session window (+1 for a
# 252-session return).
WARMUP_DEFAULT = 200
WARMUP_LONG: dict[str, int] = {"return_252d": 253, "log_return_252d": 253, "dist_52w_high": 252, "dist_52w_low": 252}
PREVIEW_COLUMNS = (
    "symbol",
    "session",
    "close",
    "rsi",
    "macd",
    "macd_signal",
    "sma_20",
    "sma_50",
    "sma_200",
    "atr_14",
    "relative_volume",
)


# ---------------------------------------------------------------------------------------------
# calendar and reads
# ---------------------------------------------------------------------------------------------
def history_start(first: date, sessions: int) -> date:
    """The NYSE session `sessions` sessions before the first session on or after `first`.

    Counted on the exchange calendar so that a holiday-rich stretch still yields `sessions` bars
    of history; clamped to the calendar's first session.
    """
    cal_sessions = nyse().sessions
    index = int(cal_sessions.searchsorted(pd.Timestamp(first)))
    return cal_sessions[max(index - sessions, 0)].date()


def read_bars_from(warehouse: WarehouseResource, symbols: Sequence[str], start: date, last: date) -> pd.DataFrame:
    """Daily bars of `symbols` in [start, last] with a `session` column of datetime.date values."""
    if not symbols:
        return pd.DataFrame(columns=["symbol", "ts", "session", "open", "high", "low", "close", "volume"])
    bars = warehouse.read_bars(BARS_TABLE, list(symbols), start, last)
    if bars.empty:
        return pd.DataFrame(columns=["symbol", "ts", "session", "open", "high", "low", "close", "volume"])
    bars["session"] = pd.to_datetime(bars["session"]).dt.date
    return bars.reset_index(drop=True)


def obv_ad_anchors(warehouse: WarehouseResource, symbols: Sequence[str], start: date, first: date) -> pd.DataFrame:
    """Latest stored (obv, ad) per symbol in [start, first): where the cumulative series continue."""
    frame = warehouse.read_frame(
        f"SELECT DISTINCT ON (symbol) symbol, ts, obv, ad FROM {INDICATORS_TABLE} "
        "WHERE symbol = ANY(%s) AND session >= %s AND session < %s AND obv IS NOT NULL AND ad IS NOT NULL "
        "ORDER BY symbol, ts DESC",
        (list(symbols), start, first),
    )
    if frame.empty:
        return pd.DataFrame(columns=["symbol", "ts", "obv", "ad"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def read_indicator_inputs(
    warehouse: WarehouseResource, universe: Sequence[str], first: date, last: date
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], date]:
    """Bars the partition's indicators need, the OBV/A-D anchors, and the symbols read in full.

    Anchored symbols: `LOOKBACK_SESSIONS` sessions before `first`. Unanchored symbols whose bars
    reach further back: from their first stored bar, because the cumulative OBV/A-D are defined
    from there (see the module doc).
    """
    start = history_start(first, LOOKBACK_SESSIONS)
    anchors = obv_ad_anchors(warehouse, universe, start, first)
    anchored = sorted(set(anchors["symbol"]))
    others = [s for s in universe if s not in set(anchored)]
    older = warehouse.read_frame(
        f"SELECT DISTINCT symbol FROM {BARS_TABLE} WHERE symbol = ANY(%s) AND session < %s", (others, start)
    )
    full = sorted(older["symbol"]) if not older.empty else []
    windowed = [s for s in universe if s not in set(full)]
    parts = [read_bars_from(warehouse, windowed, start, last), read_bars_from(warehouse, full, _EPOCH, last)]
    bars = pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    return bars, anchors, full, start


def intraday_vwap(warehouse: WarehouseResource, universe: Sequence[str], first: date, last: date) -> pd.DataFrame:
    """Session VWAP from the stored minute bars: sum(vwap x volume) / sum(volume) per symbol/session.

    Aggregated in PostgreSQL rather than in pandas: a month of minute bars for the universe is
    millions of rows that would cross the wire only to be summed. A minute without a vwap counts
    at its typical price, as `analytics.volume.daily_vwap` does (the test checks they agree).
    """
    frame = warehouse.read_frame(
        "SELECT symbol, session, "
        "sum(coalesce(vwap, (high + low + close) / 3.0) * volume) / nullif(sum(volume), 0) AS vwap_intraday, "
        "count(*)::int AS minute_bars FROM market.bars_minute "
        "WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s GROUP BY symbol, session",
        (list(universe), first, last),
    )
    if frame.empty:
        return pd.DataFrame(columns=["symbol", "session", "vwap_intraday", "minute_bars"])
    frame["vwap_intraday"] = frame["vwap_intraday"].astype("float64")
    return frame


def in_window(frame: pd.DataFrame, first: date, last: date) -> pd.Series:
    return (frame["session"] >= first) & (frame["session"] <= last)


def finite(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """±inf (e.g. a ratio over zero volume) is as undefined as NaN: stored as NULL."""
    for name in columns:
        if frame[name].dtype.kind == "f":
            frame[name] = frame[name].where(np.isfinite(frame[name]))
    return frame


# ---------------------------------------------------------------------------------------------
# metadata helpers
# ---------------------------------------------------------------------------------------------
def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    if frame.empty:
        return "_no rows_"
    return frame.round(digits).to_markdown(index=False)


def chart_frame(bars: pd.DataFrame, technicals: pd.DataFrame) -> pd.DataFrame:
    """Bars joined with their indicators, the input of `charts.technical_chart`."""
    return bars[["symbol", "ts", "session", "close", "volume"]].merge(technicals, on=["symbol", "ts"], how="inner")


def chart_markdown(
    bars: pd.DataFrame,
    technicals: pd.DataFrame | None,
    symbols: Sequence[str],
    last: date,
    *,
    markers: pd.DataFrame | None = None,
    levels: pd.DataFrame | None = None,
) -> str:
    """The price/volume/RSI/MACD chart of `symbols` up to `last`, as markdown."""
    symbols = [s for s in symbols if s in set(bars["symbol"])][:CHART_SYMBOLS]
    if not symbols:
        return "_no data to chart_"
    subset = bars[bars["symbol"].isin(symbols) & (bars["session"] <= last)]
    if technicals is None:
        technicals = compute_daily_technicals(subset)
    frame = chart_frame(subset, technicals[technicals["symbol"].isin(symbols)])
    return technical_chart_markdown(frame, symbols, sessions=CHART_SESSIONS, markers=markers, levels=levels)


def attach_chart(context: AssetExecutionContext, metadata: dict[str, Any], render: Callable[[], str]) -> None:
    """Render the chart and put it where it is stored once; a chart never fails a run.

    The rows are written and checked before this runs, so a plotting error only costs the
    picture (logged as a warning), never the materialization. One partition (the daily run): the
    chart goes in the materialization's metadata. A partition range repeats the materialization
    metadata on every partition's event, so a ~100 KB image would be stored once per day of a
    backfill; it is logged once instead, as an observation of the range's last partition, and
    the materialization's `chart` entry says where to find it.
    """
    try:
        chart = render()
    except Exception as exc:  # cosmetic output: report, do not fail the data
        context.log.warning("chart rendering failed: %r", exc)
        metadata["chart"] = MetadataValue.md(f"_chart rendering failed: {exc!r}_")
        return
    keys = context.partition_keys if context.has_partition_key_range else [context.partition_key]
    if len(keys) <= 1:
        metadata["chart"] = MetadataValue.md(chart)
        return
    context.log_event(
        AssetObservation(asset_key=context.asset_key, partition=keys[-1], metadata={"chart": MetadataValue.md(chart)})
    )
    metadata["chart"] = MetadataValue.md(
        f"_Rendered once for the {len(keys)} partitions of this run: see the observation of partition {keys[-1]}._"
    )


def _json_safe(value: Any) -> Any:
    """details -> JSON PostgreSQL accepts: numpy scalars to Python, NaN/inf to null."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | date):
        return value.isoformat()
    return value


def to_json(details: Any) -> str:
    return json.dumps(_json_safe(details if isinstance(details, dict) else {}), sort_keys=True, allow_nan=False)


# ---------------------------------------------------------------------------------------------
# technical_indicators
# ---------------------------------------------------------------------------------------------
def warmup_nulls(warehouse: WarehouseResource, universe: Sequence[str], first: date, last: date) -> dict[str, int]:
    """Per column, stored rows of the window that are NULL although the symbol had enough history.

    History is counted in stored bars up to and including the row's own (bars before the window
    plus the row's rank inside it), so a symbol listed recently is not expected to have SMA-200.
    """
    tests = []
    for name in TECHNICAL_COLUMNS:
        need = WARMUP_LONG.get(name, WARMUP_DEFAULT)
        tests.append(f"count(*) FILTER (WHERE h.n >= {need} AND i.{name} IS NULL) AS {name}")
    row = warehouse.read_frame(
        f"WITH before AS (SELECT symbol, count(*) AS n0 FROM {BARS_TABLE} "
        "                 WHERE symbol = ANY(%(u)s) AND session < %(first)s GROUP BY symbol), "
        f"inside AS (SELECT symbol, ts, row_number() OVER (PARTITION BY symbol ORDER BY ts) AS k FROM {BARS_TABLE} "
        "            WHERE symbol = ANY(%(u)s) AND session BETWEEN %(first)s AND %(last)s), "
        "h AS (SELECT inside.symbol, inside.ts, coalesce(before.n0, 0) + inside.k AS n "
        "      FROM inside LEFT JOIN before USING (symbol)) "
        f"SELECT {', '.join(tests)} FROM h JOIN {INDICATORS_TABLE} i USING (symbol, ts)",
        {"u": list(universe), "first": first, "last": last},
    )
    return {name: int(row.iloc[0][name]) for name in TECHNICAL_COLUMNS}


def coverage(
    warehouse: WarehouseResource, table: str, universe: Sequence[str], first: date, last: date
) -> dict[str, int]:
    """Bars of the window vs rows of `table` keyed (symbol, ts): counts, and keys on one side only."""
    row = warehouse.read_frame(
        f"SELECT (SELECT count(*) FROM {BARS_TABLE} WHERE symbol = ANY(%(u)s) AND session BETWEEN %(f)s AND %(l)s)"
        "   AS bars, "
        f"(SELECT count(*) FROM {table} WHERE symbol = ANY(%(u)s) AND session BETWEEN %(f)s AND %(l)s) AS rows, "
        f"(SELECT count(*) FROM {BARS_TABLE} b WHERE b.symbol = ANY(%(u)s) AND b.session BETWEEN %(f)s AND %(l)s "
        f"   AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.symbol = b.symbol AND t.ts = b.ts)) AS missing, "
        f"(SELECT count(*) FROM {table} t WHERE t.symbol = ANY(%(u)s) AND t.session BETWEEN %(f)s AND %(l)s "
        f"   AND NOT EXISTS (SELECT 1 FROM {BARS_TABLE} b WHERE b.symbol = t.symbol AND b.ts = t.ts)) AS orphans",
        {"u": list(universe), "f": first, "l": last},
    )
    return {k: int(v) for k, v in row.iloc[0].items()}


def indicator_checks(
    warehouse: WarehouseResource, universe: Sequence[str], first: date, last: date
) -> list[AssetCheckResult]:
    """The partition's checks, run on what is stored (what SQL users and downstream assets read)."""
    rsi = warehouse.read_frame(
        f"SELECT count(*) FILTER (WHERE rsi < 0 OR rsi > 100 OR rsi = 'NaN'::float8) AS bad, "
        f"min(rsi) AS min, max(rsi) AS max, count(rsi) AS defined FROM {INDICATORS_TABLE} "
        "WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s",
        (list(universe), first, last),
    ).iloc[0]
    nulls = warmup_nulls(warehouse, universe, first, last)
    failing = {k: v for k, v in nulls.items() if v}
    counts = coverage(warehouse, INDICATORS_TABLE, universe, first, last)
    return [
        AssetCheckResult(
            check_name="rsi_in_range",
            passed=int(rsi["bad"]) == 0,
            metadata={
                "out_of_range": int(rsi["bad"]),
                "defined": int(rsi["defined"]),
                "min": MetadataValue.float(float(rsi["min"])) if rsi["min"] is not None else "none",
                "max": MetadataValue.float(float(rsi["max"])) if rsi["max"] is not None else "none",
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


@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[DAILY_BARS, INTRADAY_BARS],
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
    universe = active_symbols(warehouse)
    bars, anchors, full, start = read_indicator_inputs(warehouse, universe, first, last)
    technicals = compute_daily_technicals(bars, anchors if not anchors.empty else None)
    frame = technicals.copy()
    frame["session"] = bars["session"].to_numpy() if len(bars) else pd.Series(dtype=object)
    frame = frame[in_window(frame, first, last)] if len(frame) else frame
    vwap = intraday_vwap(warehouse, universe, first, last)
    frame = frame.merge(vwap, on=["symbol", "session"], how="left") if len(frame) else frame
    for name in ("vwap_intraday", "minute_bars"):
        if name not in frame:
            frame[name] = pd.Series(dtype="float64")
    frame["run_id"] = context.run.run_id
    frame = finite(frame, [name for name, pg in INDICATOR_COLUMNS if pg == "float8"])
    result = warehouse.replace_partition(tables.INDICATORS_DAILY, frame, sessions=(first, last), symbols=universe)
    checks = indicator_checks(warehouse, universe, first, last)

    latest = frame[frame["session"] == frame["session"].max()] if len(frame) else frame
    with_close = latest.merge(bars[["symbol", "ts", "close"]], on=["symbol", "ts"]) if len(latest) else latest
    movers = (
        with_close.assign(move=with_close["return_1d"].abs()).sort_values(["move", "symbol"], ascending=[False, True])
        if len(with_close)
        else with_close
    )
    chart_symbols = movers["symbol"].tolist()[:CHART_SYMBOLS] if len(movers) else []
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
        "preview": MetadataValue.md(
            markdown_table(with_close[[c for c in PREVIEW_COLUMNS if c in with_close]].head(PREVIEW_ROWS))
            if len(with_close)
            else "_no rows_"
        ),
    }
    context.log.info("technical_indicators %s..%s: %d rows, %d symbols in full", first, last, len(frame), len(full))
    day = latest["session"].iloc[0] if len(latest) else last
    attach_chart(
        context,
        metadata,
        lambda: (
            f"Biggest movers on {day}: {', '.join(chart_symbols)}\n\n"
            + chart_markdown(bars, technicals, chart_symbols, last)
            if chart_symbols
            else "_no data to chart_"
        ),
    )
    metadata["seconds"] = MetadataValue.float(round(time.perf_counter() - t0, 3))
    return MaterializeResult(metadata=metadata, check_results=checks)


# ---------------------------------------------------------------------------------------------
# chart_patterns
# ---------------------------------------------------------------------------------------------
@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[DAILY_BARS],
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
    universe = active_symbols(warehouse)
    start = history_start(first, LOOKBACK_SESSIONS)
    bars = read_bars_from(warehouse, universe, start, last)
    found = detect_patterns(bars) if len(bars) else pd.DataFrame()
    if len(found):
        found["ts"] = pd.to_datetime(found["ts"], utc=True)
        found = found.merge(bars[["symbol", "ts", "session"]], on=["symbol", "ts"], how="inner")
        recent = found[found["session"] > history_start(last, CHART_SESSIONS)]  # chart markers: the drawn span
        found = found[in_window(found, first, last)]
        # two hits of one pattern on one bar (e.g. two peak pairs completing together): keep the strongest
        found = found.sort_values(["symbol", "ts", "pattern", "strength"], kind="stable")
        found["details"] = found["details"].map(to_json)
    else:
        found = pd.DataFrame(columns=[name for name, _ in PATTERN_COLUMNS])
        recent = found
    found["run_id"] = context.run.run_id
    result = warehouse.replace_partition(tables.PATTERNS, found, sessions=(first, last), symbols=universe)
    orphans = int(
        warehouse.scalar(
            f"SELECT count(*) FROM {PATTERNS_TABLE} p WHERE p.symbol = ANY(%s) AND p.session BETWEEN %s AND %s "
            f"AND NOT EXISTS (SELECT 1 FROM {BARS_TABLE} b WHERE b.symbol = p.symbol AND b.ts = p.ts "
            "AND b.session = p.session)",
            (universe, first, last),
        )
    )
    stored = found.drop_duplicates(["symbol", "ts", "pattern"], keep="last")
    by_pattern = (
        stored.groupby(["pattern", "direction"])
        .size()
        .rename("count")
        .reset_index()
        .sort_values("count", ascending=False)
        if len(stored)
        else pd.DataFrame()
    )
    busiest = stored["symbol"].value_counts().index.tolist()[:CHART_SYMBOLS] if len(stored) else []
    preview = stored.sort_values(["ts", "strength"], ascending=[False, False]).head(PREVIEW_ROWS)
    metadata: dict[str, Any] = {
        "rows_written": MetadataValue.int(result.rows_written),
        "symbols": MetadataValue.int(len(universe)),
        "symbols_with_patterns": MetadataValue.int(int(stored["symbol"].nunique()) if len(stored) else 0),
        "window": f"{first} .. {last}",
        "history_start": str(start),
        "by_pattern": MetadataValue.md(markdown_table(by_pattern)),
        "preview": MetadataValue.md(
            markdown_table(preview[["symbol", "session", "pattern", "direction", "strength"]])
            if len(preview)
            else "_no patterns_"
        ),
    }
    checks = [AssetCheckResult(check_name="patterns_on_bars", passed=orphans == 0, metadata={"orphans": orphans})]
    attach_chart(
        context,
        metadata,
        lambda: (
            f"Symbols with the most patterns in {first} .. {last}: {', '.join(busiest)} "
            f"(triangles: patterns of the last {CHART_SESSIONS} sessions)\n\n"
            + chart_markdown(bars, None, busiest, last, markers=recent)
            if busiest
            else "_no patterns to chart_"
        ),
    )
    metadata["seconds"] = MetadataValue.float(round(time.perf_counter() - t0, 3))
    return MaterializeResult(metadata=metadata, check_results=checks)


# ---------------------------------------------------------------------------------------------
# support_resistance_levels
# ---------------------------------------------------------------------------------------------
def levels_for_sessions(bars: pd.DataFrame, sessions: Sequence[date]) -> pd.DataFrame:
    """Levels as of each session from exactly the LOOKBACK_SESSIONS sessions ending on it.

    `as_of` is handed over as the session's bar time (midnight New York): a naive date would be
    read as midnight UTC, which is before that day's bar, and would drop the as-of bar itself.
    """
    frames = []
    for day in sessions:
        window = bars[(bars["session"] >= history_start(day, LOOKBACK_SESSIONS)) & (bars["session"] <= day)]
        if window.empty or not (window["session"] == day).any():
            continue
        levels = support_resistance(window, pd.Timestamp(day, tz=NEW_YORK))
        if len(levels):
            levels = levels.assign(as_of=day, session=day)
            frames.append(levels)
    if not frames:
        return pd.DataFrame(columns=[name for name, _ in LEVEL_COLUMNS])
    out = pd.concat(frames, ignore_index=True)
    out["touches"] = out["touches"].astype("int64")
    for name in ("first_touch", "last_touch"):
        out[name] = pd.to_datetime(out[name], utc=True)
    return out


@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[DAILY_BARS],
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
    universe = active_symbols(warehouse)
    start = history_start(first, LOOKBACK_SESSIONS)
    bars = read_bars_from(warehouse, universe, start, last)
    sessions = sessions_between(first, last)
    levels = levels_for_sessions(bars, sessions) if len(bars) else pd.DataFrame(columns=[n for n, _ in LEVEL_COLUMNS])
    levels["run_id"] = context.run.run_id
    result = warehouse.replace_partition(tables.SUPPORT_RESISTANCE, levels, sessions=(first, last), symbols=universe)
    violations = int(
        warehouse.scalar(
            f"SELECT count(*) FROM {LEVELS_TABLE} s JOIN {BARS_TABLE} b ON b.symbol = s.symbol AND b.session = s.as_of "
            "WHERE s.symbol = ANY(%s) AND s.session BETWEEN %s AND %s AND NOT ("
            " ((s.kind = 'support' AND s.level <= b.close) OR (s.kind = 'resistance' AND s.level > b.close))"
            " AND s.last_touch <= b.ts AND s.first_touch <= s.last_touch)",
            (universe, first, last),
        )
    )
    latest = levels[levels["as_of"] == levels["as_of"].max()] if len(levels) else levels
    chart_symbols = sorted(set(latest["symbol"]))[:CHART_SYMBOLS] if len(latest) else []
    per_symbol = (
        latest.groupby(["symbol", "kind"]).size().unstack(fill_value=0).reset_index() if len(latest) else latest
    )
    metadata: dict[str, Any] = {
        "rows_written": MetadataValue.int(result.rows_written),
        "symbols": MetadataValue.int(len(universe)),
        "sessions": MetadataValue.int(len(sessions)),
        "window": f"{first} .. {last}",
        "levels_per_symbol_latest": MetadataValue.md(markdown_table(per_symbol)),
        "preview": MetadataValue.md(
            markdown_table(
                latest.sort_values(["symbol", "level"])[
                    ["symbol", "as_of", "kind", "level", "touches", "strength"]
                ].head(PREVIEW_ROWS)
            )
            if len(latest)
            else "_no levels_"
        ),
    }
    checks = [
        AssetCheckResult(check_name="levels_consistent", passed=violations == 0, metadata={"violations": violations})
    ]
    attach_chart(
        context,
        metadata,
        lambda: (
            "Latest levels (dashed: green support, red resistance)\n\n"
            + chart_markdown(bars, None, chart_symbols, last, levels=latest)
            if chart_symbols
            else "_no levels to chart_"
        ),
    )
    metadata["seconds"] = MetadataValue.float(round(time.perf_counter() - t0, 3))
    return MaterializeResult(metadata=metadata, check_results=checks)


# ---------------------------------------------------------------------------------------------
# pivot_levels
# ---------------------------------------------------------------------------------------------
@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[DAILY_BARS],
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
    universe = active_symbols(warehouse)
    bars = read_bars_from(warehouse, universe, history_start(first, 1), last)
    pivots = pivot_points(bars) if len(bars) else pd.DataFrame(columns=["symbol", "ts", *PIVOT_LEVELS])
    if len(pivots):
        pivots["ts"] = pd.to_datetime(pivots["ts"], utc=True)
        pivots = pivots.merge(bars[["symbol", "ts", "session"]], on=["symbol", "ts"], how="inner")
        pivots = pivots[in_window(pivots, first, last) & pivots["pivot"].notna()]
    else:
        pivots["session"] = pd.Series(dtype=object)
    pivots["run_id"] = context.run.run_id
    result = warehouse.replace_partition(tables.PIVOT_POINTS, pivots, sessions=(first, last), symbols=universe)
    stats = warehouse.read_frame(
        "SELECT "
        f"(SELECT count(*) FROM {PIVOTS_TABLE} WHERE symbol = ANY(%(u)s) AND session BETWEEN %(f)s AND %(l)s AND NOT ("
        " s3 <= s2 + 1e-9 * abs(pivot) AND s2 <= s1 + 1e-9 * abs(pivot) AND s1 <= pivot + 1e-9 * abs(pivot)"
        " AND pivot <= r1 + 1e-9 * abs(pivot) AND r1 <= r2 + 1e-9 * abs(pivot) AND r2 <= r3 + 1e-9 * abs(pivot)"
        ")) AS unordered, "
        f"(SELECT count(*) FROM {BARS_TABLE} b WHERE b.symbol = ANY(%(u)s) AND b.session BETWEEN %(f)s AND %(l)s"
        f" AND EXISTS (SELECT 1 FROM {BARS_TABLE} p WHERE p.symbol = b.symbol AND p.ts < b.ts)"
        f" AND NOT EXISTS (SELECT 1 FROM {PIVOTS_TABLE} v WHERE v.symbol = b.symbol AND v.ts = b.ts)) AS missing",
        {"u": universe, "f": first, "l": last},
    ).iloc[0]
    checks = [
        AssetCheckResult(
            check_name="pivots_ordered",
            passed=int(stats["unordered"]) == 0,
            metadata={"unordered": int(stats["unordered"])},
        ),
        AssetCheckResult(
            check_name="pivots_cover_bars",
            passed=int(stats["missing"]) == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={"missing": int(stats["missing"])},
        ),
    ]
    latest = pivots[pivots["session"] == pivots["session"].max()] if len(pivots) else pivots
    metadata: dict[str, Any] = {
        "rows_written": MetadataValue.int(result.rows_written),
        "symbols": MetadataValue.int(len(universe)),
        "window": f"{first} .. {last}",
        "preview": MetadataValue.md(
            markdown_table(latest[["symbol", "session", "s2", "s1", "pivot", "r1", "r2"]].head(PREVIEW_ROWS))
            if len(latest)
            else "_no rows_"
        ),
        "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
    }
    return MaterializeResult(metadata=metadata, check_results=checks)
