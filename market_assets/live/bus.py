"""The live bus: one Redis Stream that the ingest service appends to and every fan-out server reads.

Why Redis Streams (not pub/sub, not a home-made broker): it runs on the Redis the platform already has (the
embedded one is 6.2, so sharded pub/sub, Redis 7, is not available everywhere); a reader that blocks on
``XREAD`` from the last id it saw misses nothing between two reads, so N ``serve`` processes each receive
every event; ``MAXLEN ~`` bounds memory; and a reader that restarts can resume from an id. One entry carries
a micro-batch of messages (msgpack, Alpaca's wire shapes, ``t`` as msgpack Timestamp), so the per-entry cost
of Redis is paid once per batch, not once per quote.

On a Redis Cluster (``REDIS_URL=redis+cluster://...``) both services use redis-py's asyncio cluster client
(``connect``), and the bus keys carry the hash tag ``{live}`` (``md:v1:{live}:bus``), like the cache's per-symbol
``{AAPL}``: every live key (the stream, the per-token connection leases of ``serve``) lands in one known slot, so
a script or a transaction over several of them stays legal on a cluster. One slot is fine for one ingest
connection (Alpaca allows one per account); partitioning by channel would be the next step if a single slot ever
became the bottleneck. Streams rather than sharded pub/sub also on a cluster: the embedded Redis is 6.2, and a
``serve`` that reconnects must not lose what was published meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from market_assets.cache.resource import cluster_base_url

# ~100k batches: minutes of history at full rate, a few tens of MB; a reader further behind than that
# restarts from the latest entry rather than holding the whole day in memory
DEFAULT_MAXLEN = 100_000


LIVE_TAG = "{live}"  # the Cluster hash tag of every live key


def bus_key(prefix: str) -> str:
    """``md:v1:{live}:bus``: beside the cache keys, versioned with them, in the live keys' slot."""
    return f"{prefix}:{LIVE_TAG}:bus"


AsyncRedis = aioredis.Redis | RedisCluster


def connect(url: str, **options: Any) -> AsyncRedis:
    """An asyncio client for ``REDIS_URL``: a single server, or a Cluster for ``redis+cluster://`` /
    ``rediss+cluster://`` (``redis.asyncio.from_url`` rejects those schemes; the cluster client discovers the
    other nodes from the one named and follows slot moves)."""
    base = cluster_base_url(url)
    if base is None:
        return aioredis.from_url(url, **options)
    return RedisCluster.from_url(base, **options)


def pack(msgs: list[dict[str, Any]]) -> bytes:
    return msgpack.packb(msgs, use_bin_type=True)


def unpack(raw: bytes) -> list[dict[str, Any]]:
    return msgpack.unpackb(raw, raw=False)


class Bus:
    """Publish micro-batches of stream messages and read them back, in order, from any process."""

    def __init__(self, client: AsyncRedis, key: str, *, maxlen: int = DEFAULT_MAXLEN) -> None:
        self.client = client
        self.key = key
        self.maxlen = maxlen
        self.published = 0

    async def publish(self, msgs: list[dict[str, Any]]) -> str:
        """Append one batch; ``at`` is the wall time in ns so readers can measure end-to-end latency."""
        entry_id = await self.client.xadd(
            self.key, {"m": pack(msgs), "at": str(time.time_ns())}, maxlen=self.maxlen, approximate=True
        )
        self.published += len(msgs)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def read(
        self, last_id: str = "$", *, block_ms: int = 1_000, count: int = 256
    ) -> AsyncIterator[list[tuple[list[dict[str, Any]], int]]]:
        """Yield, forever, every reply of entries after ``last_id`` ("$": from now on) as a list of
        (messages, published_at_ns). A whole reply at once: a reader that fell behind handles everything that
        accumulated in one pass (one frame per client instead of one per entry), which is how it catches up."""
        if last_id == "$":  # pin "now" to a concrete id: "$" again on the next call would skip what came between
            newest = await self.client.xrevrange(self.key, count=1)
            last_id = newest[0][0].decode() if newest else "0-0"
        while True:
            reply = await self.client.xread({self.key: last_id}, count=count, block=block_ms)
            batch: list[tuple[list[dict[str, Any]], int]] = []
            for _key, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    batch.append((unpack(fields[b"m"]), int(fields.get(b"at", b"0"))))
            if batch:
                yield batch

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (aioredis.RedisError, OSError):
            return False
