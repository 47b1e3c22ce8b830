"""The HTTP layer under alpaca-py: timeout, client-side rate limit, retries with backoff.

Why at the session level: alpaca-py sets no timeout, retries only 429/504 with a fixed 3 s wait
and ignores `X-RateLimit-Reset`, and paginates inside one call, so a retry around the whole call
would refetch every page. Swapping the client's `requests.Session` for this one makes every page
request rate-limited, timed out and retried on its own, while the rest of alpaca-py (URLs,
parsing) stays exactly as shipped.

Why a deadline and not only requests' timeout: requests' timeout bounds each socket read, so a
server dripping one byte every few seconds was never cut off (issue 13, item 5). Each attempt
here reads the body itself against a monotonic deadline (connect + every read). A body that is
cut short or is not JSON is retried like a 5xx: a proxy or load balancer dropping a connection
mid-body produces exactly that, and alpaca-py would otherwise crash in ``response.json()``.

Why a watchdog on the headers: the status line and headers are read inside http.client, one socket read
per line with requests' per-read timeout, so a server dripping its *headers* slowly was not bounded by the
deadline either. The session's connections (`_DeadlineHTTPConnection`) arm a timer for the attempt's remaining
time while they wait for the response head; when it fires it shuts the socket down, and the attempt fails as
"deadline passed before the headers" and is retried like any transport fault.

Why our own pager (`paged_marketdata`): alpaca-py's ``_get_marketdata`` loops on
``next_page_token`` with no cap and no memory of tokens, so a server repeating a token made a
run grow until it was killed. The resource replaces that loop on every client it wires.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import random
import re
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from market_assets.errors import AlpacaAuthError, AlpacaUnavailableError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
READ_CHUNK = 65_536
# A year of 1-minute bars for 100 symbols is ~9,800 pages of 10,000 bars: 20,000 leaves room and still stops a
# server that never ends paging within minutes instead of never.
MAX_PAGES = 20_000


class BodyError(requests.RequestException):
    """A response body cut short, over its deadline, or not JSON: retried like a 5xx."""


class PagingError(AlpacaUnavailableError):
    """The server's paging does not end (a repeated token, or more pages than any real answer has)."""


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


_attempt_deadline = threading.local()  # .value: the time.monotonic() deadline of this thread's current attempt


class _DeadlineMixin:
    """Bound the wait for the status line and headers by the attempt's total deadline (see the module doc)."""

    sock: socket.socket | None

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        deadline = getattr(_attempt_deadline, "value", None)
        if deadline is None:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        fired = threading.Event()
        watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), self._cut, args=(fired,))
        watchdog.daemon = True
        watchdog.start()
        try:
            response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        finally:
            watchdog.cancel()
        if fired.is_set():  # http.client may take a cut-off head for a short one: never trust it
            raise TimeoutError("total deadline passed before the response headers")
        return response

    def _cut(self, fired: threading.Event) -> None:
        fired.set()
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once


class _DeadlineHTTPConnection(_DeadlineMixin, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineMixin, HTTPSConnection):
    pass


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_DEADLINE_POOLS = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter with connection pools whose connections honour the attempt deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _DEADLINE_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _DEADLINE_POOLS
        return manager


def _read_body(response: requests.Response, deadline: float) -> bytes:
    """The whole body, or BodyError once `deadline` (time.monotonic) passes.

    ``read1`` returns after at most one socket read (each bounded by the read timeout), so the
    deadline is checked between reads however slowly the server drips.
    """
    chunks: list[bytes] = []
    raw = response.raw
    try:
        while True:
            if time.monotonic() > deadline:
                raise BodyError("total deadline passed while reading the body")
            try:
                chunk = raw.read1(READ_CHUNK)
            except Exception as exc:  # urllib3's ProtocolError/IncompleteRead (cut short), a read timeout, a reset
                raise BodyError(f"body cut short ({type(exc).__name__})") from exc
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        response.close()
    return b"".join(chunks)


def _parse_json(response: requests.Response, body: bytes) -> Any:
    """A JSON reply must parse: a truncated or garbled one is a transport fault, not data.

    Parsed once here with the standard library, which reads ``NaN`` and ``1e999`` (as nan and inf) so that such a
    value reaches validation and costs its row, not the window; requests may use simplejson, which refuses NaN.
    """
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BodyError(f"invalid JSON ({getattr(exc, 'msg', exc)} at byte {getattr(exc, 'pos', '?')})") from exc


