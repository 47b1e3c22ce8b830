"""Option chains and option contracts from Alpaca (or the simulator) through alpaca-py.

Both fetchers return raw frames: the wire values flattened into columns, plus a ``payload``
column holding what was delivered for the row, so a row that fails validation can be
quarantined exactly as received. Nothing is converted, fixed or dropped here.

Why these details:

* ``OptionHistoricalDataClient.get_option_chain`` pages by itself (1,000 snapshots a page,
  looping on ``next_page_token`` inside one call) and merges pages into one dict; every page
  request goes through the resource's resilient session, so a retried 429/5xx refetches one
  page, not the chain.
* ``TradingClient.get_option_contracts`` returns ONE page: the loop on ``next_page_token`` is
  ours (a repeated token is an error, not an endless loop).
* ``as_of``: Alpaca serves option snapshots and contracts only as of now. The simulator accepts
  the extra query parameter ``as_of=YYYY-MM-DD`` to serve a past session. alpaca-py's request
  models drop unknown fields, so the parameter travels in a subclass that declares it, and only
  when the resource says its server can (``serves_option_history``); with the real API ``as_of`` is
  ignored and callers must check that "now" is the session they want (see
  ``serves_history``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pandas as pd
from alpaca.data.enums import OptionsFeed
from alpaca.data.historical.option import OptionHistoricalDataClient
from alpaca.data.requests import OptionChainRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.requests import GetOptionContractsRequest

from market_assets.alpaca.resource import AlpacaResource
from market_assets.domain.symbols import invalid_symbols

CHAIN_SOURCE = "alpaca:/v1beta1/options/snapshots"
CONTRACTS_SOURCE = "alpaca:/v2/options/contracts"
# Alpaca's largest contracts page: requests are the scarce resource (200/min), a retried page of
# 10,000 contracts is ~5 MB; 500 underlyings' contracts over 90 days of expiries are ~26 pages.
CONTRACTS_PAGE_SIZE = 10_000
MAX_CONTRACT_PAGES = 10_000

RAW_CHAIN_COLUMNS = (
    "symbol",
    "underlying",
    "quote_t",
    "bid",
    "bid_size",
    "bid_exchange",
    "ask",
    "ask_size",
    "ask_exchange",
    "trade_t",
    "last",
    "last_size",
    "volume",
    "iv",
    "delta",
    "gamma",
    "theta",
    "vega",
    "rho",
)
RAW_CONTRACT_COLUMNS = (
    "id",
    "symbol",
    "name",
    "status",
    "tradable",
    "expiration_date",
    "root_symbol",
    "underlying_symbol",
    "underlying_asset_id",
    "type",
    "style",
    "strike_price",
    "size",
    "open_interest",
    "open_interest_date",
    "close_price",
    "close_price_date",
)


class _AsOfOptionChainRequest(OptionChainRequest):
    """OptionChainRequest plus the simulator's ``as_of`` (a declared field is serialised as a query param)."""

    as_of: date | None = None


class _AsOfOptionContractsRequest(GetOptionContractsRequest):
    """GetOptionContractsRequest plus the simulator's ``as_of``."""

    as_of: date | None = None


def serves_history(alpaca: AlpacaResource) -> bool:
    """Whether past option snapshots can be requested (Alpaca: only "now"; the composition root says otherwise
    for a server that can, such as the offline simulator)."""
    return alpaca.serves_option_history


def option_data_client(alpaca: AlpacaResource) -> OptionHistoricalDataClient:
    end = alpaca.endpoint()
    return alpaca.wire(
        OptionHistoricalDataClient(end.api_key, end.secret_key, raw_data=True, url_override=end.data_url)
    )


def trading_client(alpaca: AlpacaResource) -> TradingClient:
    """A TradingClient for reference data. Without a URL override, paper keys (``PK...``) need the
    paper endpoint and live keys the live one; Alpaca's key prefix tells which."""
    end = alpaca.endpoint()
    paper = not (end.api_key or "").startswith("AK")
    return alpaca.wire(
        TradingClient(end.api_key, end.secret_key, paper=paper, raw_data=True, url_override=end.trading_url)
    )


def _check_underlyings(underlyings: list[str]) -> None:
    bad = invalid_symbols(underlyings)
    if bad:
        raise ValueError(f"invalid underlying symbol(s) {', '.join(map(repr, bad))}: expected e.g. AAPL or BRK.B")


