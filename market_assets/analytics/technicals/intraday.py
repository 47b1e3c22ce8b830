"""Indicators on one session's minute closes: RSI(14), MACD(12,26,9), SMA(20/50).

Indicators restart every session on purpose: a recursion across the overnight gap would mix two
regimes, and per-session values can be recomputed from that session's bars alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_assets.analytics.technicals.indicators import macd, rsi, smas

INTRADAY_INDICATOR_COLUMNS = (
    "symbol",
    "ts",
    "session",
    "close",
    "rsi",
    "macd",
    "macd_signal",
    "macd_hist",
    "sma_20",
    "sma_50",
)


def intraday_indicator_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """RSI(14), MACD(12,26,9), SMA(20/50) on each symbol's minute closes of one session.

    Symbols have different numbers of bars (no trades, no bar), so each row of the 2-D block is
    right-aligned and left-padded with NaN, which the analytics treat as "the series starts
    later": exactly TA-Lib applied to that symbol's own bars.
    """
    if bars.empty:
        return pd.DataFrame(columns=list(INTRADAY_INDICATOR_COLUMNS))
    bars = bars.sort_values(["symbol", "ts"])
    groups = [g for _, g in bars.groupby("symbol", sort=True)]
    width = max(len(g) for g in groups)
    block = np.full((len(groups), width), np.nan)
    for i, g in enumerate(groups):
        block[i, width - len(g) :] = g["close"].to_numpy(dtype=np.float64)
    rsi_v = rsi(block, 14)
    macd_v, signal_v, hist_v = macd(block, 12, 26, 9)
    sma_v = smas(block, (20, 50))
    parts = []
    for i, g in enumerate(groups):
        cols = slice(width - len(g), width)
        parts.append(
            pd.DataFrame(
                {
                    "symbol": g["symbol"].to_numpy(),
                    "ts": g["ts"].to_numpy(),
                    "session": g["session"].to_numpy(),
                    "close": g["close"].to_numpy(),
                    "rsi": rsi_v[i, cols],
                    "macd": macd_v[i, cols],
                    "macd_signal": signal_v[i, cols],
                    "macd_hist": hist_v[i, cols],
                    "sma_20": sma_v[20][i, cols],
                    "sma_50": sma_v[50][i, cols],
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame
