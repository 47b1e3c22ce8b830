"""What the technicals assets report: previews, counts and the price/indicator charts, as markdown.

Pure presentation over frames (no I/O), kept out of `defs/` so the asset bodies stay read -> compute -> write ->
report. Previews describe the rows an asset just wrote; charts are drawn by their own asset (`defs/charts.py`) from
the stored rows. Charts show at most `CHART_SYMBOLS` symbols over the
last `CHART_SESSIONS` sessions; previews show `PREVIEW_ROWS` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pandas as pd

from market_assets.reporting.charts import technical_chart_markdown

CHART_SYMBOLS = 3
CHART_SESSIONS = 126
PREVIEW_ROWS = 12
INDICATOR_PREVIEW_COLUMNS = (
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


def markdown_table(frame: pd.DataFrame, digits: int = 4, empty: str = "_no rows_") -> str:
    return frame.round(digits).to_markdown(index=False) if len(frame) else empty


def chart_markdown(
    frame: pd.DataFrame,
    symbols: Sequence[str],
    *,
    markers: pd.DataFrame | None = None,
    levels: pd.DataFrame | None = None,
) -> str:
    """The price/volume/RSI/MACD chart of `symbols` (at most `CHART_SYMBOLS`) as markdown.

    `frame`: bars joined with their stored indicators (`queries.technicals.chart_frame`).
    """
    present = set(frame["symbol"].unique())  # once: building it per candidate cost 0.4 s on 500 symbols
    symbols = [s for s in symbols if s in present][:CHART_SYMBOLS]
    if not symbols:
        return "_no data to chart_"
    return technical_chart_markdown(frame, symbols, sessions=CHART_SESSIONS, markers=markers, levels=levels)


# --- technical_indicators ----------------------------------------------------------------------


def _latest_with_close(rows: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    latest = rows[rows["session"] == rows["session"].max()] if len(rows) else rows
    return latest.merge(bars[["symbol", "ts", "close"]], on=["symbol", "ts"]) if len(latest) else latest


def indicator_preview(rows: pd.DataFrame, bars: pd.DataFrame) -> str:
    """The latest session's indicator rows with their close."""
    latest = _latest_with_close(rows, bars)
    return markdown_table(latest[[c for c in INDICATOR_PREVIEW_COLUMNS if c in latest]].head(PREVIEW_ROWS))


def movers_chart(frame: pd.DataFrame, movers: Sequence[str], day: date) -> str:
    """The chart of the session's biggest movers (`queries.technicals.biggest_movers`)."""
    if not movers:
        return f"_no indicator rows on {day} to chart_"
    return f"Biggest movers on {day}: {', '.join(movers)}\n\n" + chart_markdown(frame, movers)


# --- chart_patterns ----------------------------------------------------------------------------


def pattern_counts(stored: pd.DataFrame) -> str:
    """Stored patterns per (pattern, direction), most frequent first."""
    if not len(stored):
        return markdown_table(pd.DataFrame())
    counts = stored.groupby(["pattern", "direction"]).size().rename("count").reset_index()
    return markdown_table(counts.sort_values("count", ascending=False))


def pattern_preview(stored: pd.DataFrame) -> str:
    """The most recent, strongest stored patterns."""
    preview = stored.sort_values(["ts", "strength"], ascending=[False, False]).head(PREVIEW_ROWS)
    return markdown_table(preview[["symbol", "session", "pattern", "direction", "strength"]], empty="_no patterns_")


def patterns_chart(frame: pd.DataFrame, busiest: Sequence[str], markers: pd.DataFrame, first: date, last: date) -> str:
    """The chart of the symbols with the most patterns in [first, last], recent patterns as markers."""
    if not busiest:
        return "_no patterns to chart_"
    return (
        f"Symbols with the most patterns in {first} .. {last}: {', '.join(busiest)} "
        f"(triangles: patterns of the last {CHART_SESSIONS} sessions)\n\n"
        + chart_markdown(frame, busiest, markers=markers)
    )


# --- support_resistance_levels -----------------------------------------------------------------


def latest_levels(levels: pd.DataFrame) -> pd.DataFrame:
    return levels[levels["as_of"] == levels["as_of"].max()] if len(levels) else levels


def levels_per_symbol(latest: pd.DataFrame) -> str:
    """Latest levels per symbol and kind (support / resistance)."""
    if not len(latest):
        return markdown_table(latest)
    return markdown_table(latest.groupby(["symbol", "kind"]).size().unstack(fill_value=0).reset_index())


def levels_preview(latest: pd.DataFrame) -> str:
    if not len(latest):
        return "_no levels_"
    columns = ["symbol", "as_of", "kind", "level", "touches", "strength"]
    return markdown_table(latest.sort_values(["symbol", "level"])[columns].head(PREVIEW_ROWS))


def levels_chart(frame: pd.DataFrame, latest: pd.DataFrame) -> str:
    """The charts of the symbols in `latest` (`queries.technicals.levels_as_of`) with their levels drawn."""
    symbols = sorted(set(latest["symbol"]))[:CHART_SYMBOLS] if len(latest) else []
    if not symbols:
        return "_no levels to chart_"
    return "Latest levels (dashed: green support, red resistance)\n\n" + chart_markdown(frame, symbols, levels=latest)


# --- pivot_levels ------------------------------------------------------------------------------


def pivots_preview(pivots: pd.DataFrame) -> str:
    latest = pivots[pivots["session"] == pivots["session"].max()] if len(pivots) else pivots
    return markdown_table(latest[["symbol", "session", "s2", "s1", "pivot", "r1", "r2"]].head(PREVIEW_ROWS))
