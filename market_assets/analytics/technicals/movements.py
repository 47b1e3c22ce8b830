"""Price movements: returns, gaps, true range, realised volatility, 52-week distances, drawdown.

Arrays follow the ``indicators`` convention (1-D series or 2-D ``(symbols, time)``, NaN where
undefined).  Every quantity here depends on a *finite* trailing window, so a partition computed
from ``LOOKBACK`` sessions of history equals the full-history value exactly.  In particular
``drawdown`` is measured from the peak close of the trailing 252 sessions (including today), not
from the all-time peak: the all-time peak would depend on where the stored history begins.
"""

from __future__ import annotations

import numpy as np

from market_assets.analytics.technicals.indicators import (
    _as_2d,
    _restore,
    rolling_max,
    rolling_min,
    rolling_sum,
    trange,
)

__all__ = [
    "RETURN_HORIZONS",
    "distance_from_high",
    "distance_from_low",
    "drawdown",
    "gap_pct",
    "log_returns",
    "realized_volatility",
    "returns",
    "true_range",
]

RETURN_HORIZONS: tuple[int, ...] = (1, 5, 20, 60, 252)
TRADING_DAYS = 252


def _lagged(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if k < x.shape[1]:
        out[:, k:] = x[:, :-k]
    return out


def returns(close: np.ndarray, k: int = 1) -> np.ndarray:
    """Simple return over ``k`` sessions: close[t] / close[t-k] - 1."""
    c, one_d = _as_2d(close)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _restore(c / _lagged(c, k) - 1.0, one_d)


def log_returns(close: np.ndarray, k: int = 1) -> np.ndarray:
    """Log return over ``k`` sessions: ln(close[t] / close[t-k])."""
    c, one_d = _as_2d(close)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _restore(np.log(c / _lagged(c, k)), one_d)


def gap_pct(open_: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Overnight gap: open[t] / close[t-1] - 1 (a fraction, not x100)."""
    o, one_d = _as_2d(open_)
    c, _ = _as_2d(close)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _restore(o / _lagged(c, 1) - 1.0, one_d)


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """True range as ``talib.TRANGE`` (NaN on the first bar)."""
    return trange(high, low, close)


def realized_volatility(close: np.ndarray, n: int = 20, periods_per_year: int = TRADING_DAYS) -> np.ndarray:
    """Annualised realised volatility: sample stdev (ddof=1) of the last ``n`` daily log returns
    times sqrt(periods_per_year).  Needs n+1 closes."""
    lr = log_returns(close, 1)
    r, one_d = _as_2d(lr)
    s1 = rolling_sum(r, n)
    s2 = rolling_sum(r * r, n)
    var = (s2 - s1 * s1 / n) / (n - 1)
    vol = np.sqrt(np.maximum(var, 0.0)) * np.sqrt(periods_per_year)
    return _restore(vol, one_d)


def distance_from_high(close: np.ndarray, high: np.ndarray, n: int = TRADING_DAYS) -> np.ndarray:
    """close / (highest high of the last ``n`` sessions incl. today) - 1 (<= 0); NaN until n bars."""
    c, one_d = _as_2d(close)
    h, _ = _as_2d(high)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _restore(c / rolling_max(h, n) - 1.0, one_d)


def distance_from_low(close: np.ndarray, low: np.ndarray, n: int = TRADING_DAYS) -> np.ndarray:
    """close / (lowest low of the last ``n`` sessions incl. today) - 1 (>= 0); NaN until n bars."""
    c, one_d = _as_2d(close)
    lo, _ = _as_2d(low)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _restore(c / rolling_min(lo, n) - 1.0, one_d)


def drawdown(close: np.ndarray, n: int = TRADING_DAYS) -> np.ndarray:
    """close / (peak close of the trailing ``n`` sessions incl. today) - 1 (<= 0).

    Young series use the peak of what exists (an expanding window until ``n`` bars), which is
    still exact incrementally because the window start is the listing, not the partition.
    Leading NaNs are skipped per row.
    """
    c, one_d = _as_2d(close)
    s, _t = c.shape
    filled = np.where(np.isnan(c), -np.inf, c)
    # pad n-1 bars of -inf in front so the trailing max is defined (expanding) from bar 0
    padded = np.concatenate([np.full((s, n - 1), -np.inf), filled], axis=1)
    peak = rolling_max(padded, n)[:, n - 1 :]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(np.isnan(c), np.nan, c / peak - 1.0)
    return _restore(out, one_d)
