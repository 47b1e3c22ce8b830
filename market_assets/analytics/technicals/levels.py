"""Support/resistance levels from swing points, and classic floor pivot points.

Swing points are fractals: bar ``i`` is a swing high when its high is the highest of the
``2w+1`` bars centred on it (strictly above the ``w`` bars before, at least as the ``w``
after, so a flat top counts once).  A swing is only *known* ``w`` bars later; everything here that
takes an ``as_of`` uses only swings confirmed by then, so levels never look ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from market_assets.analytics.technicals.indicators import _atr_row

__all__ = ["Swing", "cluster_levels", "floor_pivots", "levels_as_of", "swing_points"]


@dataclass(frozen=True)
class Swing:
    """One confirmed swing point: bar index, price and whether it is a high."""

    index: int
    price: float
    is_high: bool


def swing_points(high: np.ndarray, low: np.ndarray, w: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (swing_high, swing_low) for 1-D arrays; the last ``w`` bars are never swings
    because they are not confirmed yet."""
    h = np.asarray(high, dtype=float)
    lo = np.asarray(low, dtype=float)
    n = h.size
    sh = np.zeros(n, dtype=bool)
    sl = np.zeros(n, dtype=bool)
    if n < 2 * w + 1:
        return sh, sl
    from numpy.lib.stride_tricks import sliding_window_view

    hw = sliding_window_view(h, 2 * w + 1)
    lw = sliding_window_view(lo, 2 * w + 1)
    centre_h = hw[:, w]
    centre_l = lw[:, w]
    with np.errstate(invalid="ignore"):
        is_h = (centre_h > hw[:, :w].max(axis=1)) & (centre_h >= hw[:, w + 1 :].max(axis=1))
        is_l = (centre_l < lw[:, :w].min(axis=1)) & (centre_l <= lw[:, w + 1 :].min(axis=1))
    sh[w : n - w] = is_h & np.isfinite(centre_h)
    sl[w : n - w] = is_l & np.isfinite(centre_l)
    return sh, sl


def cluster_levels(
    prices: np.ndarray,
    indices: np.ndarray,
    tolerance: float,
) -> list[tuple[float, int, int, int]]:
    """Greedy 1-D clustering of swing prices: sorted prices join the current cluster while within
    ``tolerance`` (absolute) of the cluster's running mean.

    Returns (level, touches, first_index, last_index) per cluster; level is the members' mean.
    """
    if len(prices) == 0:
        return []
    order = np.argsort(prices, kind="stable")
    ps = np.asarray(prices, dtype=float)[order]
    ix = np.asarray(indices)[order]
    out: list[tuple[float, int, int, int]] = []
    members_p = [ps[0]]
    members_i = [int(ix[0])]
    for p, i in zip(ps[1:], ix[1:], strict=True):
        if abs(p - float(np.mean(members_p))) <= tolerance:
            members_p.append(p)
            members_i.append(int(i))
        else:
            out.append((float(np.mean(members_p)), len(members_p), min(members_i), max(members_i)))
            members_p, members_i = [p], [int(i)]
    out.append((float(np.mean(members_p)), len(members_p), min(members_i), max(members_i)))
    return out


def support_resistance_levels(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    w: int = 5,
    tolerance_pct: float = 0.015,
    atr: float | None = None,
    atr_mult: float = 0.5,
    min_touches: int = 1,
) -> list[dict[str, float | int | str]]:
    """Levels for one symbol from its bars up to the evaluation bar (the last element).

    Tolerance: ``atr_mult * atr`` when an ATR is given (adapts to volatility), else
    ``tolerance_pct`` of the last close.  ``kind`` is resistance above the last close, support
    at or below it.  ``strength`` in [0, 1] blends touches (60%, saturating at 5) and recency of
    the last touch (40%, linear over the window).
    """
    h = np.asarray(high, dtype=float)
    lo = np.asarray(low, dtype=float)
    c = np.asarray(close, dtype=float)
    n = c.size
    if n == 0 or not np.isfinite(c[-1]):
        return []
    sh, sl = swing_points(h, lo, w)
    idx = np.concatenate([np.flatnonzero(sh), np.flatnonzero(sl)])
    prices = np.concatenate([h[sh], lo[sl]])
    last = c[-1]
    tol = atr_mult * atr if atr is not None and np.isfinite(atr) and atr > 0 else tolerance_pct * last
    rows: list[dict[str, float | int | str]] = []
    for level, touches, first_i, last_i in cluster_levels(prices, idx, tol):
        if touches < min_touches:
            continue
        recency = 1.0 - (n - 1 - last_i) / max(n - 1, 1)
        strength = 0.6 * min(touches / 5.0, 1.0) + 0.4 * recency
        rows.append(
            {
                "kind": "resistance" if level > last else "support",
                "level": level,
                "touches": touches,
                "first_index": first_i,
                "last_index": last_i,
                "strength": float(np.clip(strength, 0.0, 1.0)),
            }
        )
    return rows


