"""`market-data serve`: the WebSocket fan-out, speaking Alpaca's market-data stream protocol.

Existing Alpaca clients work unchanged (alpaca-py's ``StockDataStream(url_override="ws://H:P/v2/iex")`` is one in
the tests): ``[{"T":"success","msg":"connected"}]``, ``auth`` within 10 s, ``subscribe``/``unsubscribe`` with
``trades``, ``quotes``, ``bars``, ``updatedBars``, ``dailyBars``, ``statuses`` (symbols or ``"*"``), the same
message shapes, JSON text frames by default and msgpack when the client asks for it (``Content-Type:
application/msgpack`` on the upgrade, as alpaca-py sends, or a binary frame), and Alpaca's error codes.

Horizontal scaling: each process reads every event from the bus (a Redis Stream, ``market_assets.live.bus``), so a
client on any process receives everything it subscribed to; put N processes behind any TCP load balancer.

Backpressure (websockets' ``broadcast()`` has none): each client has a bounded pending buffer. Bars and quotes
conflate to the latest per (type, symbol), so a client that is a little slow gets fresher data rather than a longer
queue; a client whose buffer still overflows, or whose socket accepts nothing for ``send_timeout`` seconds, gets 407
and is closed, and no other client notices (the fan-out loop never awaits a client). Pings detect dead peers.

Cost per delivery (bench/stream.py): every message is encoded once per format, however many clients receive it; one
bus read (all the entries that accumulated) becomes at most one frame per client; a client whose socket keeps up
is written synchronously by the fan-out pass (no task switch per client and per frame), and only a client whose
kernel buffer is full is handed to its own writer task, which awaits the socket (and times it out: 407).
No permessage-deflate: it would compress every frame once per client, undoing encode-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import resources
from typing import Any

import msgpack
import numpy as np
import redis.asyncio as aioredis
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from market_assets.cache.resource import CacheResource
from market_assets.domain.occ import OCC_PATTERN
from market_assets.live import tokens
from market_assets.live.bus import Bus, bus_key, connect
from market_assets.live.http import is_upgrade, respond, respond_json, respond_metrics
from market_assets.live.leases import DEFAULT_LEASE_SECONDS, ConnectionLeases, LeaseErrors
from market_assets.observability import audit
from market_assets.observability.metrics import ServeMetrics
from market_assets.warehouse.resource import WarehouseResource

log = logging.getLogger(__name__)

CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses")
# Options: Alpaca serves them on another path (/v1beta1/{feed}), msgpack only, where a client subscribes to
# "trades" and "quotes" of OCC symbols; inside the server they are channels of their own, so a stock client's
# "*" never receives option messages. On the bus an option event is Alpaca's option message as is (T "t"/"q",
# S an OCC symbol): the symbol's shape tells it apart from a stock's.
OPTION_CHANNELS = {"trades": "optionTrades", "quotes": "optionQuotes"}
ALL_CHANNELS = (*CHANNELS, *OPTION_CHANNELS.values())
OPTION_CHANNEL_OF_TYPE = {"t": "optionTrades", "q": "optionQuotes"}
_OCC = re.compile(OCC_PATTERN)
CHANNEL_OF_TYPE = {"t": "trades", "q": "quotes", "b": "bars", "u": "updatedBars", "d": "dailyBars", "s": "statuses"}
# Conflation slots: a pending message is replaced by a newer one for the same slot, in place (its position in the
# client's order is kept). A quote: the latest per symbol is all a late client needs. A bar: one slot per minute
# (per day for daily bars), never per symbol: every minute bar is data (the warehouse of a client, a chart),
# so a late client gets each minute once, with its latest values. See ``_deliver`` for updated bars.
BAR_SLOT = "bar"
AUTH_TIMEOUT_SECONDS = 10.0  # Alpaca's
QUEUE_LIMIT = 5_000  # pending messages per client before 407: ~ seconds of trades at a busy symbol's rate
SEND_TIMEOUT_SECONDS = 10.0  # a socket that accepts nothing for this long is a dead or stalled reader
MAX_MESSAGE_BYTES = 1 << 20  # a subscribe list for thousands of symbols fits; a hostile payload does not
TOKEN_RECHECK_SECONDS = 5.0
# stop: each step has its own deadline, so SIGTERM ends the process within a few seconds whatever the clients do
STOP_CLIENTS_SECONDS = 2.0  # close handshakes; then the remaining sockets are aborted
STOP_LEASES_SECONDS = 2.0  # the releases of every slot this process held
STOP_AUDIT_SECONDS = 3.0  # the audit rows still queued (one transaction)
AUDIT_QUEUE_LIMIT = 100_000  # rows waiting while the warehouse is down; beyond, new rows are counted and dropped
# the kernel's send buffer is part of a client's queue: autotuned it grows to MBs per socket (GBs at 1,000
# clients) and hides a stalled reader for a long time; capped, the pending buffer sees the backlog and conflates it
SEND_BUFFER_BYTES = 128 * 1024
# above this many bytes waiting in the transport, a client's frames go through its writer task, which awaits the
# socket; below, the fan-out pass writes them at once (websockets' own high-water mark is 32 KiB)
WRITE_BUFFER_HIGH = 64 * 1024
ERRORS = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
}

_packer = msgpack.Packer(use_bin_type=True)


class _Encoded:
    """One message, encoded at most once per format whatever the number of recipients."""

    __slots__ = ("_json", "_msgpack", "channel", "msg")

    def __init__(self, msg: dict[str, Any], channel: str = "control") -> None:
        self.msg = msg
        self.channel = channel  # the label of the messages-sent metric, decided once per message
        self._json: str | None = None
        self._msgpack: bytes | None = None

    def json(self) -> str:
        if self._json is None:
            self._json = json.dumps(_jsonable(self.msg), separators=(",", ":"))
        return self._json

    def msgpack(self) -> bytes:
        if self._msgpack is None:
            self._msgpack = msgpack.packb(self.msg, use_bin_type=True)
        return self._msgpack


def _jsonable(msg: dict[str, Any]) -> dict[str, Any]:
    t = msg.get("t")
    if isinstance(t, msgpack.Timestamp):
        msg = dict(msg)
        ns = t.to_unix_nano()
        msg["t"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"
    return msg


def _control(code: int) -> _Encoded:
    return _Encoded({"T": "error", "code": code, "msg": ERRORS[code]})


@dataclass(eq=False)
class _Client:
    conn: ServerConnection
    use_msgpack: bool
    token: tokens.Token | None = None
    options: bool = False  # connected on /v1beta1/{feed}: Alpaca's option stream
    subs: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in ALL_CHANNELS})
    pending: dict[Any, _Encoded] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # the writer task's turn: a backlogged socket
    dirty: bool = False  # in the server's list of clients with pending frames
    draining: bool = False  # the writer task is awaiting the socket: it owns the pending buffer meanwhile
    lease: str | None = None  # this connection's slot in the token's Redis lease set (None: counted locally)
    seq: int = 0
    delivered: int = 0
    closing: bool = False
    close_reason: str | None = None  # set: close the socket once the pending frames (ending in the error) are sent

    def frame(self, items: list[_Encoded]) -> str | bytes:
        if self.use_msgpack:
            return _packer.pack_array_header(len(items)) + b"".join(e.msgpack() for e in items)
        return "[" + ",".join(e.json() for e in items) + "]"

    def subscription(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"T": "subscription"}
        if self.options:
            for name, channel in OPTION_CHANNELS.items():
                msg[name] = sorted(self.subs[channel])
            return msg
        for c in CHANNELS:
            msg[c] = sorted(self.subs[c])
        msg["corrections"] = sorted(self.subs["trades"])
        msg["cancelErrors"] = sorted(self.subs["trades"])
        return msg

    def symbol_count(self) -> int:
        return len(set().union(*self.subs.values()))


class FanoutServer:
    """N of these share one ingest through the bus; each serves any number of Alpaca-protocol clients."""

    def __init__(
        self,
        *,
        warehouse: WarehouseResource,
        cache: CacheResource,
        host: str = "127.0.0.1",
        port: int = 8080,
        queue_limit: int = QUEUE_LIMIT,
        send_timeout: float = SEND_TIMEOUT_SECONDS,
        auth_timeout: float = AUTH_TIMEOUT_SECONDS,
        ping_interval: float = 20.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.warehouse = warehouse
        self.cache = cache
        self.host = host
        self.port = port
        self.queue_limit = queue_limit
        self.send_timeout = send_timeout
        self.auth_timeout = auth_timeout
        self.ping_interval = ping_interval
        self.lease_seconds = lease_seconds
        self.leases: ConnectionLeases | None = None
        self.clients: set[_Client] = set()
        self._index: dict[str, dict[str, set[_Client]]] = {c: {} for c in ALL_CHANNELS}
        # this process's connections per token: the limit's fallback while Redis cannot be asked
        self._per_token: Counter[str] = Counter()
        self.delivered = 0
        self.dropped_slow = 0
        self.events = 0
        self.latencies_ms: list[float] = []  # bus publish -> written to the sockets (or to a writer)
        self.metrics = ServeMetrics()  # served on /metrics (names and meaning: observability.metrics)
        # websocket audit rows, written by one task in one transaction per batch: a burst of 1,000 disconnects
        # is one connection and one commit, not 1,000 (each on its own connection, which slowed stops by > 20 s)
        self._audit_rows: list[tuple[str, str | None, dict[str, Any]]] = []
        self._audit_wake = asyncio.Event()
        self._audit_writing = False
        self._conns: set[ServerConnection] = set()
        self.bus: Bus | None = None
        self.bound = asyncio.Event()
        self._dirty: list[_Client] = []
        self._flush_scheduled = False
        self._server: Server | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        client = connect(self.cache.resolved_url(), socket_connect_timeout=2)
        self.bus = Bus(client, bus_key(self.cache.key_prefix))
        self.leases = ConnectionLeases(client, self.cache.key_prefix, lease_seconds=self.lease_seconds,
                                       on_error=self.metrics.errors.labels("leases").inc)  # fmt: skip
        server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_interval,
            max_size=MAX_MESSAGE_BYTES,
            max_queue=64,
            compression=None,
        )
        self._server = server
        self.port = next(iter(server.sockets)).getsockname()[1]
        tasks = [asyncio.create_task(self._fanout()), asyncio.create_task(self._recheck_tokens()),
                 asyncio.create_task(self._renew_leases())]  # fmt: skip
        audits = asyncio.create_task(self._audit_loop())
        self.bound.set()
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(server, tasks, audits)
            await client.aclose()

    async def _shutdown(self, server: Server, tasks: list[asyncio.Task[None]], audits: asyncio.Task[None]) -> None:
        """Bounded steps, each logged with its duration: SIGTERM ends the process in a few seconds."""
        started = time.monotonic()
        log.info("stopping: %d client(s), %d lease(s) held, %d audit row(s) queued", len(self.clients),
                 sum(len(m) for m in self.leases.held().values()) if self.leases else 0,
                 len(self._audit_rows))  # fmt: skip
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        step = time.monotonic()
        server.close()  # stops accepting, sends 1001 to every client, waits for the handlers
        try:
            await asyncio.wait_for(asyncio.shield(server.wait_closed()), STOP_CLIENTS_SECONDS)
        except TimeoutError:
            left = [c for c in self._conns if c.transport is not None]
            log.warning("stop: %d client(s) did not finish the close handshake in %.0f s: aborted", len(left),
                        STOP_CLIENTS_SECONDS)  # fmt: skip
            for conn in left:
                conn.transport.abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(server.wait_closed()), 1.0)
        log.info("stop: clients closed in %.2f s", time.monotonic() - step)
        step = time.monotonic()
        if self.leases is not None:
            left = await self.leases.close(STOP_LEASES_SECONDS)
            if left:
                log.error("stop: %d connection lease(s) not released within %.0f s: they expire by themselves "
                          "within %.0f s", left, STOP_LEASES_SECONDS, self.lease_seconds)  # fmt: skip
            else:
                log.info("stop: connection leases released in %.2f s", time.monotonic() - step)
        step = time.monotonic()
        deadline = step + STOP_AUDIT_SECONDS
        while (self._audit_rows or self._audit_writing) and time.monotonic() < deadline:
            self._audit_wake.set()
            await asyncio.sleep(0.02)
        if self._audit_rows or self._audit_writing:
            log.error("stop: audit rows still queued after %.0f s: %d not written", STOP_AUDIT_SECONDS,
                      len(self._audit_rows))  # fmt: skip
        else:
            log.info("stop: audit rows written in %.2f s", time.monotonic() - step)
        audits.cancel()
        await asyncio.gather(audits, return_exceptions=True)
        log.info("stopped in %.2f s", time.monotonic() - started)

    def stop(self) -> None:
        """Thread-safe and idempotent."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)

    # ------------------------------------------------------------------ HTTP: /healthz and the live page
    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?")[0]
        if is_upgrade(request):
            if (path.startswith("/v2/") and len(path) > 4) or (path.startswith("/v1beta1/") and len(path) > 9):
                return None  # any feed name reaches the same data, as the issue asks
            return respond(connection, HTTPStatus.NOT_FOUND, "stream paths: /v2/{feed}, /v1beta1/{feed}\n",
                           "text/plain")  # fmt: skip
        if path == "/metrics":
            self.metrics.clients.set(len(self.clients))
            self.metrics.queue_depth.set(max((len(c.pending) for c in self.clients), default=0))
            return respond_metrics(connection, self.metrics.registry)
        if path == "/healthz":
            payload = self.health()
            payload["bus"] = bool(self.bus and await self.bus.ping())
            return respond_json(connection, payload, ok=payload["bus"])
        if path in ("/", "/index.html"):
            page = resources.files("market_assets.live").joinpath("page.html").read_text()
            return respond(connection, HTTPStatus.OK, page, "text/html; charset=utf-8")
        return respond(connection, HTTPStatus.NOT_FOUND, "not found\n", "text/plain")

    def health(self) -> dict[str, Any]:
        depths = [len(c.pending) for c in self.clients]
        lat = np.array(self.latencies_ms[-20_000:]) if self.latencies_ms else None
        return {
            "service": "serve",
            "clients": len(self.clients),
            "queue_depth": {"total": sum(depths), "max": max(depths, default=0)},
            "events": self.events,
            "delivered": self.delivered,
            "dropped_slow_clients": self.dropped_slow,
            "bus_to_socket_ms": None
            if lat is None
            else {"p50": round(float(np.percentile(lat, 50)), 2), "p99": round(float(np.percentile(lat, 99)), 2)},
        }

    # ------------------------------------------------------------------ one client
    async def _handle(self, conn: ServerConnection) -> None:
        ctype = conn.request.headers.get("Content-Type", "") if conn.request else ""
        path = conn.request.path if conn.request else ""
        options = path.startswith("/v1beta1/")
        client = _Client(conn, use_msgpack=options or "msgpack" in ctype, options=options)
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self._conns.add(conn)
        writer = asyncio.create_task(self._writer(client))
        timeout = asyncio.get_running_loop().call_later(self.auth_timeout, self._auth_timeout, client)
        self._push(client, _Encoded({"T": "success", "msg": "connected"}))
        try:
            async for raw in conn:
                await self._on_message(client, raw)
                if client.token is not None:
                    timeout.cancel()
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(conn)
            timeout.cancel()
            self._forget(client)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self.metrics.clients.set(len(self.clients))
            if client.token is not None:
                self._audit("disconnect", client, delivered=client.delivered, reason=client.close_reason or "closed")

    def _auth_timeout(self, client: _Client) -> None:
        if client.token is None and not client.closing:
            self._close_with(client, 404)

    def _close_with(self, client: _Client, code: int) -> None:
        """Send Alpaca's error frame, then close; the writer does it so frames stay in order."""
        client.closing = True
        client.close_reason = ERRORS[code]
        client.pending[("close", code)] = _control(code)
        self._mark(client)

    def _push(self, client: _Client, item: _Encoded) -> None:
        client.seq += 1
        client.pending[client.seq] = item
        self._mark(client)

    def _mark(self, client: _Client) -> None:
        """The client has pending frames: write them in the next flush (this turn's, or one scheduled now)."""
        if not client.dirty:
            client.dirty = True
            self._dirty.append(client)
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """One frame per client with pending messages: written now if its socket keeps up, else by its writer."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        sent: Counter[str] = Counter()
        for client in dirty:
            client.dirty = False
            if not client.pending or client.draining:
                continue  # nothing left, or the writer task owns the buffer until the socket drains
            conn = client.conn
            transport = conn.transport
            if (
                client.close_reason is not None
                or conn.protocol.state is not State.OPEN
                or transport is None
                or transport.get_write_buffer_size() > WRITE_BUFFER_HIGH
            ):
                client.wake.set()
                continue
            items = list(client.pending.values())
            client.pending.clear()
            frame = client.frame(items)
            try:
                if isinstance(frame, bytes):
                    conn.protocol.send_binary(frame)
                else:
                    conn.protocol.send_text(frame.encode())
                conn.send_data()  # websockets' own write path minus the drain, which is the writer task's job
            except Exception as exc:  # a broken socket: the handler sees the close and forgets the client
                log.debug("write to %s failed: %s", conn.remote_address, exc)
                transport.abort()
                continue
            client.delivered += len(items)
            self.delivered += len(items)
            for item in items:
                sent[item.channel] += 1
        for channel, count in sent.items():  # one metric update per channel and pass, not per delivery
            self.metrics.messages_sent.labels(channel).inc(count)

    def _count_sent(self, items: list[_Encoded]) -> None:
        for channel, count in Counter(item.channel for item in items).items():
            self.metrics.messages_sent.labels(channel).inc(count)

    async def _on_message(self, client: _Client, raw: str | bytes) -> None:
        if client.closing:
            return
        try:
            if isinstance(raw, str):
                client.use_msgpack = client.options  # Alpaca's option stream answers in msgpack only
                msg = json.loads(raw)
            else:
                client.use_msgpack = True
                msg = msgpack.unpackb(raw, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            self._push(client, _control(400))
            return
        if not isinstance(msg, dict):
            self._push(client, _control(400))
            return
        action = msg.get("action")
        if action == "auth":
            await self._auth(client, msg)
        elif action in ("subscribe", "unsubscribe"):
            if client.token is None:
                self._push(client, _control(401))
            else:
                self._subscribe(client, msg, action == "subscribe")
        elif client.token is None:
            self._push(client, _control(401))
        else:
            self._push(client, _control(400))

    async def _auth(self, client: _Client, msg: dict[str, Any]) -> None:
        if client.token is not None:
            self._push(client, _control(403))
            return
        try:
            token = await asyncio.to_thread(tokens.verify, self.warehouse, msg.get("key"), msg.get("secret"))
        except Exception as exc:  # the warehouse is down: refuse, do not crash the connection handler
            log.error("token check failed: %s", exc)
            self.metrics.errors.labels("token_check").inc()
            token = None
        if token is None:
            self.metrics.auth_failures.inc()
            key = msg.get("key")
            self._audit("auth_failed", client, key=key[:64] if isinstance(key, str) else None)
            self._push(client, _control(402))
            return
        if not await self._take_slot(client, token):
            self._close_with(client, 406)
            return
        self._per_token[token.key] += 1
        client.token = token
        self.clients.add(client)
        self.metrics.connections.inc()
        self.metrics.clients.set(len(self.clients))
        self._audit("connect", client)
        self._push(client, _Encoded({"T": "success", "msg": "authenticated"}))

    async def _take_slot(self, client: _Client, token: tokens.Token) -> bool:
        """One of the token's ``max_connections``, counted across every `serve` process (leases in Redis).

        Redis unreachable: the limit falls back to this process's own count (logged and counted as an error),
        rather than refusing every client while the bus, and so the service, is degraded anyway."""
        if self.leases is not None:
            try:
                client.lease = await self.leases.acquire(token.key, token.max_connections)
                return client.lease is not None
            except LeaseErrors as exc:
                log.warning("connection lease for token %s not taken (%s): counting this process only", token.name,
                            exc)  # fmt: skip
                self.metrics.errors.labels("leases").inc()
        return self._per_token[token.key] < token.max_connections

    def _release(self, client: _Client) -> None:
        """Give the client's slot back: queued, written in batches and retried by the leases (never dropped)."""
        lease, token = client.lease, client.token
        client.lease = None
        if lease is not None and token is not None and self.leases is not None:
            self.leases.release(token.key, lease)

    async def _renew_leases(self) -> None:
        """The heartbeat of this process's leases: a process that stops renewing (crashed) frees its slots."""
        assert self.leases is not None
        while True:
            await asyncio.sleep(self.leases.heartbeat_seconds)
            try:
                await self.leases.renew()
            except LeaseErrors as exc:
                log.warning("connection leases not renewed (%s); retrying", exc)
                self.metrics.errors.labels("leases").inc()

    def _audit(self, action: str, client: _Client, **details: Any) -> None:
        """Queue a websocket audit row for the audit task; a warehouse outage is logged, never raised."""
        token = client.token
        row = {"peer": str(client.conn.remote_address), **details}
        if token is not None:
            row["token_name"] = token.name
        if len(self._audit_rows) >= AUDIT_QUEUE_LIMIT:
            self.metrics.errors.labels("audit").inc()
            return
        subject = token.key if token else row.get("key")  # an auth failure: the key that was tried
        self._audit_rows.append((action, subject, row))
        self._audit_wake.set()

    async def _audit_loop(self) -> None:
        """Write the queued audit rows: every row that accumulated in one transaction on one connection."""
        while True:
            await self._audit_wake.wait()
            self._audit_wake.clear()
            rows, self._audit_rows = self._audit_rows, []
            if not rows:
                continue
            self._audit_writing = True
            try:
                await asyncio.to_thread(self._write_audits, rows)
            except Exception as exc:
                log.warning("%d audit row(s) (websocket) not written: %s", len(rows), exc)
                self.metrics.errors.labels("audit").inc()
            finally:
                self._audit_writing = False

    def _write_audits(self, rows: list[tuple[str, str | None, dict[str, Any]]]) -> None:
        with self.warehouse.connect() as conn:
            for action, subject, details in rows:
                audit.record(conn, "websocket", action, actor="serve", subject=subject, details=details)

    def _subscribe(self, client: _Client, msg: dict[str, Any], add: bool) -> None:
        assert client.token is not None
        changes: dict[str, list[str]] = {}
        names = OPTION_CHANNELS if client.options else {c: c for c in CHANNELS}
        for name, channel in names.items():
            value = msg.get(name, [])
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(s, str) and 0 < len(s) <= 32 for s in value):
                self._push(client, _control(400))
                return
            if add and channel == "optionQuotes" and "*" in value:  # as Alpaca: every option quote is too much
                self._push(client, _control(400))
                return
            changes[channel] = value
        if add:
            after = set().union(*client.subs.values(), *changes.values())
            if len(after) > client.token.max_symbols:
                self._push(client, _control(405))
                return
        for channel, symbols in changes.items():
            for symbol in symbols:
                if add:
                    client.subs[channel].add(symbol)
                    self._index[channel].setdefault(symbol, set()).add(client)
                else:
                    client.subs[channel].discard(symbol)
                    subscribers = self._index[channel].get(symbol)
                    if subscribers is not None:
                        subscribers.discard(client)
                        if not subscribers:
                            del self._index[channel][symbol]
        self._push(client, _Encoded(client.subscription()))

    def _forget(self, client: _Client) -> None:
        if client in self.clients:
            self.clients.discard(client)
            if client.token is not None:
                self._per_token[client.token.key] -= 1
                self._release(client)
        for channel, symbols in client.subs.items():
            for symbol in symbols:
                subscribers = self._index[channel].get(symbol)
                if subscribers is not None:
                    subscribers.discard(client)
                    if not subscribers:
                        del self._index[channel][symbol]

    async def _writer(self, client: _Client) -> None:
        """The slow path: the only place that awaits this client's socket (backlogged, or closing after a frame)."""
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
            while True:
                await client.wake.wait()
                client.wake.clear()
                if not client.pending:
                    continue
                client.draining = True
                items = list(client.pending.values())
                client.pending.clear()
                closing = client.close_reason
                try:
                    await asyncio.wait_for(client.conn.send(client.frame(items)), self.send_timeout)
                except TimeoutError:
                    self._drop_slow(client)
                    return
                finally:
                    client.draining = False
                client.delivered += len(items)
                self.delivered += len(items)
                self._count_sent(items)
                if closing:
                    await client.conn.close(1008, closing)
                    return
                if client.pending:  # arrived while the socket drained: back to the fast path, or here again
                    self._mark(client)

    def _drop_slow(self, client: _Client) -> None:
        """407 and close, without waiting on a socket that is not being read."""
        if client.close_reason is None:  # not already counted as an overflow
            self.dropped_slow += 1
            self.metrics.slow_client_drops.inc()
            client.close_reason = ERRORS[407]
        self._forget(client)
        client.closing = True
        log.warning("dropping slow client %s (407)", client.conn.remote_address)
        transport = client.conn.transport
        if transport is not None:
            transport.abort()

    # ------------------------------------------------------------------ bus -> clients
    async def _fanout(self) -> None:
        assert self.bus is not None
        while True:
            try:
                async for entries in self.bus.read():
                    for msgs, _ in entries:
                        self._deliver(msgs)
                    self._flush()
                    now = time.time_ns()
                    for _, at in entries:
                        if at:
                            self.latencies_ms.append((now - at) / 1e6)
                            self.metrics.delivery_latency.observe((now - at) / 1e9)
                    if len(self.latencies_ms) > 40_000:
                        del self.latencies_ms[:20_000]
            except (aioredis.RedisError, OSError) as exc:
                log.error("bus read failed (%s); retrying in 1 s", exc)
                self.metrics.errors.labels("bus").inc()
                await asyncio.sleep(1.0)
            except Exception:  # a bug must not silently stop the fan-out for every client
                log.exception("fan-out failed; resuming from the latest event")
                self.metrics.errors.labels("fanout").inc()
                await asyncio.sleep(0.1)

    def _deliver(self, msgs: list[dict[str, Any]]) -> None:
        """Never awaits: a client's buffer is a dict insertion; overflow is 407 for that client only.

        The frames are written by the ``_flush`` that follows (once per bus read, not per message)."""
        self.events += len(msgs)
        overflowed: list[_Client] = []
        dirty = self._dirty
        limit = self.queue_limit
        for msg in msgs:
            kind = msg.get("T")
            symbol = msg.get("S", "")
            if kind in OPTION_CHANNEL_OF_TYPE and len(symbol) > 10 and _OCC.match(symbol):
                channel: str | None = OPTION_CHANNEL_OF_TYPE[kind]
            else:
                channel = CHANNEL_OF_TYPE.get(kind)  # type: ignore[arg-type]
            if channel is None:
                continue
            self.metrics.messages_in.labels(channel).inc()
            by_symbol = self._index[channel]
            exact = by_symbol.get(symbol, ())
            star = by_symbol.get("*", ())
            if not exact and not star:
                continue
            item = _Encoded(msg, channel)
            if kind == "q":
                slot: tuple[Any, ...] | None = ("q", symbol)
            elif kind in ("b", "u", "d"):
                slot = (BAR_SLOT if kind == "b" else kind, symbol, msg.get("t"))
                if kind == "u":
                    replaced = self._replace_pending_bar(msg, slot[1:])
                    if replaced:
                        exact, star = set(exact) - replaced, set(star) - replaced
            else:
                slot = None
            for targets in (exact, star):
                for client in targets:
                    if client.closing or (targets is star and client in exact):
                        continue
                    pending = client.pending
                    if slot is not None:
                        pending[slot] = item
                    else:
                        client.seq += 1
                        pending[client.seq] = item
                    if not client.dirty:
                        client.dirty = True
                        dirty.append(client)
                    if len(pending) > limit:
                        overflowed.append(client)
                        client.closing = True  # no more deliveries; forgotten after the loop (sets in use here)
        for client in overflowed:
            self.dropped_slow += 1
            self.metrics.slow_client_drops.inc()
            log.warning("client %s fell %d messages behind: 407", client.conn.remote_address, len(client.pending))
            self._forget(client)
            client.pending.clear()
            self._close_with(client, 407)

    def _replace_pending_bar(self, update: dict[str, Any], minute: tuple[Any, ...]) -> set[_Client]:
        """An updated bar for a minute whose original bar a client has not been sent yet: the pending bar takes the
        updated values and stays a ``b`` (in its place); returns those clients.

        Alpaca's semantics: ``u`` corrects a bar already published, and only ``updatedBars`` subscribers get it.
        A client that has not received the original yet must not get a ``u`` for a minute it never saw (clients
        key corrections on the bar they hold), nor two messages for one minute: it gets one ``b`` with the latest
        values, whichever of ``bars``/``updatedBars`` it subscribed to. A ``bars``-only client whose bar already
        left gets nothing, as on Alpaca."""
        slot = (BAR_SLOT, *minute)
        by_symbol = self._index["bars"]
        replaced: set[_Client] = set()
        as_bar: _Encoded | None = None
        for targets in (by_symbol.get(minute[0], ()), by_symbol.get("*", ())):
            for client in targets:
                if slot in client.pending and not client.closing:
                    as_bar = as_bar or _Encoded({**update, "T": "b"}, "bars")
                    client.pending[slot] = as_bar
                    replaced.add(client)
        return replaced

    async def _recheck_tokens(self) -> None:
        """Close the connections of tokens revoked since they authenticated."""
        while True:
            await asyncio.sleep(TOKEN_RECHECK_SECONDS)
            keys = sorted({c.token.key for c in self.clients if c.token is not None})
            try:
                live = await asyncio.to_thread(tokens.live_keys, self.warehouse, keys)
            except Exception as exc:
                log.warning("token re-check failed: %s", exc)
                continue
            for client in list(self.clients):
                if client.token is not None and client.token.key not in live:
                    self._forget(client)
                    self._close_with(client, 402)
