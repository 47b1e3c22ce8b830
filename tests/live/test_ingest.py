"""The stream ingest against the simulator's stream through alpaca-py, on real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from alpaca_sim.replay import Replay
from alpaca_sim.server import SimulatorServer
from market_assets.alpaca.resource import AlpacaResource
from market_assets.cache.models import MarketData
from market_assets.cache.resource import CacheResource
from market_assets.live.bus import bus_key
from market_assets.live.ingest import IngestService, silence_is_abnormal
from market_assets.live.reconcile import reconcile_session
from market_assets.warehouse.resource import WarehouseResource

SYMBOLS = ["AAPL", "MSFT", "SPY", "KO"]
SESSION = date(2024, 11, 26)
OPEN = datetime(2024, 11, 26, 14, 30, tzinfo=UTC)


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    server = SimulatorServer(enable_ws=True).start()
    yield server
    server.stop()


def _service(sim: SimulatorServer, warehouse: WarehouseResource, redis_url: str, prefix: str) -> IngestService:
    return IngestService(
        symbols=SYMBOLS,
        stream_url=sim.ws_url,
        api_key=sim.api_key,
        secret_key=sim.secret_key,
        feed="iex",
        warehouse=warehouse,
        cache=CacheResource(redis_url=redis_url, key_prefix=prefix),
        alpaca=AlpacaResource(
            api_key=sim.api_key, secret_key=sim.secret_key, data_url=sim.base_url, rate_limit_per_minute=6000
        ),
        clock=lambda: sim.clock or datetime.now(UTC),
        flush_seconds=0.2,
        reconnect_min_seconds=0.05,
        health_port=0,
    )


class _Running:
    """The service's loop in a thread, as `market-data stream` runs it."""

    def __init__(self, service: IngestService) -> None:
        self.service = service
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self.service.run())
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(15)
        assert not self.thread.is_alive()


