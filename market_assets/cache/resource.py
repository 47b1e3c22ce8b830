"""The Redis cache as a Dagster resource: pipelined writes with TTLs, atomic chains, warm reports.

Key schema and TTLs: the ``market_assets.cache`` package docstring (the one description of them).

Why a chain is replaced in MULTI/EXEC (DEL + HSET + EXPIRE): a reader issues one HGETALL (or
HMGET), and Redis runs a transaction as a unit, so the reader sees the old chain or the new one,
never a mix; rejected commands inside MULTI (e.g. OOM) abort the whole transaction and leave the
old chain in place. The per-expiration fields let a reader fetch one expiry without the rest.

Redis Cluster: ``redis_url`` ``redis+cluster://host:port`` (or ``rediss+cluster://`` for TLS; a
password goes in the URL as usual) connects a ``RedisCluster`` client through any node. The hash
tags make each chain's MULTI/EXEC single-slot, so the replace stays atomic; market and flow keys
are written through a cluster pipeline, which groups the commands by node (not atomic across
keys, and need not be: each SET is a whole value). Multi-key reads of the counters use the
non-atomic MGET that splits by slot.

Why failures are reported, not raised: nothing in the warehouse depends on Redis. When Redis is
down, unreachable or full, the writes that failed are counted in the returned ``WarmReport`` and
the caller (an asset) reports them as a warning; the next warm rewrites every key anyway.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import redis
from dagster import ConfigurableResource
from pydantic import PrivateAttr
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from market_assets.cache.models import ChainMeta, FlowSummary, MarketData, OptionQuote, OptionsChain

KINDS = ("market", "chain", "flow")
DAY = 86_400
_PIPELINE_CHUNK = 1_000  # commands per round trip: large enough to amortise it, small enough to stream


@dataclass
class WarmReport:
    """What a warm wrote and what it had to skip (and why), per kind of key."""

    written: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.skipped and not self.errors

    def merge(self, other: WarmReport) -> WarmReport:
        self.written.update(other.written)
        self.skipped.update(other.skipped)
        self.errors.extend(e for e in other.errors if e not in self.errors)
        self.seconds += other.seconds
        return self

    def fail(self, kind: str, count: int, exc: BaseException | str) -> None:
        self.skipped[kind] += count
        message = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}".strip()
        if message not in self.errors:
            self.errors.append(message[:500])


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError)


def _send_set_ex(conn: Any, pairs: Sequence[tuple[str, bytes]], ttl: int) -> None:
    """Send pipelined ``SET key value EX ttl`` commands without waiting for the replies.

    Why not ``client.pipeline()``: redis-py spends ~25 us of Python per pipelined command packing
    arguments and parsing replies one by one, 4x the cost of MSET for the same bytes. The
    commands are packed as RESP into one buffer instead.
    """
    ex = str(ttl).encode()
    tail = b"$2\r\nEX\r\n$%d\r\n%s\r\n" % (len(ex), ex)
    conn.send_packed_command(
        [
            b"".join(
                b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (len(k), k, len(v), v, tail)
                for k, v in ((key.encode(), value) for key, value in pairs)
            )
        ]
    )


def _read_set_ex_replies(conn: Any, count: int) -> list[str | None]:
    """Read `count` SET replies: None per written key, else the server's error text.

    SET always answers with exactly one line (``+OK`` or ``-ERR ...``), so the replies are read
    as lines straight from the connection's socket rather than parsed one by one.
    """
    sock = conn._sock
    if sock is None:
        raise redis.ConnectionError("connection closed while writing")
    data = bytearray()
    while data.count(b"\r\n") < count:
        block = sock.recv(1 << 16)
        if not block:
            raise redis.ConnectionError("Redis closed the connection before replying")
        data += block
    lines = bytes(data).split(b"\r\n")[:count]
    return [None if line.startswith(b"+") else line[1:].decode(errors="replace") for line in lines]


CLUSTER_SUFFIX = "+cluster"


def cluster_base_url(url: str) -> str | None:
    """``redis+cluster://h:p`` -> ``redis://h:p`` (``rediss+cluster`` -> ``rediss``); None for a single server."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.endswith(CLUSTER_SUFFIX):
        return None
    return f"{scheme.removesuffix(CLUSTER_SUFFIX)}://{rest}"


