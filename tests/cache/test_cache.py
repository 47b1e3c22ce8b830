"""The Redis cache against a real Redis: warm equals the warehouse, atomic chains, Redis failures.

Every test uses its own key prefix (never FLUSHDB: REDIS_URL may be a shared server). The
failure tests start a SEPARATE redis-server on a temporary unix socket and stop it for real.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import redis
from dagster import AssetsDefinition, MaterializeResult

from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import SimulatorServer
from market_assets.cache.models import MarketData, OptionQuote, OptionsChain
from market_assets.cache.reader import CacheReader
from market_assets.cache.resource import CacheResource
from market_assets.defs.bars import daily_bars, intraday_bars
from market_assets.defs.cache import market_cache
from market_assets.defs.resources import OptionParameters
from market_assets.errors import InvalidSymbolsError
from market_assets.runtime.embedded import redis_server_binary
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.pipeline import alpaca_for, run, seed_symbols

CLOCK = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)  # after the 2026-06-30 close
DAY = "2026-06-30"
UNIVERSE = ["AAPL", "MSFT", "SPY"]


def option_assets() -> list[AssetsDefinition]:
    from market_assets.defs import options

    return [options.option_contracts, options.option_chain, options.option_greeks, options.options_flow]


def technical_assets() -> list[AssetsDefinition]:
    from market_assets.defs import technicals

    return [technicals.technical_indicators]


def drop_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def cache(redis_url: str) -> Iterator[CacheResource]:
    resource = CacheResource(redis_url=redis_url, key_prefix=f"mdtest:{uuid.uuid4().hex[:10]}")
    yield resource
    drop_prefix(resource.client(), resource.key_prefix)
    resource.close()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(MarketModel(seed=11), clock=CLOCK, enable_ws=False) as server:
        yield server


@pytest.fixture
def private_redis() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A redis-server of our own on a temp unix socket, so stopping it hurts nobody else."""
    folder = Path(tempfile.mkdtemp(prefix="mdr-", dir="/tmp"))
    sock = folder / "r.sock"
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [redis_server_binary(), "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
             "--dir", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(unix_socket_path=str(sock)).ping():
                    return proc
            except (redis.ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    start()
    yield sock, start  # type: ignore[misc]
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


def materialize_day(resources: dict[str, object], with_options: bool = True) -> None:
    assert run([daily_bars], resources, window=("2026-06-01", DAY)).success
    assert run([intraday_bars], resources, partition=DAY).success
    extra = technical_assets() + (option_assets() if with_options else [])
    if extra:
        # the option assets take their pricing inputs from a resource; the defaults are what the composition root binds
        result = run(extra, {**resources, "option_parameters": OptionParameters()}, partition=DAY)
        assert result.success, [e.event_specific_data for e in result.all_events if e.is_failure]


def cache_result(resources: dict[str, object], partition: str = DAY) -> tuple[bool, MaterializeResult | None, dict]:
    result = run([market_cache], resources, partition=partition)
    mats = result.asset_materializations_for_node("market_cache")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return result.success, (mats[0] if mats else None), checks


def test_pipeline_run_warms_cache_equal_to_warehouse_latest(
    sim: SimulatorServer, warehouse: WarehouseResource, cache: CacheResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTION_EXPIRY_HORIZON_DAYS", "40")  # a small chain keeps the test fast
    seed_symbols(UNIVERSE, warehouse)
    resources = {"alpaca": alpaca_for(sim), "warehouse": warehouse, "cache": cache}
    materialize_day(resources)
    ok, mat, checks = cache_result(resources)
    assert ok and mat is not None
    assert checks["cache_complete"].passed
    assert mat.metadata["keys_skipped"].value == 0

    client = cache.client()
    latest = warehouse.read_frame(
        "SELECT DISTINCT ON (symbol) symbol, ts, session, open, high, low, close, volume FROM market.bars_daily "
        "ORDER BY symbol, ts DESC"
    )
    assert len(latest) == len(UNIVERSE)
    for row in latest.to_dict("records"):
        key = f"{cache.key_prefix}:{{{row['symbol']}}}:market"
        value = MarketData.model_validate_json(client.get(key))  # type: ignore[arg-type]
        assert (value.source, value.session, value.price, value.volume) == (
            "1Day", row["session"], row["close"], row["volume"]
        )  # fmt: skip
        assert (value.open, value.high, value.low) == (row["open"], row["high"], row["low"])
        assert pd.Timestamp(value.ts) == pd.Timestamp(row["ts"])
        assert 0 < client.ttl(key) <= cache.market_ttl_seconds
        if technical_assets():
            ind = warehouse.read_frame(
                "SELECT rsi, sma_20 FROM market.indicators_daily WHERE symbol = %s ORDER BY ts DESC LIMIT 1",
                (row["symbol"],),
            )
            assert value.daily is not None
            for name in ("rsi", "sma_20"):
                want = ind[name][0]
                assert getattr(value.daily, name) == (None if pd.isna(want) else want)

    if option_assets():
        truth = warehouse.read_frame(
            "SELECT c.underlying, c.symbol, c.bid, c.ask, c.volume, g.iv, g.delta, g.gamma, g.vega "
            "FROM market.option_chain c LEFT JOIN market.option_greeks g USING (symbol, snapshot_date) "
            "WHERE c.snapshot_date = (SELECT max(snapshot_date) FROM market.option_chain) ORDER BY c.symbol"
        )
        assert len(truth) > 0
        for underlying, expected in truth.groupby("underlying"):
            chain = cache.read_chain(str(underlying))
            assert chain is not None and len(chain.quotes) == len(expected)
            got = {q.symbol: q for q in chain.quotes}
            for row in expected.to_dict("records"):
                q = got[row["symbol"]]
                for name in ("bid", "ask", "iv", "delta", "gamma", "vega"):
                    want = row[name]
                    assert getattr(q, name) == (None if pd.isna(want) else want), (row["symbol"], name)
            key = cache.key(str(underlying), "chain")
            assert 0 < client.ttl(key) <= cache.chain_ttl_seconds
        flows = warehouse.read_frame(
            "SELECT DISTINCT ON (underlying) underlying, snapshot_date, call_volume, put_oi, put_call_oi_ratio "
            "FROM market.options_flow_daily ORDER BY underlying, snapshot_date DESC"
        )
        for row in flows.to_dict("records"):
            flow = cache.read_flow(row["underlying"])
            assert flow is not None and flow.snapshot_date == row["snapshot_date"]
            assert flow.put_oi == row["put_oi"]
            assert 0 < client.ttl(cache.key(row["underlying"], "flow")) <= cache.flow_ttl_seconds

    # re-running an older partition must not overwrite the latest values
    before = client.get(cache.key("AAPL", "market"))
    ok, mat, _ = cache_result(resources, partition="2026-06-15")
    assert ok and mat is not None and "skipped" in mat.metadata
    assert client.get(cache.key("AAPL", "market")) == before


def test_reader_hits_misses_fallback_and_read_through(
    sim: SimulatorServer, warehouse: WarehouseResource, cache: CacheResource
) -> None:
    seed_symbols(["AAPL", "MSFT"], warehouse)
    resources = {"alpaca": alpaca_for(sim), "warehouse": warehouse, "cache": cache}
    assert run([daily_bars], resources, window=("2026-06-22", DAY)).success
    reader = CacheReader(cache, warehouse)
    miss = reader.get_market_data("AAPL")  # nothing warmed yet: warehouse, then written back
    assert miss is not None and miss.session == date(2026, 6, 30)
    hit = reader.get_market_data("AAPL")
    assert hit == miss
    assert reader.get_market_data("ZZZZ") is None  # unknown everywhere
    assert reader.local_stats == {"market:hits": 1, "market:misses": 2}
    assert cache.stats()["market"] == {"hits": 1, "misses": 2}
    assert hit.feed == "simulator"  # simulated data says so, in the warehouse and in the cache
    assert reader.get_market_data(" aapl ") == hit  # normalised to AAPL, not a silent miss
    with pytest.raises(InvalidSymbolsError, match="invalid symbol 'not a ticker'"):
        reader.get_market_data("not a ticker")
    # a reader without Redis still answers from the warehouse, counting locally
    down = CacheReader(CacheResource(redis_url="unix:///tmp/no-such-redis.sock", key_prefix=cache.key_prefix),
                       warehouse)  # fmt: skip
    assert down.get_market_data("MSFT") is not None
    assert down.local_stats == {"market:misses": 1}


def synthetic_chain(generation: str, contracts: int = 1200) -> OptionsChain:
    expirations = [date(2026, 7, 3) + timedelta(days=7 * i) for i in range(8)]
    quotes = [
        OptionQuote(
            symbol=f"AAPL{generation}{i:05d}",
            expiration=expirations[i % 8],
            strike=100.0 + i // 16,
            type="call" if i % 2 else "put",
            bid=1.0,
            ask=1.1,
            iv=0.2,
            delta=0.5,
        )
        for i in range(contracts)
    ]
    return OptionsChain(underlying="AAPL", snapshot_date=date(2026, 6, 30), underlying_price=200.0,
                        generation=generation, quotes=quotes, cached_at=datetime.now(UTC))  # fmt: skip


def test_chain_replace_is_atomic_under_a_concurrent_reader(cache: CacheResource) -> None:
    chains = [synthetic_chain("A", 1200), synthetic_chain("B", 900)]  # different sizes: a mix shows
    assert cache.write_chains([chains[0]]).ok
    stop = threading.Event()
    seen: list[tuple[str, int, set[str]]] = []
    failures: list[str] = []

    def reader() -> None:
        local = CacheResource(redis_url=cache.redis_url, key_prefix=cache.key_prefix)
        expirations = [date(2026, 7, 3), date(2026, 7, 10)]
        while not stop.is_set():
            for chain in (local.read_chain("AAPL"), local.read_chain("AAPL", expirations)):
                if chain is None:
                    failures.append("chain missing during a replace")
                    continue
                gens = {q.symbol[4] for q in chain.quotes}
                seen.append((chain.generation, len(chain.quotes), gens))
        local.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(150):
            assert cache.write_chains([chains[(i + 1) % 2]]).ok
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not failures
    assert {g for g, _, _ in seen} == {"A", "B"}, "the reader must have seen both generations"
    for generation, count, gens in seen:
        assert gens == {generation}, f"mixed chain: meta {generation}, quotes from {gens}"
        assert count in {1200, 900, 300, 226}  # whole chain, or two whole expirations of it


def test_redis_stopped_mid_run_then_next_run_warms(
    sim: SimulatorServer, warehouse: WarehouseResource, private_redis: tuple[Path, object]
) -> None:
    sock, start = private_redis
    url = f"unix://{sock}"

    class StopsRedisMidRun(CacheResource):
        """The real resource, but Redis really dies after the first market key is written."""

        def write_market(self, items):  # type: ignore[no-untyped-def]
            items = list(items)
            report = super().write_market(items[:1])
            redis.Redis(unix_socket_path=str(sock)).shutdown(nosave=True)
            return report.merge(super().write_market(items[1:]))

    seed_symbols(UNIVERSE, warehouse)
    base = {"alpaca": alpaca_for(sim), "warehouse": warehouse}
    assert run([daily_bars], base, window=("2026-06-22", DAY)).success
    ok, mat, checks = cache_result({**base, "cache": StopsRedisMidRun(redis_url=url, socket_timeout_seconds=1)})
    assert ok, "Redis down must not fail the run"
    assert mat is not None and mat.metadata["written_market"].value == 1
    assert mat.metadata["skipped_market"].value == len(UNIVERSE) - 1
    assert "Error" in mat.metadata["redis_errors"].value
    assert not checks["cache_complete"].passed
    assert checks["cache_complete"].severity.value == "WARN"

    start()  # Redis is back (empty): the next run warms every key again
    cache = CacheResource(redis_url=url)
    ok, mat, checks = cache_result({**base, "cache": cache})
    assert ok and checks["cache_complete"].passed
    assert all(cache.read_market(s) is not None for s in UNIVERSE)

    # Redis full (noeviction): writes fail with OOM, the run still succeeds with a warning
    client = cache.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        ok, mat, checks = cache_result({**base, "cache": cache})
    finally:
        client.config_set("maxmemory", "0")
    assert ok and not checks["cache_complete"].passed
    assert mat is not None and mat.metadata["skipped_market"].value == len(UNIVERSE)
    assert "maxmemory" in mat.metadata["redis_errors"].value
    ok, mat, checks = cache_result({**base, "cache": cache})
    assert ok and checks["cache_complete"].passed and mat is not None
    assert mat.metadata["written_market"].value == len(UNIVERSE)
    cache.close()