def _wait(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def _truth(sim: SimulatorServer, minutes: int) -> pd.DataFrame:
    model = sim.model
    i = int(np.searchsorted(model.open_ns, pd.Timestamp(OPEN).value, side="right")) - 1
    end = pd.Timestamp(OPEN + timedelta(minutes=minutes)).value
    rows = []
    for symbol in SYMBOLS:
        m = model.minute_session(symbol, i)
        for j in np.flatnonzero(m.ts_ns < end):
            rows.append((symbol, pd.Timestamp(int(m.ts_ns[j]), tz=UTC), float(m.open[j]), float(m.high[j]),
                         float(m.low[j]), float(m.close[j]), int(m.volume[j]), float(m.vwap[j])))  # fmt: skip
    return pd.DataFrame(rows, columns=["symbol", "ts", "open", "high", "low", "close", "volume", "vwap"])


def test_replayed_session_with_forced_disconnects_matches_ground_truth(
    sim: SimulatorServer, warehouse: WarehouseResource, redis_url: str
) -> None:
    minutes = 45
    prefix = f"t{uuid.uuid4().hex[:8]}"
    sim.stream.drop_every = 17  # hang up on the client every 17 market-data messages
    replay = Replay(sim, OPEN, speed=400.0, minutes=minutes)  # 1 minute every 150 ms
    service = _service(sim, warehouse, redis_url, prefix)
    running = _Running(service)
    try:
        _wait(lambda: service.connections >= 1 and sim.stream.wait_for_clients(1, 0.1))
        replay.start()
        assert replay.join(60)
        # the last minutes may still be in flight, or lost in a disconnect and waiting for the next backfill
        _wait(lambda: sim.stream.clients >= 1 and service.backfilled >= 0 and not service._pending, 20)
        time.sleep(1.0)
        _wait(lambda: not service._pending and service._queue.empty(), 20)
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{service.health_port}/healthz").read())
    finally:
        running.stop()
    assert running.error is None
    assert sim.stream.forced_disconnects >= 3, "the fault did not fire: the test would prove nothing"
    assert service.connections >= sim.stream.forced_disconnects  # every drop was followed by a reconnect
    assert service.backfilled > 0
    assert health["connected"] and health["bus"] and health["bars_written"] > 0

    truth = _truth(sim, minutes)
    got = warehouse.read_bars("market.bars_minute", SYMBOLS, SESSION, SESSION)
    assert len(got) == len(truth), "a gap or a duplicate"
    merged = truth.merge(got, on=["symbol", "ts"], suffixes=("", "_db"), how="left", validate="one_to_one")
    for column in ("open", "high", "low", "close", "vwap"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_db"], rtol=0, atol=1e-9)
    assert (merged["volume"] == merged["volume_db"]).all()
    assert warehouse.scalar("SELECT count(DISTINCT feed) FROM market.bars_minute") == 1

    # the cache key of each symbol holds the session so far, ending at its last minute
    client = redis.Redis.from_url(redis_url)
    for symbol in SYMBOLS:
        cached = MarketData.model_validate_json(client.get(f"{prefix}:{{{symbol}}}:market"))
        mine = truth[truth["symbol"] == symbol]
        assert cached.session == SESSION and cached.source == "1Min"
        assert cached.price == mine["close"].iloc[-1] and cached.open == mine["open"].iloc[0]
        assert cached.volume == mine["volume"].sum() and cached.high == mine["high"].max()
    # the bus carried what the stream delivered (bars, updated bars and trades)
    assert client.xlen(bus_key(prefix)) > 0
    client.delete(bus_key(prefix))

    # reconciliation against the batch fetch of the same session (the simulator serves up to its clock)
    alpaca = service.alpaca
    assert reconcile_session(warehouse, alpaca, SESSION, SYMBOLS).clean
    with warehouse.connect() as conn:
        conn.execute("UPDATE market.bars_minute SET close = close + 0.01, high = high + 0.01 WHERE ts = %s", (OPEN,))
        conn.execute("DELETE FROM market.bars_minute WHERE symbol = 'KO' AND ts = %s", (OPEN + timedelta(minutes=5),))
    report = reconcile_session(warehouse, alpaca, SESSION, SYMBOLS)
    assert (report.batch_rows, report.streamed_rows) == (len(truth), len(truth) - 1)
    assert (report.missing, report.extra, report.mismatched) == (1, 0, len(SYMBOLS) - 0)


def test_watchdog_rule_knows_the_session() -> None:
    during = datetime(2024, 11, 26, 16, 0, tzinfo=UTC)  # 11:00 New York
    after = datetime(2024, 11, 26, 22, 0, tzinfo=UTC)  # 17:00 New York
    half_day_after_close = datetime(2024, 11, 29, 18, 30, tzinfo=UTC)  # 13:30 New York, the day after Thanksgiving
    assert silence_is_abnormal(during, 120, 90)
    assert not silence_is_abnormal(during, 30, 90)
    assert not silence_is_abnormal(after, 3600, 90)
    assert not silence_is_abnormal(half_day_after_close, 3600, 90)
    assert not silence_is_abnormal(datetime(2024, 11, 28, 16, 0, tzinfo=UTC), 3600, 90)  # Thanksgiving


def test_bad_keys_stop_stream_with_a_clear_message(
    sim: SimulatorServer, database_url: str, redis_url: str, data_home: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MARKET_DATA_HOME": str(data_home),
        "ALPACA_API_KEY": "PKWRONG",
        "ALPACA_SECRET_KEY": "wrong",
        "ALPACA_DATA_URL": sim.base_url,
        "ALPACA_STREAM_URL": sim.ws_url,
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "market_assets.runtime.cli", "stream", "--symbols", "AAPL", "--health-port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "rejected the API key (402" in result.stderr and "ALPACA_API_KEY" in result.stderr
    assert time.monotonic() - started < 60  # stopped at once, not a reconnect loop
