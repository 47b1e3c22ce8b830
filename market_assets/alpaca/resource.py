"""Alpaca access as a Dagster resource: alpaca-py clients on a resilient HTTP session.

Keys are bound with `EnvVar` in definitions.py, so they never appear in run config, logs or
metadata. This module knows only Alpaca's API: which server answers it (Alpaca, or the offline
simulator) is decided by the composition root, which binds a resource whose ``endpoint()`` points
the very same alpaca-py code path at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import pandas as pd
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from dagster import ConfigurableResource
from pydantic import PrivateAttr

from market_assets.alpaca.http import HttpStats, RateLimiter, ResilientSession, paged_marketdata
from market_assets.domain.symbols import invalid_symbols
from market_assets.errors import InvalidSymbolsError, SettingsError

TIMEFRAMES: dict[str, TimeFrame] = {
    "1Day": TimeFrame(1, TimeFrameUnit.Day),
    "1Hour": TimeFrame(1, TimeFrameUnit.Hour),
    "1Min": TimeFrame(1, TimeFrameUnit.Minute),
}
RAW_BAR_FIELDS = ("t", "o", "h", "l", "c", "v", "n", "vw")


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
    symbols_per_request: int = 100
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

    def fetch_bars(self, symbols: list[str], timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Raw bars as delivered, one row per bar with the wire fields and the symbol.

        Nothing is dropped or fixed here: validation decides what is kept. Symbols are checked
        first so a typo fails before any request is spent on it.
        """
        bad = invalid_symbols(symbols)
        if bad:
            raise InvalidSymbolsError(f"invalid symbol(s) {', '.join(map(repr, bad))}: expected e.g. AAPL or BRK.B")
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {timeframe!r}; one of {', '.join(TIMEFRAMES)}")
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware (alpaca-py takes naive times as UTC)")
        client = self.stock_client()
        records: list[dict[str, Any]] = []
        for i in range(0, len(symbols), self.symbols_per_request):
            chunk = symbols[i : i + self.symbols_per_request]
            request = StockBarsRequest(
                symbol_or_symbols=chunk,
                timeframe=TIMEFRAMES[timeframe],
                start=start,
                end=end,
                adjustment=Adjustment.RAW,
                feed=DataFeed(self.feed),
            )
            raw = client.get_stock_bars(request) or {}
            for symbol, bars in raw.items():
                for bar in bars or []:
                    records.append({"symbol": symbol, **bar} if isinstance(bar, dict) else {"symbol": symbol})
        frame = pd.DataFrame.from_records(records, columns=["symbol", *RAW_BAR_FIELDS])
        frame["payload"] = records
        return frame
