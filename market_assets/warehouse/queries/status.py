"""Named reads for "how fresh is each table?": the freshness checks and `market-data status` ask them.

Why one place: the check that turns red in the UI and the line the CLI prints must agree on what "last session
loaded" means (the latest partition-column value, NULL for an empty table).
"""

from __future__ import annotations

from datetime import date

from psycopg import sql

from market_assets.warehouse import tables
from market_assets.warehouse.resource import WarehouseResource


def last_loaded(warehouse: WarehouseResource, table: tables.Table) -> date | None:
    """The latest value of the table's partition column (its last session or snapshot day), None when empty."""
    if table.partition_column is None:
        raise ValueError(f"{table.name} has no partition column")
    query = sql.SQL("SELECT max({}) FROM {}").format(
        sql.Identifier(table.partition_column), sql.Identifier(*table.name.split("."))
    )
    return warehouse.scalar(query)


def quarantined_rows(warehouse: WarehouseResource, dataset: str) -> int:
    """Rows held in quarantine for a dataset (bars_daily, option_chain, ...)."""
    return int(warehouse.scalar("SELECT count(*) FROM market.quarantine WHERE dataset = %s", (dataset,)) or 0)
