"""Volume analytics: moving averages, relative volume, z-scores, OBV, A/D and daily VWAP.

Arrays follow the ``indicators`` convention (1-D series or 2-D ``(symbols, time)``).

Choices, and why:

* **Relative volume** divides today's volume by the SMA-20 of the *previous* 20 sessions, so a
  spike does not dilute its own baseline (with today in the average, a 10x day could never read
  more than ~7x).  The z-score uses the same previous-20 baseline (mean and sample stdev) for the
  same reason, and ``volume_spike`` is ``z >= threshold``.
* **OBV / A/D** are cumulative sums from the first bar given (TA-Lib's definition), so on their
  own they depend on where the window starts.  ``anchor`` makes them exact incrementally: pass the
  stored value at a bar inside the window and the series is shifted so that it matches there;
  the differences between bars are window independent, so the result equals the full-history
  computation bit for bit for integer volumes (and to rounding otherwise).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numba import njit

from market_assets.analytics.technicals.indicators import _as_2d, _restore, rolling_sum, sma

__all__ = [
    "ad",
    "daily_vwap",
    "obv",
    "relative_volume",
    "volume_sma",
    "volume_spike",
    "volume_zscore",
]


def volume_sma(volume: np.ndarray, n: int = 20) -> np.ndarray:
    """SMA of volume over ``n`` sessions including today (TA-Lib SMA semantics)."""
    return sma(volume, n)


def _shift_right(x: np.ndarray, k: int = 1) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[:, k:] = x[:, :-k]
    return out


def relative_volume(volume: np.ndarray, n: int = 20) -> np.ndarray:
    """Volume / mean volume of the previous ``n`` sessions (NaN until ``n`` prior sessions)."""
    v, one_d = _as_2d(volume)
    base = _shift_right(sma(v, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(base > 0, v / base, np.nan)
    return _restore(out, one_d)


def volume_zscore(volume: np.ndarray, n: int = 20) -> np.ndarray:
    """(volume - mean) / sample stdev of the previous ``n`` sessions; NaN when the stdev is 0."""
    v, one_d = _as_2d(volume)
    s1 = rolling_sum(v, n)
    # second moment about the previous-window mean: shift-invariant, so anchor at the row start
    anchor = np.nan_to_num(v[:, :1])
    dev = v - anchor
    m1 = rolling_sum(dev, n) / n
    m2 = rolling_sum(dev * dev, n) / n
    var = np.maximum(m2 - m1 * m1, 0.0) * n / (n - 1)
    mean_prev = _shift_right(s1 / n)
    std_prev = _shift_right(np.sqrt(var))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(std_prev > 0, (v - mean_prev) / std_prev, np.nan)
    return _restore(z, one_d)


def volume_spike(volume: np.ndarray, n: int = 20, threshold: float = 2.0) -> np.ndarray:
    """Boolean spike flag: previous-window z-score >= ``threshold`` (False where undefined)."""
    z = volume_zscore(volume, n)
    with np.errstate(invalid="ignore"):
        return np.asarray(z >= threshold)


def _anchor_shift(series: np.ndarray, anchor_index: np.ndarray | None, anchor_value: np.ndarray | None) -> None:
    if anchor_index is None or anchor_value is None:
        return
    idx = np.asarray(anchor_index, dtype=np.int64).reshape(-1)
    val = np.asarray(anchor_value, dtype=np.float64).reshape(-1)
    rows = np.arange(series.shape[0])
    ok = (idx >= 0) & np.isfinite(val)
    delta = np.zeros(series.shape[0])
    delta[ok] = val[ok] - series[rows[ok], idx[ok]]
    series += delta[:, None]


@njit(cache=True, fastmath=False)
def _obv_rows(c: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """One sequential pass per row (what TA-Lib does), instead of building a step array and
    cumulative-summing it; the additions happen in the same order, so values are identical."""
    for r in range(c.shape[0]):
        cr = c[r]
        vr = v[r]
        o = out[r]
        t_len = cr.shape[0]
        start = 0
        while start < t_len and (math.isnan(cr[start]) or math.isnan(vr[start])):
            o[start] = np.nan
            start += 1
        if start == t_len:
            continue
        acc = vr[start]
        o[start] = acc
        finite = True
        for t in range(start + 1, t_len):
            finite = finite and math.isfinite(vr[t])
        if finite:
            # Branch-free: the direction of a close is a coin flip, and a mispredicted branch per
            # bar costs ~7x this loop.  acc + v*(+-1) is exactly acc +- v, and acc + v*0.0 is
            # acc; a NaN change (a gap in close) gives 0.0, so the volume is carried.
            for t in range(start + 1, t_len):
                dc = cr[t] - cr[t - 1]
                sign = (1.0 if dc > 0.0 else 0.0) - (1.0 if dc < 0.0 else 0.0)
                acc += vr[t] * sign
                o[t] = acc
        else:  # NaN/inf volume: v*0.0 would not be 0.0, so keep the explicit rule
            for t in range(start + 1, t_len):
                dc = cr[t] - cr[t - 1]
                if dc > 0.0:
                    acc += vr[t]
                elif dc < 0.0:
                    acc -= vr[t]
                o[t] = acc


def obv(
    close: np.ndarray,
    volume: np.ndarray,
    anchor_index: np.ndarray | None = None,
    anchor_value: np.ndarray | None = None,
) -> np.ndarray:
    """On-balance volume as ``talib.OBV``: starts at the first bar's volume, then adds volume on an
    up-close, subtracts it on a down-close, and carries it on an unchanged close.

    ``anchor_index``/``anchor_value`` (one per row) shift each row so that ``obv[anchor_index]``
    equals the stored value, which makes a windowed computation continue a stored series.
    Leading NaNs start the series at the first finite bar, like the talib wrapper.
    """
    c, one_d = _as_2d(close)
    v, _ = _as_2d(volume)
    out = np.empty(c.shape)
    _obv_rows(c, v, out)
    _anchor_shift(out, anchor_index, anchor_value)
    return _restore(out, one_d)


def ad(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    anchor_index: np.ndarray | None = None,
    anchor_value: np.ndarray | None = None,
) -> np.ndarray:
    """Chaikin accumulation/distribution line as ``talib.AD``.

    Each bar adds ``((close-low) - (high-close)) / (high-low) * volume`` (nothing when high ==
    low).  The running sum is taken sequentially with the same per-bar expression as TA-Lib, so
    the values agree bit for bit.  Anchoring works as for :func:`obv`.
    """
    h, one_d = _as_2d(high)
    lo, _ = _as_2d(low)
    c, _ = _as_2d(close)
    v, _ = _as_2d(volume)
    rng = h - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(rng > 0.0, (((c - lo) - (h - c)) / rng) * v, 0.0)
    bad = np.isnan(h) | np.isnan(lo) | np.isnan(c) | np.isnan(v)
    valid = ~bad
    t = c.shape[1]
    starts = np.where(valid.any(axis=1), valid.argmax(axis=1), t)
    col = np.arange(t)[None, :]
    before = col < starts[:, None]
    term = np.where(before, 0.0, term)
    out = np.cumsum(term, axis=1)
    out[before] = np.nan
    _anchor_shift(out, anchor_index, anchor_value)
    return _restore(out, one_d)


def daily_vwap(minute_bars: pd.DataFrame, tz: str = "America/New_York") -> pd.DataFrame:
    """Daily VWAP from minute bars: sum(vwap_i * volume_i) / sum(volume_i) per symbol and session.

    A minute bar without a ``vwap`` (NaN or missing column) contributes its typical price
    (high+low+close)/3.  Sessions are calendar dates in ``tz`` (the exchange's time zone), so a
    UTC timestamp is assigned to the trading day it belongs to.  Days with zero volume get NaN.
    Returns ``symbol, session, vwap, volume``.
    """
    if minute_bars.empty:
        return pd.DataFrame(
            {
                "symbol": pd.Series(dtype=object),
                "session": pd.Series(dtype="datetime64[ns]"),
                "vwap": pd.Series(dtype=float),
                "volume": pd.Series(dtype=float),
            }
        )
    df = minute_bars
    typical = (df["high"].astype(float) + df["low"].astype(float) + df["close"].astype(float)) / 3.0
    price = df["vwap"].astype(float).where(df["vwap"].notna(), typical) if "vwap" in df else typical
    ts = pd.to_datetime(df["ts"], utc=True).dt.tz_convert(tz)
    work = pd.DataFrame(
        {
            "symbol": df["symbol"].to_numpy(),
            "session": ts.dt.tz_localize(None).dt.normalize().to_numpy(),
            "pv": (price * df["volume"].astype(float)).to_numpy(),
            "volume": df["volume"].astype(float).to_numpy(),
        }
    )
    g = work.groupby(["symbol", "session"], sort=True, as_index=False)[["pv", "volume"]].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        g["vwap"] = np.where(g["volume"] > 0, g["pv"] / g["volume"], np.nan)
    return g[["symbol", "session", "vwap", "volume"]]
