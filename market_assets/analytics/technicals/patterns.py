"""Candlestick patterns (TA-Lib's definitions) and chart/signal patterns.

Candlesticks reproduce TA-Lib's ``CDL*`` functions with its default candle settings: each
"long", "short", "doji", "near" ... threshold is ``factor`` times the average of a candle range
(real body, high-low, or shadows/2) over the ``avgPeriod`` candles *before* the one being judged.
Outputs are TA-Lib's integers (+100 bullish, -100 bearish, +/-80 for engulfings that match on one
end, 0 otherwise, and 0 inside the lookback).  Arrays are 1-D or 2-D ``(symbols, time)``.

Chart patterns work per symbol and yield :class:`PatternHit` records, assembled into the long
frame ``symbol, ts, pattern, direction, strength, details`` by ``technicals.detect_patterns``.
Every hit is dated on the bar where it becomes knowable (a cross on the crossing bar, a double
top or head-and-shoulders on the close through its neckline), and uses only swing points that
were confirmed by then, so a backfill and a live run report the same hits.

How it is computed, and why (issue 10): every detector is a numba-compiled loop over one symbol's
bars, and :func:`pattern_block` runs all of them for every symbol of a 2-D block in one compiled
call that writes its hits into flat arrays (bar, pattern code, the numbers of the details).  The
previous implementation called ~40 small numpy functions per symbol and pattern from Python, about
1.5 M Python calls for 500 symbols x 252 sessions; the public per-series functions below are now
thin wrappers over the same kernels, so the tests against TA-Lib and the hand-checked chart cases
exercise the code the assets run.  The kernels reproduce the numpy expressions they replaced
operation for operation (same IEEE operations in the same order, NaN compares false, ``np.clip``
and Python's ``min``/``max`` semantics), so hits and their numbers are bit-identical.  Kernels are
serial: one pass over 126 k bars takes milliseconds, less than waking a thread team.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from market_assets.analytics.technicals.indicators import (
    _as_2d,
    _restore,
    _rolling_extreme_row,
    _window_sum_row,
)

__all__ = [
    "CANDLE_FUNCTIONS",
    "DETAIL_SPEC",
    "DIRECTIONS",
    "PATTERN_NAMES",
    "PatternHit",
    "breakouts",
    "cdl3blackcrows",
    "cdl3whitesoldiers",
    "cdldoji",
    "cdlengulfing",
    "cdleveningstar",
    "cdlhammer",
    "cdlmorningstar",
    "cdlshootingstar",
    "chart_details",
    "detail_values",
    "double_tops_bottoms",
    "head_and_shoulders",
    "ma_crosses",
    "macd_crosses",
    "pattern_block",
    "round10",
    "rsi_signals",
]

# ---------------------------------------------------------------------------------------------
# pattern registry: a hit's ``code`` indexes these tuples
# ---------------------------------------------------------------------------------------------
CANDLE_NAMES: tuple[str, ...] = (
    "cdl_doji",
    "cdl_hammer",
    "cdl_shooting_star",
    "cdl_engulfing",
    "cdl_morning_star",
    "cdl_evening_star",
    "cdl_3_white_soldiers",
    "cdl_3_black_crows",
)
PATTERN_NAMES: tuple[str, ...] = (
    *CANDLE_NAMES,
    "golden_cross",
    "death_cross",
    "rsi_overbought_entry",
    "rsi_overbought_exit",
    "rsi_oversold_entry",
    "rsi_oversold_exit",
    "macd_bullish_cross",
    "macd_bearish_cross",
    "breakout_resistance",
    "breakdown_support",
    "double_top",
    "double_bottom",
    "head_and_shoulders",
    "inverse_head_and_shoulders",
)
(
    GOLDEN,
    DEATH,
    RSI_OB_ENTRY,
    RSI_OB_EXIT,
    RSI_OS_ENTRY,
    RSI_OS_EXIT,
    MACD_UP,
    MACD_DOWN,
    BREAKOUT,
    BREAKDOWN,
    DOUBLE_TOP,
    DOUBLE_BOTTOM,
    HEAD_SHOULDERS,
    INVERSE_HEAD_SHOULDERS,
) = range(len(CANDLE_NAMES), len(PATTERN_NAMES))
DIRECTIONS: tuple[str, ...] = ("bullish", "bearish", "neutral")
# direction (index into DIRECTIONS) of every chart pattern; a candle's follows its TA-Lib sign
CHART_DIRECTION: dict[int, int] = {
    GOLDEN: 0, DEATH: 1, RSI_OB_ENTRY: 1, RSI_OB_EXIT: 1, RSI_OS_ENTRY: 0, RSI_OS_EXIT: 0, MACD_UP: 0,
    MACD_DOWN: 1, BREAKOUT: 0, BREAKDOWN: 1, DOUBLE_TOP: 1, DOUBLE_BOTTOM: 0, HEAD_SHOULDERS: 1,
    INVERSE_HEAD_SHOULDERS: 0,
}  # fmt: skip

# chart-pattern parameters (the defaults of the per-series functions, and what the frames use)
DOUBLE_TOLERANCE, DOUBLE_MIN_DEPTH = 0.03, 0.03
SHOULDER_TOLERANCE, MIN_HEAD = 0.05, 0.02
MAX_WAIT = 30  # bars after the last swing's confirmation within which the neckline must break

# Hit buffers: one row per hit. Integer columns: the bar (index in the symbol's series), the
# pattern code, the symbol's row, then up to three detail integers (TA-Lib value of a candle, bar
# indices of peaks/shoulders).  Float columns: strength, then up to three detail numbers.
I_BAR, I_CODE, I_ROW, I_A, I_B, I_C = range(6)
F_STRENGTH, F_X, F_Y, F_Z = range(4)
_NI, _NF = 6, 4


# ---------------------------------------------------------------------------------------------
# kernel helpers
# ---------------------------------------------------------------------------------------------
@njit(cache=True, fastmath=False)
def _reserve(ib: np.ndarray, fb: np.ndarray, used: int, room: int) -> tuple[np.ndarray, np.ndarray]:
    """Buffers with space for ``room`` more hits after ``used`` (doubling when they grow)."""
    if used + room <= ib.shape[0]:
        return ib, fb
    cap = max(2 * ib.shape[0], used + room)
    ib2 = np.empty((cap, _NI), dtype=np.int64)
    fb2 = np.empty((cap, _NF))
    ib2[:used] = ib[:used]
    fb2[:used] = fb[:used]
    return ib2, fb2


# Hits one series of n bars can produce at most: 8 candles, one MA cross, two RSI and one MACD
# signal, two breakouts and, per top/bottom side, one double and one head-and-shoulders per swing
# point.  Room for this many is reserved before each series, so the detectors append to arrays
# they do not return (returning a reallocated buffer from every append cost ~200 ns per hit).
_MAX_HITS_PER_BAR = 20


@njit(cache=True, fastmath=False)
def _push(
    ib: np.ndarray,
    fb: np.ndarray,
    cnt: np.ndarray,
    keep: bool,
    bar: int,
    code: int,
    row: int,
    a: int,
    b: int,
    c: int,
    strength: float,
    x: float,
    y: float,
    z: float,
) -> None:
    """Append one hit (when ``keep``); ``cnt`` = [kept, found, overflowed].

    A full buffer drops the hit and raises the overflow flag: the caller re-runs the series with
    more room (never expected, see ``_MAX_HITS_PER_BAR``, but a miscount must not write past the end).
    """
    cnt[1] += 1
    if not keep:
        return
    k = cnt[0]
    if k >= ib.shape[0]:
        cnt[2] = 1
        return
    ib[k, I_BAR] = bar
    ib[k, I_CODE] = code
    ib[k, I_ROW] = row
    ib[k, I_A] = a
    ib[k, I_B] = b
    ib[k, I_C] = c
    fb[k, F_STRENGTH] = strength
    fb[k, F_X] = x
    fb[k, F_Y] = y
    fb[k, F_Z] = z
    cnt[0] = k + 1


@njit(cache=True, fastmath=False)
def _clip01(x: float) -> float:
    """``np.clip(x, 0, 1)``: NaN stays NaN, -0.0 stays -0.0."""
    if x < 0.0:
        return 0.0
    if x > 1.0:
        return 1.0
    return x


@njit(cache=True, fastmath=False)
def _py_min(a: float, b: float) -> float:
    """Python's ``min(a, b)``: ``a`` unless ``b < a`` (so ``min(nan, 1.0)`` is nan)."""
    return b if b < a else a


