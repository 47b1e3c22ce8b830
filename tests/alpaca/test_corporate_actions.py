"""Corporate-action ingestion through alpaca-py against the simulator: every page (limit=None), every ex-date of
the bars' window although its process date is later, retried like bars."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from alpaca_sim.server import FaultConfig, SimulatorServer
from market_assets.alpaca.corporate_actions import fetch_corporate_actions, request_window
from market_assets.contracts.corporate_actions import coerce_actions, split_actions
from market_assets.errors import InvalidSymbolsError
from tests.fixtures.pipeline import alpaca_for

CLOCK = datetime(2025, 1, 15, 23, 0, tzinfo=UTC)


@pytest.fixture
def sim():
    with SimulatorServer(clock=CLOCK) as server:
        yield server


def test_pages_through_everything_and_reaches_past_the_window(sim: SimulatorServer) -> None:
    sim.corporate_actions_page_size = 3  # alpaca-py asks for 1,000; the server serves 3 a page
    sim.faults = FaultConfig(error_rate=0.4, seed=3)
    resource = alpaca_for(sim)
    bars_start, bars_end = date(2024, 1, 2), date(2024, 12, 31)
    start, end = request_window(bars_start, bars_end)
    symbols = ["AAPL", "JPM", "KO", "NVDA", "META", "WMT"]
    raw = fetch_corporate_actions(resource, symbols, start, end)
    split = split_actions(coerce_actions(raw))
    assert split.rejected.empty
    got = split.valid
    assert len(got) >= 20 and resource.stats.requests >= len(got) // 3 and resource.stats.retries > 0
    model = sim.model
    expected = {
        (a.symbol, a.kind, a.ex_date)
        for s in symbols
        for a in model.corporate_actions(s)
        if bars_start <= a.ex_date <= bars_end and a.kind != "name_change"
    }
    fetched = {(r.symbol, r.type, r.ex_date) for r in got.itertuples() if bars_start <= r.ex_date <= bars_end}
    assert fetched == expected
    late = [r for r in got.itertuples() if r.ex_date <= bars_end < r.process_date]
    assert late, "a December ex-date paid in January must be fetched"
    nvda = got.loc[(got["symbol"] == "NVDA") & (got["type"] == "forward_split")]
    assert nvda[["new_rate", "old_rate"]].values.tolist() == [[10.0, 1.0]]
    assert got["id"].is_unique


def test_without_limit_none_alpaca_py_would_cap_the_total(sim: SimulatorServer) -> None:
    """The pitfall this client avoids: alpaca-py's default limit=1000 caps the TOTAL; with a small page size on
    the server a capped request stops early, ours does not."""
    from alpaca.data.requests import CorporateActionsRequest

    from market_assets.alpaca.corporate_actions import corporate_actions_client

    sim.corporate_actions_page_size = 5
    client = corporate_actions_client(alpaca_for(sim))
    capped = client.get_corporate_actions(
        CorporateActionsRequest(symbols=["JPM", "KO"], start=date(2016, 1, 1), end=date(2024, 12, 31), limit=12)
    )
    assert sum(len(v) for v in capped.values()) == 12
    ours = fetch_corporate_actions(alpaca_for(sim), ["JPM", "KO"], date(2016, 1, 1), date(2024, 12, 31))
    assert len(ours) > 50


def test_bad_symbols_fail_before_any_request(sim: SimulatorServer) -> None:
    with pytest.raises(InvalidSymbolsError):
        fetch_corporate_actions(alpaca_for(sim), ["AAPL", "not ok"], date(2024, 1, 1), date(2024, 2, 1))
    assert sim.stats.total == 0
