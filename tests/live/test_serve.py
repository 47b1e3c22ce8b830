"""The fan-out through alpaca-py and raw WebSocket clients, on real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
import redis
from alpaca.data.live.stock import StockDataStream
from websockets.sync.client import ClientConnection, connect

from market_assets.cache.resource import CacheResource
from market_assets.live import tokens
from market_assets.live.bus import bus_key, pack
from market_assets.live.serve import FanoutServer
from market_assets.warehouse.resource import WarehouseResource


class _Thread:
    def __init__(self, server: FanoutServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=lambda: asyncio.run(server.run()), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not server.bound.is_set():
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        time.sleep(0.2)  # the fan-out task pins the bus position

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/v2/iex"

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(10)


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    value = f"t{uuid.uuid4().hex[:8]}"
    yield value
    redis.Redis.from_url(redis_url).delete(bus_key(value))


def _server(warehouse: WarehouseResource, redis_url: str, prefix: str, **kwargs: Any) -> _Thread:
    cache = CacheResource(redis_url=redis_url, key_prefix=prefix)
    return _Thread(FanoutServer(warehouse=warehouse, cache=cache, port=0, **kwargs))


def _publish(redis_url: str, prefix: str, msgs: list[dict[str, Any]]) -> None:
    redis.Redis.from_url(redis_url).xadd(bus_key(prefix), {"m": pack(msgs), "at": str(time.time_ns())})


def _bar(symbol: str, minute: int) -> dict[str, Any]:
    ns = (1_732_631_400 + 60 * minute) * 1_000_000_000
    return {"T": "b", "S": symbol, "o": 100.0 + minute, "h": 101.0 + minute, "l": 99.0 + minute,
            "c": 100.5 + minute, "v": 1000 + minute, "n": 10, "vw": 100.2 + minute,
            "t": msgpack.Timestamp.from_unix_nano(ns)}  # fmt: skip


def _trade(symbol: str, i: int) -> dict[str, Any]:
    return {"T": "t", "S": symbol, "i": i, "x": "V", "p": 100.0, "s": 1, "c": ["@"], "z": "C",
            "t": msgpack.Timestamp.from_unix_nano(time.time_ns())}  # fmt: skip


class _AlpacaClient:
    """alpaca-py's StockDataStream in its own thread, recording what its handlers get."""

    def __init__(self, url: str, key: str, secret: str, bars: list[str] = (), trades: list[str] = ()) -> None:  # type: ignore[assignment]
        self.stream = StockDataStream(key, secret, raw_data=True, url_override=url)
        self.got: list[dict[str, Any]] = []
        self.latencies_ms: list[float] = []
        if bars:
            self.stream.subscribe_bars(self._on, *bars)
        if trades:
            self.stream.subscribe_trades(self._on, *trades)
        self.thread = threading.Thread(target=self.stream.run, daemon=True)
        self.thread.start()

    async def _on(self, msg: dict[str, Any]) -> None:
        self.latencies_ms.append((time.time_ns() - msg["t"].to_unix_nano()) / 1e6)
        self.got.append(msg)

    def stop(self) -> None:
        self.stream.stop()
        self.thread.join(10)