@njit(cache=True, fastmath=False)
def _py_max(a: float, b: float) -> float:
    """Python's ``max(a, b)``: ``a`` unless ``b > a``."""
    return b if b > a else a


@njit(cache=True, fastmath=False)
def _np_max(x: np.ndarray, lo: int, hi: int) -> float:
    """``x[lo:hi].max()`` for a non-empty slice: NaN if any value is NaN."""
    m = x[lo]
    for i in range(lo, hi):
        v = x[i]
        if math.isnan(v):
            return v
        if v > m:
            m = v
    return m


@njit(cache=True, fastmath=False)
def _np_min(x: np.ndarray, lo: int, hi: int) -> float:
    """``x[lo:hi].min()`` for a non-empty slice: NaN if any value is NaN."""
    m = x[lo]
    for i in range(lo, hi):
        v = x[i]
        if math.isnan(v):
            return v
        if v < m:
            m = v
    return m


@njit(cache=True, fastmath=False)
def _nan_extreme(x: np.ndarray, lo: int, hi: int, is_max: bool) -> float:
    """``np.nanmax`` / ``np.nanmin`` of ``x[lo:hi]`` (NaN when every value is NaN)."""
    m = np.nan
    for i in range(lo, hi):
        v = x[i]
        if math.isnan(v):
            continue
        if math.isnan(m) or (v > m if is_max else v < m):
            m = v
    return m


@njit(cache=True, fastmath=False)
def _max_nan(a: float, b: float) -> float:
    """``np.maximum`` of two scalars (NaN propagates)."""
    return np.nan if math.isnan(a) | math.isnan(b) else (a if a >= b else b)


@njit(cache=True, fastmath=False)
def _min_nan(a: float, b: float) -> float:
    """``np.minimum`` of two scalars (NaN propagates)."""
    return np.nan if math.isnan(a) | math.isnan(b) else (a if a <= b else b)


# ---------------------------------------------------------------------------------------------
# candlesticks: all eight on one series in one pass
# ---------------------------------------------------------------------------------------------
# (range, avgPeriod, factor) as in TA-Lib's TA_CandleDefaultSettings, the ones used here:
# BodyLong, BodyShort: real body, 10, 1.0; BodyDoji, ShadowVeryShort: high-low, 10, 0.1;
# ShadowLong: real body, 0 (the candle's own body), 1.0; Near: high-low, 5, 0.2; Far: high-low, 5, 0.6.
# An average for bar i is ``factor * (sum of the range over the period bars before i) / period``,
# the sum being the running window sum of ``indicators.rolling_sum`` (same bits as before).


