"""Frame-level technical analysis: long bar frames in, long indicator/pattern frames out.

Bars are reshaped into a 2-D ``(symbols, bars)`` block where each symbol's bars are packed
contiguously and right-aligned (left-padded with NaN).  A session on which a symbol has no bar
(new listing, halt) is therefore simply absent from its series, as it would be for TA-Lib called
per symbol, and every indicator runs once over the whole block.

Incremental exactness: ``LOOKBACK_SESSIONS`` bars of history before the first date of a
partition make every column equal to the full-history computation to 1e-9, except OBV and A/D,
which are cumulative; pass ``anchors`` (the stored obv/ad of a bar inside the window) to continue
the stored series exactly.  Without anchors they are cumulative from the first bar given.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from market_assets.analytics.technicals import indicators as ind
from market_assets.analytics.technicals import levels as lv
from market_assets.analytics.technicals import movements as mv
from market_assets.analytics.technicals import patterns as pt
from market_assets.analytics.technicals import volume as vol
from market_assets.domain.sessions import as_days

__all__ = [
    "LOOKBACK_SESSIONS",
    "PATTERN_COLUMNS",
    "TECHNICAL_COLUMNS",
    "PatternHits",
    "compute_daily_technicals",
    "detect_patterns",
    "isoformat",
    "pattern_hits",
    "pivot_points",
    "support_resistance",
    "support_resistance_by_session",
]

#: seed tolerance 1e-13 relative to price: 1e-9 absolute for prices up to ~10,000;
#: at least 253 bars for the 252-session return and 52-week window.
LOOKBACK_SESSIONS: int = max(ind.required_lookback(1e-13), 253)

TECHNICAL_COLUMNS: tuple[str, ...] = (
    "rsi",
    "macd",
    "macd_signal",
    "macd_hist",
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr_14",
    "stoch_k",
    "stoch_d",
    "volume_sma_20",
    "relative_volume",
    "volume_zscore",
    "volume_spike",
    "obv",
    "ad",
    *(f"return_{k}d" for k in mv.RETURN_HORIZONS),
    *(f"log_return_{k}d" for k in mv.RETURN_HORIZONS),
    "gap_pct",
    "true_range",
    "realized_vol_20",
    "dist_52w_high",
    "dist_52w_low",
    "drawdown",
)

_PRICE_COLS = ("open", "high", "low", "close", "volume")


def _symbol_time_order(symbol: pd.Series, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(permutation sorting the rows by symbol then time, stably; the sorted distinct symbols; rows per symbol).

    The symbols are hashed once and only the distinct ones are sorted as strings; the rows are then
    sorted on integer keys, and not at all when they come sorted (as the warehouse reads them).
    A stable sort of string keys cost 0.4 s for 500 symbols x 10 years (issue 10).
    """
    codes, uniques = pd.factorize(symbol.astype(str))
    if (codes < 0).any():
        raise ValueError("bars have rows without a symbol")
    names = np.asarray(uniques, dtype=object)
    by_name = np.argsort(names, kind="stable")
    key = np.empty(names.size, dtype=np.int64)
    key[by_name] = np.arange(names.size)
    key = key[codes]
    # compared, not subtracted: NaT is the smallest int64 and a difference would overflow
    if bool(np.all((key[1:] > key[:-1]) | ((key[1:] == key[:-1]) & (stamps[1:] >= stamps[:-1])))):
        order = np.arange(key.size)
    else:
        order = np.lexsort((stamps, key))
    return order, names[by_name], np.bincount(key, minlength=names.size)


