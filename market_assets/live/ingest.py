"""`market-data stream`: Alpaca's market-data stream ingested live into Redis, the bus and the warehouse.

One process per Alpaca connection (Alpaca allows one per account). alpaca-py's ``StockDataStream`` owns the
socket; its handlers only put the message on an in-memory queue, because alpaca-py awaits handlers inline and a
slow one stalls the socket until Alpaca drops us with 407. Three tasks do the I/O on the same loop:

* the **writer** drains the queue in micro-batches (whatever has arrived, no waiting): it updates each symbol's
  cache key (``MarketData`` with the session's OHLCV so far) and appends the batch to the bus, in one round
  trip each, then parks the minute bars for the warehouse. Target: bar arrival -> Redis p99 <= 50 ms.
* the **flusher** upserts the parked minute bars into ``market.bars_minute`` every ``flush_seconds`` through the
  warehouse resource (validated by the same pandera contract as the batch; an updated bar replaces its minute).
  Target: arrival -> warehouse <= 2 s.
* the **watchdog** knows NYSE sessions: silence during a session means a dead feed and forces a reconnect;
  silence after the close is normal.

After every (re)connect, once the subscription is acknowledged, the minutes since the last bar seen (or since the
session's open) are fetched through REST and upserted, so a disconnect leaves no gap. The T+1 batch replace of
the day remains the final word (``market_assets.live.reconcile`` compares the two).

alpaca-py pitfalls handled here: 402 (auth failed) and 406 (connection limit) are retried forever by alpaca-py
and 409 (insufficient subscription) makes ``run()`` return quietly. Errors are classified by their code: bad
keys, insufficient subscription and a symbol limit are fatal with a clear message (non-zero exit); a
connection-limit conflict is retried with backoff and logged as an alert each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http import HTTPStatus
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import redis.asyncio as aioredis
from alpaca.data.live.option import OptionDataStream
from alpaca.data.live.stock import StockDataStream
from redis.asyncio.cluster import RedisCluster
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from market_assets.alpaca.resource import AlpacaResource
from market_assets.cache.models import MarketData, TechnicalIndicators
from market_assets.cache.resource import CacheResource
from market_assets.contracts.bars import coerce_raw_bars, split_bars
from market_assets.domain.sessions import nyse
from market_assets.errors import AlpacaAuthError, AlpacaError
from market_assets.live.bus import AsyncRedis, Bus, bus_key, connect
from market_assets.live.http import respond, respond_json, respond_metrics
from market_assets.live.options import LiveChains
from market_assets.observability.metrics import StreamMetrics
from market_assets.warehouse import tables
from market_assets.warehouse.queries.bars import STREAM_RUN_ID
from market_assets.warehouse.resource import WarehouseResource

log = logging.getLogger(__name__)
# Alpaca's message type -> the channel label of the stream metrics
CHANNEL_OF_TYPE = {"b": "bars", "u": "updatedBars", "d": "dailyBars", "t": "trades", "q": "quotes", "s": "statuses"}

CHANNELS = ("bars", "updatedBars", "dailyBars", "trades", "quotes", "statuses")
BAR_TYPES = frozenset({"b", "u"})
MAX_BATCH = 5_000  # messages per writer round: one XADD entry stays well under a megabyte
TRAILING_MINUTES = 2  # re-fetched before the last bar seen: a bar may have been cut mid-minute by a disconnect
LATENCY_SAMPLES = 20_000
_BAR_FIELDS = ("o", "h", "l", "c", "v", "n", "vw")


class StreamAuthError(AlpacaAuthError):
    """402 from the stream: the keys are wrong. Retrying cannot help, so the service stops (exit 2)."""

    exit_code = 2


class StreamEntitlementError(AlpacaError):
    """409 insufficient subscription or 405 symbol limit: the plan does not allow this feed or this many symbols."""

    exit_code = 2


def _ts(value: Any) -> pd.Timestamp:
    """A wire ``t``: msgpack Timestamp (alpaca-py's msgpack), RFC3339 text (JSON) or a datetime."""
    if isinstance(value, msgpack.Timestamp):
        return pd.Timestamp(value.to_unix_nano(), tz=UTC)
    return pd.Timestamp(value).tz_convert(UTC) if pd.Timestamp(value).tzinfo else pd.Timestamp(value, tz=UTC)


def session_bounds(now: datetime) -> tuple[date, pd.Timestamp, pd.Timestamp] | None:
    """(session, open, close) of the latest NYSE session that opened at or before ``now``; None before the first."""
    schedule = nyse().schedule
    now_ts = pd.Timestamp(now).tz_convert(UTC)
    i = int(schedule["open"].searchsorted(now_ts, side="right")) - 1
    if i < 0:
        return None
    row = schedule.iloc[i]
    return schedule.index[i].date(), pd.Timestamp(row["open"]), pd.Timestamp(row["close"])


def in_session(now: datetime) -> bool:
    bounds = session_bounds(now)
    return bounds is not None and bounds[1] <= pd.Timestamp(now) < bounds[2]


def silence_is_abnormal(now: datetime, silent_seconds: float, limit_seconds: float) -> bool:
    """The watchdog's rule: a feed that says nothing for ``limit_seconds`` while the market is open is dead."""
    return silent_seconds > limit_seconds and in_session(now)


@dataclass
class _SymbolDay:
    """The minute bars of one symbol's current session, for the cache key's session OHLCV."""

    session: date
    bars: dict[int, tuple[float, float, float, float, int, float | None]]  # ts_ns -> o, h, l, c, v, vw


class _Classified:
    """alpaca-py's stream with its error frames classified by code instead of retried forever: a mixin of both
    streams (stock and option: alpaca-py's ``_auth``/``_dispatch`` are the same code in each)."""

    source = "stock"
    _service: IngestService
    _ws: Any
    _api_key: str
    _secret_key: str
    _should_run: bool
    _stop_stream_event: asyncio.Event | None

    async def _auth(self) -> None:
        await self._ws.send(msgpack.packb({"action": "auth", "key": self._api_key, "secret": self._secret_key}))
        reply = msgpack.unpackb(await self._ws.recv())
        first = reply[0] if reply else {}
        if first.get("T") == "error":
            self._service.classify_error(first, self.source)
        if first.get("T") != "success" or first.get("msg") != "authenticated":
            raise ValueError(f"unexpected reply to auth: {first!r}")

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("T")
        if kind == "subscription":
            if self.source == "stock":
                self._service.on_subscribed()
        elif kind == "error":
            self._service.classify_error(msg, self.source)
        await super()._dispatch(msg)  # type: ignore[misc]

    def fail(self) -> None:
        """Make ``_run_forever`` return at its next turn (it catches every exception and retries)."""
        self._should_run = False
        if self._stop_stream_event is not None:
            self._stop_stream_event.set()


class _Stream(_Classified, StockDataStream):
    def __init__(self, service: IngestService, api_key: str, secret_key: str, url: str) -> None:
        super().__init__(api_key, secret_key, raw_data=True, url_override=url)
        self._service = service
        self._reconnect_min_backoff = service.reconnect_min_seconds


class _OptionStream(_Classified, OptionDataStream):
    source = "option"

    def __init__(self, service: IngestService, api_key: str, secret_key: str, url: str) -> None:
        super().__init__(api_key, secret_key, raw_data=True, url_override=url)
        self._service = service
        self._reconnect_min_backoff = service.reconnect_min_seconds


class IngestService:
    """The stream ingest: one alpaca-py connection, its writer, flusher, watchdog and ``/healthz``."""

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        stream_url: str,
        api_key: str,
        secret_key: str,
        feed: str,
        warehouse: WarehouseResource,
        cache: CacheResource,
        alpaca: AlpacaResource,
        clock: Callable[[], datetime] | None = None,
        flush_seconds: float = 0.5,
        silence_seconds: float = 90.0,
        watchdog_interval: float = 1.0,
        reconnect_min_seconds: float = 1.0,
        health_host: str = "127.0.0.1",
        health_port: int | None = None,
        option_contracts: int = 0,
        option_stream_url: str | None = None,
        risk_free_rate: float = 0.0,
        dividend_yields: Mapping[str, float] | None = None,
    ) -> None:
        self.symbols = list(symbols)
        self.stream_url = stream_url
        self.feed = feed
        self.warehouse = warehouse
        self.cache = cache
        self.alpaca = alpaca
        self.clock = clock or (lambda: datetime.now(UTC))
        self.flush_seconds = flush_seconds
        self.silence_seconds = silence_seconds
        self.watchdog_interval = watchdog_interval
        self.reconnect_min_seconds = reconnect_min_seconds
        self.health_host = health_host
        self.health_port = health_port
        # options: the contracts of the cached chains of `symbols`, nearest expiries first, at most this many
        self.option_contracts = option_contracts
        self.option_stream_url = option_stream_url or option_url(stream_url)
        self.risk_free_rate = risk_free_rate
        self.dividend_yields = dict(dividend_yields or {})
        self.chains: LiveChains | None = None
        self.option_messages = 0
        self._option_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._option_stream: _OptionStream | None = None
        self._api_key, self._secret_key = api_key, secret_key
        self.fatal: BaseException | None = None
        # counters for /healthz and the tests
        self.received = 0
        self.bars_written = 0
        self.backfilled = 0
        self.connections = 0
        self.watchdog_reconnects = 0
        self.connection_limit_alerts = 0
        self.rejected = 0
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)  # arrival -> Redis acknowledged
        self.warehouse_lag_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)  # arrival -> committed
        self.metrics = StreamMetrics()  # served on /metrics (names and meaning: observability.metrics)
        self._queue: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self._pending: dict[tuple[str, int], tuple[dict[str, Any], float]] = {}
        self._streamed_at: dict[tuple[str, int], float] = {}  # when the stream last delivered a minute
        self._days: dict[str, _SymbolDay] = {}
        self._indicators: dict[str, tuple[TechnicalIndicators | None, TechnicalIndicators | None]] = {}
        self._last_bar_ns: int | None = None
        self._last_message_at = time.monotonic()
        self._connected = False
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stream: _Stream | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: AsyncRedis | None = None
        self.bus: Bus | None = None
        self.health_bound = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Run until ``stop()`` or a fatal error (raised after a clean shutdown and a final flush)."""
        self._loop = asyncio.get_running_loop()
        self._redis = connect(self.cache.resolved_url(), socket_timeout=5, socket_connect_timeout=2)
        self.bus = Bus(self._redis, bus_key(self.cache.key_prefix))
        await self._load_indicators()
        stream = self._stream = _Stream(self, self._api_key, self._secret_key, self.stream_url)
        stream.subscribe_bars(self._enqueue, *self.symbols)
        stream.subscribe_updated_bars(self._enqueue, *self.symbols)
        stream.subscribe_daily_bars(self._enqueue, *self.symbols)
        stream.subscribe_trades(self._enqueue, *self.symbols)
        stream.subscribe_quotes(self._enqueue, *self.symbols)
        stream.subscribe_trading_statuses(self._enqueue, *self.symbols)
        self._tasks = [
            asyncio.create_task(self._writer(), name="stream-writer"),
            asyncio.create_task(self._flusher(), name="stream-flusher"),
            asyncio.create_task(self._watchdog(), name="stream-watchdog"),
        ]
        if self.option_contracts > 0:
            await self._start_options()
        health = None
        if self.health_port is not None:
            health = await serve(self._health_handler, self.health_host, self.health_port,
                                 process_request=self._process_request)  # fmt: skip
            self.health_port = next(iter(health.sockets)).getsockname()[1]
            log.info("/healthz on http://%s:%d/healthz", self.health_host, self.health_port)
        self.health_bound.set()
        try:
            await stream._run_forever()
        finally:
            with contextlib.suppress(Exception):
                await stream.close()
            if self._option_stream is not None:
                with contextlib.suppress(Exception):
                    await self._option_stream.close()
            await self._drain()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.flush()
            if health is not None:
                health.close()
            await self._redis.aclose()
        if self.fatal is not None:
            raise self.fatal

    def stop(self) -> None:
        """Thread-safe and idempotent: end ``run()`` after a final flush."""
        if self._loop is not None and self._stream is not None and not self._loop.is_closed():
            stream = self._stream
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(stream.stop_ws()))

    async def _drain(self) -> None:
        """Let the writer empty the queue before shutting down, so nothing received is lost."""
        for _ in range(100):
            if self._queue.empty():
                return
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ errors
    def classify_error(self, msg: dict[str, Any], source: str = "stock") -> None:
        """Alpaca's error codes -> stop (configuration) or retry (transient), never alpaca-py's silent loops.

        The same rules for the option stream (``source="option"``): its keys, entitlement (OPRA) and contract
        limit are configuration too, so a fatal error there stops the whole service with its own message rather
        than leaving the stock half running with the options silently gone."""
        code, text = msg.get("code"), msg.get("msg", "")
        self.metrics.errors.labels(f"alpaca_{code}" if source == "stock" else f"alpaca_option_{code}").inc()
        option = source == "option"
        url = self.option_stream_url if option else self.stream_url
        fatal: BaseException | None = None
        if code == 402:
            fatal = StreamAuthError(
                f"the {source} stream at {url} rejected the API key (402 {text}): check ALPACA_API_KEY and "
                "ALPACA_SECRET_KEY"
            )
        elif code == 409 and option:
            fatal = StreamEntitlementError(
                f"insufficient subscription for the option stream at {url} (409 {text}): options need an OPRA "
                "(or indicative) entitlement; upgrade, or run without --option-contracts"
            )
        elif code == 409:
            fatal = StreamEntitlementError(
                f"insufficient subscription for feed {self.feed!r} (409 {text}): set ALPACA_FEED=iex or upgrade"
            )
        elif code == 405 and option:
            contracts = len(self.chains.contracts) if self.chains else self.option_contracts
            fatal = StreamEntitlementError(
                f"option symbol limit exceeded (405 {text}) subscribing {contracts} contracts: lower --option-contracts"
            )
        elif code == 405:
            fatal = StreamEntitlementError(
                f"symbol limit exceeded (405 {text}) subscribing {len(self.symbols)} symbols: pass fewer with --symbols"
            )
        if fatal is not None:
            self.fatal = fatal
            for stream in (self._stream, self._option_stream):
                if stream is not None:
                    stream.fail()
            raise fatal  # the option stream's fatal error also ends the stock stream: see ``_watchdog``
        if code == 406:
            self.connection_limit_alerts += 1
            log.error(
                "ALERT: connection limit exceeded (406) on the %s stream: another process is connected with these "
                "keys; retrying with backoff (attempt %d)",
                source,
                self.connection_limit_alerts,
            )
            raise ConnectionError("406 connection limit exceeded")  # alpaca-py backs off and reconnects
        log.warning("%s stream error %s: %s", source, code, text)

    # ------------------------------------------------------------------ stream side (no I/O)
    async def _enqueue(self, msg: dict[str, Any]) -> None:
        """The only handler: never awaits I/O, so the socket is never stalled by us."""
        self._queue.put_nowait((time.perf_counter(), msg))

    def on_subscribed(self) -> None:
        """Subscription acknowledged: everything from now on arrives live; fetch what came before through REST."""
        self.connections += 1
        self._connected = True
        self.metrics.connected.set(1)
        if self.connections > 1:
            self.metrics.reconnects.inc()
        self._last_message_at = time.monotonic()
        self._tasks.append(asyncio.create_task(self._backfill(), name="stream-backfill"))

    # ------------------------------------------------------------------ writer: cache + bus
    async def _writer(self) -> None:
        assert self._redis is not None and self.bus is not None
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            self._last_message_at = time.monotonic()
            self.received += len(batch)
            msgs = [m for _, m in batch]
            channels = Counter(CHANNEL_OF_TYPE.get(m.get("T"), "other") for m in msgs)
            now = time.time()
            for channel, count in channels.items():
                self.metrics.received(channel, count, now=now)
            changed: set[str] = set()
            for arrived, msg in batch:
                if msg.get("T") in BAR_TYPES:
                    row = self._bar_row(msg)
                    key = (row["symbol"], row["ts_ns"])
                    self._pending[key] = (row, arrived)
                    self._streamed_at[key] = arrived
                    if self._remember(row):
                        changed.add(row["symbol"])
            try:
                await asyncio.gather(self._write_market(changed), self.bus.publish(msgs))
            except (aioredis.RedisError, OSError) as exc:  # the warehouse does not depend on Redis: keep going
                log.warning("Redis write failed (%s): %d message(s) not published", exc, len(msgs))
                self.metrics.errors.labels("redis").inc()
                continue
            for channel, count in channels.items():
                self.metrics.messages_published.labels(channel).inc(count)
            done = time.perf_counter()
            self.latencies_ms.extend((done - arrived) * 1e3 for arrived, m in batch if m.get("T") in BAR_TYPES)

    @staticmethod
    def _bar_row(msg: dict[str, Any]) -> dict[str, Any]:
        ts = _ts(msg["t"])
        return {"symbol": msg["S"], "t": ts, "ts_ns": ts.value, **{k: msg.get(k) for k in _BAR_FIELDS}}

    def _remember(self, row: dict[str, Any]) -> bool:
        """Keep the bar in its symbol's session state; False for a bar of an older session."""
        ts: pd.Timestamp = row["t"]
        session = ts.tz_convert("America/New_York").date()
        day = self._days.get(row["symbol"])
        if day is None or day.session < session:
            day = self._days[row["symbol"]] = _SymbolDay(session, {})
        elif day.session > session:
            return False
        try:
            day.bars[row["ts_ns"]] = (float(row["o"]), float(row["h"]), float(row["l"]), float(row["c"]),
                                      int(row["v"]), None if row["vw"] is None else float(row["vw"]))  # fmt: skip
        except (TypeError, ValueError):
            return False  # a malformed bar is left to the contract at flush time
        self._last_bar_ns = max(self._last_bar_ns or 0, row["ts_ns"])
        return True

    def _market_data(self, symbol: str) -> MarketData:
        day = self._days[symbol]
        stamps = sorted(day.bars)
        values = [day.bars[t] for t in stamps]
        volume = sum(v[4] for v in values)
        weighted = [(v[5], v[4]) for v in values if v[5] is not None]
        vwap = sum(p * q for p, q in weighted) / volume if weighted and volume else None
        daily, intraday = self._indicators.get(symbol, (None, None))
        return MarketData(
            symbol=symbol,
            session=day.session,
            ts=pd.Timestamp(stamps[-1], tz=UTC).to_pydatetime(),
            source="1Min",
            price=values[-1][3],
            open=values[0][0],
            high=max(v[1] for v in values),
            low=min(v[2] for v in values),
            volume=volume,
            vwap=vwap,
            daily=daily,
            intraday=intraday,
            cached_at=datetime.now(UTC),
        )

    async def _write_market(self, symbols: set[str]) -> None:
        if not symbols:
            return
        assert self._redis is not None
        ttl = self.cache.ttl_for("market")
        async with self._redis.pipeline(transaction=False) as pipe:
            for symbol in symbols:
                pipe.set(self.cache.key(symbol, "market"), self._market_data(symbol).to_json(), ex=ttl)
            await pipe.execute()

    async def _load_indicators(self) -> None:
        """Keep the indicator snapshots the batch cached, so a live update does not erase them."""
        assert self._redis is not None
        try:
            keys = [self.cache.key(s, "market") for s in self.symbols]
            if isinstance(self._redis, RedisCluster):  # one slot per symbol: MGET across slots is refused
                values = await self._redis.mget_nonatomic(keys)
            else:
                values = await self._redis.mget(keys)
        except (aioredis.RedisError, OSError) as exc:
            log.warning("could not read the cached market keys: %s", exc)
            return
        for symbol, raw in zip(self.symbols, values, strict=True):
            if raw:
                with contextlib.suppress(ValueError):
                    cached = MarketData.model_validate_json(raw)
                    self._indicators[symbol] = (cached.daily, cached.intraday)

    # ------------------------------------------------------------------ options
    async def _start_options(self) -> None:
        """Subscribe to the contracts of the cached chains; none cached (the batch has not run): no option stream."""
        chains = []
        for symbol in self.symbols:
            try:
                chain = await asyncio.to_thread(self.cache.read_chain, symbol)
            except Exception as exc:
                log.warning("could not read the cached chain of %s: %s", symbol, exc)
                continue
            if chain is not None and chain.quotes:
                chains.append(chain)
        if not chains:
            log.info("no cached option chain for these symbols: no option stream (run the options job first)")
            return
        self.chains = LiveChains(chains, self.option_contracts)
        contracts = self.chains.contracts
        ostream = self._option_stream = _OptionStream(self, self._api_key, self._secret_key, self.option_stream_url)
        ostream.subscribe_quotes(self._enqueue_option, *contracts)  # named: alpaca-py refuses "*" for quotes
        ostream.subscribe_trades(self._enqueue_option, *contracts)
        self._tasks += [
            asyncio.create_task(ostream._run_forever(), name="option-stream"),
            asyncio.create_task(self._option_writer(), name="option-writer"),
        ]
        log.info("option stream: %d contracts of %d chains from %s", len(contracts), len(chains),
                 self.option_stream_url)  # fmt: skip

    async def _enqueue_option(self, msg: dict[str, Any]) -> None:
        self._option_queue.put_nowait(msg)

    async def _option_writer(self) -> None:
        """Each micro-batch: contracts updated and repriced, the changed chains written, the messages on the bus."""
        assert self.chains is not None and self.bus is not None
        while True:
            batch = [await self._option_queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._option_queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            self.option_messages += len(batch)
            try:
                changed = self.chains.apply(batch, rate=self.risk_free_rate, dividend_yields=self.dividend_yields)
                await self.bus.publish(batch)  # serve routes them by the OCC symbol to optionTrades/optionQuotes
                if changed:
                    report = await asyncio.to_thread(self.cache.write_chains, changed)
                    if not report.ok:  # memory stays current: rewritten with its next quote
                        log.warning("live chain write incomplete: %s", "; ".join(report.errors) or report.skipped)
            except Exception as exc:  # Redis down or a malformed message: the next batch tries again
                log.warning("option batch of %d message(s) not applied: %s", len(batch), exc)

    # ------------------------------------------------------------------ flusher: warehouse
    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception as exc:  # the warehouse is down: keep the bars and try again next tick
                log.warning("warehouse upsert failed, retrying: %s", exc)
                self.metrics.errors.labels("warehouse").inc()

    async def flush(self) -> int:
        """Upsert the parked minute bars (validated) into market.bars_minute; returns the rows written."""
        async with self._flush_lock:
            if not self._pending:
                return 0
            pending, self._pending = self._pending, {}
            rows = [row for row, _ in pending.values()]
            raw = pd.DataFrame(rows).drop(columns=["ts_ns"])
            raw["t"] = raw["t"].map(lambda t: t.isoformat())
            split = split_bars(coerce_raw_bars(raw), "1Min")
            if len(split.rejected):
                self.rejected += len(split.rejected)
                log.warning(
                    "%d streamed bar(s) rejected, e.g. %s", len(split.rejected), split.rejected["reason"].iloc[0]
                )
            kept = split.valid.copy()
            kept["session"] = kept["ts"].dt.tz_convert("America/New_York").dt.date
            kept["volume"] = kept["volume"].astype("int64")
            kept["trade_count"] = kept["trade_count"].astype("Int64")
            kept["feed"] = self.feed
            kept["run_id"] = STREAM_RUN_ID
            try:
                written = await asyncio.to_thread(self.warehouse.upsert, tables.BARS_MINUTE, kept)
            except BaseException:
                for key, value in pending.items():  # newer arrivals win over the ones put back
                    self._pending.setdefault(key, value)
                raise
            done = time.perf_counter()
            self.warehouse_lag_ms.extend((done - arrived) * 1e3 for _, arrived in pending.values())
            self.bars_written += written
            return written

    # ------------------------------------------------------------------ backfill after (re)connect
    def resume_from(self, now: datetime) -> pd.Timestamp | None:
        """First minute to fetch: a little before the last bar seen, else the open of the session at ``now``."""
        bounds = session_bounds(now)
        if bounds is None:
            return None
        _, open_, _ = bounds
        if self._last_bar_ns is not None and self._last_bar_ns >= open_.value:
            return max(open_, pd.Timestamp(self._last_bar_ns, tz=UTC) - timedelta(minutes=TRAILING_MINUTES))
        return open_

    async def _backfill(self) -> None:
        started = time.perf_counter()
        now = self.clock()
        start = self.resume_from(now)
        if start is None or start >= pd.Timestamp(now):
            return
        try:
            raw = await asyncio.to_thread(self.alpaca.fetch_bars, self.symbols, "1Min", start.to_pydatetime(), now)
        except Exception as exc:  # REST down: the T+1 replace still fills the day; say so loudly
            log.error("backfill of %s .. %s failed: %s", start, now, exc)
            self.metrics.errors.labels("backfill").inc()
            return
        changed: set[str] = set()
        added = 0
        for rec in raw.drop(columns=["payload"], errors="ignore").to_dict("records"):
            if rec.get("t") is None or rec.get("symbol") is None:
                continue
            ts = _ts(rec["t"])
            if ts + timedelta(minutes=1) > pd.Timestamp(now):  # the minute has not ended: not final yet
                continue
            key = (rec["symbol"], ts.value)
            if self._streamed_at.get(key, 0.0) > started:  # the stream delivered it since: that one is newer
                continue
            row = {"symbol": rec["symbol"], "t": ts, "ts_ns": ts.value, **{k: rec.get(k) for k in _BAR_FIELDS}}
            self._pending[key] = (row, time.perf_counter())
            added += 1
            if self._remember(row):
                changed.add(row["symbol"])
        self.backfilled += added
        log.info("backfilled %d minute bar(s) from %s to %s through REST", added, start, now)
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self._write_market(changed)

    # ------------------------------------------------------------------ watchdog
    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(self.watchdog_interval)
            stream = self._stream
            if stream is not None and self.fatal is not None:
                # a fatal error of the option stream: the stock stream, parked in its socket read (or not yet
                # started, which would undo ``fail()``), is stopped the way ``stop()`` does it
                await stream.stop_ws()
                continue
            if stream is None or not self._connected or stream._ws is None:
                continue
            silent = time.monotonic() - self._last_message_at
            if silence_is_abnormal(self.clock(), silent, self.silence_seconds):
                log.warning("no message for %.0f s during the session: reconnecting", silent)
                self.watchdog_reconnects += 1
                self._connected = False
                self.metrics.connected.set(0)
                self._last_message_at = time.monotonic()
                with contextlib.suppress(Exception):
                    await stream._ws.close()

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        lag = np.array(self.warehouse_lag_ms) if self.warehouse_lag_ms else np.array([np.nan])
        stream = self._stream
        return {
            "service": "stream",
            "connected": bool(stream is not None and stream._running and self._connected),
            "symbols": len(self.symbols),
            "received": self.received,
            "queue_depth": self._queue.qsize(),
            "pending_bars": len(self._pending),
            "bars_written": self.bars_written,
            "backfilled": self.backfilled,
            "connections": self.connections,
            "watchdog_reconnects": self.watchdog_reconnects,
            "connection_limit_alerts": self.connection_limit_alerts,
            "bus_published": self.bus.published if self.bus else 0,
            "redis_latency_ms": {"p50": _q(lat, 50), "p99": _q(lat, 99)},
            "warehouse_lag_ms": {"p50": _q(lag, 50), "p99": _q(lag, 99)},
            "seconds_since_message": round(time.monotonic() - self._last_message_at, 1),
            "option_contracts": len(self.chains.contracts) if self.chains else 0,
            "option_messages": self.option_messages,
            "option_updates": self.chains.updates if self.chains else 0,
        }

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response:
        if request.path.split("?")[0] == "/metrics":
            self.metrics.queue_depth.labels("messages").set(self._queue.qsize())
            self.metrics.queue_depth.labels("pending_bars").set(len(self._pending))
            return respond_metrics(connection, self.metrics.registry)
        if request.path.split("?")[0] == "/healthz":
            payload = self.health()
            payload["bus"] = bool(self.bus and await self.bus.ping())
            return respond_json(connection, payload, ok=payload["bus"] and self.fatal is None)
        return respond(connection, HTTPStatus.NOT_FOUND, json.dumps({"error": "not found"}), "application/json")

    async def _health_handler(self, connection: ServerConnection) -> None:  # never reached: every request is HTTP
        await connection.close()


def option_url(stream_url: str, feed: str = "indicative") -> str:
    """Alpaca's option stream beside its stock stream: ``.../v2/{feed}`` -> ``.../v1beta1/{option feed}``."""
    base, sep, _ = stream_url.rpartition("/v2/")
    return f"{base}/v1beta1/{feed}" if sep else stream_url.rstrip("/") + f"/v1beta1/{feed}"


def _q(values: np.ndarray, q: float) -> float | None:
    value = float(np.nanpercentile(values, q)) if np.isfinite(values).any() else None
    return None if value is None else round(value, 2)
