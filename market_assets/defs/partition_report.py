"""Per-partition truth in materialization metadata.

Why: Dagster copies a `MaterializeResult`'s metadata onto the event of every partition the run covered, so a
one-year backfill used to stamp each day with the whole run's totals (`rows_written 5000` on a Sunday) and the
Plots tab drew nonsense. Here each partition gets its own counts (`context.add_asset_metadata(...,
partition_key=...)`, which wins over the run-wide metadata for that partition), the standard
`dagster/partition_row_count` and `dagster/column_schema` entries, and the heavy entries
(previews, charts) go on the run's last partition only: the latest materialization carries the picture, and a
backfill does not store it once per day.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, TableColumn, TableSchema

from market_assets.defs.partitions import is_history_chunk
from market_assets.domain.sessions import as_days
from market_assets.warehouse import tables

# PostgreSQL types in the registry -> the short names the UI's column-schema table shows
_TYPE_NAMES = {"float8": "double", "int8": "bigint", "int4": "integer", "timestamptz": "timestamp with tz"}


def column_schema(table: tables.Table) -> TableSchema:
    """The table's written columns as Dagster's `dagster/column_schema` (key columns marked not-null)."""
    return TableSchema(
        columns=[
            TableColumn(
                name,
                _TYPE_NAMES.get(kind, kind),
                description="key" if name in table.key else None,
            )
            for name, kind in table.columns
        ]
    )


def partition_keys(context: AssetExecutionContext) -> list[str]:
    """The partition keys this materialization covers ([] for an unpartitioned asset)."""
    if context.has_partition_key_range:
        return list(context.partition_keys)
    return [context.partition_key] if context.has_partition_key else []


def _day(key: str) -> date:
    return date.fromisoformat(key[:10])


def _days(values: pd.Series) -> np.ndarray:
    """A date column (or New York-dated timestamps) as `datetime64[D]`, vectorised: a one-year chunk of
    support/resistance has 1.5 M rows, and converting each `date` object cost ~2 s per chunk."""
    if values.empty:
        return np.array([], dtype="datetime64[D]")
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values)
        if stamps.dt.tz is not None:
            stamps = stamps.dt.tz_convert("America/New_York").dt.tz_localize(None)
        return stamps.to_numpy(dtype="datetime64[D]")
    return as_days(values)  # date objects or ISO strings: each distinct day converted once


def report_partitions(
    context: AssetExecutionContext,
    rows: pd.DataFrame,
    *,
    date_column: str,
    symbol_column: str = "symbol",
    table: tables.Table | None = None,
    quarantined: pd.Series | None = None,
    latest: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
) -> None:
    """Give each partition of the run its own rows, symbols and quarantined rows.

    `rows`: what was written, with a date column (`date_column`) saying which partition each row belongs to;
    `quarantined`: the dates (or New York timestamps) of the rows rejected by the run (None: not attributable to
    a partition, so no per-partition figure is claimed); `latest`: entries for the run's last partition only
    (previews, charts: the latest materialization carries them, a backfill stores them once), possibly a callable,
    called only when needed: a backfill chunk that is not the last (`is_history_chunk`) has none.

    No table-wide row count (`dagster/row_count`): a `count(*)` per run grows with the stored history (5.9 s for
    support/resistance at ten years of 500 symbols).

    The table's column schema and name go on the run's last partition only: they describe the table, not a session,
    and Dagster stores every partition's materialization as its own event, so a schema on each of a one-year chunk's
    252 partitions was 252 copies (up to 11 KB each for the indicators) serialized and stored per asset per chunk.
    """
    keys = partition_keys(context)
    if not keys:
        return
    if is_history_chunk(context):  # skipped before they are computed: pass a callable to save the work too
        latest = None
    if callable(latest):
        latest = latest()
    per_day = (
        rows.assign(_day=_days(rows[date_column])).groupby("_day")[symbol_column].agg(["size", "nunique"])
        if len(rows)
        else pd.DataFrame(columns=["size", "nunique"])
    )
    rejected = (
        pd.Series(_days(quarantined)).value_counts() if quarantined is not None and len(quarantined) else pd.Series()
    )
    shared: dict[str, Any] = {}
    if table is not None:
        shared["dagster/column_schema"] = column_schema(table)
        shared["table"] = table.name
    for key in keys:
        day = pd.Timestamp(_day(key))
        n = int(per_day.at[day, "size"]) if day in per_day.index else 0
        metadata: dict[str, Any] = {
            "dagster/partition_row_count": MetadataValue.int(n),
            "rows_written": MetadataValue.int(n),
            "symbols_with_rows": MetadataValue.int(int(per_day.at[day, "nunique"]) if n else 0),
            "partition": key[:10],
        }
        if quarantined is not None:
            metadata["rows_quarantined"] = MetadataValue.int(int(rejected.get(day, 0)))
        if key == keys[-1]:
            metadata.update(shared)
            if latest:
                metadata.update(latest)
        context.add_asset_metadata(metadata, partition_key=key)


def run_totals(metadata: Mapping[str, Any], names: tuple[str, ...] = ("rows_written", "rows_quarantined")) -> dict:
    """Run-wide counts renamed `run_<name>`, so they never masquerade as one partition's figures."""
    return {f"run_{k}" if k in names else k: v for k, v in metadata.items()}
