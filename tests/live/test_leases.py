"""Per-token connection limits across `serve` processes: leases in Redis, on real Redis and PostgreSQL.

Two servers share a token's ``max_connections``; a `serve` process killed with SIGKILL (no cleanup at all) gives
its slots back when its leases run out, not never.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from websockets.sync.client import ClientConnection

from market_assets.live import tokens
from market_assets.live.leases import ConnectionLeases
from market_assets.warehouse.resource import WarehouseResource
from tests.live.test_serve import _ask, _raw, _server, _wait


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def _auth(url: str, key: str, secret: str) -> tuple[ClientConnection, dict]:
    ws = _raw(url)
    return ws, _ask(ws, {"action": "auth", "key": key, "secret": secret})[0]


def _lease_count(redis_url: str, key_prefix: str, key: str) -> int:
    return redis.Redis.from_url(redis_url).zcard(ConnectionLeases(None, key_prefix).key(key))  # type: ignore[arg-type]


def test_the_connection_limit_holds_across_two_servers(
    warehouse: WarehouseResource, redis_url: str, prefix: str
) -> None:
    key, secret = tokens.create(warehouse, "shared", max_connections=2)
    a, b = _server(warehouse, redis_url, prefix), _server(warehouse, redis_url, prefix)
    try:
        first, reply = _auth(a.url, key, secret)
        assert reply["msg"] == "authenticated"
        second, reply = _auth(b.url, key, secret)
        assert reply["msg"] == "authenticated"
        assert _lease_count(redis_url, prefix, key) == 2
        # a third, on either process, is over the token's limit: 406 (per process it would have been allowed)
        for srv in (a, b):
            _, reply = _auth(srv.url, key, secret)
            assert reply == {"T": "error", "code": 406, "msg": "connection limit exceeded"}
        first.close()
        _wait(lambda: _lease_count(redis_url, prefix, key) == 1)
        third, reply = _auth(b.url, key, secret)  # the slot freed on A is usable on B
        assert reply["msg"] == "authenticated"
        third.close()
        second.close()
        _wait(lambda: _lease_count(redis_url, prefix, key) == 0)
    finally:
        a.stop()
        b.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_killed_server_gives_its_slots_back_when_its_leases_end(
    warehouse: WarehouseResource, database_url: str, redis_url: str, data_home: Path, tmp_path: Path
) -> None:
    cli_prefix = "md:v1"  # the CLI's; the token is this test's own, and so is its lease set
    key, secret = tokens.create(warehouse, "crashy", max_connections=2)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "DATABASE_URL": database_url,
           "REDIS_URL": redis_url, "MARKET_DATA_HOME": str(data_home)}  # fmt: skip
    log = (tmp_path / "serve.log").open("w")
    lease = 2.0
    proc = subprocess.Popen(
        [sys.executable, "-m", "market_assets.runtime.cli", "serve", "--port", str(port),
         "--connection-lease", str(lease)],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    other = _server(warehouse, redis_url, cli_prefix)
    try:

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read())["bus"]
            except OSError:
                return False

        _wait(up, 60)
        held = [_auth(f"ws://127.0.0.1:{port}/v2/iex", key, secret) for _ in range(2)]
        assert [reply["msg"] for _, reply in held] == ["authenticated", "authenticated"]
        time.sleep(lease)  # the killed process renewed its leases in the meantime: they outlive one lease period
        assert _lease_count(redis_url, cli_prefix, key) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = time.monotonic()
        _, reply = _auth(other.url, key, secret)
        assert reply["code"] == 406  # the dead process's slots are still leased
        _wait(lambda: _auth(other.url, key, secret)[1].get("msg") == "authenticated", lease * 3 + 5)
        assert time.monotonic() - killed_at <= lease * 3 + 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
        other.stop()