@njit(cache=True, fastmath=False)
def _candles_row(
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    penetration: float,
    scratch: np.ndarray,
    out: np.ndarray,
) -> None:
    """TA-Lib's value of the eight candles of :data:`CANDLE_NAMES` for every bar: ``out[k, i]``.

    ``scratch``: a (7, >= n) float buffer.  Bar ``i`` is judged from ``i`` on (TA-Lib's lookback:
    2 for engulfing, 10 doji, 11 hammer and shooting star, 12 stars and soldiers, 13 crows); the
    ``1.0 *`` are TA-Lib's factors, kept so that every threshold is the same expression as TA-Lib's.
    """
    n = o.shape[0]
    body = scratch[0, :n]
    hl = scratch[1, :n]
    mean_b10 = scratch[2, :n]  # mean real body of bars i-9..i (NaN until 10 bars)
    mean_hl10 = scratch[3, :n]
    mean_hl5 = scratch[4, :n]
    top = scratch[5, :n]
    bot = scratch[6, :n]
    for i in range(n):
        body[i] = abs(c[i] - o[i])
        hl[i] = h[i] - lo[i]
        top[i] = _max_nan(o[i], c[i])
        bot[i] = _min_nan(o[i], c[i])
    _window_sum_row(body, 10, 1.0, mean_b10)
    _window_sum_row(hl, 10, 1.0, mean_hl10)
    _window_sum_row(hl, 5, 1.0, mean_hl5)
    for i in range(n):  # sum / period: TA-Lib's average, before its factor
        mean_b10[i] = mean_b10[i] / 10
        mean_hl10[i] = mean_hl10[i] / 10
        mean_hl5[i] = mean_hl5[i] / 5
    for k in range(8):
        for i in range(n):
            out[k, i] = 0
    # Conditions are combined with bitwise & / | (every term evaluated, no data-dependent branch:
    # candle colours are coin flips, so short-circuit branches mispredict half the time).
    for i in range(2, n):
        # the candle at i-q for q = 0..3 (only read where i-q >= 0 is guaranteed by the lookback)
        o0, h0, l0, c0 = o[i], h[i], lo[i], c[i]
        o1, c1 = o[i - 1], c[i - 1]
        o2, c2 = o[i - 2], c[i - 2]
        b0, b1, b2 = body[i], body[i - 1], body[i - 2]
        top0, top1, top2 = top[i], top[i - 1], top[i - 2]
        bot0, bot1, bot2 = bot[i], bot[i - 1], bot[i - 2]
        w0, w1, w2 = c0 >= o0, c1 >= o1, c2 >= o2
        # engulfing (lookback 2)
        bull = w0 & ~w1 & (((c0 >= o1) & (o0 < c1)) | ((c0 > o1) & (o0 <= c1)))
        bear = ~w0 & w1 & (((o0 >= c1) & (c0 < o1)) | ((o0 > c1) & (c0 <= o1)))
        if bull | bear:
            full = (o0 != c1) & (c0 != o1)
            out[3, i] = (1 if w0 else -1) * (100 if full else 80)
        if i < 10:
            continue
        # TA-Lib's averages for bar i are over the bars before it: factor * mean ending at i-1
        body_short0 = 1.0 * mean_b10[i - 1]  # BodyShort == BodyLong
        body_short1 = 1.0 * mean_b10[i - 2]
        vshort0 = 0.1 * mean_hl10[i - 1]  # ShadowVeryShort == BodyDoji
        vshort1 = 0.1 * mean_hl10[i - 2]
        vshort2 = 0.1 * mean_hl10[i - 3]
        near1 = 0.2 * mean_hl5[i - 2]
        near2 = 0.2 * mean_hl5[i - 3]
        far1 = 0.6 * mean_hl5[i - 2]
        far2 = 0.6 * mean_hl5[i - 3]
        if b0 <= vshort0:
            out[0, i] = 100  # doji
        if i < 11:
            continue
        up0, up1, up2 = h0 - top0, h[i - 1] - top1, h[i - 2] - top2
        dn0, dn1, dn2 = bot0 - l0, bot1 - lo[i - 1], bot2 - lo[i - 2]
        small0 = b0 < body_short0
        if small0 & (dn0 > 1.0 * b0) & (up0 < vshort0) & (bot0 <= lo[i - 1] + near1):
            out[1, i] = 100  # hammer
        if small0 & (up0 > 1.0 * b0) & (dn0 < vshort0) & (bot0 > top1):
            out[2, i] = -100  # shooting star
        if i < 12:
            continue
        body_long2 = 1.0 * mean_b10[i - 3]
        common = (b2 > body_long2) & (b1 <= body_short1) & (b0 > body_short0)
        if common & ~w2 & w0 & (top1 < bot2) & (c0 > c2 + b2 * penetration):
            out[4, i] = 100  # morning star
        if common & w2 & ~w0 & (bot1 > top2) & (c0 < c2 - b2 * penetration):
            out[5, i] = -100  # evening star
        if (
            w2 & (up2 < vshort2) & w1 & (up1 < vshort1) & w0 & (up0 < vshort0)
            & (c0 > c1) & (c1 > c2) & (o1 > o2) & (o1 <= c2 + near2) & (o0 > o1) & (o0 <= c1 + near1)
            & (b1 > b2 - far2) & (b0 > b1 - far1) & (b0 > body_short0)
        ):  # fmt: skip
            out[6, i] = 100  # three white soldiers
        if i < 13:
            continue
        if (
            (c[i - 3] >= o[i - 3]) & ~w2 & ~w1 & ~w0 & (o1 < o2) & (o1 > c2) & (o0 < o1) & (o0 > c1)
            & (h[i - 3] > c2) & (c2 > c1) & (c1 > c0) & (dn2 < vshort2) & (dn1 < vshort1) & (dn0 < vshort0)
        ):  # fmt: skip
            out[7, i] = -100  # three black crows


@njit(cache=True, fastmath=False)
def _candles_2d(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, penetration: float) -> np.ndarray:
    """(8, rows, time) candle values, each row a series of its own."""
    rows, t = o.shape
    out = np.zeros((8, rows, t), dtype=np.int32)
    scratch = np.empty((7, t))
    one = np.empty((8, t), dtype=np.int32)
    for r in range(rows):
        _candles_row(o[r], h[r], lo[r], c[r], penetration, scratch, one)
        out[:, r, :] = one
    return out


def _candle(k: int, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, pen: float) -> np.ndarray:
    o, one_d = _as_2d(open_)
    h, _ = _as_2d(high)
    lo, _ = _as_2d(low)
    c, _ = _as_2d(close)
    return _restore(_candles_2d(o, h, lo, c, float(pen))[k], one_d)


