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
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from market_assets.analytics.technicals.indicators import _as_2d, _restore, rolling_sum
from market_assets.analytics.technicals.levels import swing_points

__all__ = [
    "CANDLE_FUNCTIONS",
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
    "double_tops_bottoms",
    "head_and_shoulders",
    "ma_crosses",
    "macd_crosses",
    "rsi_signals",
]

# (range type, avgPeriod, factor) as in TA-Lib's TA_CandleDefaultSettings
_REALBODY, _HIGHLOW, _SHADOWS = 0, 1, 2
_SETTINGS: dict[str, tuple[int, int, float]] = {
    "BodyLong": (_REALBODY, 10, 1.0),
    "BodyShort": (_REALBODY, 10, 1.0),
    "BodyDoji": (_HIGHLOW, 10, 0.1),
    "ShadowLong": (_REALBODY, 0, 1.0),
    "ShadowVeryShort": (_HIGHLOW, 10, 0.1),
    "Near": (_HIGHLOW, 5, 0.2),
    "Far": (_HIGHLOW, 5, 0.6),
}


class _Candles:
    """Per-bar candle geometry plus TA-Lib candle averages, computed once per OHLC block."""

    def __init__(self, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> None:
        self.o, self.h, self.l, self.c = o, h, lo, c
        self.body = np.abs(c - o)
        self.top = np.maximum(o, c)
        self.bottom = np.minimum(o, c)
        self.upper = h - self.top
        self.lower = self.bottom - lo
        self.white = c >= o  # TA_CANDLECOLOR == 1
        self._avg: dict[str, np.ndarray] = {}

    def _range(self, kind: int) -> np.ndarray:
        if kind == _REALBODY:
            return self.body
        if kind == _HIGHLOW:
            return self.h - self.l
        return self.upper + self.lower

    def avg(self, name: str) -> np.ndarray:
        """TA_CANDLEAVERAGE(name, ., i) for every bar i (NaN where the window is incomplete)."""
        if name not in self._avg:
            kind, period, factor = _SETTINGS[name]
            rng = self._range(kind)
            if period == 0:
                base = rng
            else:
                trailing = np.full_like(rng, np.nan)
                trailing[:, 1:] = rolling_sum(rng, period)[:, :-1]
                base = trailing / period
            val = factor * base
            self._avg[name] = val / 2.0 if kind == _SHADOWS else val
        return self._avg[name]


def _sh(x: np.ndarray, k: int) -> np.ndarray:
    """Value at bar i-k aligned to bar i."""
    if k == 0:
        return x
    out = np.full(x.shape, np.nan) if x.dtype.kind == "f" else np.zeros(x.shape, dtype=x.dtype)
    out[:, k:] = x[:, :-k]
    return out


def _finish(cond: np.ndarray, value: np.ndarray | int, lookback: int, one_d: bool) -> np.ndarray:
    out = np.where(cond, value, 0).astype(np.int32)
    out[:, :lookback] = 0
    return _restore(out, one_d)


def _prep(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> tuple[_Candles, bool]:
    oo, one_d = _as_2d(o)
    hh, _ = _as_2d(h)
    ll, _ = _as_2d(lo)
    cc, _ = _as_2d(c)
    return _Candles(oo, hh, ll, cc), one_d


def cdldoji(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDLDOJI``: real body <= 10% of the average high-low range of the prior 10 bars."""
    k, one_d = _prep(open_, high, low, close)
    with np.errstate(invalid="ignore"):
        cond = k.body <= k.avg("BodyDoji")
    return _finish(cond, 100, 10, one_d)


def cdlhammer(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDLHAMMER``: small body, long lower shadow, very short upper shadow, body near the
    prior bar's low."""
    k, one_d = _prep(open_, high, low, close)
    with np.errstate(invalid="ignore"):
        cond = (
            (k.body < k.avg("BodyShort"))
            & (k.lower > k.avg("ShadowLong"))
            & (k.upper < k.avg("ShadowVeryShort"))
            & (k.bottom <= _sh(k.l, 1) + _sh(k.avg("Near"), 1))
        )
    return _finish(cond, 100, 11, one_d)


def cdlshootingstar(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDLSHOOTINGSTAR``: small body gapping up, long upper shadow, very short lower."""
    k, one_d = _prep(open_, high, low, close)
    with np.errstate(invalid="ignore"):
        cond = (
            (k.body < k.avg("BodyShort"))
            & (k.upper > k.avg("ShadowLong"))
            & (k.lower < k.avg("ShadowVeryShort"))
            & (k.bottom > _sh(k.top, 1))
        )
    return _finish(cond, -100, 11, one_d)


def cdlengulfing(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDLENGULFING``: +/-100 when the body engulfs the prior opposite-colour body,
    +/-80 when the two bodies share one end."""
    k, one_d = _prep(open_, high, low, close)
    o, c = k.o, k.c
    po, pc = _sh(o, 1), _sh(c, 1)
    pwhite = _sh(k.white, 1)
    with np.errstate(invalid="ignore"):
        bull = k.white & ~pwhite & (((c >= po) & (o < pc)) | ((c > po) & (o <= pc)))
        bear = ~k.white & pwhite & (((o >= pc) & (c < po)) | ((o > pc) & (c <= po)))
        full = (o != pc) & (c != po)
    sign = np.where(k.white, 1, -1)
    value = sign * np.where(full, 100, 80)
    return _finish(bull | bear, value, 2, one_d)


def _star(k: _Candles, penetration: float, bullish: bool) -> np.ndarray:
    o2, c2 = _sh(k.o, 2), _sh(k.c, 2)
    body2 = _sh(k.body, 2)
    with np.errstate(invalid="ignore"):
        common = (
            (body2 > _sh(k.avg("BodyLong"), 2))
            & (_sh(k.body, 1) <= _sh(k.avg("BodyShort"), 1))
            & (k.body > k.avg("BodyShort"))
        )
        if bullish:
            return (
                common
                & ~_sh(k.white, 2)
                & k.white
                & (_sh(k.top, 1) < np.minimum(o2, c2))
                & (k.c > c2 + body2 * penetration)
            )
        return (
            common
            & _sh(k.white, 2)
            & ~k.white
            & (_sh(k.bottom, 1) > np.maximum(o2, c2))
            & (k.c < c2 - body2 * penetration)
        )


def cdlmorningstar(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, penetration: float = 0.3
) -> np.ndarray:
    """``talib.CDLMORNINGSTAR``: long black, short star gapping down, white closing well into
    the first body."""
    k, one_d = _prep(open_, high, low, close)
    return _finish(_star(k, penetration, True), 100, 12, one_d)


def cdleveningstar(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, penetration: float = 0.3
) -> np.ndarray:
    """``talib.CDLEVENINGSTAR``: long white, short star gapping up, black closing well into the
    first body."""
    k, one_d = _prep(open_, high, low, close)
    return _finish(_star(k, penetration, False), -100, 12, one_d)


def cdl3whitesoldiers(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDL3WHITESOLDIERS``: three rising white candles with very short upper shadows,
    each opening within/near the prior body and not far shorter than it."""
    k, one_d = _prep(open_, high, low, close)
    o, c = k.o, k.c
    svs = k.avg("ShadowVeryShort")
    near = k.avg("Near")
    far = k.avg("Far")
    with np.errstate(invalid="ignore"):
        cond = (
            _sh(k.white, 2)
            & (_sh(k.upper, 2) < _sh(svs, 2))
            & _sh(k.white, 1)
            & (_sh(k.upper, 1) < _sh(svs, 1))
            & k.white
            & (k.upper < svs)
            & (c > _sh(c, 1))
            & (_sh(c, 1) > _sh(c, 2))
            & (_sh(o, 1) > _sh(o, 2))
            & (_sh(o, 1) <= _sh(c, 2) + _sh(near, 2))
            & (o > _sh(o, 1))
            & (o <= _sh(c, 1) + _sh(near, 1))
            & (_sh(k.body, 1) > _sh(k.body, 2) - _sh(far, 2))
            & (k.body > _sh(k.body, 1) - _sh(far, 1))
            & (k.body > k.avg("BodyShort"))
        )
    return _finish(cond, 100, 12, one_d)


def cdl3blackcrows(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``talib.CDL3BLACKCROWS``: after a white candle, three declining black candles with very
    short lower shadows, each opening within the prior body."""
    k, one_d = _prep(open_, high, low, close)
    o, c = k.o, k.c
    svs = k.avg("ShadowVeryShort")
    with np.errstate(invalid="ignore"):
        cond = (
            _sh(k.white, 3)
            & ~_sh(k.white, 2)
            & ~_sh(k.white, 1)
            & ~k.white
            & (_sh(o, 1) < _sh(o, 2))
            & (_sh(o, 1) > _sh(c, 2))
            & (o < _sh(o, 1))
            & (o > _sh(c, 1))
            & (_sh(k.h, 3) > _sh(c, 2))
            & (_sh(c, 2) > _sh(c, 1))
            & (_sh(c, 1) > c)
            & (_sh(k.lower, 2) < _sh(svs, 2))
            & (_sh(k.lower, 1) < _sh(svs, 1))
            & (k.lower < svs)
        )
    return _finish(cond, -100, 13, one_d)


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
# chart / signal patterns (1-D per symbol)
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


def _crosses(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices where ``a`` crosses above / below ``b`` (strictly after being on the other side)."""
    with np.errstate(invalid="ignore"):
        diff = a - b
        up = (diff[1:] > 0) & (diff[:-1] <= 0)
        down = (diff[1:] < 0) & (diff[:-1] >= 0)
    return np.flatnonzero(up) + 1, np.flatnonzero(down) + 1


def ma_crosses(
    fast: np.ndarray, slow: np.ndarray, names: tuple[str, str] = ("golden_cross", "death_cross")
) -> list[PatternHit]:
    """Golden cross (fast SMA crosses above slow) / death cross (below).

    Strength: the fast average's 5-session slope through the cross, 1.0 at 2% or more, because a
    cross made by a fast-moving average is the one traders trust.
    """
    up, down = _crosses(fast, slow)
    hits: list[PatternHit] = []
    for idx_arr, name, direction in ((up, names[0], "bullish"), (down, names[1], "bearish")):
        for i in idx_arr:
            j = max(i - 5, 0)
            slope = abs(fast[i] / fast[j] - 1.0) if np.isfinite(fast[j]) and fast[j] else 0.0
            hits.append(
                PatternHit(
                    int(i),
                    name,
                    direction,
                    float(np.clip(slope / 0.02, 0.0, 1.0)),
                    {"fast": _f(fast[i]), "slow": _f(slow[i])},
                )
            )
    return hits


def rsi_signals(rsi_values: np.ndarray, upper: float = 70.0, lower: float = 30.0) -> list[PatternHit]:
    """RSI overbought/oversold entries (crossing above ``upper`` / below ``lower``) and exits
    (crossing back).  Entering overbought and leaving it are bearish warnings; the oversold pair
    is bullish.  Strength: how far RSI is beyond (entry) or came from (exit) the threshold,
    relative to the room left (100-upper or lower)."""
    r = np.asarray(rsi_values, dtype=float)
    up_u, down_u = _crosses(r, np.full_like(r, upper))
    up_l, down_l = _crosses(r, np.full_like(r, lower))
    hits: list[PatternHit] = []
    for i in up_u:
        hits.append(
            PatternHit(
                int(i),
                "rsi_overbought_entry",
                "bearish",
                float(np.clip((r[i] - upper) / (100 - upper), 0, 1)),
                {"rsi": _f(r[i])},
            )
        )
    for i in down_u:
        peak = np.nanmax(r[max(i - 20, 0) : i])
        hits.append(
            PatternHit(
                int(i),
                "rsi_overbought_exit",
                "bearish",
                float(np.clip((peak - upper) / (100 - upper), 0, 1)),
                {"rsi": _f(r[i])},
            )
        )
    for i in down_l:
        hits.append(
            PatternHit(
                int(i), "rsi_oversold_entry", "bullish", float(np.clip((lower - r[i]) / lower, 0, 1)), {"rsi": _f(r[i])}
            )
        )
    for i in up_l:
        trough = np.nanmin(r[max(i - 20, 0) : i])
        hits.append(
            PatternHit(
                int(i),
                "rsi_oversold_exit",
                "bullish",
                float(np.clip((lower - trough) / lower, 0, 1)),
                {"rsi": _f(r[i])},
            )
        )
    return hits


def macd_crosses(macd_line: np.ndarray, signal: np.ndarray, close: np.ndarray) -> list[PatternHit]:
    """MACD crossing its signal line.  Strength: |MACD| relative to 2% of price (crosses far
    from the zero line carry more momentum), capped at 1."""
    up, down = _crosses(macd_line, signal)
    hits: list[PatternHit] = []
    for idx_arr, name, direction in ((up, "macd_bullish_cross", "bullish"), (down, "macd_bearish_cross", "bearish")):
        for i in idx_arr:
            strength = abs(macd_line[i]) / (0.02 * close[i]) if close[i] else 0.0
            hits.append(
                PatternHit(
                    int(i),
                    name,
                    direction,
                    float(np.clip(strength, 0, 1)),
                    {"macd": _f(macd_line[i]), "signal": _f(signal[i])},
                )
            )
    return hits


def breakouts(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, rel_volume: np.ndarray, n: int = 20
) -> list[PatternHit]:
    """Close above the highest high (resistance) or below the lowest low (support) of the prior
    ``n`` sessions.  Only the first close through a level counts (the previous close was inside).
    Strength is volume confirmation: relative volume / 2, capped at 1 (2x volume = full
    confirmation)."""
    h = np.asarray(high, dtype=float)
    lo = np.asarray(low, dtype=float)
    c = np.asarray(close, dtype=float)
    m = c.size
    hits: list[PatternHit] = []
    if m <= n + 1:
        return hits
    from numpy.lib.stride_tricks import sliding_window_view

    res = np.full(m, np.nan)
    sup = np.full(m, np.nan)
    res[n:] = sliding_window_view(h[:-1], n).max(axis=1)
    sup[n:] = sliding_window_view(lo[:-1], n).min(axis=1)
    with np.errstate(invalid="ignore"):
        up = (c > res) & ~(np.concatenate([[False], c[:-1] > res[:-1]]))
        down = (c < sup) & ~(np.concatenate([[False], c[:-1] < sup[:-1]]))
    for i in np.flatnonzero(up):
        rv = rel_volume[i]
        hits.append(
            PatternHit(
                int(i),
                "breakout_resistance",
                "bullish",
                float(np.clip(rv / 2.0, 0, 1)) if np.isfinite(rv) else 0.0,
                {"level": _f(res[i]), "relative_volume": None if not np.isfinite(rv) else _f(rv), "window": n},
            )
        )
    for i in np.flatnonzero(down):
        rv = rel_volume[i]
        hits.append(
            PatternHit(
                int(i),
                "breakdown_support",
                "bearish",
                float(np.clip(rv / 2.0, 0, 1)) if np.isfinite(rv) else 0.0,
                {"level": _f(sup[i]), "relative_volume": None if not np.isfinite(rv) else _f(rv), "window": n},
            )
        )
    return hits


def _first_close_through(close: np.ndarray, start: int, stop: int, level: float, below: bool) -> int | None:
    seg = close[start:stop]
    hit = np.flatnonzero(seg < level) if below else np.flatnonzero(seg > level)
    return int(start + hit[0]) if hit.size else None


def double_tops_bottoms(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    w: int = 5,
    tolerance: float = 0.03,
    min_depth: float = 0.03,
    max_wait: int = 30,
) -> list[PatternHit]:
    """Double top: two consecutive swing highs within ``tolerance`` of each other with a swing
    low between them at least ``min_depth`` below the lower peak; completes on the first close
    below that low (the neckline) within ``max_wait`` bars after the second peak is confirmed.
    Double bottom is the mirror image.  Strength blends peak equality (50%) and depth (50%,
    full at 3x ``min_depth``)."""
    h = np.asarray(high, dtype=float)
    lo = np.asarray(low, dtype=float)
    c = np.asarray(close, dtype=float)
    sh, sl = swing_points(h, lo, w)
    hits: list[PatternHit] = []
    for top in (True, False):
        peaks = np.flatnonzero(sh if top else sl)
        troughs = np.flatnonzero(sl if top else sh)
        px = h if top else lo
        tx = lo if top else h
        for a, b in itertools.pairwise(peaks):
            between = troughs[(troughs > a) & (troughs < b)]
            if between.size == 0:
                continue
            p1, p2 = px[a], px[b]
            ref = min(p1, p2) if top else max(p1, p2)
            diff = abs(p1 - p2) / ref
            if diff > tolerance:
                continue
            k = between[np.argmin(tx[between])] if top else between[np.argmax(tx[between])]
            neck = tx[k]
            depth = (ref - neck) / ref if top else (neck - ref) / ref
            if depth < min_depth:
                continue
            start = b + w  # the second peak is confirmed w bars later
            done = _first_close_through(c, start, min(start + max_wait, c.size), neck, below=top)
            if done is None:
                continue
            # invalidated if price made a new extreme beyond both peaks before completing
            seg = px[b + 1 : done + 1]
            if seg.size and ((top and seg.max() > max(p1, p2)) or (not top and seg.min() < min(p1, p2))):
                continue
            strength = 0.5 * (1 - diff / tolerance) + 0.5 * min(depth / (3 * min_depth), 1.0)
            hits.append(
                PatternHit(
                    done,
                    "double_top" if top else "double_bottom",
                    "bearish" if top else "bullish",
                    float(np.clip(strength, 0, 1)),
                    {
                        "first_peak_index": int(a),
                        "second_peak_index": int(b),
                        "neckline": _f(neck),
                        "first_peak": _f(p1),
                        "second_peak": _f(p2),
                    },
                )
            )
    return hits


def head_and_shoulders(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    w: int = 5,
    shoulder_tolerance: float = 0.05,
    min_head: float = 0.02,
    max_wait: int = 30,
) -> list[PatternHit]:
    """Head and shoulders (bearish) and its inverse (bullish) on consecutive swing points.

    Three consecutive swing highs L, H, R with H above both shoulders by at least ``min_head``
    and the shoulders within ``shoulder_tolerance`` of each other; the neckline joins the lowest
    lows between L-H and H-R.  Completion is the first close through the neckline (extended to
    that bar) within ``max_wait`` bars of R's confirmation.  Strength blends shoulder symmetry
    (50%) and head prominence (50%, full at 3x ``min_head``)."""
    h = np.asarray(high, dtype=float)
    lo = np.asarray(low, dtype=float)
    c = np.asarray(close, dtype=float)
    sh, sl = swing_points(h, lo, w)
    hits: list[PatternHit] = []
    for top in (True, False):
        peaks = np.flatnonzero(sh if top else sl)
        troughs = np.flatnonzero(sl if top else sh)
        px = h if top else lo
        tx = lo if top else h
        sign = 1.0 if top else -1.0
        for i in range(len(peaks) - 2):
            left, head, right = peaks[i], peaks[i + 1], peaks[i + 2]
            pl, ph, pr = px[left], px[head], px[right]
            shoulder = max(pl, pr) if top else min(pl, pr)
            prominence = sign * (ph - shoulder) / abs(shoulder)
            if prominence < min_head:
                continue
            asym = abs(pl - pr) / abs(min(pl, pr) if top else max(pl, pr))
            if asym > shoulder_tolerance:
                continue
            t1 = troughs[(troughs > left) & (troughs < head)]
            t2 = troughs[(troughs > head) & (troughs < right)]
            if t1.size == 0 or t2.size == 0:
                continue
            k1 = t1[np.argmin(tx[t1])] if top else t1[np.argmax(tx[t1])]
            k2 = t2[np.argmin(tx[t2])] if top else t2[np.argmax(tx[t2])]
            slope = (tx[k2] - tx[k1]) / (k2 - k1)
            start = right + w
            stop = min(start + max_wait, c.size)
            if start >= stop:
                continue
            bars = np.arange(start, stop)
            neck = tx[k1] + slope * (bars - k1)
            through = (c[start:stop] < neck) if top else (c[start:stop] > neck)
            if not through.any():
                continue
            j = int(np.argmax(through))
            done = int(bars[j])
            seg = px[right + 1 : done + 1]
            if seg.size and ((top and seg.max() > ph) or (not top and seg.min() < ph)):
                continue
            strength = 0.5 * (1 - asym / shoulder_tolerance) + 0.5 * min(prominence / (3 * min_head), 1.0)
            hits.append(
                PatternHit(
                    done,
                    "head_and_shoulders" if top else "inverse_head_and_shoulders",
                    "bearish" if top else "bullish",
                    float(np.clip(strength, 0, 1)),
                    {
                        "left_shoulder_index": int(left),
                        "head_index": int(head),
                        "right_shoulder_index": int(right),
                        "neckline_at_break": _f(neck[j]),
                        "neckline_slope": _f(slope),
                    },
                )
            )
    return hits
