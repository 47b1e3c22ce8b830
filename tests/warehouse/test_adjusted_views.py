"""The adjusted views in PostgreSQL equal the pure adjustment (analytics.adjustments.adjust_bars) bit for bit,
on real data: AAPL 2020 raw bars plus the 4:1 split and the 0.82 dividend."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from market_assets.analytics import adjustments as adj
from market_assets.warehouse.resource import WarehouseResource
from market_assets.warehouse.tables import BARS_DAILY
from tests.fixtures.real_aapl import ALL_DATES, REAL, aapl_2020, store_aapl_2020

pytestmark = pytest.mark.skipif(not REAL.exists(), reason="real data files not present")


def test_views_equal_pure_adjustment_and_the_split_adjusted_file(warehouse: WarehouseResource) -> None:
    raw, factors = store_aapl_2020(warehouse)
    cols = "symbol, session, open, high, low, close, volume"
    for view, mode in (("market.bars_daily_adjusted", "all"), ("market.bars_daily_split_adjusted", "split")):
        got = warehouse.read_frame(f"SELECT {cols} FROM {view} ORDER BY ts")
        want = adj.adjust_bars(raw, factors, mode=mode)
        for c in ("open", "high", "low", "close"):
            assert got[c].to_numpy().tolist() == want[c].to_numpy().tolist(), (view, c)  # bit for bit
        assert got["volume"].tolist() == want["volume"].tolist()
    split = warehouse.read_frame(f"SELECT {cols} FROM market.bars_daily_split_adjusted ORDER BY ts")
    expected = aapl_2020("aapl_2020_split_adjusted.csv")
    assert np.abs(split["close"] - expected["close"]).max() <= 0.5e-4 + 1e-12  # the file has 4 decimals
    assert split["volume"].tolist() == expected["volume"].tolist()
    assert warehouse.scalar(
        "SELECT close FROM market.bars_daily_split_adjusted WHERE symbol = 'AAPL' AND session = '2020-08-28'"
    ) == pytest.approx(124.8075, rel=1e-12)
    raw_back = warehouse.read_frame("SELECT close FROM market.bars_daily ORDER BY ts")
    assert raw_back["close"].tolist() == raw["close"].tolist()  # raw stays raw


def test_renamed_history_is_reachable_under_the_new_symbol(warehouse: WarehouseResource) -> None:
    """FB -> META on 2022-06-09: FB's bars before the change are listed under META too, adjusted by META's
    later split (propagated to the old symbol's factors)."""
    from market_assets.defs.corporate_actions import refresh_factors
    from market_assets.warehouse.tables import CORPORATE_ACTIONS

    def bars(symbol: str, days: list[str], close: float) -> pd.DataFrame:
        ts = pd.to_datetime(days).tz_localize("America/New_York").tz_convert("UTC")
        return pd.DataFrame({"symbol": symbol, "ts": ts, "session": [pd.Timestamp(d).date() for d in days],
                             "open": close, "high": close, "low": close, "close": close, "volume": 100,
                             "trade_count": pd.array([None] * len(days), dtype="Int64"), "vwap": np.nan,
                             "feed": "sip", "run_id": "t"})  # fmt: skip

    warehouse.replace_partition(BARS_DAILY, bars("FB", ["2022-06-07", "2022-06-08"], 200.0), sessions=ALL_DATES,
                                symbols=["FB"])  # fmt: skip
    warehouse.replace_partition(BARS_DAILY, bars("META", ["2022-06-09", "2022-06-10", "2022-06-13"], 100.0),
                                sessions=ALL_DATES, symbols=["META"])  # fmt: skip
    base = {c: None for c in CORPORATE_ACTIONS.column_names}
    actions = pd.DataFrame([
        base | {"id": "r", "type": "name_change", "symbol": "FB", "new_symbol": "META", "ex_date": date(2022, 6, 9),
                "process_date": date(2022, 6, 9), "payload": "{}"},
        base | {"id": "s", "type": "forward_split", "symbol": "META", "ex_date": date(2022, 6, 13),
                "process_date": date(2022, 6, 13), "new_rate": 2.0, "old_rate": 1.0, "payload": "{}"},
    ])  # fmt: skip
    warehouse.upsert(CORPORATE_ACTIONS, actions)
    changed, _ = refresh_factors(warehouse, ["FB", "META"], "t")
    assert changed == ["FB", "META"]
    lineage = warehouse.read_frame(
        "SELECT listed_as, session, close FROM market.bars_daily_adjusted_lineage WHERE symbol = 'META' ORDER BY ts"
    )
    assert lineage["listed_as"].tolist() == ["FB", "FB", "META", "META", "META"]
    assert lineage["close"].tolist() == [100.0, 100.0, 50.0, 50.0, 100.0]  # META's 2:1 split reaches FB's bars
    assert warehouse.read_frame("SELECT * FROM market.symbol_renames")["new_symbol"].tolist() == ["META"]


def test_a_run_refreshes_the_factors_its_bars_and_actions_can_change_and_no_others(
    warehouse: WarehouseResource,
) -> None:
    """`factor_symbols`: a symbol whose actions all precede the run's bars is left alone (O(new data), not
    O(every action)); an ex-date after the last bar before the run, an action the run stored, or a rename linking
    to such a symbol brings it in; and the refreshed factors equal the textbook table on the bars as stored."""
    from market_assets.defs.corporate_actions import refresh_factors
    from market_assets.warehouse.queries.corporate_actions import factor_symbols
    from market_assets.warehouse.tables import CORPORATE_ACTIONS

    raw = aapl_2020("aapl_2020_raw.csv")
    warehouse.replace_partition(BARS_DAILY, raw, sessions=ALL_DATES, symbols=["AAPL"])
    renamed = raw["session"] >= date(2020, 6, 1)  # FB until May 2020, META from June
    warehouse.replace_partition(BARS_DAILY, raw.loc[~renamed].assign(symbol="FB"), sessions=ALL_DATES, symbols=["FB"])
    warehouse.replace_partition(
        BARS_DAILY, raw.loc[renamed].assign(symbol="META"), sessions=ALL_DATES, symbols=["META"]
    )
    base = {c: None for c in CORPORATE_ACTIONS.column_names} | {"payload": "{}", "run_id": "earlier"}
    actions = pd.DataFrame([
        base | {"id": "s", "type": "forward_split", "symbol": "AAPL", "ex_date": date(2020, 8, 31),
                "process_date": date(2020, 8, 31), "new_rate": 4.0, "old_rate": 1.0},
        base | {"id": "d", "type": "cash_dividend", "symbol": "AAPL", "ex_date": date(2020, 8, 7),
                "process_date": date(2020, 8, 7), "cash_amount": 0.82},
        base | {"id": "r", "type": "name_change", "symbol": "FB", "new_symbol": "META", "ex_date": date(2020, 6, 1),
                "process_date": date(2020, 6, 1)},
    ])  # fmt: skip
    warehouse.upsert(CORPORATE_ACTIONS, actions)
    universe = ["AAPL", "FB", "META", "MSFT"]

    def window(first: date, last: date, run_id: str = "now") -> list[str]:
        return factor_symbols(warehouse, universe, first, last, run_id)

    assert window(date(2020, 9, 1), date(2020, 9, 30)) == []  # every action before the bars
    assert window(date(2020, 8, 31), date(2020, 8, 31)) == ["AAPL"]  # the split's own session
    assert window(date(2020, 8, 28), date(2020, 8, 28)) == ["AAPL"]  # the close before it
    assert window(date(2020, 8, 10), date(2020, 8, 27)) == []  # between the dividend and the split
    assert window(date(2020, 8, 3), date(2020, 8, 10)) == ["AAPL"]
    assert window(date(2020, 5, 1), date(2020, 12, 31)) == ["AAPL"]
    # an announced dividend no bar has reached yet: no factor before or after any run, so no refresh
    msft = raw.assign(symbol="MSFT")
    warehouse.replace_partition(BARS_DAILY, msft, sessions=ALL_DATES, symbols=["MSFT"])
    announced = base | {"id": "a", "type": "cash_dividend", "symbol": "MSFT", "ex_date": date(2021, 2, 5),
                        "process_date": date(2021, 2, 5), "cash_amount": 0.5}  # fmt: skip
    warehouse.upsert(CORPORATE_ACTIONS, pd.DataFrame([announced]))
    assert window(date(2020, 12, 31), date(2020, 12, 31)) == []
    assert window(date(2020, 12, 31), date(2020, 12, 31), "earlier") == ["AAPL", "FB", "META", "MSFT"]  # stored
    dividend = base | {"id": "m", "type": "cash_dividend", "symbol": "META", "ex_date": date(2020, 9, 1),
                       "process_date": date(2020, 9, 1), "cash_amount": 1.0, "run_id": "now"}  # fmt: skip
    warehouse.upsert(CORPORATE_ACTIONS, pd.DataFrame([dividend]))
    # stored by this run: its symbol, and FB through the rename
    assert window(date(2020, 12, 1), date(2020, 12, 1)) == ["FB", "META"]

    # a corrected close on the day before the split: the run over that session refreshes AAPL's factors
    fixed = raw.loc[raw["session"] == date(2020, 8, 28)].assign(close=500.0)
    warehouse.replace_partition(BARS_DAILY, fixed, sessions=(date(2020, 8, 28),) * 2, symbols=["AAPL"])
    refreshed = window(date(2020, 8, 28), date(2020, 8, 28))
    assert refreshed == ["AAPL", "FB", "META"]
    refresh_factors(warehouse, refreshed, "now")
    stored = warehouse.read_frame(
        "SELECT ex_date, split_factor, dividend_factor, cum_split_factor, cum_dividend_factor, prev_close"
        " FROM market.adjustment_factors WHERE symbol = 'AAPL' ORDER BY ex_date"
    )
    bars = raw.assign(close=np.where(raw["session"] == date(2020, 8, 28), 500.0, raw["close"]))
    want = adj.factor_table(actions.loc[actions["symbol"] == "AAPL"], bars[["symbol", "session", "close"]])
    assert stored["prev_close"].tolist() == want["prev_close"].tolist() and 500.0 in stored["prev_close"].tolist()
    for c in ("split_factor", "dividend_factor", "cum_split_factor", "cum_dividend_factor"):
        assert stored[c].tolist() == want[c].tolist(), c
