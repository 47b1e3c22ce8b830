"""Hostile network and server faults through the fault proxy (tests/fixtures/proxy.py), each bounded in time.

Before issue 13 a dripping server was never cut off (requests' timeout is per read), a looping page token
looped forever inside alpaca-py's pager, and a truncated or garbled body crashed the call instead of being
retried. Every test here carries a pytest timeout so the old behaviour fails instead of hanging the suite.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import pytest
from alpaca.data.requests import OptionChainRequest

from alpaca_sim.server import SimulatorServer
from market_assets.alpaca.http import PagingError, RateLimiter, ResilientSession
from market_assets.alpaca.options import option_data_client
from market_assets.errors import AlpacaUnavailableError
from tests.fixtures.pipeline import alpaca_for
from tests.fixtures.proxy import FaultProxy, ProxyFaults

CLOCK = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)
START, END = datetime(2026, 6, 1, 4, tzinfo=UTC), datetime(2026, 6, 30, 23, tzinfo=UTC)


@pytest.fixture
def sim():
    with SimulatorServer(clock=CLOCK, enable_ws=False) as server:
        yield server


def url(proxy: FaultProxy) -> str:
    return f"{proxy.url}/v2/stocks/bars?symbols=AAPL&timeframe=1Day&start=2026-06-01&end=2026-06-30"


def session(**kwargs) -> ResilientSession:
    params = {"timeout": 1.0, "max_attempts": 3, "backoff_base": 0.01, "backoff_max": 0.05}
    params.update(kwargs)
    return ResilientSession(RateLimiter(100_000), **params)


def get(s: ResilientSession, sim: SimulatorServer, target: str):
    return s.get(target, headers={"APCA-API-KEY-ID": sim.api_key, "APCA-API-SECRET-KEY": sim.secret_key})


@pytest.mark.timeout(30)
def test_a_dripping_server_is_cut_off_at_the_total_deadline(sim: SimulatorServer, fault_proxy: FaultProxy) -> None:
    fault_proxy.faults = ProxyFaults(drip_seconds=0.2)  # ~2 kB body: 400 s if nobody cuts it off
    s = session(timeout=1.0, max_attempts=2)
    started = time.monotonic()
    with pytest.raises(AlpacaUnavailableError, match="deadline"):
        get(s, sim, url(fault_proxy))
    # two attempts of at most 1 s each (plus one read of 0.2 s of overshoot each) and a tiny backoff
    assert time.monotonic() - started < 3.5


@pytest.mark.timeout(30)
def test_a_delayed_answer_times_out_and_the_retry_heals(sim: SimulatorServer, fault_proxy: FaultProxy) -> None:
    fault_proxy.faults = ProxyFaults(delay_seconds=2.0, times=1)
    s = session(timeout=0.5)
    started = time.monotonic()
    assert len(get(s, sim, url(fault_proxy)).json()["bars"]["AAPL"]) == 21
    assert s.stats.retries == 1 and time.monotonic() - started < 2.0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fault", ["truncate", "invalid_json"])
def test_truncated_and_garbled_bodies_are_retried_like_5xx(
    sim: SimulatorServer, fault_proxy: FaultProxy, fault: str
) -> None:
    fault_proxy.faults = ProxyFaults(**{fault: True}, times=2)
    s = session(max_attempts=3)
    response = get(s, sim, url(fault_proxy))
    assert len(response.json()["bars"]["AAPL"]) == 21
    assert s.stats.retries == 2 and fault_proxy.requests == 3


@pytest.mark.timeout(30)
def test_a_garbled_body_that_never_heals_gives_up_naming_the_fault(
    sim: SimulatorServer, fault_proxy: FaultProxy
) -> None:
    fault_proxy.faults = ProxyFaults(invalid_json=True)
    with pytest.raises(AlpacaUnavailableError, match="invalid JSON"):
        get(session(max_attempts=2), sim, url(fault_proxy))


@pytest.mark.timeout(30)
def test_a_looping_page_token_stops_the_bar_pager(sim: SimulatorServer, fault_proxy: FaultProxy) -> None:
    fault_proxy.faults = ProxyFaults(loop_tokens=True)
    alpaca = alpaca_for(sim, data_url=fault_proxy.url)
    started = time.monotonic()
    with pytest.raises(PagingError, match="repeated the page token"):
        alpaca.fetch_bars(["AAPL"], "1Day", START, END)
    assert fault_proxy.requests == 2 and time.monotonic() - started < 5


@pytest.mark.timeout(30)
def test_a_looping_page_token_stops_inside_the_option_chain_pager(
    sim: SimulatorServer, fault_proxy: FaultProxy
) -> None:
    fault_proxy.faults = ProxyFaults(loop_tokens=True)
    client = option_data_client(alpaca_for(sim, data_url=fault_proxy.url))
    with pytest.raises(PagingError):
        client.get_option_chain(OptionChainRequest(underlying_symbol="AAPL"))
    assert fault_proxy.requests == 2


def test_the_page_cap_stops_a_pager_that_never_repeats() -> None:
    """A server inventing a fresh token on every page is stopped by the cap, not by memory exhaustion."""
    from market_assets.alpaca.http import paged_marketdata

    class Endless:
        calls = 0

        def get(self, path: str, data: dict) -> dict:
            Endless.calls += 1
            return {"bars": {"AAPL": [{"t": Endless.calls}]}, "next_page_token": f"t{Endless.calls}"}

    with pytest.raises(PagingError, match="after 50 pages"):
        paged_marketdata(Endless(), "/v2/stocks/bars", {}, max_pages=50)
    assert Endless.calls == 50


@pytest.mark.timeout(30)
def test_a_dropped_symbol_and_non_finite_values_arrive_as_delivered(
    sim: SimulatorServer, fault_proxy: FaultProxy
) -> None:
    """The transport passes hostile values through untouched; validation (contracts) decides what is kept."""
    fault_proxy.faults = ProxyFaults(drop_symbol="MSFT", non_finite={"AAPL.h": "1e999", "AAPL.v": "1e30"})
    raw = alpaca_for(sim, data_url=fault_proxy.url).fetch_bars(["AAPL", "MSFT"], "1Day", START, END)
    assert set(raw["symbol"]) == {"AAPL"}
    first = raw.iloc[0]
    assert math.isinf(first["h"]) and first["v"] == 1e30


@pytest.mark.timeout(30)
def test_a_server_dripping_its_headers_is_cut_off_at_the_total_deadline(
    sim: SimulatorServer, fault_proxy: FaultProxy
) -> None:
    """Each header byte arrives well within the per-read timeout, so only a total deadline can stop it."""
    fault_proxy.faults = ProxyFaults(drip_headers_seconds=0.2)  # ~150 header bytes: ~30 s if nobody cuts it off
    s = session(timeout=1.0, max_attempts=2)
    started = time.monotonic()
    with pytest.raises(AlpacaUnavailableError, match="deadline"):
        get(s, sim, url(fault_proxy))
    assert time.monotonic() - started < 3.5


@pytest.mark.timeout(30)
def test_dripped_headers_within_the_deadline_are_read_whole(sim: SimulatorServer, fault_proxy: FaultProxy) -> None:
    """The watchdog cuts only late heads: a slow but timely one is parsed as usual (no spurious cut)."""
    fault_proxy.faults = ProxyFaults(drip_headers_seconds=0.002, times=1)
    s = session(timeout=10.0)
    assert len(get(s, sim, url(fault_proxy)).json()["bars"]["AAPL"]) == 21
    assert s.stats.retries == 0


@pytest.mark.timeout(60)
def test_a_batch_failing_for_one_symbol_isolates_that_symbol_only(
    sim: SimulatorServer, fault_proxy: FaultProxy
) -> None:
    """Before: one failing request of a batch (up to 100+ symbols) failed every symbol of the run (item 9)."""
    symbols = ["AAPL", "AMZN", "GOOG", "KO", "MSFT", "NVDA", "PEP", "SPY"]
    fault_proxy.faults = ProxyFaults(fail_symbol="MSFT")
    alpaca = alpaca_for(sim, data_url=fault_proxy.url, max_attempts=2)
    raw = alpaca.fetch_bars(symbols, "1Day", START, END)
    assert set(raw["symbol"]) == set(symbols) - {"MSFT"}
    assert (raw.groupby("symbol").size() == 21).all()  # the good symbols whole, nothing duplicated
    assert list(raw.attrs["failed_symbols"]) == ["MSFT"] and "500" in raw.attrs["failed_symbols"]["MSFT"]
    # bisection: the batch, then halves down to MSFT (~log2(8) failing requests), not one request per symbol
    assert fault_proxy.requests <= 2 * (1 + 3) + 4


@pytest.mark.timeout(60)
def test_an_outage_is_not_mistaken_for_bad_symbols(sim: SimulatorServer, fault_proxy: FaultProxy) -> None:
    """Every request failing raises as before (bounded), instead of 'isolating' every symbol one by one."""
    symbols = ["".join(chr(65 + (i // 26) % 26) + chr(65 + i % 26)) + "X" for i in range(64)]
    fault_proxy.faults = ProxyFaults(truncate=True)
    alpaca = alpaca_for(sim, data_url=fault_proxy.url, max_attempts=1)
    with pytest.raises(AlpacaUnavailableError):
        alpaca.fetch_bars(symbols, "1Day", START, END)
    assert fault_proxy.requests <= 8  # log2(64) + 2 failures, not 127
