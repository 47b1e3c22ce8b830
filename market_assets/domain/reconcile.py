"""The streamed minute bars of a day against the batch's: rows on each side, minutes missed, extra, different.

Why pure and this low: two callers ask the same question at different times. ``market-data reconcile`` (the live
layer) compares the warehouse with a fresh REST fetch whenever an operator asks; the daily job's
``intraday_bars`` asset compares the rows the stream wrote with the batch it is about to write, just before the
T+1 replace erases the difference, and reports it as check metadata. Both frames are in the bar contract's shape
(``symbol``, ``ts`` UTC, ``open`` .. ``vwap``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

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

    def metadata(self) -> dict[str, Any]:
        """Plain values, for check metadata and JSON."""
        return {
            "streamed_rows": self.streamed_rows,
            "batch_rows": self.batch_rows,
            "missing": self.missing,
            "extra": self.extra,
            "mismatched": self.mismatched,
            "examples": "; ".join(self.examples) or "none",
        }


def compare_minute_bars(streamed: pd.DataFrame, batch: pd.DataFrame, session: date) -> Reconciliation:
    """Outer join on (symbol, ts); a minute present on both sides differs when any compared value does."""
    frames = []
    for frame in (batch, streamed):
        if frame.empty:
            frame = pd.DataFrame(columns=["symbol", "ts", *COMPARED])
        frame = frame[["symbol", "ts", *COMPARED]].copy()
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        frames.append(frame)
    merged = frames[0].merge(frames[1], on=["symbol", "ts"], how="outer", suffixes=("_batch", "_stream"),
                             indicator=True)  # fmt: skip
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
    examples += [
        f"extra {r.symbol} {r.ts:%H:%M}" for r in merged[merged["_merge"] == "right_only"].head(5).itertuples()
    ]
    return Reconciliation(
        session=session,
        streamed_rows=len(frames[1]),
        batch_rows=len(frames[0]),
        missing=int((merged["_merge"] == "left_only").sum()),
        extra=int((merged["_merge"] == "right_only").sum()),
        mismatched=int(differs.sum()),
        examples=examples,
    )
