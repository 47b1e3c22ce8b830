"""Reconciliation: the streamed day in ``market.bars_minute`` against what the T+1 batch fetch delivers.

Why: the stream and the batch are two paths to the same minute bars, and the batch replace is the final word. Run
before the T+1 replace overwrites the streamed rows (``market-data reconcile --session D``), this reports how far the
live path was from it: rows on each side, minutes the stream missed, minutes only the stream has, and minutes whose
values differ (late trades revise a bar after Alpaca first publishes it; a stream that missed ``updatedBars`` shows
up here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from market_assets.alpaca.resource import AlpacaResource
from market_assets.contracts.bars import coerce_raw_bars, split_bars
from market_assets.domain.sessions import session_open_close
from market_assets.warehouse.resource import WarehouseResource

COMPARED = ("open", "high", "low", "close", "volume", "vwap")
PRICE_TOLERANCE = 1e-9  # the same float delivered twice compares equal; any revision shows


@dataclass(frozen=True)
class Reconciliation:
    session: date
    streamed_rows: int
    batch_rows: int
    missing: int  # in the batch, not streamed
    extra: int  # streamed, not in the batch
    mismatched: int  # same minute, different values
    examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.mismatched)

    def summary(self) -> str:
        return (
            f"{self.session}: streamed {self.streamed_rows} rows, batch {self.batch_rows}; "
            f"missing {self.missing}, extra {self.extra}, mismatched {self.mismatched}"
        )


def reconcile_session(
    warehouse: WarehouseResource, alpaca: AlpacaResource, session: date, symbols: Sequence[str]
) -> Reconciliation:
    """Compare the warehouse's minute bars of ``session`` with a fresh REST fetch of the whole session."""
    open_, close = session_open_close(session)
    streamed = warehouse.read_bars("market.bars_minute", list(symbols), session, session)
    raw = alpaca.fetch_bars(
        list(symbols), "1Min", open_.to_pydatetime(), (close - timedelta(seconds=1)).to_pydatetime()
    )
    batch = split_bars(coerce_raw_bars(raw), "1Min").valid if not raw.empty else pd.DataFrame(columns=["symbol", "ts"])
    if streamed.empty:
        streamed = pd.DataFrame(columns=["symbol", "ts", *COMPARED])
    streamed["ts"] = pd.to_datetime(streamed["ts"], utc=True)
    batch["ts"] = pd.to_datetime(batch["ts"], utc=True)
    merged = batch.merge(streamed, on=["symbol", "ts"], how="outer", suffixes=("_batch", "_stream"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    differs = np.zeros(len(both), dtype=bool)
    for column in COMPARED:
        a = pd.to_numeric(both[f"{column}_batch"], errors="coerce").to_numpy(dtype=float)
        b = pd.to_numeric(both[f"{column}_stream"], errors="coerce").to_numpy(dtype=float)
        differs |= ~(np.isclose(a, b, rtol=0, atol=PRICE_TOLERANCE) | (np.isnan(a) & np.isnan(b)))
    examples = [f"mismatch {r.symbol} {r.ts:%H:%M}" for r in both[differs].head(5).itertuples()]
    examples += [
        f"missing {r.symbol} {r.ts:%H:%M}" for r in merged[merged["_merge"] == "left_only"].head(5).itertuples()
    ]
    return Reconciliation(
        session=session,
        streamed_rows=len(streamed),
        batch_rows=len(batch),
        missing=int((merged["_merge"] == "left_only").sum()),
        extra=int((merged["_merge"] == "right_only").sum()),
        mismatched=int(differs.sum()),
        examples=examples,
    )
