"""Offline Alpaca-compatible simulator: a local HTTP (+ WebSocket) server fed by ``MarketModel``.

Why: the platform must run with no keys and no network, and tests must exercise the *same*
alpaca-py code path as production, including its failure modes (429s, 5xx, slow and dropped
connections, 403s, malformed rows). So this server speaks Alpaca's REST formats closely enough that
``StockHistoricalDataClient``, ``OptionHistoricalDataClient`` and ``TradingClient`` created with
``url_override=server.base_url`` cannot tell it from Alpaca.

Served endpoints (one port serves all of them):

* ``GET /v2/stocks/bars`` and ``GET /v2/stocks/{symbol}/bars``: timeframes 1Min/1Hour/1Day (also
  ``1T``/``1H``/``1D``); inclusive ``start``/``end`` (RFC3339, or a bare date = midnight New York);
  paging across symbols (sorted by symbol, then time; a page holds ``limit`` bars in total;
  ``next_page_token`` is an opaque base64 cursor, so a retried request returns the same page);
  ``sort=asc|desc``; ``feed`` iex/sip/otc/delayed_sip accepted. ``adjustment``: ``raw`` (default) serves the
  model's raw bars, which carry its corporate actions as a real market does (a 4:1 split divides the price
  by 4 overnight, a dividend drops it by the amount); ``split``, ``dividend`` and ``all`` back-adjust every
  bar before each known action's ex-date (``spin-off`` = raw: the model has none). Prices adjusted are not
  rounded (as Alpaca's), volumes are whole shares.
* ``GET /v1/corporate-actions``: the model's forward/reverse splits, quarterly cash dividends and name
  changes in Alpaca's format (groups ``forward_splits``, ``reverse_splits``, ``cash_dividends``,
  ``name_changes``), filtered by ``symbols`` (required here: the model's universe is every ticker; a name
  change matches its old and new symbol), ``types``, ``ids``, and ``start``/``end`` on the PROCESS date
  (a dividend's payable date, weeks after its ex-date); paged by ``limit`` (default 100, at most
  1,000 like Alpaca; ``server.corporate_actions_page_size`` serves fewer) with ``next_page_token``. An action is known
  once "now" is within 14 days of its ex-date (announcement).
* ``GET /v1beta1/options/snapshots/{underlying}`` (option chain) with Alpaca's filters and paging.
* ``GET /v2/options/contracts`` and ``GET /v2/options/contracts/{symbol_or_id}``.

"Now": ``server.clock`` (aware datetime, default ``None`` = wall clock). Only *complete* bars are
served (a bar whose interval ended at or before the clock), and option snapshots/contracts are
those of the last session whose close is <= clock. The extra, non-Alpaca query parameter ``as_of``
(YYYY-MM-DD) on the options endpoints overrides the clock for one request.

Non-Alpaca deviations (documented so nobody relies on them): ``/v2/options/contracts`` requires
``underlying_symbols`` or ``root_symbol`` (the model's universe is every valid ticker); like Alpaca,
with no expiration filter only contracts expiring up to the next weekend are returned
(``server.contracts_default_next_weekend``, set False to disable).

Faults (``FaultConfig``) are deterministic in the per-server request counter and the fault seed.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import re
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pandas as pd

from alpaca_sim.market_model import (
    ANNOUNCE_DAYS,
    NS_PER_HOUR,
    NS_PER_MIN,
    NY,
    RENAMES,
    MarketModel,
    contract_records,
    option_root,
    parse_occ,
    stable_uniform,
    valid_symbol,
)

DEFAULT_API_KEY = "PKSIMULATOR00000000"
DEFAULT_SECRET_KEY = "simulator-secret-key"
MALFORMED_KINDS = ("null_price", "nonpositive_price", "high_below_low", "duplicate_ts", "invalid_symbol")
_TIMEFRAMES = {
    "1Min": "1Min",
    "1T": "1Min",
    "1Hour": "1Hour",
    "1H": "1Hour",
    "1Day": "1Day",
    "1D": "1Day",
}
_TF_RE = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_FEEDS = {"iex", "sip", "otc", "delayed_sip", "boats", "overnight"}
_OPTION_FEEDS = {"opra", "indicative"}
RATE_LIMIT = 200
_MAX_IDS = 200_000
# listings kept for paging: a client pages through one listing at a time; 500 underlyings' listing is ~70 MB
_LISTINGS_KEPT = 2
_RECORD_COLUMNS = ["symbol", "underlying", "expiration", "strike", "type", "open_interest", "last_price", "session"]
_CA_NS = uuid.UUID("0b7c9a52-4e0f-4a4e-9d4b-6f2f6d0c1a77")


def _business_day(model: MarketModel, d: date) -> date:
    """The first session on or after ``d`` (``d`` itself past the model's epoch)."""
    try:
        return model.session_on_or_after(d)
    except ValueError:
        return d


def _cusip(key: str) -> str:
    """A stable 9-character CUSIP-shaped identifier (not a real one)."""
    return f"{int(stable_uniform('cusip', key) * 1e9):09d}"


class ApiError(Exception):
    """An Alpaca-style error response: HTTP status plus ``{"code", "message"}`` body."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class FaultConfig:
    """Injected failures. Deterministic: decisions depend on the request number and ``seed`` only.

    Request numbers count every HTTP request the server receives (1-based). ``malformed`` is either
    a probability per bar row or an explicit list of ``(symbol, date)`` (New York date of the bar);
    it depends only on (symbol, bar time), so a retried request is corrupted identically and
    pagination tokens stay valid. Corrupted rows are recorded in ``server.stats.corrupted``.
    """

    seed: int = 0
    rate_limit_every: int | None = None
    rate_limit_reset_seconds: int = 1
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503, 504)
    slow_every: int | None = None
    slow_seconds: float = 0.0
    drop_every: int | None = None
    forbidden: bool = False
    malformed: float | list[tuple[str, date | str]] = 0.0
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS

    def malformed_kind(self, symbol: str, timeframe: str, ts_ns: int) -> str | None:
        """The corruption applied to this bar row, or None to serve it intact."""
        if isinstance(self.malformed, int | float):
            if self.malformed <= 0 or stable_uniform(self.seed, "bad", symbol, timeframe, ts_ns) >= self.malformed:
                return None
        else:
            day = pd.Timestamp(ts_ns, tz="UTC").tz_convert(NY).date()
            wanted = {(s, d if isinstance(d, date) else date.fromisoformat(d)) for s, d in self.malformed}
            if (symbol, day) not in wanted:
                return None
        kinds = self.malformed_kinds or MALFORMED_KINDS
        return kinds[int(stable_uniform(self.seed, "kind", symbol, ts_ns) * len(kinds))]


@dataclass
class SimulatorStats:
    """Thread-safe counters of what the server did (for tests and the lead's dashboards)."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    corrupted: set[tuple[str, str, str, str]] = field(default_factory=set)  # (timeframe, symbol, t, kind)
    total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def next_request(self, route: str) -> int:
        with self._lock:
            self.total += 1
            self.requests[route] += 1
            return self.total

    def status(self, code: int) -> None:
        with self._lock:
            self.statuses[code] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def corrupt(self, timeframe: str, symbol: str, t: str, kind: str) -> None:
        with self._lock:
            self.corrupted.add((timeframe, symbol, t, kind))

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of all counters."""
        with self._lock:
            return {
                "total": self.total,
                "requests": dict(self.requests),
                "statuses": dict(self.statuses),
                "faults": dict(self.faults),
                "corrupted": sorted(self.corrupted),
            }

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.statuses.clear()
            self.faults.clear()
            self.corrupted.clear()
            self.total = 0


# ---------------------------------------------------------------------- formatting helpers
def rfc3339(ts_ns: int) -> str:
    """Alpaca-style UTC timestamp: ``2024-01-03T05:00:00Z`` (fraction only when non-zero)."""
    sec, frac = divmod(int(ts_ns), 1_000_000_000)
    base = datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


def rfc3339_many(ts_ns: np.ndarray) -> list[str]:
    """``rfc3339`` of many timestamps at once (whole seconds vectorised, the rest one by one)."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    if ts.size and not (ts % 1_000_000_000).any():
        return [
            t + "Z" for t in np.datetime_as_string(ts.view("datetime64[ns]").astype("datetime64[s]"), unit="s").tolist()
        ]
    return [rfc3339(t) for t in ts.tolist()]


def _encode_token(*parts: Any) -> str:
    raw = "|".join(str(p) for p in parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> list[str]:
    try:
        pad = "=" * (-len(token) % 4)
        return base64.urlsafe_b64decode(token + pad).decode().split("|")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, 40010001, "invalid page_token") from exc


def _parse_time(value: str, name: str) -> int:
    """RFC3339 or YYYY-MM-DD (taken as midnight New York) -> epoch ns."""
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return pd.Timestamp(datetime.combine(d, dtime(0), tzinfo=NY)).as_unit("ns").value
        ts = pd.Timestamp(value.replace(" ", "+"))
    except ValueError as exc:
        raise ApiError(422, 42210000, f"invalid {name}: {value!r} (expected RFC-3339 or YYYY-MM-DD)") from exc
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.as_unit("ns").value


def _parse_date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ApiError(422, 42210000, f"invalid {name}: {value!r} (expected YYYY-MM-DD)") from exc


def _parse_float(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError as exc:
        raise ApiError(422, 42210000, f"invalid {name}: {value!r}") from exc


def _parse_limit(value: str | None, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    try:
        lim = int(value)
    except ValueError as exc:
        raise ApiError(422, 42210000, f"invalid limit: {value!r}") from exc
    if lim < 1 or lim > maximum:
        raise ApiError(422, 42210000, f"invalid limit: must be between 1 and {maximum}")
    return lim


@dataclass
class _Chunk:
    ts: np.ndarray
    o: np.ndarray
    h: np.ndarray
    low: np.ndarray
    c: np.ndarray
    v: np.ndarray
    n: np.ndarray
    vw: np.ndarray


# ---------------------------------------------------------------------- the server
class SimulatorServer:
    """HTTP server speaking Alpaca's REST formats (plus, with ``enable_ws=True``, the stream), in background threads.

    Use as a context manager or ``start()``/``stop()``. Pass ``base_url`` as ``url_override`` to the
    alpaca-py clients and ``ws_url`` to ``StockDataStream``. ``faults`` and ``clock`` may be replaced
    at any time (they are read per request).
    """

    def __init__(
        self,
        model: MarketModel | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        faults: FaultConfig | None = None,
        clock: datetime | None = None,
        enable_ws: bool = False,
    ) -> None:
        self.model = model or MarketModel()
        self.host = host
        self.port = port
        self.ws_port = ws_port
        self.api_key = api_key
        self.secret_key = secret_key
        self.faults = faults or FaultConfig()
        self.clock = clock
        self.stats = SimulatorStats()
        self.contracts_default_next_weekend = True
        self.corporate_actions_page_size = 1000  # a server may serve fewer than `limit`; tests shrink it to page
        # each symbol's action records, built once: a daily run asks for 500 symbols' actions, and rebuilding ten
        # years of records per symbol per request cost ~0.4 s of the in-process simulator per run (issue 10)
        self._action_record_cache: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._enable_ws = enable_ws
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._contract_ids: dict[str, str] = {}
        # the filtered, symbol-sorted contract listing of the last few contracts queries, so that
        # paging through one listing slices it instead of rebuilding it per page
        self._listings: OrderedDict[tuple[Any, ...], pd.DataFrame] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.stream: Any = None  # MarketDataStreamServer when enable_ws

    # -------------------------------------------------------------- lifecycle
    def start(self) -> SimulatorServer:
        """Bind and serve in daemon threads; returns self."""
        if self._httpd is not None:
            return self
        handler = _make_handler(self)
        httpd = ThreadingHTTPServer((self.host, self.port), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, name="alpaca-sim-http", daemon=True)
        self._thread.start()
        if self._enable_ws:
            from alpaca_sim.stream import MarketDataStreamServer

            self.stream = MarketDataStreamServer(self, host=self.host, port=self.ws_port)
            self.stream.start()
            self.ws_port = self.stream.port
        return self

    def stop(self) -> None:
        """Stop serving and close sockets (idempotent)."""
        if self.stream is not None:
            self.stream.stop()
            self.stream = None
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Root URL for alpaca-py's ``url_override`` (all REST paths live under it)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Stock market-data stream URL for ``StockDataStream(url_override=...)``."""
        return f"ws://{self.host}:{self.ws_port}/v2/iex"

    def publish_minute(self, ts: datetime, *, updated: bool = False) -> int:
        """Push every subscribed symbol's minute bar (and a trade) for minute ``ts`` to stream clients.

        Returns the number of messages queued. ``updated=True`` sends them as updated bars (T="u").
        """
        if self.stream is None:
            raise RuntimeError("the stream server is not running (start() with enable_ws=True)")
        return self.stream.publish_minute(ts, updated=updated)

    # -------------------------------------------------------------- time
    def now_ns(self) -> int:
        clock = self.clock or datetime.now(UTC)
        if clock.tzinfo is None:
            clock = clock.replace(tzinfo=UTC)
        return pd.Timestamp(clock).as_unit("ns").value

    def last_closed_session(self, as_of: date | None = None) -> date:
        """Options "today": the last session whose close is <= clock (or the session <= as_of)."""
        if as_of is not None:
            return self.model.session_on_or_before(as_of)
        now = self.now_ns()
        i = int(np.searchsorted(self.model.close_ns, now, side="right")) - 1
        if i < 0:
            raise ApiError(422, 42210000, "clock is before the simulator epoch")
        return self.model.sessions[i].date()

    # -------------------------------------------------------------- bars
    def _chunks(
        self, symbol: str, tf: str, s_ns: int, e_ns: int, desc: bool, cursor_ns: int | None, adjustment: str = "raw"
    ) -> Iterator[_Chunk]:
        """Bars of one symbol inside [s_ns, e_ns], complete by the clock, in the requested order."""
        for ch, idx in self._raw_chunks(symbol, tf, s_ns, e_ns, desc, cursor_ns):
            if adjustment in ("raw", "spin-off"):
                yield ch
                continue
            today = pd.Timestamp(self.now_ns(), tz="UTC").tz_convert(NY).date()
            price, volume = self.model.adjustment_factors(symbol, adjustment, today)
            pf, vf = price[idx], volume[idx]
            yield _Chunk(
                ch.ts,
                ch.o * pf,
                ch.h * pf,
                ch.low * pf,
                ch.c * pf,
                np.rint(ch.v * vf).astype(np.int64),
                ch.n,
                ch.vw * pf,
            )

    def _raw_chunks(
        self, symbol: str, tf: str, s_ns: int, e_ns: int, desc: bool, cursor_ns: int | None
    ) -> Iterator[tuple[_Chunk, np.ndarray | int]]:
        """Raw bars of one symbol with the session index of each (array for daily, one index for intraday)."""
        m = self.model
        now = self.now_ns()
        listed = m.listed_until(symbol)
        lo_ns = s_ns if cursor_ns is None or desc else max(s_ns, cursor_ns)
        hi_ns = e_ns if cursor_ns is None or not desc else min(e_ns, cursor_ns)
        if lo_ns > hi_ns:
            return
        if tf == "1Day":
            d = m.daily_arrays(symbol)
            lo = int(np.searchsorted(d.ts_ns, lo_ns, side="left"))
            hi = int(np.searchsorted(d.ts_ns, hi_ns, side="right"))
            hi = min(hi, int(np.searchsorted(m.close_ns, now, side="right")), listed)
            if hi > lo:
                sl = slice(lo, hi) if not desc else slice(hi - 1, lo - 1 if lo > 0 else None, -1)
                chunk = _Chunk(
                    d.ts_ns[sl],
                    d.open[sl],
                    d.high[sl],
                    d.low[sl],
                    d.close[sl],
                    d.volume[sl],
                    d.trade_count[sl],
                    d.vwap[sl],
                )
                yield chunk, np.arange(len(d.ts_ns))[sl]
            return
        hourly = tf == "1Hour"
        sessions = m.session_range(lo_ns - (NS_PER_HOUR if hourly else 0), min(hi_ns, now))
        for i in reversed(sessions) if desc else sessions:
            if int(m.open_ns[i]) >= now or i >= listed:
                continue
            b = m.hour_session(symbol, i) if hourly else m.minute_session(symbol, i)
            end = np.minimum(b.ts_ns + (NS_PER_HOUR if hourly else NS_PER_MIN), m.close_ns[i])
            sel = np.flatnonzero((b.ts_ns >= lo_ns) & (b.ts_ns <= hi_ns) & (end <= now))
            if len(sel) == 0:
                continue
            if desc:
                sel = sel[::-1]
            chunk = _Chunk(
                b.ts_ns[sel],
                b.open[sel],
                b.high[sel],
                b.low[sel],
                b.close[sel],
                b.volume[sel],
                b.trade_count[sel],
                b.vwap[sel],
            )
            yield chunk, i

    def bars_page(self, params: dict[str, str], single_symbol: str | None = None) -> dict[str, Any]:
        """Compute one page of ``/v2/stocks/bars`` (the pure part of the handler)."""
        raw_syms = single_symbol if single_symbol is not None else params.get("symbols", "")
        if not raw_syms:
            raise ApiError(400, 40010001, "symbols is required")
        symbols = sorted({s.strip() for s in raw_syms.split(",") if s.strip()})
        bad = [s for s in symbols if not valid_symbol(s)]
        if bad:
            raise ApiError(400, 40010001, f"invalid symbol: {bad[0]}")
        tf_raw = params.get("timeframe")
        if not tf_raw:
            raise ApiError(422, 42210000, "timeframe is required")
        if not _TF_RE.match(tf_raw):
            raise ApiError(422, 42210000, f"invalid timeframe: {tf_raw}")
        tf = _TIMEFRAMES.get(tf_raw)
        if tf is None:
            raise ApiError(422, 42210000, f"unsupported timeframe: {tf_raw} (simulator serves 1Min, 1Hour, 1Day)")
        feed = params.get("feed", "sip")
        if feed not in _FEEDS:
            raise ApiError(422, 42210000, f"invalid feed: {feed}")
        adjustment = params.get("adjustment", "raw")
        if adjustment not in ("raw", "split", "dividend", "spin-off", "all"):
            raise ApiError(422, 42210000, f"invalid adjustment: {adjustment}")
        sort = params.get("sort", "asc")
        if sort not in ("asc", "desc"):
            raise ApiError(422, 42210000, f"invalid sort: {sort}")
        now = self.now_ns()
        if "start" in params:
            s_ns = _parse_time(params["start"], "start")
        else:
            today = pd.Timestamp(now, tz="UTC").tz_convert(NY).normalize()
            s_ns = today.as_unit("ns").value
        e_ns = _parse_time(params["end"], "end") if "end" in params else now
        if e_ns < s_ns:
            raise ApiError(422, 42210000, "end should not be before start")
        limit = _parse_limit(params.get("limit"), 1000, 10000)
        desc = sort == "desc"
        cur_sym: str | None = None
        cur_ns: int | None = None
        if params.get("page_token"):
            parts = _decode_token(params["page_token"])
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ApiError(400, 40010001, "invalid page_token")
            cur_sym, cur_ns = parts[0], int(parts[1])

        out: dict[str, list[dict[str, Any]]] = {}
        taken = 0
        next_token: str | None = None
        faults = self.faults
        for sym in symbols:
            if cur_sym is not None and sym < cur_sym:
                continue
            cursor = cur_ns if sym == cur_sym else None
            for ch in self._chunks(sym, tf, s_ns, e_ns, desc, cursor, adjustment):
                room = limit - taken
                if room <= 0:
                    next_token = _encode_token(sym, int(ch.ts[0]))
                    break
                k = min(room, len(ch.ts))
                rows = out.setdefault(sym, [])
                ts_l = ch.ts[:k].tolist()
                cols = [x[:k].tolist() for x in (ch.o, ch.h, ch.low, ch.c, ch.v, ch.n, ch.vw)]
                stamps = rfc3339_many(ch.ts[:k])
                if not faults.malformed:
                    rows.extend(
                        {"t": t, "o": o, "h": h, "l": lo, "c": c, "v": v, "n": n, "vw": vw}
                        for t, o, h, lo, c, v, n, vw in zip(stamps, *cols, strict=True)
                    )
                for j, t in enumerate(ts_l) if faults.malformed else ():
                    row = {
                        "t": stamps[j],
                        "o": cols[0][j],
                        "h": cols[1][j],
                        "l": cols[2][j],
                        "c": cols[3][j],
                        "v": cols[4][j],
                        "n": cols[5][j],
                        "vw": cols[6][j],
                    }
                    kind = faults.malformed_kind(sym, tf, t)
                    if kind is None:
                        rows.append(row)
                    else:
                        self._corrupt(out, rows, sym, tf, row, kind)
                taken += k
                if k < len(ch.ts):
                    next_token = _encode_token(sym, int(ch.ts[k]))
                    break
            if next_token is not None:
                break
        for key in [k for k, v in out.items() if not v]:
            del out[key]
        return {"bars": out, "next_page_token": next_token}

    def warm(self, symbols: Iterable[str]) -> None:
        """Build what the server builds on first use for ``symbols``: daily series and corporate-action records.

        A long-running simulator (or Alpaca) already holds these when a client asks; a benchmark calls this before
        its clock starts so that it times the client's work, not the in-process server's first use.
        """
        for symbol in symbols:
            self.model.daily_arrays(symbol)
            self._action_records(symbol)

    # -------------------------------------------------------------- corporate actions
    def _action_records(self, symbol: str) -> list[tuple[str, dict[str, Any]]]:
        """(group, record) of every action of ``symbol`` in Alpaca's v1 format (name changes under both names).

        The records depend only on the model (not on the clock: the page filters them by date), so they are built
        once per symbol; callers must not modify them."""
        cached = self._action_record_cache.get(symbol)
        if cached is None:
            cached = self._action_record_cache[symbol] = self._build_action_records(symbol)
        return cached

    def _build_action_records(self, symbol: str) -> list[tuple[str, dict[str, Any]]]:
        m = self.model
        actions = list(m.corporate_actions(symbol))
        actions += [m.rename_action(old) for old, (new, _) in RENAMES.items() if new == symbol]
        out = []
        for a in actions:
            ex = a.ex_date
            rid = str(uuid.uuid5(_CA_NS, f"{a.kind}:{a.symbol}:{ex.isoformat()}"))
            cusip = _cusip(a.symbol)
            if a.kind == "cash_dividend":
                record_date = _business_day(m, ex + timedelta(days=1))
                payable = _business_day(
                    m, record_date + timedelta(days=21 + int(stable_uniform(m.seed, a.symbol, ex, "pay") * 21))
                )
                rec = {"id": rid, "symbol": a.symbol, "cusip": cusip, "rate": a.amount, "special": False,
                       "foreign": False, "process_date": payable.isoformat(), "ex_date": ex.isoformat(),
                       "record_date": record_date.isoformat(), "payable_date": payable.isoformat()}  # fmt: skip
                out.append(("cash_dividends", rec))
            elif a.kind in ("forward_split", "reverse_split"):
                rec = {"id": rid, "symbol": a.symbol, "new_rate": a.new_rate, "old_rate": a.old_rate,
                       "process_date": ex.isoformat(), "ex_date": ex.isoformat(),
                       "record_date": (ex - timedelta(days=7)).isoformat(),
                       "payable_date": (ex - timedelta(days=1)).isoformat()}  # fmt: skip
                if a.kind == "forward_split":
                    rec["cusip"] = cusip
                    out.append(("forward_splits", rec))
                else:
                    rec["old_cusip"], rec["new_cusip"] = cusip, _cusip(f"{a.symbol}:{ex}")
                    out.append(("reverse_splits", rec))
            else:
                rec = {"id": rid, "old_symbol": a.symbol, "old_cusip": cusip, "new_symbol": a.new_symbol,
                       "new_cusip": _cusip(a.new_symbol), "process_date": ex.isoformat()}  # fmt: skip
                out.append(("name_changes", rec))
        return out

    def corporate_actions_page(self, params: dict[str, str]) -> dict[str, Any]:
        """One page of ``/v1/corporate-actions``, ordered by (process_date, id)."""
        raw_syms = params.get("symbols", "")
        ids = {x for x in params.get("ids", "").split(",") if x}
        symbols = sorted({s.strip() for s in raw_syms.split(",") if s.strip()})
        if not symbols:
            raise ApiError(400, 40010001, "symbols is required by the simulator (its universe is every ticker)")
        bad = [s for s in symbols if not valid_symbol(s)]
        if bad:
            raise ApiError(400, 40010001, f"invalid symbol: {bad[0]}")
        groups = {f"{t.strip()}s" for t in params.get("types", "").split(",") if t.strip()}
        today = pd.Timestamp(self.now_ns(), tz="UTC").tz_convert(NY).date()
        start = _parse_date(params["start"], "start") if params.get("start") else today
        end = _parse_date(params["end"], "end") if params.get("end") else today
        if end < start:
            raise ApiError(422, 42210000, "end should not be before start")
        limit = min(_parse_limit(params.get("limit"), 100, 1000), self.corporate_actions_page_size)
        known = today + timedelta(days=ANNOUNCE_DAYS)
        rows: dict[str, tuple[str, dict[str, Any]]] = {}
        for sym in symbols:
            for group, rec in self._action_records(sym):
                ex = date.fromisoformat(rec.get("ex_date", rec["process_date"]))
                process = date.fromisoformat(rec["process_date"])
                if ex > known or not start <= process <= end:
                    continue
                if (groups and group not in groups) or (ids and rec["id"] not in ids):
                    continue
                rows[rec["id"]] = (group, rec)
        ordered = sorted(rows.values(), key=lambda gr: (gr[1]["process_date"], gr[1]["id"]))
        desc = params.get("sort", "asc") == "desc"
        if desc:
            ordered.reverse()
        offset = 0
        if params.get("page_token"):
            parts = _decode_token(params["page_token"])
            if len(parts) != 2 or parts[0] != "ca" or not parts[1].isdigit():
                raise ApiError(400, 40010001, "invalid page_token")
            offset = int(parts[1])
        page = ordered[offset : offset + limit]
        out: dict[str, list[dict[str, Any]]] = {}
        for group, rec in page:
            out.setdefault(group, []).append(rec)
        more = offset + limit < len(ordered)
        return {"corporate_actions": out, "next_page_token": _encode_token("ca", offset + limit) if more else None}

    def _corrupt(
        self,
        out: dict[str, list[dict[str, Any]]],
        rows: list[dict[str, Any]],
        sym: str,
        tf: str,
        row: dict[str, Any],
        kind: str,
    ) -> None:
        """Apply one deterministic corruption to ``row`` and record it in stats."""
        self.stats.corrupt(tf, sym, row["t"], kind)
        self.stats.fault(f"malformed:{kind}")
        if kind == "null_price":
            row["c"] = None
            rows.append(row)
        elif kind == "nonpositive_price":
            row["l"] = -abs(row["l"])
            rows.append(row)
        elif kind == "high_below_low":
            row["h"], row["l"] = row["l"], row["h"]
            if row["h"] >= row["l"]:
                row["h"] = round(row["l"] - 0.01, 2)
            rows.append(row)
        elif kind == "duplicate_ts":
            rows.append(row)
            dup = dict(row)
            dup["c"] = round(row["c"] * 1.01, 2)
            dup["h"] = max(dup["h"], dup["c"])
            rows.append(dup)
        else:  # invalid_symbol
            out.setdefault(f"{sym.lower()}$", []).append(row)

    # -------------------------------------------------------------- options
    def _chain(self, underlying: str, session: date) -> pd.DataFrame:
        """The model's cached chain (built once per underlying and session)."""
        return self.model.chain_frame(underlying, session)

    @staticmethod
    def _filter_chain(df: pd.DataFrame, params: dict[str, str]) -> pd.DataFrame:
        mask = np.ones(len(df), dtype=bool)
        if "type" in params:
            if params["type"] not in ("call", "put"):
                raise ApiError(422, 42210000, f"invalid type: {params['type']}")
            mask &= (df["type"] == params["type"]).to_numpy()
        if "strike_price_gte" in params:
            mask &= (df["strike"] >= _parse_float(params["strike_price_gte"], "strike_price_gte")).to_numpy()
        if "strike_price_lte" in params:
            mask &= (df["strike"] <= _parse_float(params["strike_price_lte"], "strike_price_lte")).to_numpy()
        exp = df["expiration"]
        if "expiration_date" in params:
            mask &= (exp == _parse_date(params["expiration_date"], "expiration_date")).to_numpy()
        if "expiration_date_gte" in params:
            mask &= (exp >= _parse_date(params["expiration_date_gte"], "expiration_date_gte")).to_numpy()
        if "expiration_date_lte" in params:
            mask &= (exp <= _parse_date(params["expiration_date_lte"], "expiration_date_lte")).to_numpy()
        if "root_symbol" in params:
            mask &= (df["underlying"].map(option_root) == params["root_symbol"]).to_numpy()
        return df[mask]

    def _as_of_param(self, params: dict[str, str]) -> date | None:
        return _parse_date(params["as_of"], "as_of") if "as_of" in params else None

    def option_chain_page(self, underlying: str, params: dict[str, str]) -> dict[str, Any]:
        """One page of ``/v1beta1/options/snapshots/{underlying}``."""
        if not valid_symbol(underlying):
            raise ApiError(400, 40010001, f"invalid underlying symbol: {underlying}")
        feed = params.get("feed", "indicative")
        if feed not in _OPTION_FEEDS:
            raise ApiError(422, 42210000, f"invalid feed: {feed}")
        limit = _parse_limit(params.get("limit"), 100, 1000)
        session = self.last_closed_session(self._as_of_param(params))
        df = self._filter_chain(self._chain(underlying, session), params)
        if params.get("page_token"):
            start_sym = _decode_token(params["page_token"])[0]
            df = df[(df["symbol"] >= start_sym).to_numpy()]
        page = df.iloc[:limit]
        next_token = _encode_token(df["symbol"].iloc[limit]) if len(df) > limit else None
        snaps: dict[str, Any] = {}
        quote_idx = pd.DatetimeIndex(page["quote_ts"])
        last_idx = pd.DatetimeIndex(page["last_ts"])
        quote_t = rfc3339_many(quote_idx.asi8)
        last_t = rfc3339_many(last_idx.asi8)
        # Alpaca's snapshot carries the session's volume in dailyBar, dated midnight New York
        bar_t = rfc3339_many(last_idx.tz_convert(NY).normalize().asi8)
        names = (
            "symbol", "ask", "ask_size", "ask_exchange", "bid", "bid_size", "bid_exchange", "last_price",
            "last_size", "last_exchange", "volume", "has_greeks", "delta", "gamma", "rho", "theta", "vega", "iv",
        )  # fmt: skip
        cols = [page[c].tolist() for c in names]
        for i, (sym, ap, asz, ax, bp, bsz, bx, last, lsz, lx, vol, has_g, de, ga, rh, th, ve, iv) in enumerate(
            zip(*cols, strict=True)
        ):
            snap: dict[str, Any] = {
                "latestQuote": {
                    "ap": float(ap),
                    "as": int(asz),
                    "ax": ax,
                    "bp": float(bp),
                    "bs": int(bsz),
                    "bx": bx,
                    "c": "A",
                    "t": quote_t[i],
                },
                "latestTrade": {"c": "I", "p": float(last), "s": int(lsz), "t": last_t[i], "x": lx},
            }
            if int(vol) > 0:
                # the model's trades all print at the last price, so the bar is flat at it
                px = float(last)
                snap["dailyBar"] = {
                    "o": px,
                    "h": px,
                    "l": px,
                    "c": px,
                    "v": int(vol),
                    "n": max(1, int(vol) // 10),
                    "vw": px,
                    "t": bar_t[i],
                }
            if has_g:
                snap["greeks"] = {
                    "delta": float(de),
                    "gamma": float(ga),
                    "rho": float(rh),
                    "theta": float(th),
                    "vega": float(ve),
                }
                snap["impliedVolatility"] = float(iv)
            snaps[sym] = snap
        return {"snapshots": snaps, "next_page_token": next_token}

    def contracts_page(self, params: dict[str, str]) -> dict[str, Any]:
        """One page of ``/v2/options/contracts``."""
        unders = [s.strip() for s in params.get("underlying_symbols", "").split(",") if s.strip()]
        root = params.get("root_symbol")
        if not unders and root:
            unders = [root]
        if not unders:
            raise ApiError(422, 42210000, "underlying_symbols or root_symbol is required by the simulator")
        for s in unders:
            if not valid_symbol(s):
                raise ApiError(400, 40010001, f"invalid underlying symbol: {s}")
        status = params.get("status", "active")
        if status not in ("active", "inactive"):
            raise ApiError(422, 42210000, f"invalid status: {status}")
        style = params.get("style")
        if style is not None and style not in ("american", "european"):
            raise ApiError(422, 42210000, f"invalid style: {style}")
        limit = _parse_limit(params.get("limit"), 100, 10000)
        session = self.last_closed_session(self._as_of_param(params))
        eff = dict(params)
        if self.contracts_default_next_weekend and not any(
            k in params for k in ("expiration_date", "expiration_date_gte", "expiration_date_lte")
        ):
            eff["expiration_date_lte"] = (session + timedelta(days=6 - session.weekday())).isoformat()
        if status == "inactive" or style == "european":
            df = self._chain(unders[0], session).iloc[0:0]
        else:
            df = self._listing(unders, session, eff)
        start = 0
        if params.get("page_token"):
            start_sym = _decode_token(params["page_token"])[0]
            start = int(np.searchsorted(df["symbol"].to_numpy(), start_sym, side="left"))
        page = df.iloc[start : start + limit]
        next_token = _encode_token(df["symbol"].iloc[start + limit]) if len(df) > start + limit else None
        records = contract_records(page)
        with self._cache_lock:
            for rec in records:
                self._contract_ids[rec["id"]] = rec["symbol"]
            # bounded: ids are remembered for lookups by id, 500 underlyings list about a million contracts
            for stale in list(itertools.islice(self._contract_ids, max(0, len(self._contract_ids) - _MAX_IDS))):
                del self._contract_ids[stale]
        return {"option_contracts": records, "next_page_token": next_token}

    def _listing(self, unders: list[str], session: date, params: dict[str, str]) -> pd.DataFrame:
        """Contracts of ``unders`` on ``session`` passing the filters, sorted by symbol (cached per query)."""
        filters = tuple(sorted((k, v) for k, v in params.items() if k not in ("page_token", "limit", "as_of")))
        key = (tuple(sorted(set(unders))), session, filters)
        with self._cache_lock:
            hit = self._listings.get(key)
            if hit is not None:
                self._listings.move_to_end(key)
                return hit
        # only what a contract record needs: 500 underlyings list ~350k contracts
        frames = [self._filter_chain(self._chain(u, session), params)[_RECORD_COLUMNS] for u in key[0]]
        df = pd.concat(frames, ignore_index=True).sort_values("symbol", kind="stable").reset_index(drop=True)
        with self._cache_lock:
            self._listings[key] = df
            while len(self._listings) > _LISTINGS_KEPT:
                self._listings.popitem(last=False)
        return df

    def contract(self, symbol_or_id: str, params: dict[str, str]) -> dict[str, Any]:
        """``/v2/options/contracts/{symbol_or_id}``: one contract as of the clock's session."""
        with self._cache_lock:
            symbol = self._contract_ids.get(symbol_or_id, symbol_or_id)
        parsed = parse_occ(symbol)
        if parsed is None:
            raise ApiError(404, 40410000, f"option contract not found: {symbol_or_id}")
        session = self.last_closed_session(self._as_of_param(params))
        for rec in self.model.option_contract_records(parsed[0], session):
            if rec["symbol"] == symbol:
                return rec
        raise ApiError(404, 40410000, f"option contract not found: {symbol_or_id}")


# ---------------------------------------------------------------------- HTTP plumbing
_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/v2/stocks/bars$"), "/v2/stocks/bars"),
    (re.compile(r"^/v2/stocks/([^/]+)/bars$"), "/v2/stocks/{symbol}/bars"),
    (re.compile(r"^/v1beta1/options/snapshots/([^/]+)$"), "/v1beta1/options/snapshots/{underlying}"),
    (re.compile(r"^/v2/options/contracts$"), "/v2/options/contracts"),
    (re.compile(r"^/v2/options/contracts/([^/]+)$"), "/v2/options/contracts/{symbol_or_id}"),
    (re.compile(r"^/v1/corporate-actions$"), "/v1/corporate-actions"),
]


def _make_handler(server: SimulatorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """Routes a GET to the server's pure page functions and applies faults around them."""

        protocol_version = "HTTP/1.1"
        server_version = "alpaca-simulator/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep test output clean; stats carry the numbers

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            # counted before the body goes out: a client that has read the response must see it in the stats
            server.stats.status(status)
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            path = split.path.rstrip("/") or "/"
            params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=False).items()}
            route, match = "unknown", None
            for pattern, name in _ROUTES:
                match = pattern.match(path)
                if match:
                    route = name
                    break
            n = server.stats.next_request(route)
            f = server.faults
            reset = str(int(time.time()) + max(1, f.rate_limit_reset_seconds))
            rl_headers = {"X-RateLimit-Limit": str(RATE_LIMIT), "X-RateLimit-Reset": reset}
            try:
                if f.drop_every and n % f.drop_every == 0:
                    server.stats.fault("drop")
                    self.close_connection = True
                    return
                if f.slow_every and n % f.slow_every == 0:
                    server.stats.fault("slow")
                    time.sleep(f.slow_seconds)
                if f.forbidden:
                    server.stats.fault("forbidden")
                    raise ApiError(403, 40310000, "subscription does not permit querying recent SIP data")
                if (
                    self.headers.get("APCA-API-KEY-ID") != server.api_key
                    or self.headers.get("APCA-API-SECRET-KEY") != server.secret_key
                ):
                    raise ApiError(401, 40110000, "request is not authorized")
                if f.rate_limit_every and n % f.rate_limit_every == 0:
                    server.stats.fault("rate_limit")
                    raise ApiError(429, 42910000, "too many requests", {**rl_headers, "X-RateLimit-Remaining": "0"})
                if f.error_rate > 0 and stable_uniform(f.seed, "error", n) < f.error_rate:
                    statuses = f.error_statuses or (500,)
                    st = statuses[int(stable_uniform(f.seed, "status", n) * len(statuses))]
                    server.stats.fault(f"http_{st}")
                    raise ApiError(st, st * 100000, "internal server error (injected)")
                if match is None:
                    raise ApiError(404, 40410000, f"endpoint not found: {path}")
                if route == "/v2/stocks/bars":
                    body = server.bars_page(params)
                elif route == "/v2/stocks/{symbol}/bars":
                    sym = unquote(match.group(1))
                    page = server.bars_page(params, single_symbol=sym)
                    body = {
                        "bars": page["bars"].get(sym, []),
                        "symbol": sym,
                        "next_page_token": page["next_page_token"],
                    }
                elif route == "/v1beta1/options/snapshots/{underlying}":
                    body = server.option_chain_page(unquote(match.group(1)), params)
                elif route == "/v2/options/contracts":
                    body = server.contracts_page(params)
                elif route == "/v1/corporate-actions":
                    body = server.corporate_actions_page(params)
                else:
                    body = server.contract(unquote(match.group(1)), params)
                remaining = str(max(0, RATE_LIMIT - 1 - (n % RATE_LIMIT)))
                self._send(200, body, {**rl_headers, "X-RateLimit-Remaining": remaining})
            except ApiError as err:
                self._send(err.status, {"code": err.code, "message": err.message}, err.headers)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            except Exception as exc:  # a bug in the simulator must surface as a 500, not a hang
                self._send(500, {"code": 50010000, "message": f"simulator error: {exc!r}"})

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Run the simulator in the foreground: ``python -m alpaca_sim.server``."""
    ap = argparse.ArgumentParser(description="Offline Alpaca-compatible market data simulator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--stream", action="store_true", help="also serve the market-data WebSocket stream")
    ap.add_argument("--ws-port", type=int, default=0, help="stream port (0 = any free port)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--clock", default=None, help="fixed 'now' (RFC3339); default wall clock")
    args = ap.parse_args(argv)
    clock = None
    if args.clock:
        clock = pd.Timestamp(args.clock).to_pydatetime()
        if clock.tzinfo is None:
            clock = clock.replace(tzinfo=UTC)
    srv = SimulatorServer(
        MarketModel(args.seed), host=args.host, port=args.port, ws_port=args.ws_port, clock=clock, enable_ws=args.stream
    )
    srv.start()
    print(f"Alpaca simulator (seed {args.seed}) serving")
    print(f"  base URL (url_override): {srv.base_url}")
    if args.stream:
        print(f"  stream URL:              {srv.ws_url}")
    print(f"  ALPACA_API_KEY={srv.api_key}")
    print(f"  ALPACA_SECRET_KEY={srv.secret_key}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
