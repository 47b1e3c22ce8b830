"""The cache against a real three-node Redis Cluster (tests/fixtures/redis_cluster.py).

The warm, the read API and the chain-replace atomicity tests of test_cache.py run here again,
unchanged, with the ``cache`` fixture bound to the cluster: the same assertions must hold when a
symbol's keys are routed by hash tag, warming goes through cluster pipelines and each chain
replace is a single-slot MULTI/EXEC on the node that owns the symbol.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from redis.cluster import RedisCluster

from market_assets.cache.models import MarketData
from market_assets.cache.resource import CacheResource, cluster_base_url
from tests.cache.test_cache import (  # noqa: F401  (collected again here, against the cluster)
    drop_prefix,
    sim,
    synthetic_chain,
    test_chain_replace_is_atomic_under_a_concurrent_reader,
    test_pipeline_run_warms_cache_equal_to_warehouse_latest,
    test_reader_hits_misses_fallback_and_read_through,
)


@pytest.fixture
def cache(redis_cluster_url: str) -> Iterator[CacheResource]:
    resource = CacheResource(redis_url=redis_cluster_url, key_prefix=f"mdtest:{uuid.uuid4().hex[:10]}")
    assert resource.is_cluster and isinstance(resource.client(), RedisCluster)
    yield resource
    drop_prefix(resource.client(), resource.key_prefix)  # type: ignore[arg-type]
    resource.close()


def test_cluster_url_forms() -> None:
    assert cluster_base_url("redis+cluster://:pw@10.0.0.1:7000") == "redis://:pw@10.0.0.1:7000"
    assert cluster_base_url("rediss+cluster://u:pw@h:6380/0") == "rediss://u:pw@h:6380/0"
    assert cluster_base_url("redis://h:6379") is None
    assert cluster_base_url("unix:///tmp/r.sock") is None


def test_warm_spreads_over_every_node_and_keeps_a_symbol_in_one_slot(cache: CacheResource) -> None:
    client = cache.client()
    assert isinstance(client, RedisCluster)
    symbols = [f"S{i:04d}" for i in range(600)]
    now = datetime.now(UTC)
    items = [
        MarketData(symbol=s, session=date(2026, 6, 30), ts=now, source="1Day", price=10.0, open=9.0, high=11.0,
                   low=8.5, volume=1000, cached_at=now)
        for s in symbols
    ]  # fmt: skip
    report = cache.write_market(items)
    assert report.ok and report.written["market"] == len(symbols)
    for symbol in symbols[:50]:
        assert cache.read_market(symbol) == items[symbols.index(symbol)]
        slots = {client.keyslot(cache.key(symbol, kind)) for kind in ("market", "chain", "flow")}
        assert len(slots) == 1, f"{symbol}'s keys must share one slot"
        assert 0 < client.ttl(cache.key(symbol, "market")) <= cache.market_ttl_seconds
    owners = {client.get_node_from_key(cache.key(s, "market")).name for s in symbols}
    assert len(owners) == 3, "600 symbols must land on all three primaries"

    chain = synthetic_chain("A", 64)
    assert cache.write_chains([chain]).ok
    assert cache.read_chain("AAPL") == cache.read_chain("AAPL")  # stored once, read whole
    assert cache.read_chain("AAPL").generation == "A"  # type: ignore[union-attr]