def _wait(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def _raw(url: str, **kwargs: Any) -> ClientConnection:
    ws = connect(url, **kwargs)
    assert json.loads(ws.recv(5)) == [{"T": "success", "msg": "connected"}]
    return ws


def _ask(ws: ClientConnection, msg: Any) -> list[dict[str, Any]]:
    ws.send(msg if isinstance(msg, str) else json.dumps(msg))
    return json.loads(ws.recv(5))


def test_alpaca_clients_on_two_servers_get_exactly_their_bars_once_in_order(
    warehouse: WarehouseResource, redis_url: str, prefix: str
) -> None:
    key, secret = tokens.create(warehouse, "client")
    one, two = _server(warehouse, redis_url, prefix), _server(warehouse, redis_url, prefix)
    a = _AlpacaClient(one.url, key, secret, bars=["AAPL", "MSFT"])
    b = _AlpacaClient(two.url, key, secret, bars=["AAPL", "MSFT"])
    try:
        _wait(lambda: len(one.server.clients) == 1 and len(two.server.clients) == 1)
        _wait(lambda: all(c.subs["bars"] for s in (one, two) for c in s.server.clients))
        for minute in range(30):
            _publish(redis_url, prefix, [_bar(s, minute) for s in ("AAPL", "MSFT", "SPY")])
            time.sleep(0.005)
        _wait(lambda: len(a.got) == 60 and len(b.got) == 60)
        time.sleep(0.3)  # nothing more may arrive
    finally:
        a.stop()
        b.stop()
        one.stop()
        two.stop()
    for client in (a, b):
        assert len(client.got) == 60
        for symbol in ("AAPL", "MSFT"):
            mine = [m for m in client.got if m["S"] == symbol]
            assert [m["v"] for m in mine] == [1000 + i for i in range(30)]  # each minute once, in order
            assert mine[0]["o"] == 100.0 and mine[0]["vw"] == 100.2
        assert all(m["T"] == "b" for m in client.got)
    assert [(m["S"], m["v"]) for m in a.got] == [(m["S"], m["v"]) for m in b.got]


def test_slow_client_gets_407_while_a_normal_one_keeps_its_latency(
    warehouse: WarehouseResource, redis_url: str, prefix: str
) -> None:
    key, secret = tokens.create(warehouse, "load")
    srv = _server(warehouse, redis_url, prefix, queue_limit=200, send_timeout=2.0)
    normal = _AlpacaClient(srv.url, key, secret, trades=["*"])
    slow = _StalledClient(srv.server.port, key, secret)
    try:
        _wait(lambda: len(srv.server.clients) == 2 and all(c.subs["trades"] for c in srv.server.clients))
        sent = 0
        for _ in range(100):
            _publish(redis_url, prefix, [_trade(f"S{i % 50}", sent + i) for i in range(200)])
            sent += 200
            time.sleep(0.01)
        _wait(lambda: len(normal.got) == sent, 30)
        _wait(lambda: srv.server.dropped_slow == 1)
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{srv.server.port}/healthz").read())
    finally:
        normal.stop()
        srv.stop()
    assert [m["i"] for m in normal.got] == list(range(sent))  # trades are never conflated: all, in order
    assert float(np.percentile(normal.latencies_ms, 99)) < 250  # it did not wait for the slow one
    assert health["clients"] == 1 and health["dropped_slow_clients"] == 1 and health["bus"] is True
    # its socket was full, so the 407 frame may never reach it: what it must see is the connection closed
    assert slow.closed()


class _StalledClient:
    """Authenticates and subscribes to every trade, then never reads again (a tiny receive buffer)."""

    def __init__(self, port: int, key: str, secret: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            b"GET /v2/iex HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        for msg in ({"action": "auth", "key": key, "secret": secret}, {"action": "subscribe", "trades": ["*"]}):
            time.sleep(0.2)
            self.sock.sendall(self._frame(msg))

    @staticmethod
    def _frame(obj: dict[str, Any]) -> bytes:
        data, mask = json.dumps(obj).encode(), os.urandom(4)
        return (
            bytes([0x81, 0xFE, len(data) >> 8, len(data) & 0xFF])
            + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        )

    def closed(self) -> bool:
        """Read what is left; True when the server has closed (EOF or reset) rather than left us hanging."""
        self.sock.settimeout(5)
        try:
            while self.sock.recv(1 << 16):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True


def test_protocol_errors_and_credentials(warehouse: WarehouseResource, redis_url: str, prefix: str) -> None:
    key, secret = tokens.create(warehouse, "tiny", max_connections=1, max_symbols=2)
    srv = _server(warehouse, redis_url, prefix, auth_timeout=0.5)
    try:
        ws = _raw(srv.url)
        assert _ask(ws, "not json") == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
        assert _ask(ws, "[1, 2]") == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
        assert _ask(ws, {"action": "subscribe", "bars": ["AAPL"]})[0]["code"] == 401
        assert _ask(ws, {"action": "auth", "key": key, "secret": "wrong"})[0]["code"] == 402
        assert _ask(ws, {"action": "auth", "key": key, "secret": secret})[0]["msg"] == "authenticated"
        assert _ask(ws, {"action": "auth", "key": key, "secret": secret})[0]["code"] == 403
        assert _ask(ws, {"action": "subscribe", "bars": "AAPL"})[0]["code"] == 400
        assert _ask(ws, {"action": "subscribe", "bars": ["AAPL", "MSFT", "SPY"]})[0]["code"] == 405
        sub = _ask(ws, {"action": "subscribe", "bars": ["AAPL"], "quotes": ["MSFT"]})[0]
        assert sub["T"] == "subscription" and sub["bars"] == ["AAPL"] and sub["quotes"] == ["MSFT"]
        assert _ask(ws, {"action": "unsubscribe", "quotes": ["MSFT"]})[0]["quotes"] == []
        assert _ask(ws, {"action": "dance"})[0]["code"] == 400
        second = _raw(srv.url)
        assert _ask(second, {"action": "auth", "key": key, "secret": secret})[0]["code"] == 406
        quiet = _raw(srv.url)  # never authenticates
        assert json.loads(quiet.recv(3)) == [{"T": "error", "code": 404, "msg": "auth timeout"}]
        # msgpack when the client asks for it
        packed = connect(srv.url, additional_headers={"Content-Type": "application/msgpack"})
        assert msgpack.unpackb(packed.recv(5)) == [{"T": "success", "msg": "connected"}]
        # a revoked token is refused, and its open connection is closed
        assert tokens.revoke(warehouse, "tiny") == 1
        fresh = _raw(srv.url)
        assert _ask(fresh, {"action": "auth", "key": key, "secret": secret})[0]["code"] == 402
        assert json.loads(ws.recv(8)) == [{"T": "error", "code": 402, "msg": "auth failed"}]
        page = urllib.request.urlopen(f"http://127.0.0.1:{srv.server.port}/").read().decode()
        assert "<title>market-data live</title>" in page
    finally:
        srv.stop()
    listed = tokens.list_tokens(warehouse)
    assert [(t.name, t.revoked_at is not None) for t in listed] == [("tiny", True)]
    stored = warehouse.scalar("SELECT secret_hash FROM market.api_tokens WHERE key = %s", (key,))
    assert secret not in stored and stored == tokens.hash_secret(secret)


def _fake_client(server: FanoutServer, **subs: list[str]) -> Any:
    """A subscribed client without a socket: ``_deliver`` only fills its pending buffer (never awaits it)."""
    from market_assets.live.serve import _Client

    client = _Client(conn=None, use_msgpack=True)  # type: ignore[arg-type]
    for channel, symbols in subs.items():
        for symbol in symbols:
            client.subs[channel].add(symbol)
            server._index[channel].setdefault(symbol, set()).add(client)
    return client


def _pending(client: Any) -> list[tuple[str, str, int]]:
    return [(e.msg["T"], e.msg["S"], e.msg["v"]) for e in client.pending.values()]


def test_conflation_keeps_every_minute_and_an_update_replaces_its_pending_minute(
    warehouse: WarehouseResource, redis_url: str
) -> None:
    server = FanoutServer(warehouse=warehouse, cache=CacheResource(redis_url=redis_url), port=0)
    bars_only = _fake_client(server, bars=["AAPL"])
    both = _fake_client(server, bars=["*"], updatedBars=["AAPL"])
    updates_only = _fake_client(server, updatedBars=["AAPL"])
    quotes = _fake_client(server, quotes=["AAPL"])
    # three minutes arrive while nobody has been written to: each minute stays, in order (no per-symbol conflation)
    server._deliver([_bar("AAPL", 0), _bar("AAPL", 1), _bar("AAPL", 2)])
    assert _pending(bars_only) == _pending(both) == [("b", "AAPL", 1000), ("b", "AAPL", 1001), ("b", "AAPL", 1002)]
    # minute 1 is corrected before it was sent: one b for that minute, with the new values, in its place
    server._deliver([{**_bar("AAPL", 1), "T": "u", "v": 5001}])
    expected = [("b", "AAPL", 1000), ("b", "AAPL", 5001), ("b", "AAPL", 1002)]
    assert _pending(bars_only) == _pending(both) == expected
    assert _pending(updates_only) == [("u", "AAPL", 5001)]  # never had the b: a correction, as on Alpaca
    # once the bars are sent, a correction reaches updatedBars subscribers only, and conflates per minute
    for client in (bars_only, both, updates_only):
        client.pending.clear()
    server._deliver([{**_bar("AAPL", 2), "T": "u", "v": 6001}, {**_bar("AAPL", 2), "T": "u", "v": 6002}])
    assert _pending(bars_only) == []
    assert _pending(both) == _pending(updates_only) == [("u", "AAPL", 6002)]
    # quotes conflate to the latest per symbol
    quote = {"T": "q", "S": "AAPL", "bp": 1.0, "ap": 1.1, "v": 0, "t": msgpack.Timestamp.from_unix_nano(1)}
    server._deliver([{**quote, "v": i} for i in range(5)])
    assert _pending(quotes) == [("q", "AAPL", 4)]


def test_option_trades_and_quotes_reach_alpaca_py_option_clients_only(
    warehouse: WarehouseResource, redis_url: str, prefix: str
) -> None:
    from alpaca.data.live.option import OptionDataStream

    key, secret = tokens.create(warehouse, "options")
    srv = _server(warehouse, redis_url, prefix)
    contract, other = "AAPL241220C00150000", "AAPL241220P00150000"
    got: list[dict[str, Any]] = []

    async def on(msg: dict[str, Any]) -> None:
        got.append(msg)

    options = OptionDataStream(
        key, secret, raw_data=True, url_override=f"ws://127.0.0.1:{srv.server.port}/v1beta1/indicative"
    )
    options.subscribe_quotes(on, contract)
    options.subscribe_trades(on, "*")
    thread = threading.Thread(target=options.run, daemon=True)
    thread.start()
    stocks = _AlpacaClient(srv.url, key, secret, trades=["*"])
    try:
        _wait(lambda: len(srv.server.clients) == 2 and all(any(c.subs.values()) for c in srv.server.clients))
        stamp = msgpack.Timestamp.from_unix_nano(time.time_ns())
        quote = {"T": "q", "bx": "C", "bp": 5.1, "bs": 3, "ax": "C", "ap": 5.3, "as": 4, "c": "A", "t": stamp}
        trade = {"T": "t", "p": 5.2, "s": 1, "x": "C", "c": "I", "t": stamp}
        _publish(redis_url, prefix, [{**quote, "S": contract}, {**quote, "S": other}, {**trade, "S": other},
                                     _trade("AAPL", 1)])  # fmt: skip
        _wait(lambda: len(got) == 2 and len(stocks.got) == 1)
        time.sleep(0.3)  # nothing more may arrive
        # "*" is refused for option quotes, as on Alpaca
        ws = connect(f"ws://127.0.0.1:{srv.server.port}/v1beta1/opra")
        assert msgpack.unpackb(ws.recv(5))[0]["msg"] == "connected"
        ws.send(msgpack.packb({"action": "auth", "key": key, "secret": secret}))
        assert msgpack.unpackb(ws.recv(5))[0]["msg"] == "authenticated"
        ws.send(msgpack.packb({"action": "subscribe", "quotes": ["*"]}))
        assert msgpack.unpackb(ws.recv(5))[0]["code"] == 400
        ws.send(msgpack.packb({"action": "subscribe", "trades": ["*"], "quotes": [contract]}))
        assert msgpack.unpackb(ws.recv(5)) == [{"T": "subscription", "trades": ["*"], "quotes": [contract]}]
        ws.close()
    finally:
        options.stop()
        thread.join(10)
        stocks.stop()
        srv.stop()
    assert [(m["T"], m["S"]) for m in got] == [("q", contract), ("t", other)]
    assert got[0]["bp"] == 5.1 and got[1]["p"] == 5.2
    assert [(m["T"], m["S"]) for m in stocks.got] == [("t", "AAPL")]  # a stock client's "*" is stocks only
