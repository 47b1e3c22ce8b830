"""Reconciliation on demand: the streamed day in ``market.bars_minute`` against a fresh T+1-style REST fetch.

Why: the stream and the batch are two paths to the same minute bars, and the batch replace is the final word. Run
before the T+1 replace overwrites the streamed rows (``market-data reconcile --session D``), this reports how far the
live path was from it: rows on each side, minutes the stream missed, minutes only the stream has, and minutes whose
values differ (late trades revise a bar after Alpaca first publishes it; a stream that missed ``updatedBars`` shows
up here). The daily job asks the same question automatically (the ``stream_reconciliation`` check of
``intraday_bars``); the comparison itself is ``market_assets.domain.reconcile``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import pandas as pd

from market_assets.alpaca.resource import AlpacaResource
from market_assets.contracts.bars import coerce_raw_bars, split_bars
from market_assets.domain.reconcile import Reconciliation, compare_minute_bars
from market_assets.domain.sessions import session_open_close
from market_assets.warehouse.resource import WarehouseResource

__all__ = ["Reconciliation", "reconcile_session"]


def reconcile_session(
    warehouse: WarehouseResource, alpaca: AlpacaResource, session: date, symbols: Sequence[str]
) -> Reconciliation:
    """Compare the warehouse's minute bars of ``session`` with a fresh REST fetch of the whole session."""
    open_, close = session_open_close(session)
    streamed = warehouse.read_bars("market.bars_minute", list(symbols), session, session)
    raw = alpaca.fetch_bars(
        list(symbols), "1Min", open_.to_pydatetime(), (close - timedelta(seconds=1)).to_pydatetime()
    )
    batch = split_bars(coerce_raw_bars(raw), "1Min").valid if not raw.empty else pd.DataFrame()
    return compare_minute_bars(streamed, batch, session)
