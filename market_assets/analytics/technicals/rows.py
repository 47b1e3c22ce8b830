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
    PatternHits,
    pattern_hits,
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
    "resistance",  # kind == "resistance": the packed table stores this flag (migration 063)
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
    if len(technicals):  # the window's rows first: copying the lookback's rows too was most of a daily run's cost
        keep = in_window(bars, first, last).to_numpy()  # `technicals` has one row per bar, in the same order
        frame = technicals[keep].copy()
        frame["session"] = bars["session"].to_numpy()[keep]
    else:
        frame = technicals.copy()
        frame["session"] = pd.Series(dtype=object)
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


def _json_texts(values: list[Any]) -> list[str]:
    """Each value as :func:`details_json` writes it: finite floats by ``repr`` (as ``json`` does),
    NaN/inf and None as null, integers by ``repr``, anything else through ``json.dumps``."""
    kinds = {type(v) for v in values}
    finite = math.isfinite
    if kinds <= {float, type(None)}:
        return ["null" if v is None or not finite(v) else repr(v) for v in values]
    if kinds <= {int}:
        return [repr(v) for v in values]
    return [json.dumps(_json_safe(v), allow_nan=False) for v in values]


def details_texts(hits: PatternHits) -> list[str]:
    """:func:`details_json` of every hit's details, built column by column without a dict per hit:
    the same text at a fraction of the cost (a year of 500 symbols stores ~70 k patterns)."""
    out = np.empty(len(hits), dtype=object)
    for at, columns in hits.detail_columns():
        # what json.dumps(sort_keys=True) writes: keys in order, '"key": value' joined by ", "
        texts = []
        for key, values in sorted(columns):
            prefix = json.dumps(key) + ": "
            texts.append([prefix + v for v in _json_texts(values)])
        out[at] = ["{" + ", ".join(parts) + "}" for parts in zip(*texts, strict=True)]
    return out.tolist()


# the dtype pandas infers for a column of strings (``str`` in pandas 3, object before)
_TEXT = pd.Series(["text"]).dtype


def _pattern_frame(hits: PatternHits, bars: pd.DataFrame, details: list[Any]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "symbol": hits.symbols(),
            "ts": pd.to_datetime(hits.ts(), utc=True),
            "pattern": hits.patterns(),
            "direction": hits.directions(),
            "strength": hits.strength(),
            "details": details,
            "session": bars["session"].array.take(hits.row),
        }
    )
    if not len(frame):  # empty columns infer nothing: the dtypes a window without hits has always had
        frame = frame.astype({"symbol": _TEXT, "pattern": _TEXT, "direction": _TEXT, "details": object})
    return frame


def pattern_rows(bars: pd.DataFrame, first: date, last: date, *, since: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pattern rows of [first, last], patterns dated after `since`): what to store, and chart markers.

    Two hits of one pattern on one bar (e.g. two peak pairs completing together) are sorted by
    strength so that the writer's keep-last de-duplication keeps the strongest.

    Patterns are detected over all of `bars` (each symbol's history counts), but only the hits dated
    on a session of either window become rows, so a one-session run does not pay per hit of its
    lookback; a hit's session is its bar's.
    """
    empty = pd.DataFrame(columns=list(PATTERN_ROW_COLUMNS))
    if not len(bars):
        return empty, empty.copy()
    # the windows are tested once per distinct session, not per bar
    codes, uniques = pd.factorize(bars["session"])
    distinct = pd.DataFrame({"session": pd.Series(uniques, dtype=bars["session"].dtype)})
    in_range = np.append(in_window(distinct, first, last).to_numpy(dtype=bool), False)[codes]
    recent_bar = np.append((distinct["session"] > since).to_numpy(dtype=bool), False)[codes]
    hits = pattern_hits(bars, keep=in_range | recent_bar)
    if not hits.found:
        return empty, empty.copy()
    rows = hits.row
    recent_hits = hits.take(np.flatnonzero(recent_bar[rows]))
    recent = _pattern_frame(recent_hits, bars, recent_hits.details())
    stored = hits.take(np.flatnonzero(in_range[rows]))
    # hits come sorted by symbol, ts and pattern; ties (same symbol, bar, pattern) go by strength
    same = np.zeros(len(stored), dtype=bool)
    same[1:] = (np.diff(stored.pos) == 0) & (np.diff(stored.code) == 0)
    stored = stored.take(np.lexsort((stored.strength(), np.cumsum(~same))))
    return _pattern_frame(stored, bars, details_texts(stored)), recent


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
    if not len(out):
        return pd.DataFrame(columns=list(LEVEL_ROW_COLUMNS))
    out["resistance"] = out["kind"].to_numpy() == "resistance"
    return out[list(LEVEL_ROW_COLUMNS)]


def pivot_rows(bars: pd.DataFrame, first: date, last: date) -> pd.DataFrame:
    """Floor pivots of the sessions in [first, last] that have a previous bar in `bars`."""
    pivots = pivot_points(bars) if len(bars) else pd.DataFrame(columns=["symbol", "ts", *PIVOT_LEVELS])
    if not len(pivots):
        pivots["session"] = pd.Series(dtype=object)
        return pivots
    pivots["ts"] = pd.to_datetime(pivots["ts"], utc=True)
    pivots = pivots.merge(bars[["symbol", "ts", "session"]], on=["symbol", "ts"], how="inner")
    return pivots[in_window(pivots, first, last) & pivots["pivot"].notna()]