class _Block:
    """Long bars -> right-aligned 2-D arrays per field, and the way back."""

    def __init__(self, bars: pd.DataFrame) -> None:
        missing = {"symbol", "ts", *_PRICE_COLS} - set(bars.columns)
        if missing:
            raise ValueError(f"bars lack columns: {sorted(missing)}")
        df = bars.reset_index(drop=True)
        ts = pd.to_datetime(df["ts"], utc=True) if not pd.api.types.is_datetime64_any_dtype(df["ts"]) else df["ts"]
        # sort on int64 nanoseconds: `to_numpy()` of tz-aware times makes one Python Timestamp per bar, which
        # cost more than every indicator together (13 s of 26 s for 500 symbols x 800 bars, issue 10)
        stamps = pd.DatetimeIndex(ts)
        order, self.symbols, counts = _symbol_time_order(df["symbol"], stamps.asi8)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.width = int(counts.max()) if counts.size else 0
        row = np.repeat(np.arange(self.symbols.size), counts)
        rank = np.arange(order.size) - np.repeat(first, counts)
        col = self.width - np.repeat(counts, counts) + rank
        self.order, self.row, self.col = order, row, col
        self.flat = row * self.width + col  # position in the raveled block
        self.counts = counts
        self.frame = df
        self.ts_sorted = stamps[order]  # a DatetimeIndex: slices and scalars keep the time zone
        self.ts_series = ts

    def field(self, name: str) -> np.ndarray:
        out = np.full((self.symbols.size, self.width), np.nan)
        out.ravel()[self.flat] = self.frame[name].to_numpy(dtype=float)[self.order]
        return out

    def back(self, arr: np.ndarray) -> np.ndarray:
        """2-D block -> values in the input frame's row order."""
        vals = arr[self.row, self.col]
        out = np.empty_like(vals)
        out[self.order] = vals
        return out