@njit(cache=True, fastmath=False)
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise-summation leaf (n <= 128): eight running sums, then the rest in order."""
    if n < 8:
        res = -0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    m = n - (n % 8)
    while i < m:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, fastmath=False)
def _pairwise_sum(a: np.ndarray, n: int) -> float:
    """numpy's pairwise summation (``np.add.reduce`` on a contiguous float64 array), step for step.

    Why replicate it: levels are means of swing prices and joining a cluster compares against the
    running mean, so the one-pass kernel must produce the very bits ``np.mean`` gave the
    per-session algorithm it replaced (a test pins this against numpy on random arrays). numpy
    recurses (halves rounded down to a multiple of 8, leaves of at most 128); a recursive numba
    function does not survive the on-disk cache, so the tree is walked with explicit stacks:
    ``todo`` holds (lo, n, expanded) and ``vals`` the partial sums, combined left + right.
    """
    if n <= 128:
        return _block_sum(a, 0, n)
    todo = np.empty((64, 3), dtype=np.int64)
    vals = np.empty(64)
    top = 0
    nv = 0
    todo[0, 0], todo[0, 1], todo[0, 2] = 0, n, 0
    top = 1
    while top > 0:
        top -= 1
        lo, cnt, expanded = todo[top, 0], todo[top, 1], todo[top, 2]
        if cnt <= 128:
            vals[nv] = _block_sum(a, lo, cnt)
            nv += 1
        elif expanded == 1:
            right = vals[nv - 1]
            left = vals[nv - 2]
            nv -= 2
            vals[nv] = left + right
            nv += 1
        else:
            n2 = cnt // 2
            n2 -= n2 % 8
            todo[top, 0], todo[top, 1], todo[top, 2] = lo, cnt, 1
            todo[top + 1, 0], todo[top + 1, 1], todo[top + 1, 2] = lo + n2, cnt - n2, 0
            todo[top + 2, 0], todo[top + 2, 1], todo[top + 2, 2] = lo, n2, 0
            top += 3
    return vals[0]


@njit(cache=True, fastmath=False)
def np_mean(a: np.ndarray, n: int) -> float:
    """``np.mean(a[:n])`` bit for bit (exposed for the test that pins it)."""
    return _pairwise_sum(a, n) / n


@njit(cache=True, fastmath=False)
def _levels_as_of_kernel(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    swing_high: np.ndarray,
    swing_low: np.ndarray,
    as_of: np.ndarray,
    window_start: np.ndarray,
    lookback: int,
    w: int,
    atr_period: int,
    atr_mult: float,
    tolerance_pct: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All as-of evaluations of one symbol; see :func:`levels_as_of`. Returns flat row arrays."""
    cap = 16
    out_k = np.empty(cap, dtype=np.int64)
    out_level = np.empty(cap)
    out_touch = np.empty(cap, dtype=np.int64)
    out_first = np.empty(cap, dtype=np.int64)
    out_last = np.empty(cap, dtype=np.int64)
    out_strength = np.empty(cap)
    out_res = np.empty(cap, dtype=np.bool_)
    rows = 0
    buf = np.empty(high.size)
    # a bar can be both a swing high and a swing low: up to two swings per bar
    prices = np.empty(2 * high.size)
    idx = np.empty(2 * high.size, dtype=np.int64)
    members = np.empty(2 * high.size)
    for k in range(as_of.size):
        i = as_of[k]
        sw = window_start[k]
        if i < sw:
            continue
        last = close[i]
        if not np.isfinite(last):
            continue
        s = max(sw, i - lookback + 1)
        n = i - s + 1
        m_atr = i + 1 - sw
        _atr_row(high[sw : i + 1], low[sw : i + 1], close[sw : i + 1], atr_period, buf[:m_atr])
        atr = buf[m_atr - 1]
        tol = atr_mult * atr if np.isfinite(atr) and atr > 0 else tolerance_pct * last
        # swings confirmed inside the tail window: the whole 2w+1 neighbourhood lies in [s, i]
        m = 0
        for j in range(s + w, i - w + 1):
            if swing_high[j]:
                prices[m] = high[j]
                idx[m] = j - s
                m += 1
        for j in range(s + w, i - w + 1):
            if swing_low[j]:
                prices[m] = low[j]
                idx[m] = j - s
                m += 1
        if m == 0:
            continue
        order = np.argsort(prices[:m], kind="mergesort")
        c_n = 0
        c_first = 0
        c_last = 0
        for q in range(m + 1):
            closing = q == m
            if not closing:
                p = prices[order[q]]
                ix = idx[order[q]]
                if c_n > 0 and abs(p - np_mean(members, c_n)) > tol:
                    closing = True
            if closing and c_n > 0:
                if rows == out_k.size:
                    grow = out_k.size * 2
                    out_k = np.concatenate((out_k, np.empty(grow, dtype=np.int64)))
                    out_level = np.concatenate((out_level, np.empty(grow)))
                    out_touch = np.concatenate((out_touch, np.empty(grow, dtype=np.int64)))
                    out_first = np.concatenate((out_first, np.empty(grow, dtype=np.int64)))
                    out_last = np.concatenate((out_last, np.empty(grow, dtype=np.int64)))
                    out_strength = np.concatenate((out_strength, np.empty(grow)))
                    out_res = np.concatenate((out_res, np.empty(grow, dtype=np.bool_)))
                level = np_mean(members, c_n)
                recency = 1.0 - (n - 1 - c_last) / max(n - 1, 1)
                strength = 0.6 * min(c_n / 5.0, 1.0) + 0.4 * recency
                out_k[rows] = k
                out_level[rows] = level
                out_touch[rows] = c_n
                out_first[rows] = c_first + s
                out_last[rows] = c_last + s
                out_strength[rows] = min(max(strength, 0.0), 1.0)
                out_res[rows] = level > last
                rows += 1
                c_n = 0
            if q == m:
                break
            if c_n == 0:
                c_first = ix
                c_last = ix
            else:
                c_first = min(c_first, ix)
                c_last = max(c_last, ix)
            members[c_n] = p
            c_n += 1
    return (
        out_k[:rows],
        out_level[:rows],
        out_touch[:rows],
        out_first[:rows],
        out_last[:rows],
        out_strength[:rows],
        out_res[:rows],
    )