def _flatten_snapshot(symbol: str, underlying: str, snap: Any) -> dict[str, Any]:
    """One snapshot's wire values under stable names; absent parts become None (never guessed)."""
    snap = snap if isinstance(snap, dict) else {}
    quote = snap.get("latestQuote") or {}
    trade = snap.get("latestTrade") or {}
    greeks = snap.get("greeks") or {}
    daily = snap.get("dailyBar") or {}
    return {
        "symbol": symbol,
        "underlying": underlying,
        "quote_t": quote.get("t"),
        "bid": quote.get("bp"),
        "bid_size": quote.get("bs"),
        "bid_exchange": quote.get("bx"),
        "ask": quote.get("ap"),
        "ask_size": quote.get("as"),
        "ask_exchange": quote.get("ax"),
        "trade_t": trade.get("t"),
        "last": trade.get("p"),
        "last_size": trade.get("s"),
        "volume": daily.get("v"),  # the day's volume; Alpaca sends it in dailyBar when there were trades
        "iv": snap.get("impliedVolatility"),
        **{g: greeks.get(g) for g in ("delta", "gamma", "theta", "vega", "rho")},
    }


def fetch_option_chain(
    alpaca: AlpacaResource,
    underlying: str,
    as_of: date | None = None,
    feed: str = "indicative",
    *,
    expiration_date_gte: date | None = None,
    expiration_date_lte: date | None = None,
) -> pd.DataFrame:
    """Every contract snapshot of `underlying`, one row each, with the raw snapshot in ``payload``.

    ``payload`` is ``{"symbol", "underlying", "snapshot": <as delivered>}``: the symbol is only
    the snapshot's key on the wire, and the quarantine needs it next to the data.
    """
    _check_underlyings([underlying])
    fields: dict[str, Any] = {
        "underlying_symbol": underlying,
        "feed": OptionsFeed(feed),
        "expiration_date_gte": expiration_date_gte,
        "expiration_date_lte": expiration_date_lte,
    }
    if as_of is not None and serves_history(alpaca):
        request: OptionChainRequest = _AsOfOptionChainRequest(**fields, as_of=as_of)
    else:
        request = OptionChainRequest(**fields)
    raw = option_data_client(alpaca).get_option_chain(request) or {}
    records = [_flatten_snapshot(sym, underlying, snap) for sym, snap in sorted(raw.items())]
    frame = pd.DataFrame.from_records(records, columns=list(RAW_CHAIN_COLUMNS))
    frame["payload"] = [
        {"symbol": sym, "underlying": underlying, "snapshot": snap} for sym, snap in sorted(raw.items())
    ]
    return frame


def option_contract_pages(
    alpaca: AlpacaResource,
    underlyings: list[str],
    as_of: date | None = None,
    *,
    expiration_date_gte: date | None = None,
    expiration_date_lte: date | None = None,
    page_size: int = CONTRACTS_PAGE_SIZE,
) -> Iterator[pd.DataFrame]:
    """Active contracts on `underlyings`, paged by hand: one raw frame per page, as delivered.

    Why pages: 500 underlyings list ~300k contracts; held at once as Python dicts they were most of the options
    step's peak memory (issue 10). A caller types and validates each page before the next is requested.
    Pass an expiration window: without one Alpaca (and the simulator) return only contracts expiring by the
    next weekend.
    """
    if not underlyings:
        return
    _check_underlyings(underlyings)
    client = trading_client(alpaca)
    use_as_of = as_of is not None and serves_history(alpaca)
    token: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_CONTRACT_PAGES):
        fields: dict[str, Any] = {
            "underlying_symbols": list(underlyings),
            "expiration_date_gte": expiration_date_gte,
            "expiration_date_lte": expiration_date_lte,
            "limit": page_size,
            "page_token": token,
        }
        request = (
            _AsOfOptionContractsRequest(**fields, as_of=as_of) if use_as_of else GetOptionContractsRequest(**fields)
        )
        page = client.get_option_contracts(request) or {}
        records = [r if isinstance(r, dict) else {"value": r} for r in page.get("option_contracts") or []]
        token = page.get("next_page_token")
        del page
        frame = pd.DataFrame.from_records(records, columns=list(RAW_CONTRACT_COLUMNS))
        frame["payload"] = records
        yield frame
        if not token:
            return
        if token in seen:
            raise RuntimeError(f"option contracts paging repeated the page token {token!r}; stopping")
        seen.add(token)
    raise RuntimeError(f"option contracts paging did not end after {MAX_CONTRACT_PAGES} pages")
