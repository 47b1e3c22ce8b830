"""Per-token connection limits across every `serve` process: leases in Redis.

Why leases and not a counter: a plain ``INCR``/``DECR`` leaks a slot for every connection of a process that
dies without decrementing (OOM-killed, SIGKILL, a lost node), and the token stays locked out until someone
repairs the counter by hand. Here each authenticated connection holds one member of a sorted set per token,
scored by the time its lease ends; the process that holds it renews all its leases every third of the lease
(``heartbeat``) and removes them when the connection closes. A crashed process stops renewing, so its slots
come back by themselves within one lease (30 s by default), and the next ``acquire`` sweeps them.

Both scripts take Redis's own clock (``TIME``), so the processes' clocks need not agree, and touch a single key,
hash-tagged ``{live}`` like the bus, so they run unchanged on a Redis Cluster. ``acquire`` checks and takes a
slot in one script: two processes racing for the last slot cannot both get it.

Bursts (1,000 clients closing at once at the end of a benchmark, a load balancer draining a node): one Redis call
per connection, all at once, overflowed redis-py's connection pool ("Too many connections"), the failed releases
were dropped, and a third of the token's slots stayed leased for a whole lease period (the next clients got 406).
So: every lease call waits for one of ``concurrency`` turns (far below the pool's size, and the bus keeps its
own connection); releases are queued and written by one task as one ``ZREM`` per token with every member that
closed meanwhile, retried with a backoff until Redis takes them (each failure logged), never dropped.

Renewal racing a release: the renewal's list of members is taken before its script runs, so a release can land
in between. The renewal script therefore only extends members that are still in the set; one that is missing
(released, or expired and swept during a stall) is re-added only if this process still holds it, and a member
released while that re-add was in flight is released again afterwards. A renewal never resurrects a release.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

import redis.asyncio as aioredis

from market_assets.live.bus import LIVE_TAG, AsyncRedis

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_CONCURRENCY = 16  # lease calls in flight at once; redis-py's asyncio pool holds 100 connections
OP_TIMEOUT_SECONDS = 5.0  # one lease call; a stalled Redis must not hold a connection handler forever
RETRY_MIN_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0

# KEYS[1] the token's set; ARGV: limit, lease ms, member. 1 = taken, 0 = the token is at its limit.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] the token's set; ARGV: lease ms, members... Extends the members still in the set and returns the
# missing ones (released meanwhile, or swept after a stall): the caller decides which of them it still holds.
_RENEW = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local missing = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], until_, ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return missing
"""

