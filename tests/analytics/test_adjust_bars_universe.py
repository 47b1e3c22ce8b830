"""`adjust_bars` over many symbols at once equals the one-symbol definition (the factors of the first ex-date
strictly after each session, 1 after the last, applied by `adjust_prices`).

Hostile on purpose: rows of several symbols interleaved and unsorted, a symbol without factors, factors of a
symbol without bars, bars on, before and after ex-dates, dates far in the past and a reverse split leaving
fractional volumes (rounded half to even, as PostgreSQL's round(float8) in the views).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_assets.analytics import adjustments as adj


def _one_symbol(bars: pd.DataFrame, factors: pd.DataFrame, mode: adj.Mode) -> pd.DataFrame:
    out = bars.copy()
    for symbol, rows in bars.groupby("symbol"):
        f = factors[factors["symbol"] == symbol].sort_values("ex_date")
        sessions = pd.to_datetime(rows["session"]).to_numpy().astype("datetime64[D]")
        after = np.searchsorted(pd.to_datetime(f["ex_date"]).to_numpy().astype("datetime64[D]"), sessions, "right")
        split, vol, div = (
            np.append(f[c].to_numpy(float), 1.0)[after]
            for c in ("cum_split_factor", "cum_volume_factor", "cum_dividend_factor")
        )
        prices = rows[["open", "close", "vwap"]].to_numpy(float)
        prices, volume = adj.adjust_prices(prices, rows["volume"].to_numpy(float), split, vol, div, mode)
        out.loc[rows.index, ["open", "close", "vwap"]] = prices
        out.loc[rows.index, "volume"] = volume.astype(np.int64)
    return out


@pytest.mark.parametrize("mode", ["all", "split", "raw"])
def test_every_symbol_at_once_equals_one_symbol_at_a_time(mode: adj.Mode) -> None:
    rng = np.random.default_rng(3)
    days = pd.date_range("1998-01-02", periods=400, freq="B").date
    symbols = ["AAA", "BRK.B", "ZZ", "NOF"]  # NOF has no factors
    bars = pd.DataFrame(
        [(s, d, *rng.uniform(5, 500, 3), int(rng.integers(0, 10_000_001))) for s in symbols for d in days],
        columns=["symbol", "session", "open", "close", "vwap", "volume"],
    ).sample(frac=1.0, random_state=1)  # interleaved, unsorted
    bars.loc[bars.index[::7], "vwap"] = np.nan
    ex = [days[0], days[57], days[58], days[200], days[399]]  # on the first bar, adjacent, and on the last bar
    factors = pd.DataFrame(
        [(s, e, rng.uniform(0.1, 4), rng.uniform(0.1, 10.0), rng.uniform(0.9, 1.0))
         for s in ("AAA", "BRK.B", "ZZ", "GONE") for e in ex],
        columns=["symbol", "ex_date", "cum_split_factor", "cum_volume_factor", "cum_dividend_factor"],
    ).sample(frac=1.0, random_state=2)  # fmt: skip
    factors.loc[factors["symbol"] == "ZZ", "cum_volume_factor"] = 0.1  # 1:10 reverse split: fractional volumes
    got = adj.adjust_bars(bars, factors, mode)
    want = _one_symbol(bars, factors, mode)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    if mode != "raw":
        changed = got["close"] != bars["close"]
        assert changed[bars["symbol"] != "NOF"].any() and not changed[bars["symbol"] == "NOF"].any()


def test_no_factors_or_no_bars_leave_the_bars_as_they_are() -> None:
    bars = pd.DataFrame({"symbol": ["A"], "session": [pd.Timestamp("2020-01-02").date()], "open": [1.0],
                         "close": [2.0], "volume": [3]})  # fmt: skip
    empty = pd.DataFrame(columns=["symbol", "ex_date", "cum_split_factor", "cum_volume_factor", "cum_dividend_factor"])
    pd.testing.assert_frame_equal(adj.adjust_bars(bars, empty), bars)
    assert adj.adjust_bars(bars.iloc[:0], empty).empty
    with pytest.raises(ValueError, match="adjustment mode"):
        adj.adjust_bars(bars, empty, "dividends")  # type: ignore[arg-type]
