"""Every candlestick pattern's stored direction agrees with TA-Lib's sign (and a doji is neutral)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_assets.analytics.technicals import patterns as pt
from market_assets.analytics.technicals.frame import detect_patterns
from tests.analytics.technicals.talib_candles import TALIB


def _bars(n: int = 3000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.01, n))
    open_ = np.where(rng.random(n) < 0.08, close * (1 + rng.normal(0, 0.0005, n)), open_)  # some dojis
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    ts = pd.date_range("2010-01-04", periods=n, freq="B", tz="UTC")
    return pd.DataFrame({"symbol": "TEST", "ts": ts, "open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.integers(1e5, 1e6, n)})  # fmt: skip


def test_candle_functions_are_all_compared() -> None:
    assert set(TALIB) == set(pt.CANDLE_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(TALIB))
def test_direction_follows_talib_sign(name: str) -> None:
    bars = _bars()
    expected = TALIB[name](*(bars[c].to_numpy() for c in ("open", "high", "low", "close")))
    found = detect_patterns(bars)
    found = found[found["pattern"] == name].set_index("ts")
    hits = np.flatnonzero(expected)
    assert len(found) == len(hits)
    for i in hits:
        direction = found.loc[bars["ts"].iloc[i], "direction"]
        if name == "cdl_doji":
            assert direction == "neutral"
        else:
            assert direction == ("bullish" if expected[i] > 0 else "bearish"), (name, i)


def test_doji_is_neutral_and_frequent_enough_to_matter() -> None:
    found = detect_patterns(_bars())
    doji = found[found["pattern"] == "cdl_doji"]
    assert len(doji) > 20 and set(doji["direction"]) == {"neutral"}
