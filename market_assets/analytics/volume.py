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

import numpy as np
import pandas as pd

from market_assets.analytics.indicators import _as_2d, _restore, rolling_sum, sma

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
    s, t = c.shape
    out = np.full((s, t), np.nan)
    valid = ~(np.isnan(c) | np.isnan(v))
    starts = np.where(valid.any(axis=1), valid.argmax(axis=1), t)
    step = np.zeros((s, t))
    if t > 1:
        dc = c[:, 1:] - c[:, :-1]
        step[:, 1:] = np.where(dc > 0, v[:, 1:], np.where(dc < 0, -v[:, 1:], 0.0))
    col = np.arange(t)[None, :]
    first = col == starts[:, None]
    step = np.where(first, v, np.where(col > starts[:, None], step, 0.0))
    acc = np.cumsum(step, axis=1)
    out = np.where(col >= starts[:, None], acc, np.nan)
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
            {"symbol": pd.Series(dtype=object), "session": pd.Series(dtype="datetime64[ns]"),
             "vwap": pd.Series(dtype=float), "volume": pd.Series(dtype=float)}
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
