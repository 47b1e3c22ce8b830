"""Per-token connection limits across `serve` processes: leases in Redis, on real Redis and PostgreSQL.

Two servers share a token's ``max_connections``; a `serve` process killed with SIGKILL (no cleanup at all) gives
its slots back when its leases run out, not never. Bursts of hundreds of connections opening and closing at once
(more than redis-py's pool of 100 connections), a renewal racing a release, and an exhausted connection pool all
end with zero leases, not with slots held for a lease period.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis
from websockets.sync.client import ClientConnection

from market_assets.live import tokens
from market_assets.live.bus import connect
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


def _with_leases(redis_url: str, prefix: str, body: Callable[[ConnectionLeases], Awaitable[None]],
                 **options: object) -> None:  # fmt: skip
    """Run ``body`` with leases on a fresh asyncio client of the real Redis (``options``: the client's)."""

    async def main() -> None:
        client = connect(redis_url, **options)
        try:
            await body(ConnectionLeases(client, prefix))
        finally:
            await client.aclose()

    asyncio.run(main())


def test_a_burst_of_600_acquires_and_releases_at_once_leaves_no_lease(redis_url: str, prefix: str) -> None:
    # 600 calls at once is six times redis-py's pool (100 connections): unbounded, they failed with "Too many
    # connections" and the failed releases left their slots leased for a whole lease period
    token = "BURST"

    async def body(leases: ConnectionLeases) -> None:
        members = await asyncio.gather(*(leases.acquire(token, 1_000) for _ in range(600)))
        assert all(members) and len(set(members)) == 600
        assert await leases.count(token) == 600
        for member in members:  # every connection closes in the same instant
            leases.release(token, member)  # type: ignore[arg-type]
        assert await leases.flush(10) == 0
        assert _lease_count(redis_url, prefix, token) == 0

        async def connection() -> None:  # open and close interleaved
            member = await leases.acquire(token, 1_000)
            assert member is not None
            await asyncio.sleep(0)
            leases.release(token, member)

        await asyncio.gather(*(connection() for _ in range(600)))
        assert await leases.flush(10) == 0
        assert _lease_count(redis_url, prefix, token) == 0
        assert leases.release_failures == 0 and leases.held() == {}

    _with_leases(redis_url, prefix, body)


def test_a_renewal_racing_a_release_does_not_resurrect_the_lease(redis_url: str, prefix: str) -> None:
    token = "RACE"

    async def body(leases: ConnectionLeases) -> None:
        # the worst order, made certain: the renewal's list is taken, the release is written, then the renewal runs
        members = [await leases.acquire(token, 100) for _ in range(20)]
        stale = leases.held()
        for member in members:
            leases.release(token, member)  # type: ignore[arg-type]
        assert await leases.flush(5) == 0
        assert _lease_count(redis_url, prefix, token) == 0
        await leases.renew(stale)
        assert _lease_count(redis_url, prefix, token) == 0  # the old script re-added all 20 for a lease period

        # and every interleaving of a live renewal with releases landing a few loop turns into it
        for turns in range(6):
            members = [await leases.acquire(token, 100) for _ in range(50)]
            renewal = asyncio.create_task(leases.renew())
            for _ in range(turns):
                await asyncio.sleep(0)
            for member in members:
                leases.release(token, member)  # type: ignore[arg-type]
            await renewal
            assert await leases.flush(5) == 0
            assert _lease_count(redis_url, prefix, token) == 0, f"after {turns} turns"

    _with_leases(redis_url, prefix, body)


def test_a_renewal_restores_a_held_lease_swept_after_a_stall(redis_url: str, prefix: str) -> None:
    # a process that stalls longer than a lease loses its members to another process's sweep; its connections are
    # real, so its next renewal puts them back (and only those it still holds)
    token = "STALL"

    async def body(leases: ConnectionLeases) -> None:
        leases.lease_ms = 300
        kept = [await leases.acquire(token, 10) for _ in range(3)]
        gone = await leases.acquire(token, 10)
        await asyncio.sleep(0.5)  # every lease ended
        other = ConnectionLeases(leases.client, prefix)
        assert await other.acquire(token, 10) is not None  # sweeps the four expired members
        assert _lease_count(redis_url, prefix, token) == 1
        leases.release(token, gone)  # type: ignore[arg-type]
        await leases.renew()
        r = redis.Redis.from_url(redis_url)
        assert {m.decode() for m in r.zrange(leases.key(token), 0, -1)} == {*kept, *other.held()[token]}
        await leases.close(5)
        await other.close(5)
        assert _lease_count(redis_url, prefix, token) == 0

    _with_leases(redis_url, prefix, body)


def test_releases_survive_an_exhausted_connection_pool(redis_url: str, prefix: str) -> None:
    # every connection of the client's pool busy (here: three blocking reads on a pool of three) makes redis-py
    # raise "Too many connections" at once; the releases are retried until Redis takes them, not dropped
    token = "POOL"

    async def body(leases: ConnectionLeases) -> None:
        members = [await leases.acquire(token, 1_000) for _ in range(200)]
        assert _lease_count(redis_url, prefix, token) == 200
        busy = [asyncio.create_task(leases.client.blpop([f"{prefix}:nothing:{i}"], timeout=1)) for i in range(3)]
        await asyncio.sleep(0.1)
        with pytest.raises(redis.exceptions.ConnectionError, match="Too many connections"):
            await leases.acquire(token, 1_000)
        for member in members:
            leases.release(token, member)  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert leases.release_failures >= 1  # the pool was exhausted when they were first tried
        assert _lease_count(redis_url, prefix, token) == 200
        await asyncio.gather(*busy)
        assert await leases.flush(10) == 0
        # zero: the failed attempt's member too (the acquire that failed queued its own release)
        assert _lease_count(redis_url, prefix, token) == 0

    _with_leases(redis_url, prefix, body, max_connections=3)


def test_hundreds_of_connections_closing_at_once_give_every_slot_back(
    warehouse: WarehouseResource, redis_url: str, prefix: str
) -> None:
    # the benchmark's pattern: a whole configuration of clients closes at once, and the next one connects with the
    # same token; a leaked third of the slots answered the next clients 406 for a lease period (30 s)
    n = 400
    key, secret = tokens.create(warehouse, f"burst-{prefix}", max_connections=n)
    srv = _server(warehouse, redis_url, prefix)

    async def wave() -> list[str]:
        from websockets.asyncio.client import connect as ws_connect

        async def one() -> str:
            async with ws_connect(srv.url, open_timeout=60, ping_interval=None) as ws:
                await ws.recv()
                await ws.send(json.dumps({"action": "auth", "key": key, "secret": secret}))
                reply = json.loads(await ws.recv())[0]
                await ready.wait()  # all connected: then they close together
                return str(reply.get("msg") or reply.get("code"))

        ready = asyncio.Event()
        tasks = [asyncio.create_task(one()) for _ in range(n)]
        deadline = time.monotonic() + 120
        while _lease_count(redis_url, prefix, key) < n and not any(t.done() for t in tasks):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        ready.set()
        return await asyncio.gather(*tasks)

    try:
        for _ in range(2):
            replies = asyncio.run(wave())
            assert replies == ["authenticated"] * n
            _wait(lambda: _lease_count(redis_url, prefix, key) == 0, 10)  # far less than the 30 s lease
    finally:
        srv.stop()


def test_stop_with_hundreds_of_clients_is_bounded_and_audits_every_disconnect(
    warehouse: WarehouseResource, redis_url: str, prefix: str
) -> None:
    # a disconnect's audit row each on its own PostgreSQL connection made stops after long benchmark ramps take
    # more than 20 s; the rows are now written in batches, and every stop step has a deadline (half of the clients
    # here never answer the close handshake: websockets alone would wait its 10 s close timeout for them)
    n = 300
    key, secret = tokens.create(warehouse, f"stop-{prefix}", max_connections=n)
    srv = _server(warehouse, redis_url, prefix)
    connected = threading.Event()
    release = threading.Event()

    async def hold() -> None:
        from websockets.asyncio.client import connect as ws_connect

        async def one(i: int) -> None:
            async with ws_connect(srv.url, open_timeout=60, ping_interval=None, close_timeout=1) as ws:
                await ws.recv()
                await ws.send(json.dumps({"action": "auth", "key": key, "secret": secret}))
                assert json.loads(await ws.recv())[0]["msg"] == "authenticated"
                if i % 2:  # every other client stops reading: it never answers serve's close frame
                    ws.transport.pause_reading()
                while not release.is_set():
                    await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        while _lease_count(redis_url, prefix, key) < n and not any(t.done() for t in tasks):
            await asyncio.sleep(0.05)
        connected.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    clients = threading.Thread(target=lambda: asyncio.run(hold()), daemon=True)
    clients.start()
    try:
        assert connected.wait(120)
        assert _lease_count(redis_url, prefix, key) == n
        started = time.monotonic()
        srv.server.stop()
        srv.thread.join(15)
        took = time.monotonic() - started
        assert not srv.thread.is_alive()
        assert took < 8, f"stop took {took:.1f} s"
        assert _lease_count(redis_url, prefix, key) == 0
        rows = warehouse.scalar(
            "SELECT count(*) FROM market.audit_log WHERE kind = 'websocket' AND action = 'disconnect' AND subject = %s",
            (key,),
        )
        assert rows == n
    finally:
        release.set()
        clients.join(30)
        srv.stop()