def levels_as_of(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    as_of: np.ndarray,
    window_start: np.ndarray,
    lookback: int = 252,
    w: int = 5,
    atr_period: int = 14,
    atr_mult: float = 0.5,
    tolerance_pct: float = 0.015,
) -> dict[str, np.ndarray]:
    """Support/resistance as of many bars of ONE symbol in one pass: equal, row for row and bit for
    bit, to :func:`support_resistance_levels` on each as-of window with the ATR of that window.

    For as-of bar ``as_of[k]`` the history window is bars ``window_start[k] .. as_of[k]``; ATR-14
    is taken over that window (seeded at its start, as when the window is computed alone) and the
    levels over its last ``lookback`` bars.  Swing points are found once for the whole series: a
    window's swings are exactly the global ones whose ``2w+1`` neighbourhood lies inside it, so
    each evaluation only clusters the swings already known (about lookback / w of them) instead
    of re-detecting them, and the cost per new session is constant.

    Returns flat arrays per level row: ``k`` (which as-of), ``level``, ``touches``, ``first_index``
    and ``last_index`` (bar positions in the input), ``strength`` and ``resistance`` (level above
    the as-of close).
    """
    h = np.ascontiguousarray(high, dtype=float)
    lo = np.ascontiguousarray(low, dtype=float)
    c = np.ascontiguousarray(close, dtype=float)
    sh, sl = swing_points(h, lo, w)
    names = ("k", "level", "touches", "first_index", "last_index", "strength", "resistance")
    arrays = _levels_as_of_kernel(
        h,
        lo,
        c,
        sh,
        sl,
        np.ascontiguousarray(as_of, dtype=np.int64),
        np.ascontiguousarray(window_start, dtype=np.int64),
        int(lookback),
        int(w),
        int(atr_period),
        float(atr_mult),
        float(tolerance_pct),
    )
    # the kernel's buffers grow by doubling: copy each out at its length, so the caller keeps no unused capacity
    return {name: np.array(values) for name, values in zip(names, arrays, strict=True)}


def floor_pivots(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> pd.DataFrame:
    """Classic floor pivots for each session from the *previous* session's high/low/close.

    P = (H+L+C)/3; R1 = 2P-L; S1 = 2P-H; R2 = P+(H-L); S2 = P-(H-L); R3 = H+2(P-L); S3 = L-2(H-P).
    Row t holds the levels to trade session t (NaN for the first bar).
    """
    h = np.asarray(high, dtype=float)
    lo = np.asarray(low, dtype=float)
    c = np.asarray(close, dtype=float)
    ph = np.concatenate([[np.nan], h[:-1]])
    pl = np.concatenate([[np.nan], lo[:-1]])
    pc = np.concatenate([[np.nan], c[:-1]])
    p = (ph + pl + pc) / 3.0
    rng = ph - pl
    return pd.DataFrame(
        {
            "pivot": p,
            "r1": 2 * p - pl,
            "s1": 2 * p - ph,
            "r2": p + rng,
            "s2": p - rng,
            "r3": ph + 2 * (p - pl),
            "s3": pl - 2 * (ph - p),
        }
    )
