"""The HTTP layer under alpaca-py, against the simulator's real sockets: rate-limit resets are
honoured, 5xx/timeouts/drops are retried with backoff, auth failures are not retried."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime

import pytest

from alpaca_sim.server import FaultConfig, SimulatorServer
from market_assets.alpaca.http import (
    AlpacaAuthError,
    AlpacaUnavailableError,
    RateLimiter,
    ResilientSession,
)

CLOCK = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)


@pytest.fixture
def sim():
    with SimulatorServer(clock=CLOCK, enable_ws=False) as server:
        yield server


def bars_url(sim: SimulatorServer) -> str:
    return f"{sim.base_url}/v2/stocks/bars?symbols=AAPL&timeframe=1Day&start=2026-06-01&end=2026-06-30"


def headers(sim: SimulatorServer) -> dict[str, str]:
    return {"APCA-API-KEY-ID": sim.api_key, "APCA-API-SECRET-KEY": sim.secret_key}


class SleepRecorder:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def session(sleep: SleepRecorder, **kwargs) -> ResilientSession:
    params = {"timeout": 2.0, "max_attempts": 4, "backoff_base": 0.01, "backoff_max": 5.0, "sleep": sleep}
    params.update(kwargs)
    return ResilientSession(RateLimiter(100_000), **params)


def test_429_waits_until_the_advertised_reset(sim: SimulatorServer) -> None:
    sim.faults = FaultConfig(rate_limit_every=1, rate_limit_reset_seconds=2)
    sleep = SleepRecorder()
    s = session(sleep, max_attempts=2)
    with pytest.raises(AlpacaUnavailableError, match="HTTP 429"):
        s.get(bars_url(sim), headers=headers(sim))
    # the reset is 2 s ahead (whole epoch seconds): the wait follows it, not a fixed 3 s or a tiny backoff
    assert len(sleep.calls) == 1 and 1.0 <= sleep.calls[0] <= 2.3, sleep.calls


def test_5xx_and_dropped_connections_are_retried_until_success(sim: SimulatorServer) -> None:
    sim.faults = FaultConfig(seed=5, error_rate=0.5, drop_every=3)
    sleep = SleepRecorder()
    s = session(sleep, max_attempts=12)
    for _ in range(10):
        response = s.get(bars_url(sim), headers=headers(sim))
        assert response.status_code == 200 and len(response.json()["bars"]["AAPL"]) == 21
    faults = sim.stats.snapshot()["faults"]
    assert faults.get("drop", 0) > 0 and any(k.startswith("http_5") for k in faults)
    assert s.stats.retries == len(sleep.calls) > 0
    # exponential backoff with full jitter: never above base * 2**(attempt-1)
    assert max(sleep.calls) <= 0.01 * 2**11


def test_slow_responses_time_out_and_are_retried(sim: SimulatorServer) -> None:
    sim.faults = FaultConfig(slow_every=2, slow_seconds=1.5)
    s = session(SleepRecorder(), timeout=0.5, max_attempts=3)
    started = time.monotonic()
    for _ in range(3):
        assert s.get(bars_url(sim), headers=headers(sim)).status_code == 200
    assert time.monotonic() - started < 6
    assert sim.stats.snapshot()["faults"].get("slow", 0) >= 1


def test_wrong_keys_raise_once_without_retrying(sim: SimulatorServer) -> None:
    sleep = SleepRecorder()
    s = session(sleep)
    with pytest.raises(AlpacaAuthError, match="HTTP 401") as info:
        s.get(bars_url(sim), headers={"APCA-API-KEY-ID": "PKNOPE", "APCA-API-SECRET-KEY": "sekret"})
    assert "sekret" not in str(info.value) and "PKNOPE" not in str(info.value)
    assert sleep.calls == [] and sim.stats.snapshot()["total"] == 1


def test_forbidden_is_an_auth_error_too(sim: SimulatorServer) -> None:
    sim.faults = FaultConfig(forbidden=True)
    with pytest.raises(AlpacaAuthError, match="HTTP 403"):
        session(SleepRecorder()).get(bars_url(sim), headers=headers(sim))


def test_unreachable_server_gives_up_with_a_clear_error() -> None:
    s = session(SleepRecorder(), max_attempts=2, timeout=0.5)
    with pytest.raises(AlpacaUnavailableError, match=r"GET /v2/stocks/bars failed after 2 attempts"):
        s.get("http://127.0.0.1:9/v2/stocks/bars")


def test_rate_limiter_spaces_requests_beyond_the_burst() -> None:
    # a burst of 3 goes out at once; after it, requests leave one per 1/rate seconds (600/min: 0.1 s apart)
    limiter = RateLimiter(per_minute=600, burst=3)
    stamps = []
    for _ in range(7):
        limiter.acquire()
        stamps.append(time.monotonic())
    burst = stamps[2] - stamps[0]
    gaps = [b - a for a, b in itertools.pairwise(stamps[3:])]
    assert burst < 0.02, burst
    assert all(0.08 <= g <= 0.2 for g in gaps), gaps
    assert stamps[-1] - stamps[0] >= 0.38  # 4 requests beyond the burst at 0.1 s each (the first partly refilled)


def test_a_429_pause_holds_every_caller() -> None:
    """Every thread sharing the limiter waits out a 429's reset, not only the one that saw it."""
    import threading

    limiter = RateLimiter(per_minute=100_000)
    waited: list[float] = []
    limiter.pause_until(time.monotonic() + 0.3)
    threads = [threading.Thread(target=lambda: waited.append(limiter.acquire())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert len(waited) == 3 and min(waited) >= 0.25, waited


def test_alpaca_py_calls_go_through_our_session(sim: SimulatorServer) -> None:
    """Behaviour, not attributes: alpaca-py's own fixed 3 s retry would take >= 3 s per 5xx and only on 429/504;
    through our session every page request is retried with our fast backoff and counted in our stats."""
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

    from tests.fixtures.pipeline import alpaca_for

    sim.faults = FaultConfig(seed=5, error_rate=0.5, error_statuses=(500, 503))
    alpaca = alpaca_for(sim, max_attempts=12)
    started = time.monotonic()
    bars = alpaca.stock_client().get_stock_bars(
        StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=datetime(2026, 6, 1, tzinfo=UTC))
    )
    assert len(bars["AAPL"]) == 21
    assert alpaca.stats.retries > 0 and alpaca.stats.requests == sim.stats.snapshot()["total"]
    assert time.monotonic() - started < 3.0
