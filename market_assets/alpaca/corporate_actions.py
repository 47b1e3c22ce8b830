"""Corporate actions from Alpaca (or the simulator): ``/v1/corporate-actions`` through alpaca-py.

Why these details (each one cost somebody a wrong price series):

* ``CorporateActionsRequest`` defaults ``limit=1000``, and alpaca-py treats ``limit`` as a cap on the TOTAL, not
  the page: a long window silently stops at 1,000 actions. We pass ``limit=None``: alpaca-py then pages on
  ``next_page_token`` until the server has no more, 1,000 per page, each page through the resource's resilient
  session (rate limit, timeout, retries: the same as bars).
* ``raw_data=True``: alpaca-py's models reject older payloads without ``id``/``cusip`` and drop fields they do
  not know (``partial_calls``); we keep the JSON as delivered and parse it ourselves
  (:func:`flatten_actions`), so a malformed action is quarantined, not a crash.
* ``start``/``end`` filter on the PROCESS date, which for a cash dividend is the payable date, weeks after the
  ex-date that moves prices. :func:`request_window` stretches the end by :data:`PROCESS_LAG_DAYS` so every
  action with an ex-date inside the bars' window is fetched.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import pandas as pd
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.requests import CorporateActionsRequest

from market_assets.alpaca.resource import AlpacaResource
from market_assets.domain.symbols import invalid_symbols
from market_assets.errors import InvalidSymbolsError

SOURCE = "alpaca:/v1/corporate-actions"
#: Process date minus ex-date: splits process on the ex-date, cash dividends on the payable date, which US
#: issuers set within about 30-45 days of the record date; specials and foreign issuers run longer. 120 days
#: covers every ex-date of the window with margin; the cost is a few extra (idempotent) rows.
PROCESS_LAG_DAYS = 120
SYMBOLS_PER_REQUEST = 100

#: Alpaca's plural group key -> our singular type.
GROUPS: dict[str, str] = {
    "forward_splits": "forward_split",
    "reverse_splits": "reverse_split",
    "unit_splits": "unit_split",
    "stock_dividends": "stock_dividend",
    "cash_dividends": "cash_dividend",
    "spin_offs": "spin_off",
    "cash_mergers": "cash_merger",
    "stock_mergers": "stock_merger",
    "stock_and_cash_mergers": "stock_and_cash_merger",
    "redemptions": "redemption",
    "name_changes": "name_change",
    "worthless_removals": "worthless_removal",
    "rights_distributions": "rights_distribution",
}

# per type: (affected symbol field, new symbol field, cusip field, new cusip field, ex-date field,
#            new_rate field, old_rate field, cash field)
_FIELDS: dict[str, tuple[str | None, ...]] = {
    "forward_split": ("symbol", None, "cusip", None, "ex_date", "new_rate", "old_rate", None),
    "reverse_split": ("symbol", None, "old_cusip", "new_cusip", "ex_date", "new_rate", "old_rate", None),
    "unit_split": ("old_symbol", "new_symbol", "old_cusip", "new_cusip", "effective_date", "new_rate", "old_rate",
                   None),
    "stock_dividend": ("symbol", None, "cusip", None, "ex_date", "rate", None, None),
    "cash_dividend": ("symbol", None, "cusip", None, "ex_date", None, None, "rate"),
    "spin_off": ("source_symbol", "new_symbol", "source_cusip", "new_cusip", "ex_date", "new_rate", "source_rate",
                 None),
    "cash_merger": ("acquiree_symbol", "acquirer_symbol", "acquiree_cusip", "acquirer_cusip", "effective_date",
                    None, None, "rate"),
    "stock_merger": ("acquiree_symbol", "acquirer_symbol", "acquiree_cusip", "acquirer_cusip", "effective_date",
                     "acquirer_rate", "acquiree_rate", None),
    "stock_and_cash_merger": ("acquiree_symbol", "acquirer_symbol", "acquiree_cusip", "acquirer_cusip",
                              "effective_date", "acquirer_rate", "acquiree_rate", "cash_rate"),
    "redemption": ("symbol", None, "cusip", None, "process_date", None, None, "rate"),
    "name_change": ("old_symbol", "new_symbol", "old_cusip", "new_cusip", "process_date", None, None, None),
    "worthless_removal": ("symbol", None, "cusip", None, "process_date", None, None, None),
    "rights_distribution": ("source_symbol", "new_symbol", "source_cusip", "new_cusip", "ex_date", "rate", None, None),
}  # fmt: skip

RAW_COLUMNS = (
    "id",
    "type",
    "symbol",
    "new_symbol",
    "cusip",
    "new_cusip",
    "ex_date",
    "record_date",
    "payable_date",
    "process_date",
    "new_rate",
    "old_rate",
    "cash_amount",
    "special",
    "foreign",
    "payload",
)


def request_window(bars_start: date, bars_end: date, lag_days: int = PROCESS_LAG_DAYS) -> tuple[date, date]:
    """The process-date window that holds every action whose ex-date lies in [bars_start, bars_end]."""
    return bars_start, bars_end + timedelta(days=lag_days)


def _field(record: dict[str, Any], name: str | None) -> Any:
    return record.get(name) if name else None


def flatten_actions(raw: dict[str, Any]) -> pd.DataFrame:
    """alpaca-py's raw dict (plural group -> list of actions) -> one row per action, values as delivered.

    Unknown groups are kept with their group name as the type, so the contract quarantines them with a reason
    instead of this parser dropping them silently.
    """
    rows: list[dict[str, Any]] = []
    for group, actions in (raw or {}).items():
        kind = GROUPS.get(group, group)
        fields = _FIELDS.get(kind, ("symbol", None, "cusip", None, "ex_date", None, None, None))
        for record in actions or []:
            rec = record if isinstance(record, dict) else {"value": record}
            sym, new_sym, cusip, new_cusip, ex, new_rate, old_rate, cash = fields
            rows.append(
                {
                    "id": rec.get("id"),
                    "type": kind,
                    "symbol": _field(rec, sym),
                    "new_symbol": _field(rec, new_sym),
                    "cusip": _field(rec, cusip),
                    "new_cusip": _field(rec, new_cusip),
                    "ex_date": _field(rec, ex),
                    "record_date": rec.get("record_date"),
                    "payable_date": rec.get("payable_date"),
                    "process_date": rec.get("process_date"),
                    "new_rate": _field(rec, new_rate),
                    "old_rate": _field(rec, old_rate),
                    "cash_amount": _field(rec, cash),
                    "special": rec.get("special"),
                    "foreign": rec.get("foreign"),
                    "payload": {"group": group, **rec},
                }
            )
    return pd.DataFrame.from_records(rows, columns=list(RAW_COLUMNS))


def corporate_actions_client(resource: AlpacaResource) -> CorporateActionsClient:
    end = resource.endpoint()
    return resource.wire(
        CorporateActionsClient(api_key=end.api_key, secret_key=end.secret_key, raw_data=True, url_override=end.data_url)
    )


def fetch_corporate_actions(resource: AlpacaResource, symbols: Iterable[str], start: date, end: date) -> pd.DataFrame:
    """Every action of ``symbols`` with a process date in [start, end], flattened, nothing dropped."""
    symbols = list(symbols)
    bad = invalid_symbols(symbols)
    if bad:
        raise InvalidSymbolsError(f"invalid symbol(s) {', '.join(map(repr, bad))}: expected e.g. AAPL or BRK.B")
    client = corporate_actions_client(resource)
    merged: dict[str, list[Any]] = {}
    for i in range(0, len(symbols), SYMBOLS_PER_REQUEST):
        request = CorporateActionsRequest(
            symbols=symbols[i : i + SYMBOLS_PER_REQUEST], start=start, end=end, limit=None
        )
        raw = client.get_corporate_actions(request) or {}
        for group, actions in raw.items():
            if isinstance(actions, list):
                merged.setdefault(group, []).extend(actions)
    return flatten_actions(merged)
