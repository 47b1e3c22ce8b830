"""pandera contract for corporate actions, and the split into kept and quarantined actions.

Why a contract here too: one wrong split ratio rescales a symbol's whole history, so an action is used only if
it has what its adjustment needs (dates, positive rates, an amount), and anything else goes to
``market.quarantine`` with the reason, as delivered, instead of silently producing a wrong factor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import Check, Column

from market_assets.contracts.bars import Split, split_valid
from market_assets.domain.symbols import SYMBOL_PATTERN

ACTION_TYPES = (
    "forward_split",
    "reverse_split",
    "unit_split",
    "stock_dividend",
    "cash_dividend",
    "spin_off",
    "cash_merger",
    "stock_merger",
    "stock_and_cash_merger",
    "redemption",
    "name_change",
    "worthless_removal",
    "rights_distribution",
)
DATE_COLUMNS = ("ex_date", "record_date", "payable_date", "process_date")
RATE_COLUMNS = ("new_rate", "old_rate", "cash_amount")

_READABLE = {
    "not_nullable": "is missing",
    f"isin({ACTION_TYPES})": "is not a known corporate action type",
    f"str_matches('{SYMBOL_PATTERN.pattern}')": "is not a ticker symbol",
    "greater_than_or_equal_to(0)": "must be >= 0",
    "field_uniqueness": "duplicate action id with conflicting values",
    "dtype": "has the wrong type",
}


def stable_id(kind: str, payload: object) -> str:
    """An id for older payloads that have none: a hash of (type, payload) as delivered, stable across runs."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return "h:" + hashlib.blake2b(f"{kind}\x1f{text}".encode(), digest_size=12).hexdigest()


def coerce_actions(raw: pd.DataFrame) -> pd.DataFrame:
    """Wire values -> typed columns without dropping anything: bad values become NaN/NaT for the schema."""
    out = pd.DataFrame(index=raw.index)
    ids = raw["id"].where(raw["id"].notna() & (raw["id"].astype(str) != ""), None)
    out["id"] = [
        str(i) if i is not None else stable_id(str(k), p)
        for i, k, p in zip(ids, raw["type"], raw["payload"], strict=True)
    ]
    out["type"] = raw["type"].astype(object)
    for column in ("symbol", "new_symbol", "cusip", "new_cusip"):
        out[column] = raw[column].where(raw[column].notna(), None).astype(object)
    for column in DATE_COLUMNS:
        out[column] = pd.to_datetime(raw[column], errors="coerce", format="ISO8601").dt.date
        out[column] = out[column].where(out[column].notna(), None)
    for column in RATE_COLUMNS:
        out[column] = pd.to_numeric(raw[column], errors="coerce").astype("float64")
    out["is_special"] = raw["special"].map(lambda v: v if isinstance(v, bool) else None).astype(object)
    out["is_foreign"] = raw["foreign"].map(lambda v: v if isinstance(v, bool) else None).astype(object)
    out["payload"] = raw["payload"]
    return out


RowCheck = Callable[[pd.DataFrame], pd.Series]


def _needs(kind: tuple[str, ...], ok: RowCheck) -> RowCheck:
    """A row rule that binds only actions of ``kind`` (a cash dividend needs an amount, a split does not)."""
    return lambda df: ~df["type"].isin(kind) | ok(df)


def _positive(column: str) -> RowCheck:
    return lambda df: (df[column] > 0).fillna(False)


def action_schema() -> pa.DataFrameSchema:
    splits = ("forward_split", "reverse_split", "unit_split")
    return pa.DataFrameSchema(
        {
            "id": Column(str, nullable=False, unique=True),
            "type": Column(str, Check.isin(ACTION_TYPES), nullable=False),
            "symbol": Column(str, Check.str_matches(SYMBOL_PATTERN.pattern), nullable=False),
            "ex_date": Column(object, nullable=False),
            "process_date": Column(object, nullable=False),
            "new_rate": Column(float, nullable=True),
            "old_rate": Column(float, nullable=True),
            "cash_amount": Column(float, Check.ge(0), nullable=True),
        },
        checks=[
            Check(_needs(splits, _positive("new_rate")), error="split without a positive new_rate"),
            Check(_needs(splits, _positive("old_rate")), error="split without a positive old_rate"),
            Check(_needs(("stock_dividend",), _positive("new_rate")), error="stock dividend without a positive rate"),
            Check(_needs(("cash_dividend",), _positive("cash_amount")), error="cash dividend without a positive rate"),
            Check(
                _needs(("name_change",), lambda df: df["new_symbol"].notna()), error="name change without new_symbol"
            ),
            Check(
                lambda df: (
                    (df["new_rate"].isna() | (df["new_rate"] > 0)) & (df["old_rate"].isna() | (df["old_rate"] > 0))
                ),
                error="rates must be > 0",
            ),
        ],
        strict=False,
        coerce=False,
        name="corporate_actions",
    )


def split_actions(frame: pd.DataFrame) -> Split:
    """Validate typed actions; the ones that pass and the ones that fail with every reason.

    Identical re-deliveries (paging overlap, the same action under both names of a rename) collapse first.
    """
    key = frame.assign(_payload=frame["payload"].map(lambda p: json.dumps(p, sort_keys=True, default=str)))
    keep = ~key.duplicated(subset=["id", "_payload"], keep="first")
    frame = frame.loc[keep.to_numpy()]
    values = [c for c in frame.columns if c != "payload"]
    return split_valid(frame, action_schema(), values, _READABLE)


def quarantine_rows(rejected: pd.DataFrame, source: str, run_id: str) -> pd.DataFrame:
    """Rejected actions in the shape ``WarehouseResource.insert_quarantine`` takes."""
    ts = pd.to_datetime(rejected["ex_date"], errors="coerce")
    return pd.DataFrame(
        {
            "source": source,
            "symbol": rejected["symbol"].where(rejected["symbol"].notna(), None),
            "ts": ts.dt.tz_localize("America/New_York").dt.tz_convert("UTC").astype(object).where(ts.notna(), None),
            "payload": rejected["payload"],
            "reason": rejected["reason"],
            "run_id": run_id,
        },
        index=rejected.index,
    ).replace({np.nan: None})
