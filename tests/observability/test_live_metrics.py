"""/metrics of the live services after a streamed session and a fan-out, and their audit rows."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from alpaca_sim.replay import Replay
from alpaca_sim.server import SimulatorServer
from market_assets.live import tokens
from market_assets.live.bus import bus_key
from market_assets.warehouse.resource import WarehouseResource
from tests.live.test_ingest import OPEN, _Running, _service
from tests.live.test_serve import _ask, _bar, _publish, _raw, _server, _wait


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    value = f"t{uuid.uuid4().hex[:8]}"
    yield value
    redis.Redis.from_url(redis_url).delete(bus_key(value))


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    server = SimulatorServer(enable_ws=True).start()
    yield server
    server.stop()


def test_stream_metrics_after_a_streamed_session(
    sim: SimulatorServer, warehouse: WarehouseResource, redis_url: str, prefix: str
) -> None:
    sim.stream.drop_every = 40  # a couple of forced reconnects
    replay = Replay(sim, OPEN, speed=400.0, minutes=20)
    service = _service(sim, warehouse, redis_url, prefix)
    running = _Running(service)
    try:
        _wait(lambda: service.connections >= 1 and sim.stream.wait_for_clients(1, 0.1))
        replay.start()
        assert replay.join(60)
        time.sleep(1.0)
        _wait(lambda: not service._pending and service._queue.empty(), 20)
        before = time.time()
        # the simulator keeps the socket busy (quotes, statuses): bracket the scrape with the service's own counts
        received_before, published_before = service.received, service.bus.published  # type: ignore[union-attr]
        metrics = scrape(service.health_port)  # type: ignore[arg-type]
        received_after, published_after = service.received, service.bus.published  # type: ignore[union-attr]
    finally:
        running.stop()
    received = sum(v for (name, _), v in metrics.items() if name == "market_stream_messages_received_total")
    assert received_before <= received <= received_after and received > 0
    published = sum(v for (name, _), v in metrics.items() if name == "market_stream_messages_published_total")
    assert published_before <= published <= published_after
    assert metrics[("market_stream_messages_received_total", (("channel", "bars"),))] > 0
    assert metrics[("market_stream_reconnects_total", ())] == service.connections - 1 >= 1
    assert metrics[("market_stream_connected", ())] == 1
    assert before - 60 < metrics[("market_stream_last_message_timestamp_seconds", (("channel", "bars"),))] <= before
    assert metrics[("market_stream_queue_depth", (("queue", "messages"),))] >= 0  # present; busy socket: not 0


def test_serve_metrics_and_websocket_audit(warehouse: WarehouseResource, redis_url: str, prefix: str) -> None:
    key, secret = tokens.create(warehouse, "metrics")
    srv = _server(warehouse, redis_url, prefix)
    good = _raw(srv.url)
    bad = _raw(srv.url)
    try:
        assert _ask(bad, {"action": "auth", "key": key, "secret": "not-the-secret"})[0]["code"] == 402
        assert _ask(good, {"action": "auth", "key": key, "secret": secret}) == [
            {"T": "success", "msg": "authenticated"}
        ]
        assert _ask(good, {"action": "subscribe", "bars": ["AAPL"]})[0]["T"] == "subscription"
        for minute in range(5):
            _publish(redis_url, prefix, [_bar("AAPL", minute), _bar("MSFT", minute)])
        got: list[dict] = []
        while len(got) < 5:
            got.extend(json.loads(good.recv(5)))
        metrics = scrape(srv.server.port)
        good.close()
        _wait(lambda: not srv.server.clients)
        _wait(lambda: warehouse.scalar("SELECT count(*) FROM market.audit_log WHERE action = 'disconnect'") == 1)
        after = scrape(srv.server.port)
    finally:
        bad.close()
        srv.stop()
    assert metrics[("market_serve_clients_connected", ())] == 1
    assert after[("market_serve_clients_connected", ())] == 0
    assert metrics[("market_serve_connections_total", ())] == 1
    assert metrics[("market_serve_auth_failures_total", ())] == 1
    assert metrics[("market_serve_messages_received_total", (("channel", "bars"),))] == 10  # AAPL and MSFT
    assert metrics[("market_serve_messages_sent_total", (("channel", "bars"),))] == 5  # only AAPL was asked for
    assert metrics[("market_serve_delivery_latency_seconds_count", ())] == 5  # one per bus entry
    assert metrics[("market_serve_slow_client_drops_total", ())] == 0

    tokens.revoke(warehouse, key)
    rows = warehouse.read_frame(
        "SELECT kind, action, actor, subject, details FROM market.audit_log"
        " WHERE kind IN ('websocket', 'token') ORDER BY id"
    )
    actions = list(zip(rows["kind"], rows["action"], strict=True))
    assert actions[0] == ("token", "created") and actions[-1] == ("token", "revoked")
    assert sorted(actions[1:-1]) == [
        ("websocket", "auth_failed"),
        ("websocket", "connect"),
        ("websocket", "disconnect"),
    ]
    assert set(rows["subject"]) == {key}  # the auth failure names the key it tried
    assert not any(secret in json.dumps(d) or "not-the-secret" in json.dumps(d) for d in rows["details"])
    disconnect = rows[rows["action"] == "disconnect"]["details"].iloc[0]
    assert disconnect["delivered"] >= 5 and disconnect["peer"].startswith("('127.0.0.1'")
