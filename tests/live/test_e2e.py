"""End to end in separate OS processes: simulator -> `market-data stream` -> bus -> `market-data serve` -> alpaca-py.

Why separate processes: the other live tests run the services as threads of the test process; this one runs them
as an operator does (the CLI, their own interpreters, only Redis and PostgreSQL in common), so what is proven is
the wiring of the real commands: settings from the environment, the bus key both sides derive, tokens in the
warehouse, shutdown on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
from alpaca.data.live.stock import StockDataStream

from alpaca_sim.replay import Replay
from alpaca_sim.server import SimulatorServer
from market_assets.live import tokens
from market_assets.live.bus import bus_key
from market_assets.warehouse.resource import WarehouseResource

SYMBOLS = ["AAPL", "MSFT", "SPY"]
WATCHED = ["AAPL", "SPY"]
SESSION = date(2024, 11, 26)
OPEN = datetime(2024, 11, 26, 14, 30, tzinfo=UTC)
MINUTES = 12

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(port: int) -> dict[str, Any] | None:
    try:
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read())
    except OSError:
        return None


def _wait(predicate, timeout: float = 60.0, what: Any = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    server = SimulatorServer(enable_ws=True).start()
    yield server
    server.stop()


class _Service:
    """A `market-data` subcommand in its own process; stderr kept for the failure message."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "market_assets.runtime.cli", *args], env=env, stdout=self._out, stderr=self._out
        )

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.proc.args} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        return True

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        return self.proc.returncode


def _truth(sim: SimulatorServer, symbols: list[str]) -> dict[str, list[tuple[int, float, float, int]]]:
    """symbol -> [(ts_ns, open, close, volume)] of the replayed minutes: what the client must receive, in order."""
    model = sim.model
    i = int(np.searchsorted(model.open_ns, pd.Timestamp(OPEN).value, side="right")) - 1
    end = pd.Timestamp(OPEN + timedelta(minutes=MINUTES)).value
    out = {}
    for symbol in symbols:
        m = model.minute_session(symbol, i)
        out[symbol] = [(int(m.ts_ns[j]), float(m.open[j]), float(m.close[j]), int(m.volume[j]))
                       for j in np.flatnonzero(m.ts_ns < end)]  # fmt: skip
    return out


@pytest.fixture(params=["single", "cluster"])
def live_redis_url(request: pytest.FixtureRequest) -> str:
    """The same processes on one Redis server and on the three-node Redis Cluster (``redis+cluster://``)."""
    return request.getfixturevalue("redis_url" if request.param == "single" else "redis_cluster_url")


def _plain(url: str) -> redis.Redis | redis.RedisCluster:
    """A sync client of the test's own, for the bus key's cleanup on either topology."""
    if "+cluster://" in url:
        return redis.RedisCluster.from_url(url.replace("+cluster://", "://"))
    return redis.Redis.from_url(url)


def test_stream_and_serve_processes_deliver_the_replayed_bars_to_alpaca_py(
    sim: SimulatorServer, warehouse: WarehouseResource, database_url: str, live_redis_url: str, data_home: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    redis_url = live_redis_url
    sim.stream.universe = SYMBOLS
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MARKET_DATA_HOME": str(data_home),
        "ALPACA_API_KEY": sim.api_key,
        "ALPACA_SECRET_KEY": sim.secret_key,
        "ALPACA_DATA_URL": sim.base_url,
        "ALPACA_STREAM_URL": sim.ws_url,
    }
    r = _plain(redis_url)
    r.delete(bus_key("md:v1"))
    key, secret = tokens.create(warehouse, "e2e")
    serve_port, health_port = _free_port(), _free_port()
    serve = _Service(["serve", "--port", str(serve_port)], env, tmp_path / "serve.log")
    stream = _Service(["stream", "--symbols", ",".join(SYMBOLS), "--health-port", str(health_port)], env,
                      tmp_path / "stream.log")  # fmt: skip
    got: list[dict[str, Any]] = []
    client = StockDataStream(key, secret, raw_data=True, url_override=f"ws://127.0.0.1:{serve_port}/v2/iex")

    async def on_bar(msg: dict[str, Any]) -> None:
        got.append(msg)

    client.subscribe_bars(on_bar, *WATCHED)
    thread = threading.Thread(target=client.run, daemon=True)
    replay = Replay(sim, OPEN, speed=600.0, minutes=MINUTES)  # one minute every 100 ms
    try:
        _wait(lambda: serve.alive() and (_health(serve_port) or {}).get("bus") is True, what="serve /healthz")
        thread.start()
        # connected, authenticated, subscription: the client's subscription is in place
        _wait(lambda: (_health(serve_port) or {}).get("delivered") == 3, what="the alpaca-py client's subscription")
        _wait(lambda: stream.alive() and (_health(health_port) or {}).get("connected") is True, what="stream")
        replay.start()
        assert replay.join(60)
        expected = _truth(sim, WATCHED)
        total = sum(len(v) for v in expected.values())
        _wait(
            lambda: len(got) >= total,
            30,
            what=lambda: f"{total} bars at the client (got {[(m['S'], m['t']) for m in got]}; {_health(serve_port)})",
        )
        time.sleep(0.5)  # nothing more may arrive
        _wait(lambda: (_health(health_port) or {}).get("pending_bars") == 0, 10, what="the stream's flush")
    finally:
        client.stop()
        thread.join(10)
        replay.stop()
        codes = (stream.stop(), serve.stop())
        r.delete(bus_key("md:v1"))
    assert codes == (0, 0), (stream.log.read_text()[-2000:], serve.log.read_text()[-2000:])

    assert {m["S"] for m in got} == set(WATCHED) and all(m["T"] == "b" for m in got)
    for symbol, rows in expected.items():
        mine = [m for m in got if m["S"] == symbol]
        assert [(m["t"].to_unix_nano(), m["o"], m["c"], m["v"]) for m in mine] == rows  # once each, in order
    # the writer's cache keys landed too (a cluster pipeline across the symbols' slots)
    assert all(_plain(redis_url).get(f"md:v1:{{{symbol}}}:market") for symbol in SYMBOLS)
    stored = warehouse.read_bars("market.bars_minute", SYMBOLS, SESSION, SESSION)
    assert len(stored) == sum(len(v) for v in _truth(sim, SYMBOLS).values())
