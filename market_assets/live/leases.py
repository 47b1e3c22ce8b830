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
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from market_assets.live.bus import LIVE_TAG, AsyncRedis

DEFAULT_LEASE_SECONDS = 30.0

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

# KEYS[1] the token's set; ARGV: lease ms, members... Renewed (re-added if a stall let one expire: the
# connection is real, so it counts, even if that puts the token one over its limit for a moment).
_RENEW = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], until_, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return #ARGV - 1
"""


class ConnectionLeases:
    """The leases of one `serve` process; every method may raise ``redis.RedisError``/``OSError``."""

    def __init__(self, client: AsyncRedis, prefix: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.instance = uuid.uuid4().hex[:12]  # members name their process, for an operator reading the set
        self._seq = 0

    def key(self, token_key: str) -> str:
        """``md:v1:{live}:conns:<token key>``."""
        return f"{self.prefix}:{LIVE_TAG}:conns:{token_key}"

    @property
    def heartbeat_seconds(self) -> float:
        return self.lease_ms / 3000

    async def acquire(self, token_key: str, limit: int) -> str | None:
        """A lease for one more connection of this token, or None when all ``limit`` slots are held."""
        self._seq += 1
        member = f"{self.instance}:{self._seq}"
        taken = await self.client.eval(_ACQUIRE, 1, self.key(token_key), limit, self.lease_ms, member)  # type: ignore[misc]
        return member if int(taken) == 1 else None

    async def release(self, token_key: str, member: str) -> None:
        await self.client.zrem(self.key(token_key), member)  # type: ignore[misc]

    async def renew(self, held: dict[str, Iterable[str]]) -> None:
        """Extend every lease this process holds: one script per token."""
        for token_key, members in held.items():
            members = list(members)
            if members:
                await self.client.eval(_RENEW, 1, self.key(token_key), self.lease_ms, *members)  # type: ignore[misc]

    async def count(self, token_key: str) -> int:
        """Connections of this token across the processes (expired leases included until the next sweep)."""
        return int(await self.client.zcard(self.key(token_key)))  # type: ignore[misc]
