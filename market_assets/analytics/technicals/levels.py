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

__all__ = ["Swing", "cluster_levels", "floor_pivots", "swing_points"]


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
