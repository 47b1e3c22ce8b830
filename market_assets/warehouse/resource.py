"""The PostgreSQL warehouse: migrations, the one writer, and reads.

Why one writer: every fact table is written the same way, so the guarantees hold everywhere:
a partition write replaces exactly that partition's rows (for the symbols written) in ONE
transaction with binary COPY, duplicate keys inside a batch are resolved before they reach the
server, and a failure anywhere leaves the previous data in place.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
from dagster import ConfigurableResource, InitResourceContext
from psycopg import sql
from pydantic import PrivateAttr

from market_assets.config import SYMBOL_PATTERN
from market_assets.errors import MigrationChangedError, UnreachableError
from market_assets.warehouse._copy import SIGNATURE, TRAILER, encode_rows
from market_assets.warehouse.migrations import migration_files
from market_assets.warehouse.tables import QUARANTINE, Table

_MIGRATION_LOCK = 7_231_001  # pg_advisory_xact_lock key: one migrator at a time across processes
_ROWS_PER_SLICE = 50_000

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


def to_conninfo(url: str) -> str:
    """SQLAlchemy-style URLs (postgresql+psycopg://) -> a libpq URI psycopg understands."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


@dataclass(frozen=True)
class WriteResult:
    rows_written: int
    rows_deleted: int
    rows_quarantined: int


def dedupe_last(frame: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    """ON CONFLICT and primary keys both fail on a repeated key in one batch: keep the last one."""
    return frame.drop_duplicates(subset=list(key), keep="last")


def _new_york_day_bounds(sessions: tuple[date, date]) -> tuple[datetime, datetime]:
    """[first 00:00, last+1 00:00) New York time: every bar of those sessions starts inside."""
    new_york = ZoneInfo("America/New_York")
    return (
        datetime.combine(sessions[0], time.min, new_york),
        datetime.combine(sessions[1] + timedelta(days=1), time.min, new_york),
    )


def _check_table(table: str) -> str:
    if not _IDENTIFIER.match(table):
        raise ValueError(f"not a schema-qualified table name: {table!r}")
    return table


def copy_frame(conn: psycopg.Connection, table: str, frame: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> int:
    """Binary-COPY `frame` into `table` on an open transaction; returns the row count."""
    if frame.empty:
        return 0
    column_list = ", ".join(name for name, _ in columns)
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY {_check_table(table)} ({column_list}) FROM STDIN (FORMAT BINARY)") as cp,
    ):
        cp.write(SIGNATURE)
        # encode slice by slice so the server parses one slice while the next is being encoded
        for start in range(0, len(frame), _ROWS_PER_SLICE):
            for block in encode_rows(frame.iloc[start : start + _ROWS_PER_SLICE], columns):
                cp.write(block)
        cp.write(TRAILER)
    return len(frame)


def ensure_month_partitions(conn: psycopg.Connection, parent: str, ts: pd.Series) -> None:
    """Create the monthly range partitions that a batch of timestamps needs (UTC months)."""
    if ts.empty:
        return
    months = pd.to_datetime(ts, utc=True).dt.tz_localize(None).dt.to_period("M").unique()
    schema, name = _check_table(parent).split(".")
    for month in months:
        lower = month.start_time.date()
        upper = (month + 1).start_time.date()
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.{name}_{lower:%Y%m} PARTITION OF {schema}.{name} "
            f"FOR VALUES FROM ('{lower}+00') TO ('{upper}+00')"
        )


class WarehouseResource(ConfigurableResource):
    """The warehouse connection. `database_url` empty means the embedded PostgreSQL."""

    database_url: str | None = None
    data_home: str | None = None

    _conninfo: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Every run starts on an up-to-date schema, whichever asset it materializes first."""
        self.migrate()

    def conninfo(self) -> str:
        if self._conninfo is None:
            if self.database_url:
                self._conninfo = to_conninfo(self.database_url)
            else:
                from market_assets.config import load_settings
                from market_assets.runtime.embedded import WAREHOUSE_DB, ensure_postgres

                home = Path(self.data_home) if self.data_home else load_settings().data_home
                self._conninfo = ensure_postgres(home).conninfo(WAREHOUSE_DB)
        return self._conninfo

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        try:
            conn = psycopg.connect(self.conninfo(), autocommit=autocommit, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise UnreachableError(f"cannot connect to the warehouse PostgreSQL: {exc}".strip()) from exc
        with conn:
            yield conn

    # --- schema -----------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the package's migrations in order, each once, recorded with its checksum; returns what was applied.

        Read through importlib.resources so an installed wheel (not only a checkout) carries them; none found is an
        error, never a silent no-op (a wheel once shipped without them and the first write failed far away).
        """
        applied: list[str] = []
        files = migration_files()
        with self.connect() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE SCHEMA IF NOT EXISTS market")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS market.schema_migrations ("
                " version text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = dict(conn.execute("SELECT version, checksum FROM market.schema_migrations").fetchall())
            for name, text in files:
                checksum = hashlib.sha256(text.encode()).hexdigest()
                if name in done:
                    if done[name] != checksum:
                        raise MigrationChangedError(
                            f"migration {name} changed after it was applied; add a new file instead"
                        )
                    continue
                conn.execute(text)
                conn.execute(
                    "INSERT INTO market.schema_migrations (version, checksum) VALUES (%s, %s)",
                    (name, checksum),
                )
                applied.append(name)
        return applied

    # --- writes -----------------------------------------------------------------------------

    def replace_partition(
        self,
        table: Table,
        frame: pd.DataFrame,
        *,
        sessions: tuple[date, date],
        symbols: Sequence[str],
        quarantine: pd.DataFrame | None = None,
        dataset: str | None = None,
        partition_key: str | None = None,
    ) -> WriteResult:
        """Replace the rows of `symbols` whose session is in `sessions` (inclusive) by `frame`.

        One transaction: either the new rows (and their quarantine records) are all visible, or
        the old ones still are. Quarantine records of the same dataset/partition/symbols are
        replaced too, so a re-run does not pile up duplicates of the same rejected rows.
        """
        if table.partition_column is None:
            raise ValueError(f"{table.name} has no partition column: it cannot be replaced by partition")
        frame = dedupe_last(frame, table.key)
        with self.connect() as conn:
            if table.monthly:
                ensure_month_partitions(conn, table.name, frame["ts"])
            where = f"{table.partition_column} BETWEEN %s AND %s AND symbol = ANY(%s)"
            params: list[Any] = [sessions[0], sessions[1], list(symbols)]
            if table.monthly:  # partitioned on ts: a ts range lets PostgreSQL prune partitions
                where += " AND ts >= %s AND ts < %s"
                params += list(_new_york_day_bounds(sessions))
            deleted = conn.execute(f"DELETE FROM {_check_table(table.name)} WHERE {where}", params).rowcount
            written = copy_frame(conn, table.name, frame, table.columns)
            quarantined = 0
            if dataset is not None:
                conn.execute(
                    "DELETE FROM market.quarantine WHERE dataset = %s AND partition_key IS NOT DISTINCT FROM %s"
                    # rows of an unrequested or malformed symbol belong to whoever re-runs the partition
                    " AND (symbol IS NULL OR symbol = ANY(%s) OR symbol !~ %s)",
                    (dataset, partition_key, list(symbols), SYMBOL_PATTERN.pattern),
                )
                if quarantine is not None and not quarantine.empty:
                    quarantined = self.insert_quarantine(conn, quarantine, dataset, partition_key)
        return WriteResult(rows_written=written, rows_deleted=deleted, rows_quarantined=quarantined)

    def upsert(self, table: Table, frame: pd.DataFrame) -> int:
        """Insert-or-update through a staging table: for trailing-window refreshes of revised rows."""
        frame = dedupe_last(frame, table.key)
        if frame.empty:
            return 0
        key, columns = table.key, table.columns
        names = table.column_names
        stamp = "".join(f", {c} = now()" for c in table.server_columns if c in ("ingested_at", "computed_at"))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c not in key)
        with self.connect() as conn:
            if table.monthly:
                ensure_month_partitions(conn, table.name, frame["ts"])
            conn.execute(
                f"CREATE TEMP TABLE upsert_stage (LIKE {_check_table(table.name)} INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            copy_frame(conn, "pg_temp.upsert_stage", frame, columns)
            col_list = ", ".join(names)
            conn.execute(
                f"INSERT INTO {table.name} ({col_list}) SELECT {col_list} FROM upsert_stage "
                f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}{stamp}"
            )
        return len(frame)

    def insert_quarantine(
        self, conn: psycopg.Connection, rows: pd.DataFrame, dataset: str, partition_key: str | None
    ) -> int:
        records = pd.DataFrame(
            {
                "source": rows["source"],
                "dataset": dataset,
                "partition_key": partition_key,
                "symbol": rows["symbol"].where(rows["symbol"].notna() & (rows["symbol"] != ""), None),
                "ts": rows["ts"],
                "payload": rows["payload"].map(lambda p: json.dumps(p, default=str, allow_nan=False)),
                "reason": rows["reason"],
                "run_id": rows["run_id"],
            }
        )
        return copy_frame(conn, QUARANTINE.name, records, QUARANTINE.columns)

    def upsert_symbols(self, symbols: Sequence[str]) -> int:
        with self.connect() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO market.symbols (symbol) VALUES (%s) "
                "ON CONFLICT (symbol) DO UPDATE SET active = true, updated_at = now()",
                [(s,) for s in symbols],
            )
        return len(symbols)

    def log_ingestion(self, **fields: Any) -> None:
        columns = ", ".join(fields)
        placeholders = ", ".join(["%s"] * len(fields))
        with self.connect() as conn:
            conn.execute(
                f"INSERT INTO market.ingestion_log ({columns}) VALUES ({placeholders})",
                tuple(fields.values()),
            )

    # --- reads ------------------------------------------------------------------------------

    def read_frame(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query, params)
            names = [d.name for d in cur.description or []]
            return pd.DataFrame(cur.fetchall(), columns=names)

    def scalar(self, query: str, params: Sequence[Any] | None = None) -> Any:
        with self.connect() as conn:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None

    def count_rows(self, table: Table, window: tuple[date, date]) -> tuple[int, int | None]:
        """(all rows, rows whose partition column is in `window`; None for a table without one)."""
        name = sql.Identifier(*table.name.split("."))
        with self.connect() as conn:
            total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()
            if table.partition_column is None:
                return int(total[0]), None
            query = sql.SQL("SELECT count(*) FROM {} WHERE {} BETWEEN %s AND %s").format(
                name, sql.Identifier(table.partition_column)
            )
            inside = conn.execute(query, window).fetchone()
        return int(total[0]), int(inside[0])

    def read_bars(
        self, table: str, symbols: Sequence[str], start: date | datetime, end: date | datetime
    ) -> pd.DataFrame:
        """Bars of `symbols` with session in [start, end], sorted, with pandas dtypes."""
        frame = self.read_frame(
            f"SELECT symbol, ts, session, open, high, low, close, volume, trade_count, vwap "
            f"FROM {_check_table(table)} WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s "
            "ORDER BY symbol, ts",
            (list(symbols), start, end),
        )
        if frame.empty:
            return frame
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        frame["volume"] = frame["volume"].astype("int64")
        frame["trade_count"] = frame["trade_count"].astype("Int64")
        return frame
