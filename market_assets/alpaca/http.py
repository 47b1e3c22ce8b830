"""The HTTP layer under alpaca-py: timeout, client-side rate limit, retries with backoff.

Why at the session level: alpaca-py sets no timeout, retries only 429/504 with a fixed 3 s wait
and ignores `X-RateLimit-Reset`, and paginates inside one call, so a retry around the whole call
would refetch every page. Swapping the client's `requests.Session` for this one makes every page
request rate-limited, timed out and retried on its own, while the rest of alpaca-py (URLs,
paging, parsing) stays exactly as shipped.
"""

from __future__ import annotations

import copy
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from market_assets.errors import AlpacaAuthError, AlpacaUnavailableError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RateLimiter:
    """A token bucket shared by all clients of one resource (Alpaca's limit is per account).

    `pause_until` lets a 429's `X-RateLimit-Reset` stop every thread, not just the one that saw it.
    """

    def __init__(self, per_minute: float, burst: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, min(int(per_minute // 6), 30)))
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a request may go out; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                delay = max(self._paused_until - now, 0.0)
                if delay == 0.0 and self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return waited
                if delay == 0.0:
                    delay = (1.0 - self._tokens) / self.rate
            time.sleep(delay)
            waited += delay

    def pause_until(self, monotonic_deadline: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, monotonic_deadline)
            self._tokens = 0.0


_SYMBOL_SEGMENT = re.compile(r"^[A-Z0-9.]{1,21}$")  # a ticker or an OCC symbol in a path: not part of the endpoint


def endpoint_of(url: str) -> str:
    """The path with symbols replaced by ``{symbol}``: bounded label values for the audit trail and metrics."""
    parts = urlsplit(url).path.split("/")
    return "/".join("{symbol}" if _SYMBOL_SEGMENT.match(p) and not p.isdigit() else p for p in parts)


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    throttled_seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    # endpoint -> {"requests": n, "retries": n, "statuses": {"200": n, "429": n, "0": n (no response)}}
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, status: int | None, retried: bool, endpoint: str = "") -> None:
        with self._lock:
            self.requests += 1
            if retried:
                self.retries += 1
            if status is not None:
                self.statuses[status] = self.statuses.get(status, 0) + 1
            tally = self.endpoints.setdefault(endpoint, {"requests": 0, "retries": 0, "statuses": {}})
            tally["requests"] += 1
            tally["retries"] += int(retried)
            code = str(status or 0)
            tally["statuses"][code] = tally["statuses"].get(code, 0) + 1

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """A copy of the per-endpoint tallies, to subtract later (``since``)."""
        with self._lock:
            return copy.deepcopy(self.endpoints)

    def since(self, before: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Per-endpoint requests, retries and statuses since `before` (a resource is shared by a run's steps)."""
        now = self.snapshot()
        out: dict[str, dict[str, Any]] = {}
        for endpoint, tally in now.items():
            old = before.get(endpoint, {"requests": 0, "retries": 0, "statuses": {}})
            statuses = {c: n - old["statuses"].get(c, 0) for c, n in tally["statuses"].items()}
            delta = {
                "requests": tally["requests"] - old["requests"],
                "retries": tally["retries"] - old["retries"],
                "statuses": {c: n for c, n in statuses.items() if n},
            }
            if delta["requests"]:
                out[endpoint] = delta
        return out


def _describe(method: str, url: str) -> str:
    """Method and path only: query strings may be long and URLs must never carry secrets into logs."""
    return f"{method.upper()} {urlsplit(url).path}"


class ResilientSession(requests.Session):
    def __init__(
        self,
        limiter: RateLimiter,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        stats: HttpStats | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.limiter = limiter
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stats = stats or HttpStats()
        self._sleep = sleep
        self._random = random.Random()

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so many workers do not retry in lock-step."""
        return self._random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _wait_for_rate_limit(self, response: requests.Response, attempt: int) -> float:
        """Honour Retry-After / X-RateLimit-Reset (epoch seconds); else fall back to backoff."""
        now = time.time()
        wait: float | None = None
        retry_after = response.headers.get("Retry-After")
        reset = response.headers.get("X-RateLimit-Reset")
        try:
            if retry_after is not None:
                wait = float(retry_after)
            elif reset is not None:
                wait = float(reset) - now
        except ValueError:
            wait = None
        if wait is None or wait < 0:
            return self.backoff(attempt)
        wait = min(wait, self.backoff_max) + self._random.uniform(0, 0.25)
        self.limiter.pause_until(time.monotonic() + wait)
        return wait

    def request(self, method: str, url: str, *args, **kwargs) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        what = _describe(method, url)
        endpoint = endpoint_of(url)
        last_problem = ""
        for attempt in range(1, self.max_attempts + 1):
            self.stats.throttled_seconds += self.limiter.acquire()
            try:
                response = super().request(method, url, *args, **kwargs)
            except (requests.Timeout, requests.ConnectionError) as exc:
                self.stats.record(None, retried=attempt > 1, endpoint=endpoint)
                last_problem = f"{type(exc).__name__}"
                wait = self.backoff(attempt)
            else:
                status = response.status_code
                self.stats.record(status, retried=attempt > 1, endpoint=endpoint)
                if status in (401, 403):
                    raise AlpacaAuthError(
                        f"Alpaca refused the credentials (HTTP {status}) on {what}: check ALPACA_API_KEY and "
                        "ALPACA_SECRET_KEY, and that the account's plan covers the requested feed (ALPACA_FEED)"
                    )
                if status not in RETRY_STATUSES:
                    return response
                last_problem = f"HTTP {status}"
                wait = self._wait_for_rate_limit(response, attempt) if status == 429 else self.backoff(attempt)
            if attempt == self.max_attempts:
                break
            log.warning("%s: %s, retry %d/%d in %.2fs", what, last_problem, attempt, self.max_attempts - 1, wait)
            self._sleep(wait)
        raise AlpacaUnavailableError(f"{what} failed after {self.max_attempts} attempts (last: {last_problem})")
