"""Alpaca market-data stream protocol (``/v2/{feed}``) for the offline simulator.

Why a separate module: the REST part is plain threads + ``http.server``; the stream needs an asyncio
loop (``websockets``), which runs here in its own thread. ``StockDataStream(url_override=ws_url)``
from alpaca-py connects, authenticates and subscribes exactly as against Alpaca: msgpack frames
(JSON text frames are answered in JSON, as Alpaca does), ``[{"T":"success","msg":"connected"}]``,
auth -> ``authenticated`` or ``{"T":"error","code":402,"msg":"auth failed"}``, subscribe ->
``{"T":"subscription", ...}``. Market data is pushed on demand with ``publish_minute(ts)`` (replay),
never on a wall-clock timer, so tests are deterministic and fast.

Each client gets a bounded queue drained by its own writer task; a client whose queue is full is
disconnected (websockets' ``broadcast()`` has no backpressure, see DESIGN.md pitfalls).

Options: a client connected on ``/v1beta1/{feed}`` (alpaca-py's ``OptionDataStream``) speaks the option stream:
``trades``/``quotes`` of OCC symbols, msgpack. ``publish_option_quotes(ts)`` pushes, for every subscribed
contract, the model's quote of that contract (its chain as of ``ts``'s session) and its last trade.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
import pandas as pd
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from alpaca_sim.market_model import NS_PER_MIN, stable_uniform

if TYPE_CHECKING:
    from alpaca_sim.server import SimulatorServer

CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
_CHANNEL_TYPE = {"bars": "b", "updatedBars": "u", "trades": "t"}
QUEUE_SIZE = 10_000


class _Client:
    """One connected stream client: its subscriptions and outgoing queue."""

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.options = bool(conn.request and conn.request.path.startswith("/v1beta1/"))
        self.authenticated = False
        self.use_msgpack = True
        self.subs: dict[str, set[str]] = {c: set() for c in CHANNELS}
        self.queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(QUEUE_SIZE)
        self.data_sent = 0  # market-data messages sent, for the drop_every fault

    def wants(self, channel: str, symbol: str) -> bool:
        s = self.subs[channel]
        return symbol in s or "*" in s

    def encode(self, msgs: list[dict[str, Any]]) -> bytes | str:
        if self.use_msgpack:
            return msgpack.packb(msgs, use_bin_type=True)
        return json.dumps([_jsonable(m) for m in msgs])

    def subscription_msg(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"T": "subscription"}
        for c in CHANNELS:
            msg[c] = sorted(self.subs[c])
        msg["corrections"] = sorted(self.subs["trades"])
        msg["cancelErrors"] = sorted(self.subs["trades"])
        return msg


def _jsonable(m: dict[str, Any]) -> dict[str, Any]:
    out = dict(m)
    t = out.get("t")
    if isinstance(t, msgpack.Timestamp):
        out["t"] = t.to_datetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return out


_ERRORS = {402: "auth failed", 405: "symbol limit exceeded", 406: "connection limit exceeded",
           409: "insufficient subscription"}  # fmt: skip


class MarketDataStreamServer:
    """websockets server in a background thread speaking Alpaca's stock data stream protocol."""

    def __init__(self, sim: SimulatorServer, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.universe: list[str] = []  # symbols served to "*" subscribers
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self.dropped_clients = 0
        # fault: close a client's connection after every N market-data messages sent to it (0 = never), so
        # tests can replay a session through forced disconnects; forced_disconnects counts them
        self.drop_every = 0
        self.forced_disconnects = 0
        # fault: error codes the option stream answers with, first in first out (402, 406, 409: to the next option
        # client's auth; 405: to its next subscribe), as Alpaca does for bad keys, a second connection, a plan
        # without options and too many contracts; empty = a healthy option stream
        self.option_errors: list[int] = []
        self._trade_id = 0
        self._chains: dict[tuple[str, Any], pd.DataFrame] = {}  # (root, session day) -> the model's chain

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the loop thread and wait until the socket is bound."""
        self._thread = threading.Thread(target=self._run, name="alpaca-sim-ws", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("stream server did not start")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        async with serve(self._handle, self.host, self.port, max_size=2**22) as server:
            self._server = server
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stopped.wait()
            server.close()

    def stop(self) -> None:
        """Close all connections and the listening socket."""
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def clients(self) -> int:
        return len(self._clients)

    # -------------------------------------------------------------- protocol
    async def _handle(self, conn: ServerConnection) -> None:
        client = _Client(conn)
        # alpaca-py sends Content-Type: application/msgpack; anything else gets JSON, as on Alpaca
        ctype = conn.request.headers.get("Content-Type", "") if conn.request else ""
        client.use_msgpack = "msgpack" in ctype
        writer = asyncio.create_task(self._writer(client))
        try:
            await client.queue.put([{"T": "success", "msg": "connected"}])
            async for raw in conn:
                if isinstance(raw, str):
                    client.use_msgpack = False
                    try:
                        msg = json.loads(raw)
                    except ValueError:
                        await client.queue.put([{"T": "error", "code": 400, "msg": "invalid syntax"}])
                        continue
                else:
                    client.use_msgpack = True
                    try:
                        msg = msgpack.unpackb(raw, raw=False)
                    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                        await client.queue.put([{"T": "error", "code": 400, "msg": "invalid syntax"}])
                        continue
                await self._on_message(client, msg)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
            writer.cancel()

    async def _on_message(self, client: _Client, msg: Any) -> None:
        if not isinstance(msg, dict):
            await client.queue.put([{"T": "error", "code": 400, "msg": "invalid syntax"}])
            return
        action = msg.get("action")
        fault = self.option_errors[0] if client.options and self.option_errors else None
        if action == "auth" and fault in (402, 406, 409) and not client.authenticated:
            self.option_errors.pop(0)
            await client.queue.put([{"T": "error", "code": fault, "msg": _ERRORS[fault]}])
            return
        if action == "subscribe" and fault == 405 and client.authenticated:
            self.option_errors.pop(0)
            await client.queue.put([{"T": "error", "code": 405, "msg": _ERRORS[405]}])
            return
        if action == "auth":
            if client.authenticated:
                await client.queue.put([{"T": "error", "code": 403, "msg": "already authenticated"}])
            elif msg.get("key") == self.sim.api_key and msg.get("secret") == self.sim.secret_key:
                client.authenticated = True
                self._clients.add(client)
                await client.queue.put([{"T": "success", "msg": "authenticated"}])
            else:
                await client.queue.put([{"T": "error", "code": 402, "msg": "auth failed"}])
            return
        if not client.authenticated:
            await client.queue.put([{"T": "error", "code": 401, "msg": "not authenticated"}])
            return
        if action in ("subscribe", "unsubscribe"):
            for ch in CHANNELS:
                for sym in msg.get(ch, []) or []:
                    if action == "subscribe":
                        client.subs[ch].add(sym)
                    else:
                        client.subs[ch].discard(sym)
            await client.queue.put([client.subscription_msg()])
            return
        await client.queue.put([{"T": "error", "code": 400, "msg": "invalid syntax"}])

    async def _writer(self, client: _Client) -> None:
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
            while True:
                msgs = await client.queue.get()
                if msgs is None:
                    return
                data = [m for m in msgs if m.get("T") in ("b", "u", "t", "q", "d", "s")]
                if self.drop_every and data and client.data_sent + len(data) >= self.drop_every:
                    keep = self.drop_every - client.data_sent  # send up to the N-th message, then hang up
                    await client.conn.send(client.encode(msgs[:keep]))
                    self.forced_disconnects += 1
                    await client.conn.close(1011, "simulated disconnect")
                    return
                client.data_sent += len(data)
                await client.conn.send(client.encode(msgs))

    # -------------------------------------------------------------- publishing
    def _symbols(self) -> set[str]:
        syms: set[str] = set()
        for c in list(self._clients):
            for ch in ("bars", "updatedBars", "trades"):
                syms |= {s for s in c.subs[ch] if s != "*"}
                if "*" in c.subs[ch]:
                    syms |= set(self.universe)
        return syms

    def _messages_for(self, ts_ns: int, symbols: Iterable[str], updated: bool) -> list[dict[str, Any]]:
        model = self.sim.model
        i = int(np.searchsorted(model.open_ns, ts_ns, side="right")) - 1
        if i < 0 or ts_ns >= int(model.close_ns[i]):
            return []
        out: list[dict[str, Any]] = []
        stamp = msgpack.Timestamp.from_unix_nano(ts_ns)
        for sym in sorted(symbols):
            m = model.minute_session(sym, i)
            j = int(np.searchsorted(m.ts_ns, ts_ns))
            if j >= len(m.ts_ns) or int(m.ts_ns[j]) != ts_ns:
                continue  # no trades in that minute: no bar, as on Alpaca
            self._trade_id += 1
            trade_ns = (
                ts_ns + NS_PER_MIN - 1_000_000 * (1 + int(stable_uniform(self.sim.model.seed, sym, ts_ns) * 5000))
            )
            out.append(
                {
                    "T": "t",
                    "S": sym,
                    "i": self._trade_id,
                    "x": "V",
                    "p": float(m.close[j]),
                    "s": int(max(1, int(m.volume[j]) // 10)),
                    "c": ["@"],
                    "z": "C",
                    "t": msgpack.Timestamp.from_unix_nano(trade_ns),
                }
            )
            out.append(
                {
                    "T": "u" if updated else "b",
                    "S": sym,
                    "o": float(m.open[j]),
                    "h": float(m.high[j]),
                    "l": float(m.low[j]),
                    "c": float(m.close[j]),
                    "v": int(m.volume[j]),
                    "n": int(m.trade_count[j]),
                    "vw": float(m.vwap[j]),
                    "t": stamp,
                }
            )
        return out

    async def _broadcast(self, ts_ns: int, updated: bool) -> int:
        msgs = self._messages_for(ts_ns, self._symbols(), updated)
        sent = 0
        for client in list(self._clients):
            if client.options:
                continue
            mine = []
            for m in msgs:
                channel = "trades" if m["T"] == "t" else ("updatedBars" if updated else "bars")
                if client.wants(channel, m["S"]):
                    mine.append(m)
            if not mine:
                continue
            try:
                client.queue.put_nowait(mine)
                sent += len(mine)
            except asyncio.QueueFull:  # slow consumer: drop it rather than grow without bound
                self.dropped_clients += 1
                self._clients.discard(client)
                await client.conn.close(1008, "slow client")
        return sent

    def publish_minute(self, ts: datetime | pd.Timestamp, *, updated: bool = False) -> int:
        """Send the minute bar at ``ts`` (start of minute) of every subscribed symbol; thread-safe."""
        if self._loop is None:
            raise RuntimeError("stream server not started")
        t = pd.Timestamp(ts)
        if t.tzinfo is None:
            t = t.tz_localize(UTC)
        fut = asyncio.run_coroutine_threadsafe(self._broadcast(t.as_unit("ns").value, updated), self._loop)
        return fut.result(timeout=10)

    def _option_messages(self, ts_ns: int, client: _Client) -> list[dict[str, Any]]:
        stamp = msgpack.Timestamp.from_unix_nano(ts_ns)
        day = pd.Timestamp(ts_ns, tz=UTC).tz_convert("America/New_York").date()
        out: list[dict[str, Any]] = []
        for channel, kind in (("quotes", "q"), ("trades", "t")):
            for symbol in sorted(client.subs[channel] - {"*"}):
                root = symbol[: len(symbol) - 15]  # OCC: root, YYMMDD, C/P, strike x 1000 (8 digits)
                chain = self._chains.get((root, day))
                if chain is None:
                    chain = self._chains[(root, day)] = self.sim.model.option_chain(root, day).set_index("symbol")
                if symbol not in chain.index:
                    continue
                row = chain.loc[symbol]
                if kind == "q":
                    bid, ask = float(row["bid"]), float(row["ask"])
                    out.append({"T": "q", "S": symbol, "bx": "C", "bp": bid, "bs": int(row["bid_size"]),
                                "ax": "C", "ap": ask, "as": int(row["ask_size"]), "c": " ", "t": stamp})  # fmt: skip
                elif np.isfinite(row["last_price"]):
                    out.append({"T": "t", "S": symbol, "p": float(row["last_price"]), "s": int(row["last_size"]),
                                "x": "C", "c": "I", "t": stamp})  # fmt: skip
        return out

    async def _broadcast_options(self, ts_ns: int) -> int:
        sent = 0
        for client in list(self._clients):
            if not client.options:
                continue
            msgs = self._option_messages(ts_ns, client)
            if msgs:
                with contextlib.suppress(asyncio.QueueFull):
                    client.queue.put_nowait(msgs)
                    sent += len(msgs)
        return sent

    def publish_option_quotes(self, ts: datetime | pd.Timestamp) -> int:
        """Send every option client the quote and last trade of each contract it subscribed to; thread-safe."""
        if self._loop is None:
            raise RuntimeError("stream server not started")
        t = pd.Timestamp(ts)
        t = t.tz_localize(UTC) if t.tzinfo is None else t
        fut = asyncio.run_coroutine_threadsafe(self._broadcast_options(t.as_unit("ns").value), self._loop)
        return fut.result(timeout=30)

    def wait_for_clients(self, n: int = 1, timeout: float = 10.0) -> bool:
        """Block until ``n`` authenticated clients have subscribed to something (test helper)."""
        deadline = datetime.now(UTC).timestamp() + timeout
        while datetime.now(UTC).timestamp() < deadline:
            ready = [c for c in list(self._clients) if any(c.subs[ch] for ch in CHANNELS)]
            if len(ready) >= n:
                return True
            threading.Event().wait(0.02)
        return False
