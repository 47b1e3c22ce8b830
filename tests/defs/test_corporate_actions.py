"""Corporate actions end to end: simulator -> daily_bars -> corporate_actions -> technicals on adjusted bars.

* a split (and dividends) that arrive after the bars and technicals were loaded trigger a recompute of exactly
  the affected symbols, which ends equal to a clean run, and a second recompute does nothing;
* indicators on adjusted prices equal TA-Lib on the simulator's own adjusted closes (an independent oracle);
* an unexplained overnight move is flagged by the WARN check; re-ingesting actions is idempotent.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
import requests
import talib
from dagster import AssetKey

from alpaca_sim.server import SimulatorServer
from market_assets.defs.bars import daily_bars
from market_assets.defs.corporate_actions import adjusted_history, corporate_actions, missing_action_check
from market_assets.defs.technicals import chart_patterns, pivot_levels, support_resistance_levels, technical_indicators
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.databases import truncate_all
from tests.fixtures.pipeline import alpaca_for, run, seed_symbols

CLOCK = datetime(2020, 10, 30, 23, 0, tzinfo=UTC)  # the Friday evening after the window: nothing after it known
UNIVERSE = ["AAPL", "JPM", "MSFT"]  # AAPL splits 4:1 on 2020-08-31, JPM pays quarterly, MSFT has no action
WINDOW = ("2019-10-01", "2020-10-30")
TECHNICALS = [technical_indicators, chart_patterns, support_resistance_levels, pivot_levels]
DERIVED = {
    "market.indicators_daily": "symbol, ts",
    "market.patterns": "symbol, ts, pattern",
    "market.support_resistance": "symbol, as_of, kind, level",
    "market.pivot_points": "symbol, ts",
}


def derived(warehouse: WarehouseResource) -> dict[str, pd.DataFrame]:
    out = {}
    for table, keys in DERIVED.items():
        frame = warehouse.read_frame(f"SELECT * FROM {table} ORDER BY {keys}").drop(columns=["run_id", "computed_at"])
        out[table] = frame.reset_index(drop=True)
    return out


def assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for table in DERIVED:
        x, y = a[table], b[table]
        assert list(x.columns) == list(y.columns) and len(x) == len(y), table
        for column in x.columns:
            if x[column].dtype.kind == "f":
                scale = np.maximum(1.0, np.abs(y[column].to_numpy(dtype=float)))
                diff = np.abs(x[column].to_numpy(dtype=float) - y[column].to_numpy(dtype=float)) / scale
                assert np.isnan(x[column]).equals(np.isnan(y[column])), (table, column)
                assert np.nanmax(diff, initial=0.0) <= 1e-9, (table, column)
            else:
                assert x[column].tolist() == y[column].tolist(), (table, column)


@pytest.fixture(scope="module")
def sim():
    with SimulatorServer(clock=CLOCK) as server:
        yield server


def test_late_split_recomputes_only_the_affected_symbols_and_equals_a_clean_run(
    migrated_warehouse: WarehouseResource, sim: SimulatorServer
) -> None:
    warehouse = migrated_warehouse
    resources = {"warehouse": warehouse, "alpaca": alpaca_for(sim)}
    # clean run: actions known before the technicals are computed
    truncate_all(warehouse)
    seed_symbols(UNIVERSE, warehouse)
    assert run([daily_bars], resources, window=WINDOW).success
    assert run([corporate_actions], resources, window=WINDOW).success
    assert run(TECHNICALS, resources, window=WINDOW).success
    clean = derived(warehouse)
    nothing = run([adjusted_history], resources, partition=WINDOW[1])
    assert nothing.success
    assert nothing.asset_materializations_for_node("adjusted_history")[0].metadata["recomputed_symbols"].value == []

    # late: bars and technicals first (raw = adjusted: no factors yet), the actions arrive afterwards
    truncate_all(warehouse)
    seed_symbols(UNIVERSE, warehouse)
    assert run([daily_bars], resources, window=WINDOW).success
    assert run(TECHNICALS, resources, window=WINDOW).success
    before = derived(warehouse)["market.indicators_daily"]
    aapl = before.loc[before["symbol"] == "AAPL"]
    assert aapl["return_1d"].min() < -0.7  # the raw split reads as a crash
    ingest = run([corporate_actions], resources, window=WINDOW)
    assert ingest.success
    meta = ingest.asset_materializations_for_node("corporate_actions")[0].metadata
    assert meta["symbols_with_changed_factors"].value == ["AAPL", "JPM"]
    recompute = run([adjusted_history], resources, partition=WINDOW[1])
    assert recompute.success
    assert recompute.asset_materializations_for_node("adjusted_history")[0].metadata["recomputed_symbols"].value == [
        "AAPL",
        "JPM",
    ]
    assert_same(derived(warehouse), clean)
    after = derived(warehouse)["market.indicators_daily"]
    assert after.loc[after["symbol"] == "AAPL", "return_1d"].min() > -0.2
    msft = before["symbol"] == "MSFT"
    assert after.loc[msft.to_numpy()].equals(before.loc[msft])  # untouched
    # idempotent: nothing is stale any more, and re-ingesting the same actions changes nothing
    again = run([corporate_actions], resources, window=WINDOW)
    assert again.asset_materializations_for_node("corporate_actions")[0].metadata["new_or_changed"].value == 0
    assert (
        again.asset_materializations_for_node("corporate_actions")[0].metadata["symbols_with_changed_factors"].value
        == []
    )
    second = run([adjusted_history], resources, partition=WINDOW[1])
    assert second.asset_materializations_for_node("adjusted_history")[0].metadata["recomputed_symbols"].value == []

    # indicators equal TA-Lib on the simulator's own adjusted closes (adjustment=all), an independent oracle
    headers = {"APCA-API-KEY-ID": sim.api_key, "APCA-API-SECRET-KEY": sim.secret_key}
    for symbol in ("AAPL", "JPM"):
        body = requests.get(
            f"{sim.base_url}/v2/stocks/bars",
            params={"symbols": symbol, "timeframe": "1Day", "start": WINDOW[0], "end": WINDOW[1],
                    "adjustment": "all", "limit": 10000},
            headers=headers,
            timeout=10,
        ).json()  # fmt: skip
        closes = np.array([b["c"] for b in body["bars"][symbol]])
        mine = after.loc[after["symbol"] == symbol]
        assert len(mine) == len(closes)
        for column, reference in (
            ("sma_20", talib.SMA(closes, 20)),
            ("sma_200", talib.SMA(closes, 200)),
            ("rsi", talib.RSI(closes, 14)),
            ("macd", talib.MACD(closes, 12, 26, 9)[0]),
        ):
            got = mine[column].to_numpy(dtype=float)
            assert np.array_equal(np.isnan(got), np.isnan(reference)), (symbol, column)
            assert np.nanmax(np.abs(got - reference)) <= 1e-9, (symbol, column)
    # the adjusted view equals the simulator's adjusted bars (prices relative 1e-12, volume exact)
    view = warehouse.read_frame(
        "SELECT close, volume FROM market.bars_daily_adjusted WHERE symbol = 'AAPL' ORDER BY ts"
    )
    body = requests.get(
        f"{sim.base_url}/v2/stocks/bars",
        params={"symbols": "AAPL", "timeframe": "1Day", "start": WINDOW[0], "end": WINDOW[1], "adjustment": "all",
                "limit": 10000},
        headers=headers,
        timeout=10,
    ).json()  # fmt: skip
    np.testing.assert_allclose(view["close"], [b["c"] for b in body["bars"]["AAPL"]], rtol=1e-12)
    assert view["volume"].tolist() == [b["v"] for b in body["bars"]["AAPL"]]


def test_missing_action_is_flagged_by_the_warn_check(
    migrated_warehouse: WarehouseResource, sim: SimulatorServer
) -> None:
    warehouse = migrated_warehouse
    truncate_all(warehouse)
    resources = {"warehouse": warehouse, "alpaca": alpaca_for(sim)}
    seed_symbols(["AAPL"], warehouse)
    window = ("2020-08-24", "2020-09-04")
    assert run([daily_bars], resources, window=window).success
    result = run([corporate_actions], resources, window=window)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.asset_key == AssetKey("corporate_actions")
    with warehouse.connect() as conn:
        conn.execute("DELETE FROM market.corporate_actions WHERE type = 'forward_split'")
    flagged = missing_action_check(warehouse, ["AAPL"], date(2020, 8, 24), date(2020, 9, 4))
    assert not flagged.passed and flagged.metadata["flagged"].value == 1
    assert "2020-08-31" in flagged.metadata["moves"].value and "AAPL" in flagged.metadata["moves"].value
    assert flagged.description == "possible missing corporate action"
