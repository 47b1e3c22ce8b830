"""A partition's rows: bars read with their history in, exactly the rows to store for [first, last] out.

The frame-level analytics (`frame.py`) compute over everything they are given, history included;
the assets store only the partition's sessions. The shaping in between (attach the session, keep
the window, merge the minute-bar VWAP, drop ±inf, serialise pattern details, compute levels as of
each session) is pure and lives here, so the Dagster assets only read, call, write and report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from market_assets.analytics.technicals.frame import (
    LOOKBACK_SESSIONS,
    TECHNICAL_COLUMNS,
    detect_patterns,
    pivot_points,
    support_resistance_by_session,
)
from market_assets.domain.sessions import session_before

PIVOT_LEVELS = ("pivot", "r1", "r2", "r3", "s1", "s2", "s3")
PATTERN_ROW_COLUMNS = ("symbol", "ts", "session", "pattern", "direction", "strength", "details")
LEVEL_ROW_COLUMNS = (
    "symbol",
    "as_of",
    "session",
    "kind",
    "level",
    "touches",
    "first_touch",
    "last_touch",
    "strength",
)
# the stored float columns: ±inf in them is stored as NULL (volume_spike is a bool, minute_bars a count)
INDICATOR_FLOAT_COLUMNS = (*(c for c in TECHNICAL_COLUMNS if c != "volume_spike"), "vwap_intraday")

# Bars of history (including the row's own) after which a column must be defined: 200 covers
# every indicator up to SMA-200; the 52-week columns need a full 252-session window (+1 for a
# 252-session return).
WARMUP_DEFAULT = 200
WARMUP_LONG: dict[str, int] = {"return_252d": 253, "log_return_252d": 253, "dist_52w_high": 252, "dist_52w_low": 252}
WARMUP: dict[str, int] = {name: WARMUP_LONG.get(name, WARMUP_DEFAULT) for name in TECHNICAL_COLUMNS}


def in_window(frame: pd.DataFrame, first: date, last: date) -> pd.Series:
    """Rows whose `session` lies in [first, last]."""
    return (frame["session"] >= first) & (frame["session"] <= last)


def finite(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """±inf (e.g. a ratio over zero volume) is as undefined as NaN: stored as NULL."""
    for name in columns:
        if frame[name].dtype.kind == "f":
            frame[name] = frame[name].where(np.isfinite(frame[name]))
    return frame


def indicator_rows(
    bars: pd.DataFrame, technicals: pd.DataFrame, vwap: pd.DataFrame, first: date, last: date
) -> pd.DataFrame:
    """The indicator rows of [first, last]: `technicals` (one row per bar of `bars`, same order) with
    the bar's session and the session's minute-bar VWAP (`vwap`: symbol, session, vwap_intraday,
    minute_bars; NULL where a session has no minute bars)."""
    frame = technicals.copy()
    frame["session"] = bars["session"].to_numpy() if len(bars) else pd.Series(dtype=object)
    frame = frame[in_window(frame, first, last)] if len(frame) else frame
    frame = frame.merge(vwap, on=["symbol", "session"], how="left") if len(frame) else frame
    for name in ("vwap_intraday", "minute_bars"):
        if name not in frame:
            frame[name] = pd.Series(dtype="float64")
    return finite(frame, INDICATOR_FLOAT_COLUMNS)


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


def details_json(details: Any) -> str:
    """A pattern's details as the JSON text stored in `jsonb` (keys sorted, so re-runs store identical text)."""
    return json.dumps(_json_safe(details if isinstance(details, dict) else {}), sort_keys=True, allow_nan=False)


def pattern_rows(bars: pd.DataFrame, first: date, last: date, *, since: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pattern rows of [first, last], patterns dated after `since`): what to store, and chart markers.

    Two hits of one pattern on one bar (e.g. two peak pairs completing together) are sorted by
    strength so that the writer's keep-last de-duplication keeps the strongest.
    """
    found = detect_patterns(bars) if len(bars) else pd.DataFrame()
    if not len(found):
        empty = pd.DataFrame(columns=list(PATTERN_ROW_COLUMNS))
        return empty, empty
    found["ts"] = pd.to_datetime(found["ts"], utc=True)
    found = found.merge(bars[["symbol", "ts", "session"]], on=["symbol", "ts"], how="inner")
    recent = found[found["session"] > since]
    found = found[in_window(found, first, last)]
    found = found.sort_values(["symbol", "ts", "pattern", "strength"], kind="stable")
    found["details"] = found["details"].map(details_json)
    return found, recent


def levels_for_sessions(
    bars: pd.DataFrame, sessions: Sequence[date], lookback: int = LOOKBACK_SESSIONS
) -> pd.DataFrame:
    """Levels as of each session from exactly the `lookback` sessions ending on it.

    Whatever the partition range, a session's levels depend only on its own window, so a backfill
    and a daily run give identical rows. All sessions are evaluated in one pass per symbol
    (:func:`support_resistance_by_session`), equal bit for bit to running
    :func:`support_resistance` on each session's window, at a constant cost per session.
    """
    if not len(bars) or not len(sessions):
        return pd.DataFrame(columns=list(LEVEL_ROW_COLUMNS))
    starts = [session_before(day, lookback) for day in sessions]
    out = support_resistance_by_session(bars, list(sessions), starts)
    return out[list(LEVEL_ROW_COLUMNS)] if len(out) else pd.DataFrame(columns=list(LEVEL_ROW_COLUMNS))


def pivot_rows(bars: pd.DataFrame, first: date, last: date) -> pd.DataFrame:
    """Floor pivots of the sessions in [first, last] that have a previous bar in `bars`."""
    pivots = pivot_points(bars) if len(bars) else pd.DataFrame(columns=["symbol", "ts", *PIVOT_LEVELS])
    if not len(pivots):
        pivots["session"] = pd.Series(dtype=object)
        return pivots
    pivots["ts"] = pd.to_datetime(pivots["ts"], utc=True)
    pivots = pivots.merge(bars[["symbol", "ts", "session"]], on=["symbol", "ts"], how="inner")
    return pivots[in_window(pivots, first, last) & pivots["pivot"].notna()]