# KEYS[1] the token's set; ARGV: lease ms, members... Re-adds connections that are still open but whose leases
# were swept (a stall longer than a lease): the connection is real, so it counts, even if that puts the token
# one over its limit for a moment.
_RESTORE = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], until_, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return #ARGV - 1
"""

LeaseErrors = (aioredis.RedisError, OSError)  # OSError includes TimeoutError (``OP_TIMEOUT_SECONDS``)


class ConnectionLeases:
    """The leases of one `serve` process.

    ``acquire`` and ``renew`` may raise ``redis.RedisError``/``OSError`` (the caller decides: `serve` falls back
    to counting its own connections); ``release`` never raises and never drops a lease (queued, retried)."""

    def __init__(
        self,
        client: AsyncRedis,
        prefix: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        concurrency: int = DEFAULT_CONCURRENCY,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.instance = uuid.uuid4().hex[:12]  # members name their process, for an operator reading the set
        self.on_error = on_error  # counts a failed lease call (serve's error metric)
        self._seq = 0
        self._turns = asyncio.Semaphore(concurrency)
        self._held: dict[str, set[str]] = {}  # token key -> members this process holds (renewed)
        self._to_release: dict[str, set[str]] = {}  # token key -> members to remove (written by the releaser)
        self._wake = asyncio.Event()
        self._releaser: asyncio.Task[None] | None = None
        self._writing = 0  # members whose ZREM is in flight
        self.release_failures = 0

    def key(self, token_key: str) -> str:
        """``md:v1:{live}:conns:<token key>``."""
        return f"{self.prefix}:{LIVE_TAG}:conns:{token_key}"

    @property
    def heartbeat_seconds(self) -> float:
        return self.lease_ms / 3000

    def held(self) -> dict[str, set[str]]:
        """A copy of the leases this process holds, per token key."""
        return {token: set(members) for token, members in self._held.items() if members}

    def pending_releases(self) -> int:
        return sum(len(m) for m in self._to_release.values())

    async def _call(self, *args: Any, script: str | None = None) -> Any:
        """One Redis call, in one of the ``concurrency`` turns, bounded in time."""
        async with self._turns, asyncio.timeout(OP_TIMEOUT_SECONDS):
            if script is not None:
                return await self.client.eval(script, *args)  # type: ignore[misc]
            return await self.client.zrem(*args)  # type: ignore[misc]

    async def acquire(self, token_key: str, limit: int) -> str | None:
        """A lease for one more connection of this token, or None when all ``limit`` slots are held."""
        self._seq += 1
        member = f"{self.instance}:{self._seq}"
        try:
            taken = await self._call(1, self.key(token_key), limit, self.lease_ms, member, script=_ACQUIRE)
        except BaseException:
            # the script may have run (a timeout or a cancellation after it was sent): remove what it may have
            # added, rather than leave an unrenewed slot taken for a lease period
            self._queue_release(token_key, member)
            raise
        if int(taken) != 1:
            return None
        self._held.setdefault(token_key, set()).add(member)
        return member

    def release(self, token_key: str, member: str) -> None:
        """Give the slot back: queued for the releaser task (one ZREM per token), never raises, never drops."""
        held = self._held.get(token_key)
        if held is not None:
            held.discard(member)
            if not held:
                del self._held[token_key]
        self._queue_release(token_key, member)

    def release_all(self) -> None:
        for token_key, members in self.held().items():
            for member in members:
                self.release(token_key, member)

    def _queue_release(self, token_key: str, member: str) -> None:
        self._to_release.setdefault(token_key, set()).add(member)
        self._wake.set()
        if self._releaser is None or self._releaser.done():
            self._releaser = asyncio.get_running_loop().create_task(self._release_loop())

    async def _release_loop(self) -> None:
        """Write the queued releases, one ZREM per token; a failure puts them back and retries with a backoff."""
        delay = RETRY_MIN_SECONDS
        failing_since: float | None = None
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._to_release = self._to_release, {}
            self._writing = sum(len(m) for m in batch.values())
            try:
                outcomes = await asyncio.gather(*(self._call(self.key(t), *m) for t, m in batch.items()),
                                                return_exceptions=True)  # fmt: skip
            finally:
                self._writing = 0
            failed = {
                t: m for (t, m), out in zip(batch.items(), outcomes, strict=True) if isinstance(out, BaseException)
            }
            errors = [out for out in outcomes if isinstance(out, BaseException)]
            for out in errors:
                if not isinstance(out, LeaseErrors):  # a bug, not an outage: still retried, but loudly
                    log.error("connection lease release failed unexpectedly: %r", out)
            if not failed:
                if failing_since is not None:
                    log.info("connection lease releases written again after %.1f s of failures",
                             time.monotonic() - failing_since)  # fmt: skip
                delay, failing_since = RETRY_MIN_SECONDS, None
                continue
            for token_key, members in failed.items():
                self._to_release.setdefault(token_key, set()).update(members)
            self.release_failures += 1
            if self.on_error is not None:
                self.on_error()
            failing_since = failing_since or time.monotonic()
            log.warning("%d connection lease release(s) not written (%s); retrying in %.2f s",
                        sum(len(m) for m in failed.values()), errors[0], delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
            self._wake.set()

    async def flush(self, timeout: float) -> int:
        """Wait (at most ``timeout`` s) until every queued release is written; returns how many are still queued."""
        deadline = time.monotonic() + timeout
        while (self._to_release or self._writing) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.pending_releases() + self._writing

    async def close(self, timeout: float) -> int:
        """Release every lease held and write the releases within ``timeout`` s; returns how many are left."""
        self.release_all()
        left = await self.flush(timeout)
        if self._releaser is not None:
            self._releaser.cancel()
            await asyncio.gather(self._releaser, return_exceptions=True)
        return left

    async def renew(self, held: Mapping[str, Collection[str]] | None = None) -> None:
        """Extend every lease this process holds (or ``held``, a snapshot taken earlier): one script per token."""
        snapshot = self.held() if held is None else {t: set(m) for t, m in held.items()}
        for token_key, members in snapshot.items():
            if not members:
                continue
            missing = await self._call(1, self.key(token_key), self.lease_ms, *members, script=_RENEW)
            gone = {m.decode() if isinstance(m, bytes) else str(m) for m in missing}
            still = gone & self._held.get(token_key, set())
            if not still:
                continue
            log.warning("%d connection lease(s) of token %s had expired (a stall longer than a lease): restored",
                        len(still), token_key[:8])  # fmt: skip
            await self._call(1, self.key(token_key), self.lease_ms, *still, script=_RESTORE)
            for member in still - self._held.get(token_key, set()):  # released while the restore was in flight
                self._queue_release(token_key, member)

    async def count(self, token_key: str) -> int:
        """Connections of this token across the processes (expired leases included until the next sweep)."""
        return int(await self.client.zcard(self.key(token_key)))  # type: ignore[misc]
