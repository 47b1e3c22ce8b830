"""Scrape /metrics after a pipeline run and compare every series with what happened (warehouse, simulator, Redis)."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from dagster import AssetKey, DagsterInstance
from prometheus_client.parser import text_string_to_metric_families

from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import FaultConfig, SimulatorServer
from market_assets.cache.resource import CacheResource
from market_assets.defs.bars import daily_bars
from market_assets.observability.exporter import BatchCollector, build_registry, sessions_behind
from market_assets.observability.metrics import BATCH_FAMILIES, ServeMetrics, StreamMetrics, serve_metrics
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.pipeline import alpaca_for, run, seed_symbols

CLOCK = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)
UNIVERSE = ["AAPL", "MSFT", "SPY"]


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(MarketModel(seed=5), clock=CLOCK, enable_ws=False) as server:
        yield server


@pytest.fixture
def cache(redis_url: str) -> Iterator[CacheResource]:
    resource = CacheResource(redis_url=redis_url, key_prefix=f"mdtest:{uuid.uuid4().hex[:10]}")
    yield resource
    client = resource.client()
    keys = list(client.scan_iter(match=f"{resource.key_prefix}:*"))
    if keys:
        client.delete(*keys)
    resource.close()


def scrape(registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    server, _ = serve_metrics(0, registry, host="127.0.0.1")
    try:
        port = server.server_port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_after_a_pipeline_run_match_what_happened(
    sim: SimulatorServer, warehouse: WarehouseResource, cache: CacheResource
) -> None:
    # every 2nd request is a 429: the retries and the 429s must show up as counted by the simulator
    sim.faults = FaultConfig(seed=1, rate_limit_every=2, rate_limit_reset_seconds=0)
    alpaca = alpaca_for(sim, symbols_per_request=1)
    instance = DagsterInstance.ephemeral()
    seed_symbols(UNIVERSE, warehouse)
    result = run(
        [daily_bars], {"alpaca": alpaca, "warehouse": warehouse}, window=("2026-06-01", "2026-06-30"), instance=instance
    )
    assert result.success
    failed = run(  # a failing run (Alpaca refuses the keys) for the status series
        [daily_bars],
        {"alpaca": alpaca_for(sim, secret_key="wrong-secret"), "warehouse": warehouse},
        partition="2026-06-30",
        instance=instance,
    )
    assert not failed.success
    cache.count("market", hit=True)
    cache.count("market", hit=True)
    cache.count("chain", hit=False)

    collector = BatchCollector(
        instance=lambda: instance,
        warehouse=warehouse,
        cache=cache,
        asset_keys=[AssetKey("daily_bars"), AssetKey("symbols")],
        jobs=["__ephemeral_asset_job__"],
        ttl=60,
    )
    metrics = scrape(build_registry(collector))

    def value(name: str, **labels: str) -> float:
        return metrics[(name, tuple(sorted(labels.items())))]

    rows = warehouse.scalar("SELECT count(*) FROM market.bars_daily")
    assert rows == 3 * 21  # June 2026: 21 NYSE sessions (Juneteenth closed)
    assert value("market_ingestion_rows_written_total", asset="daily_bars", dataset="bars_daily") == rows
    assert value("market_ingestion_rows_quarantined_total", asset="daily_bars", dataset="bars_daily") == 0
    assert value("market_ingestion_materializations_total", asset="daily_bars", status="success") == 1
    assert value("market_ingestion_materializations_total", asset="daily_bars", status="failed") == 1

    served = sim.stats.snapshot()
    bars_requests = served["requests"]["/v2/stocks/bars"] if "requests" in served else None
    assert value("market_alpaca_requests_total", asset="daily_bars") == sim.stats.total == bars_requests
    throttled = sim.stats.statuses[429]
    assert throttled > 0
    assert value("market_alpaca_responses_total", endpoint="/v2/stocks/bars", status="429") == throttled
    assert (
        value("market_alpaca_responses_total", endpoint="/v2/stocks/bars", status="401") == sim.stats.statuses[401] == 1
    )
    assert value("market_alpaca_retries_total", asset="daily_bars") == throttled  # one retry per 429

    assert (
        value("market_dagster_runs", job="__ephemeral_asset_job__", status="SUCCESS") == 1
    )  # the backfill (seeding used its own instance)
    assert value("market_dagster_runs", job="__ephemeral_asset_job__", status="FAILURE") == 1
    age = value("market_asset_last_materialization_age_seconds", asset="daily_bars")
    assert 0 <= age < 120
    assert value("market_cache_requests_total", kind="market", result="hit") == 2
    assert value("market_cache_requests_total", kind="chain", result="miss") == 1
    assert value("market_up", source="warehouse") == value("market_up", source="dagster") == 1
    assert value("market_up", source="redis") == 1
    behind = value("market_table_sessions_behind", table="market.bars_daily")
    assert behind == sessions_behind(date(2026, 6, 30), datetime.now(UTC))

    # every exported family is documented (and named by the conventions)
    documented = {f.name for f in BATCH_FAMILIES}
    for name, _ in metrics:
        assert name.startswith("market_")
        assert name in documented, name


def test_readings_are_cached_and_a_dead_source_is_reported(warehouse: WarehouseResource) -> None:
    now = [0.0]
    dead = CacheResource(redis_url="redis://127.0.0.1:1/0")
    collector = BatchCollector(instance=None, warehouse=warehouse, cache=dead, ttl=5, clock=lambda: now[0])
    registry = build_registry(collector)
    first = scrape(registry)
    scrape(registry)
    assert collector.readings == 1
    now[0] = 6.0
    scrape(registry)
    assert collector.readings == 2
    assert first[("market_up", (("source", "redis"),))] == 0
    assert first[("market_up", (("source", "warehouse"),))] == 1
    assert not any(name == "market_cache_requests_total" for name, _ in first)


def test_live_metric_objects_expose_the_documented_series() -> None:
    stream, serve = StreamMetrics(), ServeMetrics()
    stream.received("bars", 3, now=1_700_000_000.0)
    stream.reconnects.inc()
    serve.clients.set(2)
    serve.slow_client_drops.inc()
    serve.delivery_latency.observe(0.003)
    s = scrape(stream.registry)
    v = scrape(serve.registry)
    assert s[("market_stream_messages_received_total", (("channel", "bars"),))] == 3
    assert s[("market_stream_last_message_timestamp_seconds", (("channel", "bars"),))] == 1_700_000_000.0
    assert s[("market_stream_reconnects_total", ())] == 1
    assert v[("market_serve_clients_connected", ())] == 2
    assert v[("market_serve_slow_client_drops_total", ())] == 1
    assert v[("market_serve_delivery_latency_seconds_count", ())] == 1


def test_market_data_metrics_command_serves_the_exporter(
    migrated_warehouse: WarehouseResource, database_url: str, redis_url: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "MARKET_DATA_HOME": str(tmp_path),
           "DAGSTER_HOME": "", "DAGSTER_POSTGRES_URL": "", "MARKET_LOG_FORMAT": "json"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "market_assets.runtime.cli", "metrics", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        text = ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert text, proc.stderr.read() if proc.poll() is not None else "no answer"  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(30)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    assert samples[("market_up", (("source", "dagster"),))] == 1
    assert samples[("market_up", (("source", "warehouse"),))] == 1
    assert samples[("market_up", (("source", "redis"),))] == 1
    started = migrated_warehouse.scalar(
        "SELECT count(*) FROM market.audit_log WHERE kind = 'settings' AND subject = 'market-data metrics'"
    )
    assert started >= 1