def _anchor_arrays(
    block: _Block, anchors: pd.DataFrame | None, column: str
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    if anchors is None or anchors.empty or column not in anchors:
        return None, None
    idx = np.full(block.symbols.size, -1, dtype=np.int64)
    val = np.full(block.symbols.size, np.nan)
    key = pd.DataFrame({"symbol": block.symbols[block.row], "ts": block.ts_sorted, "col": block.col, "r": block.row})
    a = anchors[["symbol", "ts", column]].copy()
    a["symbol"] = a["symbol"].astype(str)
    a["ts"] = pd.to_datetime(a["ts"], utc=True) if not pd.api.types.is_datetime64_any_dtype(a["ts"]) else a["ts"]
    if key["ts"].dt.tz is None and a["ts"].dt.tz is not None:
        a["ts"] = a["ts"].dt.tz_localize(None)
    m = key.merge(a, on=["symbol", "ts"], how="inner")
    idx[m["r"].to_numpy()] = m["col"].to_numpy()
    val[m["r"].to_numpy()] = m[column].to_numpy(dtype=float)
    return idx, val


def compute_daily_technicals(bars: pd.DataFrame, anchors: pd.DataFrame | None = None) -> pd.DataFrame:
    """All daily technicals, one output row per input (symbol, ts), in the input's row order.

    ``bars``: long frame ``symbol, ts, open, high, low, close, volume`` (+ optional
    ``trade_count, vwap``), any order.  ``anchors``: optional ``symbol, ts, obv, ad`` holding
    stored values for a bar present in ``bars``; OBV/A-D are shifted to match them (see module
    doc).  Returns ``symbol, ts`` plus :data:`TECHNICAL_COLUMNS` (NaN where undefined;
    ``volume_spike`` is boolean).
    """
    if bars.empty:
        ts_empty = bars.get("ts", pd.Series(dtype="datetime64[ns, UTC]"))
        cols: dict[str, Any] = {"symbol": pd.Series(dtype=object), "ts": ts_empty}
        cols.update({c: pd.Series(dtype=bool if c == "volume_spike" else float) for c in TECHNICAL_COLUMNS})
        return pd.DataFrame(cols)
    b = _Block(bars)
    o, h, lo, c, v = (b.field(n) for n in _PRICE_COLS)
    res: dict[str, np.ndarray] = {}
    res["rsi"] = ind.rsi(c, 14)
    res["macd"], res["macd_signal"], res["macd_hist"] = ind.macd(c, 12, 26, 9)
    for n, arr in ind.smas(c, (20, 50, 200)).items():
        res[f"sma_{n}"] = arr
    res["ema_12"] = ind.ema(c, 12)
    res["ema_26"] = ind.ema(c, 26)
    res["bb_upper"], res["bb_middle"], res["bb_lower"] = ind.bbands(c, 20, 2.0, 2.0)
    res["atr_14"] = ind.atr(h, lo, c, 14)
    res["stoch_k"], res["stoch_d"] = ind.stoch(h, lo, c, 5, 3, 3)
    res["volume_sma_20"] = vol.volume_sma(v, 20)
    res["relative_volume"] = vol.relative_volume(v, 20)
    res["volume_zscore"] = vol.volume_zscore(v, 20)
    res["volume_spike"] = vol.volume_spike(v, 20)
    oi, ov = _anchor_arrays(b, anchors, "obv")
    res["obv"] = vol.obv(c, v, oi, ov)
    ai, av = _anchor_arrays(b, anchors, "ad")
    res["ad"] = vol.ad(h, lo, c, v, ai, av)
    for k in mv.RETURN_HORIZONS:
        res[f"return_{k}d"] = mv.returns(c, k)
        res[f"log_return_{k}d"] = mv.log_returns(c, k)
    res["gap_pct"] = mv.gap_pct(o, c)
    res["true_range"] = mv.true_range(h, lo, c)
    res["realized_vol_20"] = mv.realized_volatility(c, 20)
    res["dist_52w_high"] = mv.distance_from_high(c, h, 252)
    res["dist_52w_low"] = mv.distance_from_low(c, lo, 252)
    res["drawdown"] = mv.drawdown(c, 252)
    out = pd.DataFrame({"symbol": b.frame["symbol"].to_numpy(), "ts": b.frame["ts"].array})
    for name in TECHNICAL_COLUMNS:
        vals = b.back(res[name])
        out[name] = vals.astype(bool) if name == "volume_spike" else vals
    return out


def _per_symbol(b: _Block) -> list[tuple[str, np.ndarray, slice]]:
    """(symbol, sorted ts, slice of valid columns) per symbol."""
    out = []
    pos = 0
    for i, s in enumerate(b.symbols):
        n = int(b.counts[i])
        out.append((str(s), b.ts_sorted[pos : pos + n], slice(b.width - n, b.width)))
        pos += n
    return out


PATTERN_COLUMNS = ["symbol", "ts", "pattern", "direction", "strength", "details"]
_PATTERN_NAMES = np.array(pt.PATTERN_NAMES, dtype=object)
# rank of each pattern code in name order: hits are sorted by symbol, ts and pattern *name*
_NAME_RANK = np.argsort(np.argsort(np.array(pt.PATTERN_NAMES), kind="stable"), kind="stable")
_DIRECTION_NAMES = np.array(pt.DIRECTIONS, dtype=object)
_CHART_DIRECTION = np.array([pt.CHART_DIRECTION.get(k, 2) for k in range(len(pt.PATTERN_NAMES))])
_NEUTRAL = np.array([name in pt.NEUTRAL_CANDLES for name in pt.PATTERN_NAMES])


def isoformat(stamps: pd.DatetimeIndex) -> list[str]:
    """``[t.isoformat() for t in stamps]``; whole seconds in UTC (daily bars) without a Timestamp each."""
    if len(stamps) and str(stamps.tz) == "UTC" and not stamps.hasnans:
        naive = stamps.tz_convert(None).to_numpy()
        seconds = naive.astype("datetime64[s]")
        years = seconds.astype("datetime64[Y]").astype(np.int64) + 1970
        if bool((seconds == naive).all()) and years.min() >= 1000 and years.max() <= 9999:
            return [text + "+00:00" for text in np.datetime_as_string(seconds, unit="s").tolist()]
    return [t.isoformat() for t in stamps]


@dataclass(frozen=True, eq=False)
class PatternHits:
    """Pattern hits of a bar frame as flat arrays, ordered by symbol, ts and pattern name.

    One row per hit: ``ints``/``floats`` are the kernel's columns (:func:`patterns.pattern_block`),
    ``code`` indexes :data:`patterns.PATTERN_NAMES` and ``pos`` is the hit's bar in the block's
    (symbol, ts) order.  ``found`` counts every hit, including those of bars the caller did not ask
    for.  Strings, timestamps and ``details`` are made on demand for the hits kept, so a one-session
    run does not pay for the hits of its lookback.
    """

    block: _Block
    ints: np.ndarray
    floats: np.ndarray
    code: np.ndarray
    pos: np.ndarray
    found: int

    def __len__(self) -> int:
        return len(self.code)

    @property
    def row(self) -> np.ndarray:
        """Each hit's bar as a row position of the input frame."""
        return self.block.order[self.pos]

    def take(self, which: np.ndarray) -> PatternHits:
        """The hits at positions ``which``, in that order."""
        return replace(
            self, ints=self.ints[which], floats=self.floats[which], code=self.code[which], pos=self.pos[which]
        )

    def symbols(self) -> np.ndarray:
        return self.block.symbols[self.ints[:, pt.I_ROW]].astype(object)

    def ts(self) -> pd.DatetimeIndex:
        return self.block.ts_sorted[self.pos]

    def patterns(self) -> np.ndarray:
        return _PATTERN_NAMES[self.code]

    def directions(self) -> np.ndarray:
        """A chart pattern's own direction; a candle's from TA-Lib's sign (neutral for a doji)."""
        sign = np.where(self.ints[:, pt.I_A] > 0, 0, 1)
        candle = np.where(_NEUTRAL[self.code], 2, sign)
        return _DIRECTION_NAMES[np.where(self.code < len(pt.CANDLE_NAMES), candle, _CHART_DIRECTION[self.code])]

    def strength(self) -> np.ndarray:
        return self.floats[:, pt.F_STRENGTH].copy()

    def detail_columns(self) -> Iterator[tuple[np.ndarray, list[tuple[str, list[Any]]]]]:
        """Per pattern present: (its hits' indices, its ``details`` as (key, values) columns in dict order).

        Bars a chart pattern refers to (peaks, shoulders) become ISO timestamps under ``*_ts`` keys
        placed after the others, as the dicts have always listed them.
        """
        for code in np.unique(self.code).tolist():
            at = np.flatnonzero(self.code == code)
            ints, floats = self.ints[at], self.floats[at]
            plain: list[tuple[str, list[Any]]] = []
            refs: list[tuple[str, list[Any]]] = []
            for key, source in pt.DETAIL_SPEC[code]:
                values = pt.detail_values(source, ints, floats)
                if key.endswith("_index"):
                    first_bar = self.pos[at] - ints[:, pt.I_BAR]  # the symbol's first bar
                    bars = self.block.ts_sorted[first_bar + np.asarray(values, dtype=np.int64)]
                    refs.append((key.replace("_index", "_ts"), isoformat(bars)))
                else:
                    plain.append((key, values))
            yield at, plain + refs

    def details(self) -> list[dict[str, Any]]:
        """JSON-able ``details`` per hit: TA-Lib's value for a candle; the chart pattern's numbers,
        with the bars it refers to as ISO timestamps."""
        out = np.empty(len(self), dtype=object)
        for at, columns in self.detail_columns():
            if len(columns) == 1:
                key, values = columns[0]
                out[at] = [{key: v} for v in values]
            else:
                keys = [key for key, _ in columns]
                out[at] = [dict(zip(keys, row, strict=True)) for row in zip(*(v for _, v in columns), strict=True)]
        return out.tolist()


def pattern_hits(
    bars: pd.DataFrame, keep: np.ndarray | None = None, breakout_window: int = 20, swing_window: int = 5
) -> PatternHits:
    """Every pattern hit of ``bars`` (see :func:`detect_patterns`) as arrays, in one compiled pass.

    ``keep``: optional boolean per input row; only hits dated on those rows are returned (every
    pattern is still detected over all the bars, so each symbol's history counts as before).
    """
    b = _Block(bars)
    o, h, lo, c, v = (b.field(n) for n in _PRICE_COLS)
    sma = ind.smas(c, (50, 200))
    macd_v, sig_v, _ = ind.macd(c)
    arrays = {
        "open": o, "high": h, "low": lo, "close": c, "sma_50": sma[50], "sma_200": sma[200], "rsi": ind.rsi(c, 14),
        "macd": macd_v, "macd_signal": sig_v, "relative_volume": vol.relative_volume(v, 20),
    }  # fmt: skip
    emit = np.ones(len(b.order), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)[b.order]
    starts = np.concatenate([[0], np.cumsum(b.counts)[:-1]]).astype(np.int64)
    ints, floats, found = pt.pattern_block(
        arrays, b.width - b.counts, starts, emit, breakout_window=breakout_window, swing_window=swing_window
    )
    pos = starts[ints[:, pt.I_ROW]] + ints[:, pt.I_BAR]
    code = ints[:, pt.I_CODE]
    # stable: two hits of one pattern on one bar (two peak pairs) keep the kernel's order
    order = np.lexsort((_NAME_RANK[code], pos))
    return PatternHits(b, ints[order], floats[order], code[order], pos[order], found)


def detect_patterns(bars: pd.DataFrame, breakout_window: int = 20, swing_window: int = 5) -> pd.DataFrame:
    """Candlestick and chart patterns as a long frame
    ``symbol, ts, pattern, direction, strength, details``, sorted by symbol, ts and pattern.

    Candles carry TA-Lib's sign convention in ``direction`` and ``strength = |value|/100``;
    chart patterns are described in :mod:`market_assets.analytics.technicals.patterns`.  ``details`` is a
    JSON-serialisable dict.  Each symbol's bars are one series (a session without its bar is
    simply absent from it), so TA-Lib's lookback applies from the symbol's first bar.
    """
    if bars.empty:
        return pd.DataFrame(columns=PATTERN_COLUMNS)
    hits = pattern_hits(bars, breakout_window=breakout_window, swing_window=swing_window)
    if not len(hits):
        return pd.DataFrame(columns=PATTERN_COLUMNS)
    return pd.DataFrame(
        {
            "symbol": hits.symbols(),
            "ts": hits.ts(),
            "pattern": hits.patterns(),
            "direction": hits.directions(),
            "strength": hits.strength(),
            "details": hits.details(),
        }
    )


def support_resistance(
    bars: pd.DataFrame, as_of: Any, lookback: int = 252, swing_window: int = 5, atr_mult: float = 0.5
) -> pd.DataFrame:
    """Support/resistance levels per symbol from the ``lookback`` bars up to ``as_of``.

    Swing points (fractal, ``swing_window``) confirmed by ``as_of`` are clustered with a
    tolerance of ``atr_mult`` x ATR-14 (volatility-aware), see :mod:`levels`.  Returns
    ``symbol, as_of, kind, level, touches, first_touch, last_touch, strength``.
    """
    cols = ["symbol", "as_of", "kind", "level", "touches", "first_touch", "last_touch", "strength"]
    if bars.empty:
        return pd.DataFrame(columns=cols)
    as_of_ts = pd.Timestamp(as_of)
    ts_all = pd.to_datetime(bars["ts"], utc=True)
    cutoff = as_of_ts.tz_localize("UTC") if as_of_ts.tzinfo is None else as_of_ts.tz_convert("UTC")
    sub = bars.loc[(ts_all <= cutoff).to_numpy()]
    if sub.empty:
        return pd.DataFrame(columns=cols)
    b = _Block(sub)
    h, lo, c = b.field("high"), b.field("low"), b.field("close")
    atr_v = ind.atr(h, lo, c, 14)
    rows = []
    for r, (sym, ts, sl) in enumerate(_per_symbol(b)):
        hs, ls, cs = h[r, sl][-lookback:], lo[r, sl][-lookback:], c[r, sl][-lookback:]
        tss = ts[-lookback:]
        a = atr_v[r, sl][-1]
        for lvl in lv.support_resistance_levels(hs, ls, cs, w=swing_window, atr=a, atr_mult=atr_mult):
            rows.append(
                {
                    "symbol": sym,
                    "as_of": as_of_ts,
                    "kind": lvl["kind"],
                    "level": lvl["level"],
                    "touches": lvl["touches"],
                    "first_touch": tss[int(lvl["first_index"])],
                    "last_touch": tss[int(lvl["last_index"])],
                    "strength": lvl["strength"],
                }
            )
    return pd.DataFrame(rows, columns=cols)


def _days(values: Any) -> np.ndarray:
    """Dates (date objects, strings or datetimes, any sequence) as numpy datetime64[D] (see `as_days`)."""
    return as_days(pd.Series(np.asarray(values)))


LEVEL_FRAME_COLUMNS = [
    "symbol", "as_of", "kind", "level", "touches", "first_touch", "last_touch", "strength", "session",
]  # fmt: skip


def support_resistance_by_session(
    bars: pd.DataFrame,
    sessions: Any,
    window_starts: Any,
    lookback: int = 252,
    swing_window: int = 5,
    atr_mult: float = 0.5,
) -> pd.DataFrame:
    """Levels as of each of ``sessions``, every symbol in one pass (see :func:`levels.levels_as_of`).

    ``bars``: ``symbol, ts, session, high, low, close`` (any order). The history of session
    ``sessions[k]`` is each symbol's bars with ``window_starts[k] <= session <= sessions[k]``, as in
    :func:`support_resistance` called on that window with ``as_of`` the session; a session on
    which no symbol has a bar yields nothing, a symbol without a bar on it is evaluated on its
    last bar before it.  Returns ``symbol, as_of, kind, level, touches, first_touch, last_touch,
    strength, session`` ordered by session, symbol and level, equal to the per-session results.
    Dates are numpy ``datetime64[D]`` inside (no Python date objects in the loop).
    """
    days = _days(sessions)
    starts = _days(window_starts)
    if bars.empty or days.size == 0:
        return pd.DataFrame(columns=LEVEL_FRAME_COLUMNS)
    stamps = pd.DatetimeIndex(pd.to_datetime(bars["ts"], utc=True))
    bar_days = _days(bars["session"])
    sym = bars["symbol"].astype(str).to_numpy()
    order = np.lexsort((stamps.asi8, sym))  # int64 in the index's unit: no Timestamp objects
    sym, bar_days, stamps = sym[order], bar_days[order], stamps[order]
    h, lo, c = (bars[name].to_numpy(dtype=float)[order] for name in ("high", "low", "close"))
    keep = np.isin(days, bar_days)  # the per-session algorithm skips days without any bar
    days, starts = days[keep], starts[keep]
    names, first, counts = np.unique(sym, return_index=True, return_counts=True)
    parts: list[dict[str, np.ndarray]] = []
    owners: list[int] = []  # the symbol (index into names) of each part
    for r in range(names.size):
        a, b = int(first[r]), int(first[r] + counts[r])
        sd = bar_days[a:b]
        as_of = np.searchsorted(sd, days, side="right") - 1
        win = np.searchsorted(sd, starts, side="left")
        got = lv.levels_as_of(h[a:b], lo[a:b], c[a:b], as_of, win, lookback=lookback, w=swing_window, atr_mult=atr_mult)
        if got["k"].size:
            parts.append(got)
            owners.append(r)
    if not parts:
        return pd.DataFrame(columns=LEVEL_FRAME_COLUMNS)
    # Memory: a year of 500 symbols is ~1.6 M level rows. Each column is concatenated on its own and its parts
    # dropped as it is (parts and flat columns are never both whole), the symbol and bar offsets are repeated once
    # here rather than stored per part, and each flat column is dropped once the frame has its reordered copy: the
    # traced peak of this function went from 510 to 267 MiB on a one-year chunk of 500 symbols (result: 114 MiB).
    sizes = [p["k"].size for p in parts]
    symbol_index = np.repeat(np.asarray(owners), sizes)
    offset = np.repeat(first[owners], sizes)  # the part's first bar position: its indices are relative to it
    flat = {key: np.concatenate([p.pop(key) for p in parts]) for key in list(parts[0])}
    del parts
    o = np.argsort(flat["k"], kind="stable")  # session, then symbol (parts are in symbol order), then level
    # object columns by reference to one object per distinct value (a year of 500 symbols is ~1.6 M rows: making
    # a str or date object per row cost a second of the chunk)
    session_dates = pd.Index(days.astype("datetime64[D]").astype(object)[flat.pop("k")[o]])
    return pd.DataFrame(
        {
            "symbol": names.astype(object)[symbol_index[o]],
            "as_of": session_dates,
            "kind": np.array(["support", "resistance"], dtype=object)[flat.pop("resistance")[o].astype(np.intp)],
            "level": flat.pop("level")[o],
            "touches": flat.pop("touches")[o].astype("int64"),
            "first_touch": stamps[(offset + flat.pop("first_index"))[o]],
            "last_touch": stamps[(offset + flat.pop("last_index"))[o]],
            "strength": flat.pop("strength")[o],
            "session": session_dates,
        }
    )


def pivot_points(bars: pd.DataFrame) -> pd.DataFrame:
    """Classic floor pivots per (symbol, ts) from the symbol's previous bar:
    ``symbol, ts, pivot, r1, s1, r2, s2, r3, s3`` (NaN on a symbol's first bar), sorted by symbol
    and ts. One vectorised pass over the packed block (a symbol's first bar has NaN on its left)."""
    cols = ["symbol", "ts", "pivot", "r1", "s1", "r2", "s2", "r3", "s3"]
    if bars.empty:
        return pd.DataFrame(columns=cols)
    b = _Block(bars)
    # one NaN column on the left so that no symbol's first bar sees the previous row's last bar
    pad = np.full((b.symbols.size, 1), np.nan)
    h, lo, c = (np.hstack([pad, b.field(name)]).ravel() for name in ("high", "low", "close"))
    f = lv.floor_pivots(h, lo, c)
    at = b.row * (b.width + 1) + b.col + 1  # flat positions of the bars, in (symbol, ts) order
    out = pd.DataFrame({"symbol": b.symbols[b.row].astype(object), "ts": b.ts_sorted})
    for name in cols[2:]:
        out[name] = f[name].to_numpy()[at]
    return out