def _describe(method: str, url: str) -> str:
    """Method and path only: query strings may be long and URLs must never carry secrets into logs."""
    return f"{method.upper()} {urlsplit(url).path}"


class ResilientSession(requests.Session):
    def __init__(
        self,
        limiter: RateLimiter,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        stats: HttpStats | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.limiter = limiter
        self.timeout = timeout  # the whole attempt: connect + headers + every body read
        self.connect_timeout = min(connect_timeout, timeout)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stats = stats or HttpStats()
        self._sleep = sleep
        self._random = random.Random()
        for prefix in ("http://", "https://"):
            self.mount(prefix, _DeadlineAdapter())

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

    def _attempt(self, method: str, url: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> requests.Response:
        """One request within `self.timeout` seconds in total; the body is read, bounded, and checked."""
        deadline = time.monotonic() + self.timeout
        kwargs = {**kwargs, "stream": True, "timeout": (self.connect_timeout, self.timeout)}
        _attempt_deadline.value = deadline
        try:
            response = super().request(method, url, *args, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as exc:
            if time.monotonic() >= deadline:
                raise BodyError(f"total deadline ({self.timeout:g} s) passed before the response headers") from exc
            raise
        finally:
            _attempt_deadline.value = None
        body = _read_body(response, deadline)
        response._content = body  # the body as read, so .text works as usual
        response._content_consumed = True
        if response.status_code < 400 and body and "json" in response.headers.get("Content-Type", "json"):
            parsed = _parse_json(response, body)
            response.json = lambda **_: parsed  # type: ignore[method-assign]
        return response

    def request(self, method: str, url: str, *args, **kwargs) -> requests.Response:  # type: ignore[override]
        kwargs.pop("timeout", None)
        kwargs.pop("stream", None)
        what = _describe(method, url)
        endpoint = endpoint_of(url)
        last_problem = ""
        for attempt in range(1, self.max_attempts + 1):
            self.stats.throttled_seconds += self.limiter.acquire()
            try:
                response = self._attempt(method, url, args, kwargs)
            except BodyError as exc:
                self.stats.record(None, retried=attempt > 1, endpoint=endpoint)
                last_problem = str(exc)
                wait = self.backoff(attempt)
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


def paged_marketdata(
    client: Any,
    path: str,
    params: dict[str, Any],
    page_limit: int = 10_000,
    page_size: int | None = None,
    no_sub_key: bool = False,
    *,
    max_pages: int = MAX_PAGES,
) -> dict[str, Any]:
    """alpaca-py's market-data pager (``RESTClient._get_marketdata``, same signature and result), bounded.

    A token seen before, or more than `max_pages` pages, raises PagingError instead of looping
    (and accumulating rows) forever. The total ``limit`` semantics of the original are kept.
    """
    merged: defaultdict[str, Any] = defaultdict(list)
    actual_limit = min(page_size, page_limit) if page_size else None
    limit = params.get("limit")
    total = 0
    token = params.get("page_token")
    seen: set[str] = set()
    for _ in range(max_pages):
        if limit:
            actual_limit = min(int(limit) - total, page_limit)
            if actual_limit < 1:
                break
        params["limit"] = actual_limit
        params["page_token"] = token
        response = client.get(path=path, data=params) or {}
        for key, value in _entries(response, no_sub_key).items():
            if isinstance(value, list):
                merged[key].extend(value)
            else:
                merged[key] = value
        if actual_limit:
            total = sum(len(items) for items in merged.values())
        token = response.get("next_page_token")
        if token is None:
            break
        if token in seen:
            raise PagingError(f"GET {path}: the server repeated the page token {str(token)[:40]!r}; stopping")
        seen.add(token)
    else:
        raise PagingError(f"GET {path}: paging did not end after {max_pages} pages")
    return dict(merged)


_DATA_KEYS = frozenset(
    {"bar", "bars", "corporate_actions", "news", "orderbook", "orderbooks", "quote", "quotes", "snapshot",
     "snapshots", "trade", "trades"}
)  # fmt: skip


def _entries(response: dict[str, Any], no_sub_key: bool) -> dict[str, Any]:
    """The data part of one market-data page (alpaca-py's ``_get_marketdata_entries``)."""
    if no_sub_key:
        return response
    keys = _DATA_KEYS.intersection(response)
    if len(keys) != 1:
        raise PagingError(f"a market-data page has {len(keys)} data keys ({', '.join(sorted(keys)) or 'none'})")
    key = next(iter(keys))
    return {"news": response[key]} if key == "news" else (response[key] or {})