def _as_is(pair: tuple[str, bytes]) -> tuple[str, bytes]:
    return pair


class CacheResource(ConfigurableResource):
    """Redis cache endpoint and policy. ``redis_url`` None means the embedded Redis under ``data_home``."""

    redis_url: str | None = None
    data_home: str | None = None
    key_prefix: str = "md:v1"
    market_ttl_seconds: int = 4 * DAY
    chain_ttl_seconds: int = 4 * DAY
    flow_ttl_seconds: int = 4 * DAY
    socket_timeout_seconds: float = 5.0
    connect_timeout_seconds: float = 2.0

    _client: redis.Redis | RedisCluster | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    # --- connection -------------------------------------------------------------------------

    def resolved_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        from market_assets.config import load_settings
        from market_assets.runtime.embedded import ensure_redis

        home = Path(self.data_home) if self.data_home else load_settings().data_home
        return ensure_redis(home)

    @property
    def is_cluster(self) -> bool:
        return bool(self.redis_url) and cluster_base_url(self.redis_url or "") is not None

    def client(self) -> redis.Redis | RedisCluster:
        """One client (and connection pool) per resource instance, created on first use.

        No client-side retries on a single server: a warm that cannot reach Redis must give up
        in one timeout and report it, not stall the run in backoff loops; the next run retries by
        construction. A cluster client gets one immediate retry, which is what lets it follow a
        failover (it refreshes the slot map and re-sends once).
        """
        with self._lock:
            if self._client is None:
                url = self.resolved_url()
                base = cluster_base_url(url)
                options: dict[str, Any] = {
                    "socket_timeout": self.socket_timeout_seconds,
                    "socket_connect_timeout": self.connect_timeout_seconds,
                    "health_check_interval": 30,
                }
                if base is None:
                    self._client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
                else:
                    self._client = RedisCluster.from_url(base, retry=Retry(NoBackoff(), 1), **options)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except (redis.RedisError, OSError, RuntimeError):
            return False

    # --- keys -------------------------------------------------------------------------------

    def key(self, symbol: str, kind: str) -> str:
        """``md:v1:{AAPL}:market``: the hash tag keeps a symbol's keys in one Cluster slot."""
        if kind not in KINDS:
            raise ValueError(f"unknown cache kind {kind!r}; one of {', '.join(KINDS)}")
        return f"{self.key_prefix}:{{{symbol}}}:{kind}"

    def stats_key(self, kind: str, outcome: str) -> str:
        return f"{self.key_prefix}:stats:{kind}:{outcome}"

    def ttl_for(self, kind: str) -> int:
        return {"market": self.market_ttl_seconds, "chain": self.chain_ttl_seconds, "flow": self.flow_ttl_seconds}[kind]

    # --- writes -----------------------------------------------------------------------------

    def write_strings(
        self,
        kind: str,
        values: Sequence[Any],
        encode: Callable[[Any], tuple[str, bytes]] = _as_is,
    ) -> WarmReport:
        """SET key value EX ttl for each value, `encode`d to (symbol, JSON bytes), in pipelined chunks.

        Per-key SET EX instead of MSET: MSET takes no TTL and is cross-slot on a Cluster. Each
        chunk is encoded while Redis is still executing the previous one (its replies are read
        only afterwards), so serialisation overlaps the server's work. A connection failure
        abandons the remaining values (all counted as skipped); a per-command error such as OOM
        skips only that key.
        """
        report = WarmReport()
        started = time.perf_counter()
        ttl = self.ttl_for(kind)
        if self.is_cluster:
            return self._write_strings_cluster(kind, values, encode, ttl, report, started)
        try:
            pool = self.client().connection_pool  # type: ignore[union-attr]
            conn = pool.get_connection()
        except (redis.RedisError, OSError, RuntimeError) as exc:
            report.fail(kind, len(values), exc)
            return report
        settled = in_flight = 0
        try:
            for lo in range(0, len(values), _PIPELINE_CHUNK):
                pairs = [encode(v) for v in values[lo : lo + _PIPELINE_CHUNK]]
                if in_flight:
                    self._settle(report, kind, _read_set_ex_replies(conn, in_flight))
                    settled, in_flight = settled + in_flight, 0
                _send_set_ex(conn, [(self.key(symbol, kind), payload) for symbol, payload in pairs], ttl)
                in_flight = len(pairs)
            if in_flight:
                self._settle(report, kind, _read_set_ex_replies(conn, in_flight))
        except (redis.RedisError, OSError) as exc:
            conn.disconnect()  # never hand back a connection with unread replies
            report.fail(kind, len(values) - settled, exc)
        finally:
            pool.release(conn)
        report.seconds = time.perf_counter() - started
        return report

    def _write_strings_cluster(
        self,
        kind: str,
        values: Sequence[Any],
        encode: Callable[[Any], tuple[str, bytes]],
        ttl: int,
        report: WarmReport,
        started: float,
    ) -> WarmReport:
        """The Cluster path of `write_strings`: a cluster pipeline per chunk, one round trip per node.

        The raw-RESP fast path needs one connection; on a Cluster the keys live on several nodes,
        so redis-py's cluster pipeline (which groups the commands by node) does the routing.
        """
        settled = 0
        try:
            client = self.client()
            for lo in range(0, len(values), _PIPELINE_CHUNK):
                pipe = client.pipeline(transaction=False)
                for value in values[lo : lo + _PIPELINE_CHUNK]:
                    symbol, payload = encode(value)
                    pipe.set(self.key(symbol, kind), payload, ex=ttl)
                replies = pipe.execute(raise_on_error=False)
                for reply in replies:
                    if isinstance(reply, BaseException) and _is_connection_error(reply):
                        raise reply
                self._settle(report, kind, [f"{type(r).__name__}: {r}" if isinstance(r, BaseException) else None
                                            for r in replies])  # fmt: skip
                settled += len(replies)
        except (redis.RedisError, OSError, RuntimeError) as exc:
            report.fail(kind, len(values) - settled, exc)
        report.seconds = time.perf_counter() - started
        return report

    @staticmethod
    def _settle(report: WarmReport, kind: str, outcomes: list[str | None]) -> None:
        for error in outcomes:
            if error is None:
                report.written[kind] += 1
            else:
                report.fail(kind, 1, error)

    def write_market(self, items: Iterable[MarketData]) -> WarmReport:
        return self.write_strings("market", list(items), lambda m: (m.symbol, m.to_json()))

    def write_flows(self, items: Iterable[FlowSummary]) -> WarmReport:
        return self.write_strings("flow", list(items), lambda f: (f.underlying, f.to_json()))

    @staticmethod
    def chain_fields(chain: OptionsChain) -> dict[str, bytes]:
        """The hash fields of a chain: ``meta`` plus one JSON list of quotes per expiration."""
        by_exp: dict[date, list[dict[str, Any]]] = {}
        for quote in chain.quotes:
            by_exp.setdefault(quote.expiration, []).append(quote.model_dump(mode="json"))
        meta = ChainMeta(
            underlying=chain.underlying,
            snapshot_date=chain.snapshot_date,
            underlying_price=chain.underlying_price,
            generation=chain.generation,
            expirations=sorted(by_exp),
            contracts=len(chain.quotes),
            cached_at=chain.cached_at,
        )
        fields = {"meta": meta.to_json()}
        for exp, quotes in by_exp.items():
            fields[f"exp:{exp.isoformat()}"] = json.dumps(quotes, separators=(",", ":"), allow_nan=False).encode()
        return fields

    def write_chains(self, chains: Iterable[OptionsChain]) -> WarmReport:
        """Replace each chain atomically: MULTI, DEL, HSET all fields, EXPIRE, EXEC."""
        report = WarmReport()
        started = time.perf_counter()
        chains = list(chains)
        try:
            client = self.client()
        except (redis.RedisError, OSError, RuntimeError) as exc:
            report.fail("chain", len(chains), exc)
            return report
        ttl = self.chain_ttl_seconds
        for i, chain in enumerate(chains):
            key = self.key(chain.underlying, "chain")
            try:
                with client.pipeline(transaction=True) as pipe:
                    pipe.delete(key)
                    pipe.hset(key, mapping=self.chain_fields(chain))  # type: ignore[arg-type]
                    pipe.expire(key, ttl)
                    pipe.execute()
                report.written["chain"] += 1
            except (redis.RedisError, OSError) as exc:
                if _is_connection_error(exc):
                    report.fail("chain", len(chains) - i, exc)
                    break
                report.fail("chain", 1, exc)
        report.seconds = time.perf_counter() - started
        return report

    def record_warm(self, report: WarmReport, **info: str) -> bool:
        """Keep what the last warm did next to the data, for apps and operators.

        Returns False when Redis refused it: a warm with nothing to write must still notice that
        Redis is down, so the caller can warn instead of reporting a clean run.
        """
        fields = {
            "at": str(time.time()),
            "written": json.dumps(dict(report.written)),
            "skipped": json.dumps(dict(report.skipped)),
            **info,
        }
        try:
            self.client().hset(f"{self.key_prefix}:warm:last", mapping=fields)  # type: ignore[arg-type]
        except (redis.RedisError, OSError, RuntimeError) as exc:
            report.fail("warm_record", 1, exc)
            return False
        return True

    # --- reads ------------------------------------------------------------------------------

    def read_market(self, symbol: str) -> MarketData | None:
        raw = self.client().get(self.key(symbol, "market"))
        return None if raw is None else MarketData.model_validate_json(raw)  # type: ignore[arg-type]

    def read_flow(self, underlying: str) -> FlowSummary | None:
        raw = self.client().get(self.key(underlying, "flow"))
        return None if raw is None else FlowSummary.model_validate_json(raw)  # type: ignore[arg-type]

    def read_chain(self, underlying: str, expirations: Sequence[date] | None = None) -> OptionsChain | None:
        """One HGETALL (or HMGET for some expirations): a consistent snapshot of the stored chain."""
        key = self.key(underlying, "chain")
        client = self.client()
        if expirations is None:
            raw: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
            if not raw or b"meta" not in raw:
                return None
            meta_raw = raw[b"meta"]
            parts = [v for k, v in raw.items() if k.startswith(b"exp:")]
        else:
            names = ["meta", *(f"exp:{e.isoformat()}" for e in expirations)]
            values: list[bytes | None] = client.hmget(key, names)  # type: ignore[assignment]
            if values[0] is None:
                return None
            meta_raw = values[0]
            parts = [v for v in values[1:] if v is not None]
        meta = ChainMeta.model_validate_json(meta_raw)
        quotes = [OptionQuote.model_validate(q) for part in parts for q in json.loads(part)]
        quotes.sort(key=lambda q: (q.expiration, q.strike, q.type))
        return OptionsChain(
            underlying=meta.underlying,
            snapshot_date=meta.snapshot_date,
            underlying_price=meta.underlying_price,
            generation=meta.generation,
            quotes=quotes,
            cached_at=meta.cached_at,
        )

    def count(self, kind: str, hit: bool) -> None:
        """INCR the hit or miss counter of `kind`; raises if Redis is unreachable (caller decides)."""
        self.client().incr(self.stats_key(kind, "hits" if hit else "misses"))

    def stats(self) -> dict[str, dict[str, int]]:
        """Hits and misses recorded in Redis by every reader, per kind."""
        client = self.client()
        names = [self.stats_key(k, o) for k in KINDS for o in ("hits", "misses")]
        # the counters are six keys in as many slots: a Cluster reads them slot by slot
        values = client.mget_nonatomic(names) if isinstance(client, RedisCluster) else client.mget(names)
        out: dict[str, dict[str, int]] = {k: {"hits": 0, "misses": 0} for k in KINDS}
        for name, value in zip(names, values, strict=True):  # type: ignore[arg-type]
            _, kind, outcome = name.rsplit(":", 2)
            out[kind][outcome] = int(value or 0)
        return out
