"""Alpaca access as a Dagster resource: alpaca-py clients on a resilient HTTP session.

Keys are bound with `EnvVar` in definitions.py, so they never appear in run config, logs or
metadata. This module knows only Alpaca's API: which server answers it (Alpaca, or the offline
simulator) is decided by the composition root, which binds a resource whose ``endpoint()`` points
the very same alpaca-py code path at it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import pandas as pd
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from dagster import ConfigurableResource
from pydantic import PrivateAttr

from market_assets.alpaca.http import MAX_PAGES, HttpStats, PagingError, RateLimiter, ResilientSession, paged_marketdata
from market_assets.domain.symbols import invalid_symbols
from market_assets.errors import AlpacaUnavailableError, InvalidSymbolsError, SettingsError

log = logging.getLogger(__name__)

TIMEFRAMES: dict[str, TimeFrame] = {
    "1Day": TimeFrame(1, TimeFrameUnit.Day),
    "1Hour": TimeFrame(1, TimeFrameUnit.Hour),
    "1Min": TimeFrame(1, TimeFrameUnit.Minute),
}
RAW_BAR_FIELDS = ("t", "o", "h", "l", "c", "v", "n", "vw")
# Alpaca's largest bars page: ten years of daily bars for 500 symbols (1.27 M) is 127 pages.
BARS_PAGE_SIZE = 10_000
# Symbols share one request stream (the page limit counts bars of all of them) up to this many
# characters of the `symbols` parameter: 4,000 keeps the whole URL well under the 8 KiB that HTTP
# servers and proxies commonly accept, about 700 tickers.
SYMBOLS_PARAM_MAX_CHARS = 4_000


@dataclass(frozen=True)
class Endpoint:
    """Where requests go and with which keys (the secret never printed: repr hides it)."""

    api_key: str | None
    secret_key: str | None = field(repr=False)
    data_url: str | None
    trading_url: str | None


class AlpacaResource(ConfigurableResource):
    """Historical market data from Alpaca (or the simulator) with timeouts, rate limit and retries."""

    api_key: str | None = None
    secret_key: str | None = None
    feed: str = "iex"
    data_url: str | None = None
    trading_url: str | None = None
    rate_limit_per_minute: float = 180.0
    timeout_seconds: float = 30.0
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    symbols_per_request: int = 1_000  # further bounded by SYMBOLS_PARAM_MAX_CHARS
    serves_option_history: bool = False  # Alpaca serves option snapshots only as of now; a test server may do more
    source: str = "alpaca"  # what the data is labelled with in logs and metadata

    _session: ResilientSession | None = PrivateAttr(default=None)

    @property
    def stored_feed(self) -> str:
        """The `feed` stored with every bar: simulated data is labelled 'simulator', never passed off as a real feed."""
        return "simulator" if self.source == "simulator" else self.feed

    @property
    def stats(self) -> HttpStats:
        return self.session().stats

    def session(self) -> ResilientSession:
        if self._session is None:
            self._session = ResilientSession(
                RateLimiter(self.rate_limit_per_minute),
                timeout=self.timeout_seconds,
                max_attempts=self.max_attempts,
                backoff_base=self.backoff_base_seconds,
                backoff_max=self.backoff_max_seconds,
            )
        return self._session

    def endpoint(self) -> Endpoint:
        """The configured server and keys; a subclass bound by the composition root may point elsewhere."""
        if not self.api_key and not self.data_url:
            raise SettingsError(
                "no Alpaca endpoint: set ALPACA_API_KEY and ALPACA_SECRET_KEY"
                " (or ALPACA_DATA_URL for an Alpaca-compatible server)"
            )
        return Endpoint(self.api_key, self.secret_key, self.data_url, self.trading_url or self.data_url)

    def wire(self, client: Any) -> Any:
        """Put the resilient session under an alpaca-py client, turn its own retry loop off, and replace its
        unbounded market-data pager (bars, option chains) with ours, which caps pages and refuses repeated tokens."""
        client._session = self.session()
        client._retry = 0
        client._get_marketdata = partial(paged_marketdata, client)
        return client

    def stock_client(self) -> StockHistoricalDataClient:
        end = self.endpoint()
        return self.wire(
            StockHistoricalDataClient(
                api_key=end.api_key, secret_key=end.secret_key, raw_data=True, url_override=end.data_url
            )
        )

    def symbol_groups(self, symbols: list[str]) -> list[list[str]]:
        """Symbols in as few requests as the URL allows: at most ``symbols_per_request`` each and
        ``SYMBOLS_PARAM_MAX_CHARS`` of comma-separated tickers."""
        groups: list[list[str]] = []
        current: list[str] = []
        chars = 0
        for symbol in symbols:
            extra = len(symbol) + (1 if current else 0)
            if current and (len(current) >= self.symbols_per_request or chars + extra > SYMBOLS_PARAM_MAX_CHARS):
                groups.append(current)
                current, chars, extra = [], 0, len(symbol)
            current.append(symbol)
            chars += extra
        if current:
            groups.append(current)
        return groups

    def iter_bars(self, symbols: list[str], timeframe: str, start: datetime, end: datetime) -> Iterator[pd.DataFrame]:
        """Raw bars page by page (``BARS_PAGE_SIZE`` bars of many symbols per request), as delivered.

        Each frame holds one page: the wire fields, the symbol and ``payload`` (the row as received,
        for the quarantine). Paging is ours, not alpaca-py's (which keeps every page in memory until
        the last one), so a caller can write as pages arrive with bounded memory, and each page
        request goes through the resilient session on its own. Symbols are checked first so a typo
        fails before any request is spent on it.
        """
        _check_request(symbols, timeframe, start, end)
        client = self.stock_client()
        for group in self.symbol_groups(list(symbols)):
            yield from self._group_pages(client, group, timeframe, start, end)

    def _group_pages(
        self, client: Any, group: list[str], timeframe: str, start: datetime, end: datetime
    ) -> Iterator[pd.DataFrame]:
        """The pages of one request stream (one group of symbols), bounded like ``paged_marketdata``."""
        params = StockBarsRequest(
            symbol_or_symbols=group,
            timeframe=TIMEFRAMES[timeframe],
            start=start,
            end=end,
            adjustment=Adjustment.RAW,
            feed=DataFeed(self.feed),
        ).to_request_fields()
        token: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params["limit"] = BARS_PAGE_SIZE
            params["page_token"] = token
            page = client.get("/stocks/bars", params) or {}
            records: list[dict[str, Any]] = []
            for symbol, bars in (page.get("bars") or {}).items():
                for bar in bars or []:
                    records.append({"symbol": symbol, **bar} if isinstance(bar, dict) else {"symbol": symbol})
            frame = pd.DataFrame.from_records(records, columns=["symbol", *RAW_BAR_FIELDS])
            frame["payload"] = records
            yield frame
            token = page.get("next_page_token")
            if not token:
                return
            if token in seen:
                raise PagingError(f"GET /stocks/bars: the server repeated the page token {str(token)[:40]!r}; stopping")
            seen.add(token)
        raise PagingError(f"GET /stocks/bars: paging did not end after {MAX_PAGES} pages")

    def _isolating_pages(
        self, client: Any, group: list[str], timeframe: str, start: datetime, end: datetime, failed: dict[str, str]
    ) -> list[pd.DataFrame]:
        """The pages of `group`; a failing request is bisected until the symbol(s) that fail it are isolated.

        Why: one request carries up to ``symbols_per_request`` symbols, so one symbol the server chokes on (a
        422 for a delisted ticker, a 5xx on one shard, a page that never ends) failed the whole batch and with it
        every other symbol of the run (issue 13, item 9). Halving the failing batch finds k bad symbols among n in
        about k * log2(n) extra requests, and the good halves are fetched whole. Failed symbols land in `failed`
        (symbol -> reason); the caller decides what that means. An outage is not a bad symbol: if the requests
        along one whole path down to a single symbol fail and its sibling fails too before anything succeeded,
        every request is failing, and the original error is raised as before (so is a one-symbol group's).
        """
        budget = math.ceil(math.log2(max(len(group), 1))) + 2  # failures tolerated before a first success
        state = {"failures": 0, "successes": 0}

        def fetch(part: list[str]) -> list[pd.DataFrame]:
            try:
                pages = [p for p in self._group_pages(client, part, timeframe, start, end) if len(p)]
            except (AlpacaUnavailableError, APIError) as exc:
                state["failures"] += 1
                if state["successes"] == 0 and (state["failures"] >= budget or len(group) == 1):
                    raise  # every request fails (or the only symbol does): nothing to isolate it from
                if len(part) == 1:
                    failed[part[0]] = str(exc)[:500]
                    return []
                half = len(part) // 2
                return fetch(part[:half]) + fetch(part[half:])
            state["successes"] += 1
            return pages

        return fetch(group)

    def fetch_bars(self, symbols: list[str], timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Raw bars as delivered, one row per bar with the wire fields and the symbol (all pages).

        Nothing is dropped or fixed here: validation decides what is kept. A symbol whose request fails even on
        its own is left out and named in ``frame.attrs["failed_symbols"]`` (symbol -> reason); the others are
        returned (see `_isolating_pages`).
        """
        _check_request(symbols, timeframe, start, end)
        client = self.stock_client()
        failed: dict[str, str] = {}
        pages: list[pd.DataFrame] = []
        for group in self.symbol_groups(list(symbols)):
            pages.extend(self._isolating_pages(client, group, timeframe, start, end, failed))
        if failed:
            log.warning("bars of %s could not be fetched (the other symbols were): %s", ", ".join(failed), failed)
        if not pages:
            frame = pd.DataFrame(columns=["symbol", *RAW_BAR_FIELDS])
            frame["payload"] = pd.Series(dtype=object)
        else:
            frame = pd.concat(pages, ignore_index=True)
        frame.attrs["failed_symbols"] = failed
        return frame


def _check_request(symbols: list[str], timeframe: str, start: datetime, end: datetime) -> None:
    """Fail on a typo before any request is spent on it."""
    bad = invalid_symbols(symbols)
    if bad:
        raise InvalidSymbolsError(f"invalid symbol(s) {', '.join(map(repr, bad))}: expected e.g. AAPL or BRK.B")
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}; one of {', '.join(TIMEFRAMES)}")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware (alpaca-py takes naive times as UTC)")