def cdldoji(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDLDOJI``: real body <= 10% of the average high-low range of the prior 10 bars."""
    return _candle(0, open_, high, low, close, 0.0)


def cdlhammer(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDLHAMMER``: small body, long lower shadow, very short upper shadow, body near the
    prior bar's low."""
    return _candle(1, open_, high, low, close, 0.0)


def cdlshootingstar(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDLSHOOTINGSTAR``: small body gapping up, long upper shadow, very short lower."""
    return _candle(2, open_, high, low, close, 0.0)


def cdlengulfing(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDLENGULFING``: +/-100 when the body engulfs the prior opposite-colour body,
    +/-80 when the two bodies share one end."""
    return _candle(3, open_, high, low, close, 0.0)


def cdlmorningstar(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, penetration: float = 0.3
) -> np.ndarray:
    """``talib.CDLMORNINGSTAR``: long black, short star gapping down, white closing well into
    the first body."""
    return _candle(4, open_, high, low, close, penetration)


def cdleveningstar(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, penetration: float = 0.3
) -> np.ndarray:
    """``talib.CDLEVENINGSTAR``: long white, short star gapping up, black closing well into the
    first body."""
    return _candle(5, open_, high, low, close, penetration)


def cdl3whitesoldiers(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDL3WHITESOLDIERS``: three rising white candles with very short upper shadows,
    each opening within/near the prior body and not far shorter than it."""
    return _candle(6, open_, high, low, close, 0.0)


def cdl3blackcrows(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDL3BLACKCROWS``: after a white candle, three declining black candles with very
    short lower shadows, each opening within the prior body."""
    return _candle(7, open_, high, low, close, 0.0)


CANDLE_FUNCTIONS = {
    "cdl_doji": cdldoji,
    "cdl_hammer": cdlhammer,
    "cdl_shooting_star": cdlshootingstar,
    "cdl_engulfing": cdlengulfing,
    "cdl_morning_star": cdlmorningstar,
    "cdl_evening_star": cdleveningstar,
    "cdl_3_white_soldiers": cdl3whitesoldiers,
    "cdl_3_black_crows": cdl3blackcrows,
}

# TA-Lib returns +100 for every doji: a doji is indecision, its sign carries no direction
NEUTRAL_CANDLES = frozenset({"cdl_doji"})


def candle_direction(name: str, talib_value: int) -> str:
    """'bullish' / 'bearish' from TA-Lib's sign, 'neutral' for candles whose sign means nothing (doji)."""
    if name in NEUTRAL_CANDLES:
        return "neutral"
    return "bullish" if talib_value > 0 else "bearish"


# ---------------------------------------------------------------------------------------------
# chart / signal patterns: one symbol's series, hits appended to the buffers
# ---------------------------------------------------------------------------------------------
# Common arguments: ``row`` (the symbol's row, stored with each hit), ``base`` (position of the
# series' first bar in ``emit``) and ``emit`` (which bars' hits to keep; the others are counted).


@njit(cache=True, fastmath=False)
def _crossing(d1: float, d0: float, up: bool) -> bool:
    """``d`` turns > 0 after <= 0 (``up``), or < 0 after >= 0; NaN on either side is no cross.

    Bitwise ``&`` rather than ``and``: no data-dependent branch per bar (crossings are rare).
    """
    if up:
        return (d1 > 0) & (d0 <= 0)
    return (d1 < 0) & (d0 >= 0)


@njit(cache=True, fastmath=False, error_model="numpy")
def _ma_cross_hits(
    fast: np.ndarray,
    slow: np.ndarray,
    row: int,
    base: int,
    emit: np.ndarray,
    ib: np.ndarray,
    fb: np.ndarray,
    cnt: np.ndarray,
) -> None:
    """Golden/death crosses: ``fast - slow`` changes sign.  Strength: the fast average's 5-bar slope,
    full at 2%.  All golden crosses first, then the death crosses (the order of the list)."""
    n = fast.shape[0]
    for up in (True, False):
        for i in range(1, n):
            if not _crossing(fast[i] - slow[i], fast[i - 1] - slow[i - 1], up):
                continue
            fj = fast[max(i - 5, 0)]
            slope = abs(fast[i] / fj - 1.0) if (np.isfinite(fj) and fj != 0.0) else 0.0
            _push(
                ib, fb, cnt, emit[base + i], i, GOLDEN if up else DEATH, row, 0, 0, 0,
                _clip01(slope / 0.02), fast[i], slow[i], np.nan,
            )  # fmt: skip


@njit(cache=True, fastmath=False, error_model="numpy")
def _rsi_hits(
    r: np.ndarray,
    upper: float,
    lower: float,
    row: int,
    base: int,
    emit: np.ndarray,
    ib: np.ndarray,
    fb: np.ndarray,
    cnt: np.ndarray,
) -> None:
    """RSI zone entries and exits; see :func:`rsi_signals`."""
    n = r.shape[0]
    for kind in range(4):  # overbought entry, overbought exit, oversold entry, oversold exit
        level = upper if kind < 2 else lower
        rising = kind == 0 or kind == 3
        for i in range(1, n):
            if not _crossing(r[i] - level, r[i - 1] - level, rising):
                continue
            if kind == 0:
                s = (r[i] - upper) / (100 - upper)
            elif kind == 1:
                s = (_nan_extreme(r, max(i - 20, 0), i, True) - upper) / (100 - upper)
            elif kind == 2:
                s = (lower - r[i]) / lower
            else:
                s = (lower - _nan_extreme(r, max(i - 20, 0), i, False)) / lower
            _push(ib, fb, cnt, emit[base + i], i, RSI_OB_ENTRY + kind, row, 0, 0, 0, _clip01(s), r[i], np.nan, np.nan)


@njit(cache=True, fastmath=False, error_model="numpy")
def _macd_cross_hits(
    m: np.ndarray,
    sig: np.ndarray,
    close: np.ndarray,
    row: int,
    base: int,
    emit: np.ndarray,
    ib: np.ndarray,
    fb: np.ndarray,
    cnt: np.ndarray,
) -> None:
    """MACD crossing its signal line; strength |MACD| / (2% of price), capped at 1."""
    n = m.shape[0]
    for up in (True, False):
        for i in range(1, n):
            if not _crossing(m[i] - sig[i], m[i - 1] - sig[i - 1], up):
                continue
            s = abs(m[i]) / (0.02 * close[i]) if close[i] != 0.0 else 0.0
            _push(
                ib, fb, cnt, emit[base + i], i, MACD_UP if up else MACD_DOWN, row, 0, 0, 0, _clip01(s), m[i], sig[i],
                np.nan,
            )  # fmt: skip


@njit(cache=True, fastmath=False)
def _breakout_hits(
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    rel_volume: np.ndarray,
    window: int,
    scratch: np.ndarray,
    row: int,
    base: int,
    emit: np.ndarray,
    ib: np.ndarray,
    fb: np.ndarray,
    cnt: np.ndarray,
) -> None:
    """First close above the prior ``window`` bars' highest high / below their lowest low.

    ``scratch``: a (2, >= n) float buffer for the trailing extremes.
    """
    m = c.shape[0]
    if m <= window + 1:
        return
    for up in (True, False):
        ext = scratch[0, :m]
        _rolling_extreme_row(h if up else lo, window, up, scratch[1, :m], ext)  # ext[i]: bars i-window+1..i
        prev_through = False
        for i in range(window, m):
            level = ext[i - 1]  # the window of bars i-window .. i-1
            through = (c[i] > level) if up else (c[i] < level)
            if through and not prev_through:
                rv = rel_volume[i]
                ok = np.isfinite(rv)
                _push(
                    ib, fb, cnt, emit[base + i], i, BREAKOUT if up else BREAKDOWN, row, window, 0, 0,
                    _clip01(rv / 2.0) if ok else 0.0, level, rv if ok else np.nan, np.nan,
                )  # fmt: skip
            prev_through = through


@njit(cache=True, fastmath=False)
def _swings_row(h: np.ndarray, lo: np.ndarray, w: int, sh: np.ndarray, sl: np.ndarray) -> None:
    """:func:`levels.swing_points` of one series: strictly above the ``w`` bars before, at least as
    high as the ``w`` after (a NaN in the neighbourhood, or at the centre, makes no swing)."""
    n = h.shape[0]
    for j in range(n):
        sh[j] = False
        sl[j] = False
    if n < 2 * w + 1:
        return
    for j in range(w, n - w):
        ch = h[j]
        cl = lo[j]
        is_h = np.isfinite(ch)
        is_l = np.isfinite(cl)
        for q in range(j - w, j + w + 1):
            if q == j:
                continue
            vh = h[q]
            vl = lo[q]
            if is_h and not ((ch > vh) if q < j else (ch >= vh)):
                is_h = False
            if is_l and not ((cl < vl) if q < j else (cl <= vl)):
                is_l = False
        sh[j] = is_h
        sl[j] = is_l


@njit(cache=True, fastmath=False)
def _extreme_between(idx: np.ndarray, lo_i: int, hi_i: int, x: np.ndarray, is_max: bool) -> int:
    """The first of ``idx[lo_i:hi_i]`` where ``x`` is smallest (largest): ``np.argmin``/``argmax``."""
    best = idx[lo_i]
    for q in range(lo_i + 1, hi_i):
        j = idx[q]
        if (x[j] > x[best]) if is_max else (x[j] < x[best]):
            best = j
    return best


@njit(cache=True, fastmath=False, error_model="numpy")
def _double_hits(
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    sh: np.ndarray,
    sl: np.ndarray,
    w: int,
    tolerance: float,
    min_depth: float,
    max_wait: int,
    row: int,
    base: int,
    emit: np.ndarray,
    ib: np.ndarray,
    fb: np.ndarray,
    cnt: np.ndarray,
) -> None:
    """Double tops and bottoms; see :func:`double_tops_bottoms`."""
    n = c.shape[0]
    hi_idx = np.flatnonzero(sh)
    lo_idx = np.flatnonzero(sl)
    for top in (True, False):
        peaks = hi_idx if top else lo_idx
        troughs = lo_idx if top else hi_idx
        px = h if top else lo
        tx = lo if top else h
        t0 = 0  # first trough after the current first peak
        for q in range(peaks.shape[0] - 1):
            a = peaks[q]
            b = peaks[q + 1]
            while t0 < troughs.shape[0] and troughs[t0] <= a:
                t0 += 1
            t1 = t0
            while t1 < troughs.shape[0] and troughs[t1] < b:
                t1 += 1
            if t1 == t0:
                continue
            p1 = px[a]
            p2 = px[b]
            ref = _py_min(p1, p2) if top else _py_max(p1, p2)
            diff = abs(p1 - p2) / ref
            if diff > tolerance:
                continue
            k = _extreme_between(troughs, t0, t1, tx, not top)
            neck = tx[k]
            depth = (ref - neck) / ref if top else (neck - ref) / ref
            if depth < min_depth:
                continue
            start = b + w  # the second peak is confirmed w bars later
            done = -1
            for i in range(start, min(start + max_wait, n)):
                if (c[i] < neck) if top else (c[i] > neck):
                    done = i
                    break
            if done < 0:
                continue
            # invalidated if price made a new extreme beyond both peaks before completing
            if top and _np_max(px, b + 1, done + 1) > _py_max(p1, p2):
                continue
            if not top and _np_min(px, b + 1, done + 1) < _py_min(p1, p2):
                continue
            strength = 0.5 * (1 - diff / tolerance) + 0.5 * _py_min(depth / (3 * min_depth), 1.0)
            _push(
                ib, fb, cnt, emit[base + done], done, DOUBLE_TOP if top else DOUBLE_BOTTOM, row, a, b, 0,
                _clip01(strength), neck, p1, p2,
            )  # fmt: skip


@njit(cache=True, fastmath=False, error_model="numpy")
def _head_shoulders_hits(
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    sh: np.ndarray,
    sl: np.ndarray,
    w: int,
    shoulder_tolerance: float,
    min_head: float,
    max_wait: int,
    row: int,
    base: int,
    emit: np.ndarray,
    ib: np.ndarray,
    fb: np.ndarray,
    cnt: np.ndarray,
) -> None:
    """Head and shoulders and the inverse; see :func:`head_and_shoulders`."""
    n = c.shape[0]
    hi_idx = np.flatnonzero(sh)
    lo_idx = np.flatnonzero(sl)
    for top in (True, False):
        peaks = hi_idx if top else lo_idx
        troughs = lo_idx if top else hi_idx
        px = h if top else lo
        tx = lo if top else h
        sign = 1.0 if top else -1.0
        for q in range(peaks.shape[0] - 2):
            left = peaks[q]
            head = peaks[q + 1]
            right = peaks[q + 2]
            pl = px[left]
            ph = px[head]
            pr = px[right]
            shoulder = _py_max(pl, pr) if top else _py_min(pl, pr)
            prominence = sign * (ph - shoulder) / abs(shoulder)
            if prominence < min_head:
                continue
            asym = abs(pl - pr) / abs(_py_min(pl, pr) if top else _py_max(pl, pr))
            if asym > shoulder_tolerance:
                continue
            # troughs strictly between left-head and head-right
            u0 = np.searchsorted(troughs, left, side="right")
            u1 = np.searchsorted(troughs, head, side="left")
            v0 = np.searchsorted(troughs, head, side="right")
            v1 = np.searchsorted(troughs, right, side="left")
            if u1 <= u0 or v1 <= v0:
                continue
            k1 = _extreme_between(troughs, u0, u1, tx, not top)
            k2 = _extreme_between(troughs, v0, v1, tx, not top)
            slope = (tx[k2] - tx[k1]) / (k2 - k1)
            start = right + w
            stop = min(start + max_wait, n)
            if start >= stop:
                continue
            done = -1
            neck = np.nan
            for i in range(start, stop):
                neck = tx[k1] + slope * (i - k1)
                if (c[i] < neck) if top else (c[i] > neck):
                    done = i
                    break
            if done < 0:
                continue
            if top and _np_max(px, right + 1, done + 1) > ph:
                continue
            if not top and _np_min(px, right + 1, done + 1) < ph:
                continue
            strength = 0.5 * (1 - asym / shoulder_tolerance) + 0.5 * _py_min(prominence / (3 * min_head), 1.0)
            _push(
                ib, fb, cnt, emit[base + done], done, HEAD_SHOULDERS if top else INVERSE_HEAD_SHOULDERS, row, left,
                head, right, _clip01(strength), neck, slope, np.nan,
            )  # fmt: skip


def _collect(detect: Any, n: int, *args: Any) -> tuple[np.ndarray, np.ndarray]:
    """Run a detector of one series of ``n`` bars with every bar emitted: (ints, floats) of its hits."""
    room = _MAX_HITS_PER_BAR * n + 16
    emit = np.ones(n, dtype=np.bool_)
    while True:
        ib, fb, cnt = np.empty((room, _NI), dtype=np.int64), np.empty((room, _NF)), np.zeros(3, dtype=np.int64)
        detect(*args, 0, 0, emit, ib, fb, cnt)
        if not cnt[2]:
            return ib[: cnt[0]], fb[: cnt[0]]
        room *= 2


# ---------------------------------------------------------------------------------------------
# every pattern of every symbol of a block in one call
# ---------------------------------------------------------------------------------------------
@njit(cache=True, fastmath=False)
def _series_hits(
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    fast: np.ndarray,
    slow: np.ndarray,
    rsi: np.ndarray,
    macd: np.ndarray,
    signal: np.ndarray,
    rel_volume: np.ndarray,
    row: int,
    base: int,
    emit: np.ndarray,
    breakout_window: int,
    swing_window: int,
    penetration: float,
    scratch: np.ndarray,
    candles: np.ndarray,
    sh: np.ndarray,
    sl: np.ndarray,
    ib: np.ndarray,
    fb: np.ndarray,
    cnt: np.ndarray,
) -> None:
    """Every pattern of one symbol's series (1-D arrays of its n bars), appended to the buffers."""
    n = o.shape[0]
    _candles_row(o, h, lo, c, penetration, scratch, candles)
    for k in range(8):
        for i in range(n):
            v = candles[k, i]
            if v != 0:
                _push(ib, fb, cnt, emit[base + i], i, k, row, v, 0, 0, abs(v) / 100.0, np.nan, np.nan, np.nan)
    _ma_cross_hits(fast, slow, row, base, emit, ib, fb, cnt)
    _rsi_hits(rsi, 70.0, 30.0, row, base, emit, ib, fb, cnt)
    _macd_cross_hits(macd, signal, c, row, base, emit, ib, fb, cnt)
    _breakout_hits(h, lo, c, rel_volume, breakout_window, scratch, row, base, emit, ib, fb, cnt)
    _swings_row(h, lo, swing_window, sh[:n], sl[:n])
    args = (swing_window, DOUBLE_TOLERANCE, DOUBLE_MIN_DEPTH, MAX_WAIT, row, base, emit, ib, fb, cnt)
    _double_hits(h, lo, c, sh[:n], sl[:n], *args)
    args = (swing_window, SHOULDER_TOLERANCE, MIN_HEAD, MAX_WAIT, row, base, emit, ib, fb, cnt)
    _head_shoulders_hits(h, lo, c, sh[:n], sl[:n], *args)


@njit(cache=True, fastmath=False)
def _pattern_block_kernel(
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    fast: np.ndarray,
    slow: np.ndarray,
    rsi: np.ndarray,
    macd: np.ndarray,
    signal: np.ndarray,
    rel_volume: np.ndarray,
    offsets: np.ndarray,
    starts: np.ndarray,
    emit: np.ndarray,
    breakout_window: int,
    swing_window: int,
    penetration: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    rows, width = o.shape
    ib = np.empty((0, _NI), dtype=np.int64)
    fb = np.empty((0, _NF))
    cnt = np.zeros(3, dtype=np.int64)
    scratch = np.empty((7, width))
    candles = np.empty((8, width), dtype=np.int32)
    sh = np.empty(width, dtype=np.bool_)
    sl = np.empty(width, dtype=np.bool_)
    for r in range(rows):
        off = offsets[r]
        room = _MAX_HITS_PER_BAR * (width - off) + 16
        kept, found = cnt[0], cnt[1]
        while True:
            ib, fb = _reserve(ib, fb, kept, room)
            _series_hits(
                o[r, off:], h[r, off:], lo[r, off:], c[r, off:], fast[r, off:], slow[r, off:], rsi[r, off:],
                macd[r, off:], signal[r, off:], rel_volume[r, off:], r, starts[r], emit, breakout_window,
                swing_window, penetration, scratch, candles, sh, sl, ib, fb, cnt,
            )  # fmt: skip
            if cnt[2] == 0:
                break
            cnt[0], cnt[1], cnt[2] = kept, found, 0  # out of room: run the series again with more
            room *= 2
    k = cnt[0]
    return ib[:k], fb[:k], cnt[1]


def pattern_block(
    arrays: dict[str, np.ndarray],
    offsets: np.ndarray,
    starts: np.ndarray,
    emit: np.ndarray,
    breakout_window: int = 20,
    swing_window: int = 5,
    penetration: float = 0.3,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Every candlestick and chart pattern of every row of a right-aligned 2-D block, in one call.

    ``arrays``: ``(rows, width)`` float arrays ``open, high, low, close`` and the indicators the
    chart patterns read: ``sma_50, sma_200, rsi, macd, macd_signal, relative_volume``.  Row ``r``'s
    series is ``[:, offsets[r]:]``; its bar ``i`` is position ``starts[r] + i`` of ``emit``, which
    says which bars' hits to return (the others are only counted).  Per row, hits come in the
    order of the per-series functions (candles by name, then crosses, RSI, MACD, breakouts,
    double tops/bottoms, head and shoulders).

    Returns ``(ints, floats, found)``: one row per returned hit, columns ``I_*`` / ``F_*`` (bar,
    pattern code, row, detail integers / strength, detail numbers), and how many hits there were in
    all, returned or not.
    """
    a = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
    ib, fb, found = _pattern_block_kernel(
        a["open"], a["high"], a["low"], a["close"], a["sma_50"], a["sma_200"], a["rsi"], a["macd"],
        a["macd_signal"], a["relative_volume"], np.ascontiguousarray(offsets, dtype=np.int64),
        np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(emit, dtype=np.bool_),
        int(breakout_window), int(swing_window), float(penetration),
    )  # fmt: skip
    return ib, fb, int(found)


# ---------------------------------------------------------------------------------------------
# per-series public API: lists of PatternHit
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatternHit:
    """One detected pattern on bar ``index`` of a symbol's series."""

    index: int
    pattern: str
    direction: str  # 'bullish' | 'bearish' | 'neutral'
    strength: float  # 0..1
    details: dict[str, Any] = field(default_factory=dict)


def _f(x: float) -> float:
    return float(round(float(x), 10))


# Python's round(x, 10) is the double nearest to x's exact value rounded half-even to 10 decimals
# (CPython rounds through a correctly rounded decimal string).  ``round10`` computes it for an array
# without strings: N = x * 1e10 as an exact double-double (Dekker's product, 1e10 being exact),
# rounded half-even using the low part to settle ties, then N / 1e10 (one correctly rounded
# division).  Exact while |x| * 1e10 < 2**52, so N and the integer rounding are exact doubles;
# larger or non-finite values take Python's round.  A test pins it against round() on ties,
# near-ties and random values.  It saves ~1 us per number: 0.35 s of details for 10 years.
_ROUND_SCALE = 1e10
_ROUND_LIMIT = 2.0**52 / _ROUND_SCALE
_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp's splitter for doubles


def _split(a: np.ndarray | float) -> tuple[Any, Any]:
    t = _SPLIT * a
    hi = t - (t - a)
    return hi, a - hi


_SCALE_HI, _SCALE_LO = _split(_ROUND_SCALE)


def round10(x: np.ndarray) -> list[float]:
    """``[round(v, 10) for v in x]`` (Python floats, bit for bit), vectorised."""
    x = np.asarray(x, dtype=np.float64)
    safe = np.abs(x) < _ROUND_LIMIT  # False for NaN and inf too
    xs = np.where(safe, x, 0.0)
    p = xs * _ROUND_SCALE
    a_hi, a_lo = _split(xs)
    err = ((a_hi * _SCALE_HI - p) + a_hi * _SCALE_LO + a_lo * _SCALE_HI) + a_lo * _SCALE_LO  # x*1e10 == p + err
    r = np.rint(p)  # half-even on p; p - r is exact
    d = p - r
    n = r + ((d == 0.5) & (err > 0)) - ((d == -0.5) & (err < 0))  # the exact product's half-even rounding
    out = np.copysign(n / _ROUND_SCALE, xs).tolist()  # copysign: round(-1e-12, 10) is -0.0
    for k in np.flatnonzero(~safe).tolist():
        out[k] = round(float(x[k]), 10)
    return out


# The details of each chart pattern, in the order its dict lists them: (key, source), the source
# being a detail column of the hit buffers: "x", "y", "z" numbers (rounded to 10 decimals, as
# stored), "y?" a number or None where undefined (no volume), "a", "b", "c" integers (a bar index
# for keys ending in ``_index``, which the frame-level functions turn into ``*_ts`` timestamps).
_CROSS = (("fast", "x"), ("slow", "y"))
_MACD = (("macd", "x"), ("signal", "y"))
_RSI = (("rsi", "x"),)
_BREAK = (("level", "x"), ("relative_volume", "y?"), ("window", "a"))
_DOUBLE = (
    ("first_peak_index", "a"), ("second_peak_index", "b"), ("neckline", "x"), ("first_peak", "y"),
    ("second_peak", "z"),
)  # fmt: skip
_HEAD = (
    ("left_shoulder_index", "a"), ("head_index", "b"), ("right_shoulder_index", "c"), ("neckline_at_break", "x"),
    ("neckline_slope", "y"),
)  # fmt: skip
DETAIL_SPEC: dict[int, tuple[tuple[str, str], ...]] = {
    **{code: (("talib_value", "a"),) for code in range(len(CANDLE_NAMES))},  # TA-Lib's value
    GOLDEN: _CROSS, DEATH: _CROSS, RSI_OB_ENTRY: _RSI, RSI_OB_EXIT: _RSI, RSI_OS_ENTRY: _RSI, RSI_OS_EXIT: _RSI,
    MACD_UP: _MACD, MACD_DOWN: _MACD, BREAKOUT: _BREAK, BREAKDOWN: _BREAK, DOUBLE_TOP: _DOUBLE,
    DOUBLE_BOTTOM: _DOUBLE, HEAD_SHOULDERS: _HEAD, INVERSE_HEAD_SHOULDERS: _HEAD,
}  # fmt: skip
_INT_SOURCE = {"a": I_A, "b": I_B, "c": I_C}
_FLOAT_SOURCE = {"x": F_X, "y": F_Y, "z": F_Z, "y?": F_Y}


def detail_values(source: str, ints: np.ndarray, floats: np.ndarray) -> list[Any]:
    """One detail column of several hits (buffer rows) as the Python values stored in ``details``."""
    if source in _INT_SOURCE:
        return ints[:, _INT_SOURCE[source]].tolist()
    column = floats[:, _FLOAT_SOURCE[source]]
    values = round10(column)
    if source == "y?":
        return [None if not ok else v for v, ok in zip(values, np.isfinite(column).tolist(), strict=True)]
    return values


def chart_details(code: int, ints: np.ndarray, floats: np.ndarray) -> list[dict[str, Any]]:
    """``details`` of several hits of one pattern ``code`` (bar references as ``*_index``)."""
    spec = DETAIL_SPEC[code]
    keys = [key for key, _ in spec]
    columns = [detail_values(source, ints, floats) for _, source in spec]
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]


def _to_hits(ib: np.ndarray, fb: np.ndarray, names: dict[int, str] | None = None) -> list[PatternHit]:
    """Buffer rows of chart patterns -> PatternHit records, in buffer order."""
    details: list[dict[str, Any]] = [{} for _ in range(len(ib))]
    codes = ib[:, I_CODE]
    for code in np.unique(codes).tolist():
        at = np.flatnonzero(codes == code)
        for k, d in zip(at.tolist(), chart_details(code, ib[at], fb[at]), strict=True):
            details[k] = d
    rows = zip(ib[:, I_BAR].tolist(), codes.tolist(), fb[:, F_STRENGTH].tolist(), details, strict=True)
    return [
        PatternHit(bar, (names or {}).get(code, PATTERN_NAMES[code]), DIRECTIONS[CHART_DIRECTION[code]], strength, d)
        for bar, code, strength, d in rows
    ]


def _series(*xs: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(x, dtype=np.float64) for x in xs)


def ma_crosses(
    fast: np.ndarray, slow: np.ndarray, names: tuple[str, str] = ("golden_cross", "death_cross")
) -> list[PatternHit]:
    """Golden cross (fast SMA crosses above slow) / death cross (below).

    Strength: the fast average's 5-session slope through the cross, 1.0 at 2% or more, because a
    cross made by a fast-moving average is the one traders trust.
    """
    f, s = _series(fast, slow)
    return _to_hits(*_collect(_ma_cross_hits, f.size, f, s), {GOLDEN: names[0], DEATH: names[1]})


def rsi_signals(rsi_values: np.ndarray, upper: float = 70.0, lower: float = 30.0) -> list[PatternHit]:
    """RSI overbought/oversold entries (crossing above ``upper`` / below ``lower``) and exits
    (crossing back).  Entering overbought and leaving it are bearish warnings; the oversold pair
    is bullish.  Strength: how far RSI is beyond (entry) or came from (exit, the extreme of the
    20 bars before) the threshold, relative to the room left (100-upper or lower)."""
    (r,) = _series(rsi_values)
    return _to_hits(*_collect(_rsi_hits, r.size, r, float(upper), float(lower)))


def macd_crosses(macd_line: np.ndarray, signal: np.ndarray, close: np.ndarray) -> list[PatternHit]:
    """MACD crossing its signal line.  Strength: |MACD| relative to 2% of price (crosses far
    from the zero line carry more momentum), capped at 1."""
    m, s, c = _series(macd_line, signal, close)
    return _to_hits(*_collect(_macd_cross_hits, c.size, m, s, c))


def breakouts(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, rel_volume: np.ndarray, n: int = 20
) -> list[PatternHit]:
    """Close above the highest high (resistance) or below the lowest low (support) of the prior
    ``n`` sessions.  Only the first close through a level counts (the previous close was inside).
    Strength is volume confirmation: relative volume / 2, capped at 1 (2x volume = full
    confirmation)."""
    h, lo, c, rv = _series(high, low, close, rel_volume)
    return _to_hits(*_collect(_breakout_hits, c.size, h, lo, c, rv, int(n), np.empty((2, c.size))))


def _swings(h: np.ndarray, lo: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    sh = np.empty(h.size, dtype=np.bool_)
    sl = np.empty(h.size, dtype=np.bool_)
    _swings_row(h, lo, int(w), sh, sl)
    return sh, sl


def double_tops_bottoms(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    w: int = 5,
    tolerance: float = DOUBLE_TOLERANCE,
    min_depth: float = DOUBLE_MIN_DEPTH,
    max_wait: int = MAX_WAIT,
) -> list[PatternHit]:
    """Double top: two consecutive swing highs within ``tolerance`` of each other with a swing
    low between them at least ``min_depth`` below the lower peak; completes on the first close
    below that low (the neckline) within ``max_wait`` bars after the second peak is confirmed.
    Double bottom is the mirror image.  Strength blends peak equality (50%) and depth (50%,
    full at 3x ``min_depth``)."""
    h, lo, c = _series(high, low, close)
    args = (*_swings(h, lo, w), int(w), float(tolerance), float(min_depth), int(max_wait))
    return _to_hits(*_collect(_double_hits, c.size, h, lo, c, *args))


def head_and_shoulders(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    w: int = 5,
    shoulder_tolerance: float = SHOULDER_TOLERANCE,
    min_head: float = MIN_HEAD,
    max_wait: int = MAX_WAIT,
) -> list[PatternHit]:
    """Head and shoulders (bearish) and its inverse (bullish) on consecutive swing points.

    Three consecutive swing highs L, H, R with H above both shoulders by at least ``min_head``
    and the shoulders within ``shoulder_tolerance`` of each other; the neckline joins the lowest
    lows between L-H and H-R.  Completion is the first close through the neckline (extended to
    that bar) within ``max_wait`` bars of R's confirmation.  Strength blends shoulder symmetry
    (50%) and head prominence (50%, full at 3x ``min_head``)."""
    h, lo, c = _series(high, low, close)
    args = (*_swings(h, lo, w), int(w), float(shoulder_tolerance), float(min_head), int(max_wait))
    return _to_hits(*_collect(_head_shoulders_hits, c.size, h, lo, c, *args))
