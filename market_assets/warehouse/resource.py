"""The PostgreSQL warehouse: migrations, the one writer, and reads.

Why one writer: every fact table is written the same way, so the guarantees hold everywhere:
a partition write replaces exactly that partition's rows (for the symbols written) in ONE
transaction with binary COPY, duplicate keys inside a batch are resolved before they reach the
server, and a failure anywhere leaves the previous data in place.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import monotonic, sleep
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg
from dagster import ConfigurableResource, InitResourceContext
from psycopg import sql
from pydantic import PrivateAttr

from market_assets.config import redact
from market_assets.contracts.payload import payload_json
from market_assets.domain.symbols import SYMBOL_PATTERN
from market_assets.errors import MigrationChangedError, UnreachableError, WriteConflictError
from market_assets.observability import audit
from market_assets.warehouse._copy import PG_EPOCH_DAYS, PG_EPOCH_US, SIGNATURE, TRAILER, decode_array_rows, encode_rows
from market_assets.warehouse.migrations import migration_files
from market_assets.warehouse.tables import QUARANTINE, Table

_MIGRATION_LOCK = 7_231_001  # pg_advisory_xact_lock key: one migrator at a time across processes
# Two writers of one partition used to collide with a raw UniqueViolation (issue 13, item 7): both deleted nothing,
# both copied the same keys. Writers now take one transaction-scoped advisory lock per (table, month) the write
# touches, in order; months rather than sessions so a ten-year range takes 120 locks, not 2,520.
LOCK_WAIT_SECONDS = 120.0
log = logging.getLogger(__name__)
_LOCK_POLL_SECONDS = 0.1
_ROWS_PER_SLICE = 50_000

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
_INT_TYPES = ("int2", "int4", "int8")

# The open transaction of `WarehouseResource.transaction()` in this thread/task, tagged with its conninfo: writes made
# inside it join it instead of committing on their own. A ContextVar, not an attribute, because one resource object
# may serve several threads.
_TRANSACTION: ContextVar[tuple[str, psycopg.Connection] | None] = ContextVar("warehouse_transaction", default=None)


def to_conninfo(url: str) -> str:
    """SQLAlchemy-style URLs (postgresql+psycopg://) -> a libpq URI psycopg understands."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


@dataclass(frozen=True)
class WriteResult:
    rows_written: int
    rows_deleted: int
    rows_quarantined: int


def dedupe_last(frame: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    """ON CONFLICT and primary keys both fail on a repeated key in one batch: keep the last one.

    The frame itself when no key repeats (the usual case): a 300k-row option batch is not copied to find nothing."""
    repeated = frame.duplicated(subset=list(key), keep="last")
    return frame.loc[~repeated] if repeated.any() else frame


def _new_york_day_bounds(sessions: tuple[date, date]) -> tuple[datetime, datetime]:
    """[first 00:00, last+1 00:00) New York time: every bar of those sessions starts inside."""
    new_york = ZoneInfo("America/New_York")
    return (
        datetime.combine(sessions[0], time.min, new_york),
        datetime.combine(sessions[1] + timedelta(days=1), time.min, new_york),
    )


def _identifier(name: str) -> sql.Identifier:
    """A registry name such as ``market.option_chain`` as a quoted, schema-qualified identifier."""
    return sql.Identifier(*_check_table(name).split("."))


def conform(table: Table, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` in `table`'s written shape: its columns in COPY order, missing ones NULL, integers as nullable
    integers (rounded), floats as float64, blank or NaN text as NULL (the binary encoder refuses both).

    Why here: every writer of a table needs the same adaptation; done once at the boundary, callers hand over
    whatever pandas produced (object columns, float counts, empty strings from the feed).

    Columns already in shape are shared, not copied (pandas copy-on-write keeps the caller's frame intact): a
    full copy of a 300k-row option chain per write was a peak of the options step (issue 10)."""
    out: dict[str, pd.Series] = {}
    for name, pg_type in table.columns:
        column = frame[name] if name in frame else pd.Series(None, index=frame.index, dtype=object)
        if pg_type in _INT_TYPES:
            if column.dtype != "Int64":
                column = pd.to_numeric(column, errors="coerce").round().astype("Int64")
        elif pg_type == "float8":
            if column.dtype != "float64":
                column = pd.to_numeric(column, errors="coerce").astype("float64")
        elif pg_type == "text":
            text = column.astype(object)
            blank = column.isna() | (text == "")
            column = text.where(~blank, None) if blank.any() else text
        out[name] = column
    return pd.DataFrame(out, index=frame.index, copy=False)


BAR_COLUMNS = ("symbol", "ts", "session", "open", "high", "low", "close", "volume", "trade_count", "vwap")
_BAR_NUMBERS = ("open", "high", "low", "close", "volume", "trade_count", "vwap")  # read_bars' array columns


def _check_table(table: str) -> str:
    if not _IDENTIFIER.match(table):
        raise ValueError(f"not a schema-qualified table name: {table!r}")
    return table


def _slices(frame: pd.DataFrame, key: Sequence[str], nested: bool) -> Iterator[tuple[int, int]]:
    """[start, end) row ranges of about `_ROWS_PER_SLICE` rows; for a nested table never inside one key's rows."""
    n, start = len(frame), 0
    keys = frame[list(key)] if nested else None
    while start < n:
        end = min(start + _ROWS_PER_SLICE, n)
        if keys is not None:
            last = tuple(keys.iloc[end - 1])
            while end < n and tuple(keys.iloc[end]) == last:
                end += 1
        yield start, end
        start = end


def copy_frame(
    conn: psycopg.Connection,
    table: str,
    frame: pd.DataFrame,
    columns: Sequence[tuple[str, str]],
    key: Sequence[str] = (),
) -> int:
    """Binary-COPY `frame` into `table` on an open transaction; returns the frame's row count.

    With array columns (a nested table, see ``tables.Table.nested``) the rows sharing `key` become one tuple.
    """
    if frame.empty:
        return 0
    column_list = ", ".join(name for name, _ in columns)
    nested = any(pg_type.endswith("[]") for _, pg_type in columns)
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY {_check_table(table)} ({column_list}) FROM STDIN (FORMAT BINARY)") as cp,
    ):
        cp.write(SIGNATURE)
        # encode slice by slice so the server parses one slice while the next is being encoded
        for start, end in _slices(frame, key, nested):
            for block in encode_rows(frame.iloc[start:end], columns, key):
                cp.write(block)
        cp.write(TRAILER)
    return len(frame)


@dataclass(frozen=True)
class Pairs:
    """A set of (owner, session) pairs, split once into a grid and the rest, for "(owner, session) is one of them".

    The owners present on every session the pairs name form a grid, sent as two short arrays
    (``owner = ANY(..) AND session = ANY(..)``); only the other owners' pairs go as two parallel arrays. Why:
    psycopg adapts a list parameter element by element, and a one-year chunk of 500 symbols is 126 k pairs: sent
    as pairs, the DELETE of a bars chunk and its quarantine DELETE cost ~0.4-0.6 s each in parameter handling
    alone (dates the most), where the grid is 752 elements. Same rows either way. Split once per write (~65 ms for
    126 k pairs), used by both DELETEs.
    """

    grid: list[Any]
    days: list[Any]
    rest_owners: list[Any]
    rest_sessions: list[Any]

    @classmethod
    def of(cls, owners: Sequence[Any], sessions: Sequence[Any]) -> Pairs:
        frame = pd.DataFrame({"o": owners, "s": sessions}, dtype=object).drop_duplicates()
        days = frame["s"].unique()
        per_owner = frame.groupby("o", sort=False)["s"].size()
        grid = per_owner.index[per_owner.to_numpy() == len(days)]
        rest = frame.loc[~frame["o"].isin(grid)]
        return cls(list(grid), list(days), rest["o"].tolist(), rest["s"].tolist())

    def predicate(self, owner: sql.Composable, session: sql.Composable) -> tuple[sql.Composable, list[Any]]:
        """SQL for "(owner, session) is one of the pairs" and its parameters."""
        query = sql.SQL(
            "(({owner} = ANY(%s::text[]) AND {session} = ANY(%s::date[]))"
            " OR ({owner}, {session}) IN (SELECT * FROM unnest(%s::text[], %s::date[])))"
        ).format(owner=owner, session=session)
        return query, [self.grid, self.days, self.rest_owners, self.rest_sessions]


def ensure_month_partitions(conn: psycopg.Connection, parent: str, ts: pd.Series) -> None:
    """Create the monthly range partitions that a batch of timestamps needs (UTC months).

    Through ``market.ensure_month_partition`` (migration 041, SECURITY DEFINER): the pipeline's
    login role is in ``market_writer``, which may not run DDL itself.
    """
    if ts.empty:
        return
    months = pd.to_datetime(ts, utc=True).dt.tz_localize(None).dt.to_period("M").unique()
    _check_table(parent)
    for month in months:
        conn.execute("SELECT market.ensure_month_partition(%s, %s)", (parent, month.start_time.date()))


def _months(sessions: tuple[date, date]) -> list[int]:
    """The months [first, last] touches, as year * 12 + month - 1 (the advisory lock's second key)."""
    first = sessions[0].year * 12 + sessions[0].month - 1
    last = sessions[1].year * 12 + sessions[1].month - 1
    return list(range(first, last + 1))


# A write spanning more months than this takes one table-wide lock instead of a lock per month: every lock of a
# transaction occupies the server's shared lock table (max_locks_per_transaction, 64 by default), and a 40-year history
# in one write ran it out ("out of shared memory") on a stock PostgreSQL.
_MAX_MONTH_LOCKS = 24
_TABLE_WIDE = -1  # the advisory lock's second key for the whole table


def lock_partition(conn: psycopg.Connection, table: str, sessions: tuple[date, date], wait_seconds: float) -> None:
    """Serialise writers of `table` whose sessions share a month; give up after `wait_seconds` with who holds it.

    Two levels, so the number of locks stays bounded: a long write holds the table-wide key exclusively; a short one
    holds it shared (so it waits for a long write and a long write waits for it) plus one key per month (so short
    writes of different months proceed together). pg_try_advisory_xact_lock in a loop rather than a blocking lock
    under lock_timeout: the wait is bounded the same way on every server, and the error can name the holder.
    """
    deadline = monotonic() + wait_seconds
    months = _months(sessions)
    if len(months) > _MAX_MONTH_LOCKS:
        _acquire(conn, "pg_try_advisory_xact_lock", table, _TABLE_WIDE, deadline, wait_seconds)
        return
    _acquire(conn, "pg_try_advisory_xact_lock_shared", table, _TABLE_WIDE, deadline, wait_seconds)
    for month in months:
        _acquire(conn, "pg_try_advisory_xact_lock", table, month, deadline, wait_seconds)


def _acquire(conn: psycopg.Connection, function: str, table: str, key: int, deadline: float, wait: float) -> None:
    query = sql.SQL("SELECT {}(hashtext(%s), %s)").format(sql.Identifier(function))
    while not conn.execute(query, (table, key)).fetchone()[0]:
        if monotonic() > deadline:
            holder = conn.execute(
                "SELECT a.pid, coalesce(a.application_name, ''), a.xact_start FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.classid = hashtext(%s)::oid AND l.objid IN (%s::int::oid, %s::int::oid)"
                " AND l.pid <> pg_backend_pid()",
                (table, key, _TABLE_WIDE),
            ).fetchone()
            who = f"backend pid {holder[0]} (in a transaction since {holder[2]:%H:%M:%S})" if holder else "?"
            what = "all months" if key == _TABLE_WIDE else f"{key // 12}-{key % 12 + 1:02d}"
            raise WriteConflictError(
                f"another writer of {table} {what} ({who}) did not finish within "
                f"{wait:.0f}s; nothing was written: re-run when it is done"
            )
        sleep(_LOCK_POLL_SECONDS)


def _quarantine_sessions(rows: pd.DataFrame, default: date | None) -> pd.Series:
    """The session each quarantined row is filed under: its own `session`, else the New York date of its `ts`,
    else (a row whose timestamp is garbage) `default`, the first session of the window it came from."""
    if "session" in rows:
        session = pd.Series(rows["session"], index=rows.index, dtype=object)
    else:
        ts = pd.to_datetime(rows["ts"], utc=True, errors="coerce")
        session = ts.dt.tz_convert("America/New_York").dt.date.astype(object).where(ts.notna(), None)
    return session.where(session.notna(), default)


_SESSION_KEY = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\.\.(\d{4}-\d{2}-\d{2}))?$")


def _sessions_of_key(partition_key: str | None) -> tuple[date, date] | None:
    """(first, last) of a partition key naming a session or a range of them; None for any other key."""
    match = _SESSION_KEY.match(partition_key or "")
    if match is None:
        return None
    try:
        first = date.fromisoformat(match.group(1))
        last = date.fromisoformat(match.group(2) or match.group(1))
    except ValueError:
        return None
    return (first, last) if first <= last else None


def _payload_owner(rows: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """The first of `keys` present in each row's payload (an option record's underlying), as the SQL coalesce."""

    def first(payload: Any) -> Any:
        if isinstance(payload, dict):
            for key in keys:
                if payload.get(key) is not None:
                    return str(payload[key])
        return None

    return rows["payload"].map(first) if "payload" in rows else pd.Series(None, index=rows.index, dtype=object)


class WarehouseResource(ConfigurableResource):
    """The warehouse connection. `database_url` empty means the embedded PostgreSQL."""

    database_url: str | None = None
    data_home: str | None = None
    # which bars the analytics read (MARKET_PRICE_ADJUSTMENT): a read-side choice of this warehouse's relations,
    # see market_assets.warehouse.queries.bars.daily_bars
    price_adjustment: Literal["all", "split", "raw"] = "all"

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
        """A connection that commits on success; inside `transaction()`, that transaction's connection."""
        joined = _TRANSACTION.get()
        if joined is not None and not autocommit and joined[0] == self.conninfo():
            yield joined[1]  # the enclosing transaction commits or rolls back, not this block
            return
        try:
            conn = psycopg.connect(self.conninfo(), autocommit=autocommit, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise UnreachableError(f"cannot connect to the warehouse PostgreSQL: {redact(str(exc))}".strip()) from exc
        with conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every write (and read) of this resource inside the block runs in ONE transaction: all of it becomes
        visible, or none. For a materialization that writes several tables that must agree (option contracts,
        their open interest and their quarantine records)."""
        if _TRANSACTION.get() is not None:
            yield  # already inside one: nested blocks join it
            return
        with self.connect() as conn:
            token = _TRANSACTION.set((self.conninfo(), conn))
            try:
                yield
            finally:
                _TRANSACTION.reset(token)

    # --- schema -----------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the package's migrations in order, each once, recorded with its checksum; returns what was applied.

        Read through importlib.resources so an installed wheel (not only a checkout) carries them; none found is an
        error, never a silent no-op (a wheel once shipped without them and the first write failed far away).
        """
        applied: list[str] = []
        files = migration_files()
        if self._all_applied(files):
            return applied
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
            if applied and audit.audit_table_exists(conn):  # same transaction: audited iff applied
                for name in applied:
                    audit.record(conn, "migration", "applied", actor="migrations", subject=name)
        return applied

    def _all_applied(self, files: list[tuple[str, str]]) -> bool:
        """True when every migration is recorded with its checksum: then nothing needs the owner's rights.

        A read-only check, so the pipeline can run as a ``market_writer`` login (no CREATE, no
        DDL) once an administrator has migrated; a changed file still fails loudly below.
        """
        with self.connect() as conn:
            if conn.execute("SELECT to_regclass('market.schema_migrations')").fetchone()[0] is None:  # type: ignore[index]
                return False
            done = dict(conn.execute("SELECT version, checksum FROM market.schema_migrations").fetchall())
        return all(done.get(name) == hashlib.sha256(text.encode()).hexdigest() for name, text in files)

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
        symbol_column: str = "symbol",
        quarantine_owner: Sequence[str] = (),
        only_delivered: bool = False,
        lock_wait_seconds: float = LOCK_WAIT_SECONDS,
    ) -> WriteResult:
        """Replace the rows of `symbols` whose partition column is in `sessions` (inclusive) by `frame`.

        One transaction: either the new rows (and their quarantine records) are all visible, or
        the old ones still are. Writers of the same table and month wait for each other (bounded,
        then WriteConflictError). With `only_delivered`, only the (symbol, session) pairs present in
        `frame` are replaced: a symbol the source returned nothing for keeps its rows (issue 13,
        item 1). Quarantine records are replaced by (dataset, symbol, session), see `replace_quarantine`.

        `symbol_column` names the column that holds the symbols (``underlying`` for option tables, whose
        ``symbol`` is the contract); `quarantine_owner`, see `replace_quarantine`.
        """
        if table.partition_column is None:
            raise ValueError(f"{table.name} has no partition column: it cannot be replaced by partition")
        if not table.nested:  # a nested table's rows of one key are its tuple's array elements, not duplicates
            frame = dedupe_last(frame, table.key)
        column = table.partition_column
        delivered: Pairs | None = None
        if only_delivered:
            ours = frame.loc[frame[symbol_column].isin(list(symbols))]
            delivered = Pairs.of(ours[symbol_column].tolist(), ours[column].tolist())
            scope, scope_params = delivered.predicate(sql.Identifier(symbol_column), sql.Identifier(column))
        else:
            scope = sql.SQL("{} = ANY(%s)").format(sql.Identifier(symbol_column))
            scope_params = [list(symbols)]
        with self.connect() as conn:
            lock_partition(conn, table.name, sessions, lock_wait_seconds)
            if table.monthly:
                ensure_month_partitions(conn, table.name, frame["ts"])
            where = sql.SQL("{} BETWEEN %s AND %s AND {}").format(sql.Identifier(column), scope)
            params: list[Any] = [sessions[0], sessions[1], *scope_params]
            if table.monthly:  # partitioned on ts: a ts range lets PostgreSQL prune partitions
                where = sql.SQL("{} AND ts >= %s AND ts < %s").format(where)
                params += list(_new_york_day_bounds(sessions))
            query = sql.SQL("DELETE FROM {} WHERE {}").format(_identifier(table.name), where)
            deleted = conn.execute(query, params).rowcount
            written = copy_frame(conn, table.name, frame, table.columns, table.key)
            quarantined = 0
            if dataset is not None:
                quarantined = self.replace_quarantine(
                    dataset,
                    partition_key,
                    symbols,
                    quarantine,
                    owner=quarantine_owner,
                    sessions=sessions,
                    delivered=delivered,
                )
        if table.session_brin and _TRANSACTION.get() is None:  # committed; in a transaction() a later write does it
            self.summarize_new_ranges(table.name)
        return WriteResult(rows_written=written, rows_deleted=deleted, rows_quarantined=quarantined)

    def summarize_new_ranges(self, table: str) -> int:
        """Summarize the block ranges of `table`'s BRIN indexes that have no summary yet; how many were summarized.

        Why after every write: the session BRINs are not auto-summarized (migration 062), and a range without a
        summary matches every query, so until autovacuum came by, each chunk of a backfill scanned the pages of all
        earlier chunks in its DELETE and its checks (0.5 s for one empty year of support/resistance at ten years,
        against 6 ms summarized). Summarizing what a write appended reads only those pages: the cost follows the new
        data. Best effort, after the commit: the lock it takes (SHARE UPDATE EXCLUSIVE, which does not block reads or
        writes) is waited for at most a second (another summary or a manual VACUUM holding it); then the next write
        or autovacuum does it. Through `market.summarize_new_ranges` (migration 064): it needs the table's owner.
        """
        try:
            with self.connect(autocommit=True) as conn:
                conn.execute("SET lock_timeout = '1s'")
                row = conn.execute("SELECT market.summarize_new_ranges(%s)", (_check_table(table),)).fetchone()
        except psycopg.errors.LockNotAvailable:
            return 0
        except (psycopg.Error, UnreachableError) as exc:  # the write is committed: this only speeds up later reads
            log.warning("BRIN ranges of %s not summarized (the next write or autovacuum will): %s", table, exc)
            return 0
        return int(row[0])

    def replace_quarantine(
        self,
        dataset: str,
        partition_key: str | None,
        symbols: Sequence[str],
        rows: pd.DataFrame | None,
        *,
        owner: Sequence[str] = (),
        sessions: tuple[date, date] | None = None,
        delivered: Pairs | None = None,
    ) -> int:
        """Replace the quarantine records of `dataset` that belong to `symbols` (and `sessions`) by `rows`.

        The one quarantine predicate: a record belongs to the run that re-materializes it when its owner is one
        of `symbols`, unknown, or not a valid ticker (nobody else would ever clear it). The owner is the record's
        `symbol` column; with `owner` given, the first of those payload keys that is present (an option record's
        symbol is the contract; the underlying it was requested for is in its payload).

        With `sessions` (issue 13, item 8), records are keyed by (dataset, owner, session) instead of the exact
        partition-range string: a write clears the records of the sessions it covers for those owners (only the
        `delivered` (owner, session) pairs, when given) plus those rejected again now, whichever window filed
        them. Records filed before migration 030 (no session) still go by their partition key. Without
        `sessions`, a partition key that names sessions (``2024-03-04`` or ``2024-03-04..2024-03-08``, the
        shape every partitioned asset uses) supplies them, so callers that upsert rather than replace a
        partition (option contracts, corporate actions) are keyed by session too.
        """
        if sessions is None:
            sessions = _sessions_of_key(partition_key)
        owner_expr: sql.Composable = sql.Identifier("symbol")
        if owner:
            owner_expr = sql.SQL("coalesce({})").format(
                sql.SQL(", ").join(sql.SQL("payload->>{}").format(sql.Literal(key)) for key in owner)
            )
        legacy = "partition_key IS NOT DISTINCT FROM %s AND ({owner} IS NULL OR {owner} = ANY(%s) OR {owner} !~ %s)"
        legacy_params: list[Any] = [partition_key, list(symbols), SYMBOL_PATTERN.pattern]
        if sessions is None:
            query = sql.SQL("DELETE FROM {table} WHERE dataset = %s AND " + legacy).format(
                table=_identifier(QUARANTINE.name), owner=owner_expr
            )
            params: list[Any] = [dataset, *legacy_params]
        else:
            rows = rows if rows is not None else pd.DataFrame(columns=["symbol", "ts"])
            rows = rows.assign(session=_quarantine_sessions(rows, sessions[0]))
            owners = rows["symbol"] if not owner else _payload_owner(rows, owner)
            again = pd.DataFrame({"o": owners.astype(object), "s": rows["session"]}).dropna().drop_duplicates()
            covered: sql.Composable
            if delivered is None:
                covered = sql.SQL("{owner} = ANY(%s)").format(owner=owner_expr)
                covered_params: list[Any] = [list(symbols)]
            else:
                covered, covered_params = delivered.predicate(owner_expr, sql.Identifier("session"))
            query = sql.SQL(
                "DELETE FROM {table} WHERE dataset = %s AND ("
                " (session BETWEEN %s AND %s AND {covered})"
                " OR ({owner}, session) IN (SELECT * FROM unnest(%s::text[], %s::date[]))"
                " OR (session BETWEEN %s AND %s AND ({owner} IS NULL OR {owner} !~ %s))"
                " OR (session IS NULL AND " + legacy + "))"
            ).format(table=_identifier(QUARANTINE.name), owner=owner_expr, covered=covered)
            params = [
                dataset,
                sessions[0],
                sessions[1],
                *covered_params,
                again["o"].astype(str).str.replace("\x00", "").tolist(),  # as stored: text cannot hold NUL
                again["s"].tolist(),
                sessions[0],
                sessions[1],
                SYMBOL_PATTERN.pattern,
                *legacy_params,
            ]
        with self.connect() as conn:
            conn.execute(query, params)
            if rows is None or rows.empty:
                return 0
            return self.insert_quarantine(conn, rows, dataset, partition_key)

    def upsert(
        self,
        table: Table,
        frame: pd.DataFrame,
        *,
        changed_only: bool = False,
        version_column: str | None = None,
        keep_earliest: Sequence[str] = (),
    ) -> int:
        """Insert-or-update through a staging table; returns the rows inserted or updated.

        By default every row sent is written (trailing-window refreshes of revised rows). The options make it a
        no-op for rows that say nothing new, so a re-run leaves ``updated_at`` alone and an old backfill never
        overwrites newer data:

        * `changed_only`: an existing row is updated only when a value (other than the key, ``run_id`` and the
          columns below) differs;
        * `version_column`: a row only replaces an equal-or-newer version of itself (e.g. ``as_of``); with
          `changed_only`, a strictly newer version updates even with equal values;
        * `keep_earliest`: columns that keep the earlier of the stored and the new value (e.g. ``first_seen``);
          an earlier value updates the row.
        """
        frame = dedupe_last(frame, table.key)
        if frame.empty:
            return 0
        key, names = table.key, table.column_names
        ident = {c: sql.Identifier(c) for c in names}
        stage = sql.Identifier("upsert_stage")

        def pair(c: str, template: str) -> sql.Composable:
            return sql.SQL(template).format(c=ident[c])

        newer = pair(version_column, "EXCLUDED.{c} >= t.{c}") if version_column else None
        sets: list[sql.Composable] = []
        for c in names:
            if c in key:
                continue
            if c in keep_earliest:
                sets.append(pair(c, "{c} = LEAST(t.{c}, EXCLUDED.{c})"))
            elif newer is not None:
                sets.append(sql.SQL("{c} = CASE WHEN {newer} THEN EXCLUDED.{c} ELSE t.{c} END").format(
                    c=ident[c], newer=newer))  # fmt: skip
            else:
                sets.append(pair(c, "{c} = EXCLUDED.{c}"))
        sets += [
            sql.SQL("{} = now()").format(sql.Identifier(c))
            for c in table.server_columns
            if c in ("ingested_at", "computed_at", "updated_at")
        ]
        compared = [c for c in names if c not in (*key, "run_id", version_column, *keep_earliest)]
        changed = sql.SQL(" OR ").join(pair(c, "EXCLUDED.{c} IS DISTINCT FROM t.{c}") for c in compared)
        fresh: sql.Composable | None = None
        if version_column is not None and newer is not None:
            fresh = newer
            if changed_only:
                fresh = sql.SQL("{newer} AND ({changed} OR {strictly})").format(
                    newer=newer, changed=changed, strictly=pair(version_column, "EXCLUDED.{c} > t.{c}")
                )
        elif changed_only:
            fresh = changed
        where: sql.Composable = sql.SQL("")
        if fresh is not None:
            earlier = [pair(c, "EXCLUDED.{c} < t.{c}") for c in keep_earliest]
            where = sql.SQL(" WHERE ") + sql.SQL(" OR ").join([sql.SQL("({})").format(fresh), *earlier])
        columns = sql.SQL(", ").join(ident[c] for c in names)
        with self.connect() as conn:
            if table.monthly:
                ensure_month_partitions(conn, table.name, frame["ts"])
            # inside a caller's transaction a second upsert would meet the first one's stage: start clean
            conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(stage))
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    stage, _identifier(table.name)
                )
            )
            copy_frame(conn, "pg_temp.upsert_stage", frame, table.columns)
            query = sql.SQL(
                "INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM {stage} "
                "ON CONFLICT ({key}) DO UPDATE SET {sets}{where}"
            ).format(
                table=_identifier(table.name),
                columns=columns,
                stage=stage,
                key=sql.SQL(", ").join(ident[c] for c in key),
                sets=sql.SQL(", ").join(sets),
                where=where,
            )
            return conn.execute(query).rowcount

    def insert_quarantine(
        self, conn: psycopg.Connection, rows: pd.DataFrame, dataset: str, partition_key: str | None
    ) -> int:
        records = pd.DataFrame(
            {
                "source": rows["source"],
                "dataset": dataset,
                "partition_key": partition_key,
                # a hostile symbol is kept readable, minus the NUL bytes PostgreSQL text cannot hold
                "symbol": rows["symbol"]
                .where(rows["symbol"].notna() & (rows["symbol"] != ""), None)
                .map(lambda s: None if s is None else (str(s).replace("\x00", "") or None)),
                "ts": rows["ts"],
                "payload": rows["payload"].map(payload_json),
                "reason": rows["reason"],
                "run_id": rows["run_id"],
                "session": _quarantine_sessions(rows, None),
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

    def log_ingestion(self, *, api_calls: dict[str, dict[str, Any]] | None = None, **fields: Any) -> None:
        """One market.ingestion_log row and, when `api_calls` is given (per endpoint: requests, retries,
        statuses; ``HttpStats.since``), its audit summary, in one transaction."""
        columns = ", ".join(fields)
        placeholders = ", ".join(["%s"] * len(fields))
        with self.connect() as conn:
            conn.execute(
                f"INSERT INTO market.ingestion_log ({columns}) VALUES ({placeholders})",
                tuple(fields.values()),
            )
            if api_calls is not None:
                audit.record(
                    conn,
                    "api_calls",
                    "summary",
                    actor="pipeline",
                    subject=fields.get("asset"),
                    run_id=fields.get("run_id"),
                    partition_key=fields.get("partition_key"),
                    details={"status": fields.get("status"), "endpoints": api_calls},
                )

    def set_universe(self, symbols: Sequence[str], *, run_id: str | None = None, actor: str = "pipeline") -> dict:
        """Make exactly `symbols` active (others kept, inactive); audit what changed in the same transaction."""
        wanted = list(dict.fromkeys(symbols))
        with self.connect() as conn:
            before = {r[0] for r in conn.execute("SELECT symbol FROM market.symbols WHERE active").fetchall()}
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO market.symbols (symbol) VALUES (%s) "
                    "ON CONFLICT (symbol) DO UPDATE SET active = true, updated_at = now()",
                    [(s,) for s in wanted],
                )
            conn.execute(
                "UPDATE market.symbols SET active = false, updated_at = now() WHERE active AND NOT symbol = ANY(%s)",
                (wanted,),
            )
            change = {
                "added": sorted(set(wanted) - before),
                "deactivated": sorted(before - set(wanted)),
                "active": len(wanted),
            }
            if change["added"] or change["deactivated"]:
                audit.record(conn, "universe", "changed", actor=actor, subject="market.symbols", run_id=run_id,
                             details=change)  # fmt: skip
        return change

    def audit(self, kind: str, action: str, **fields: Any) -> None:
        """An audit row in a transaction of its own (events that change no warehouse data: cache warms, start-up)."""
        with self.connect() as conn:
            audit.record(conn, kind, action, **fields)

    # --- reads ------------------------------------------------------------------------------

    def read_frame(
        self, query: str | sql.Composable, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> pd.DataFrame:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query, params)
            names = [d.name for d in cur.description or []]
            return pd.DataFrame(cur.fetchall(), columns=names)

    def read_frames(
        self,
        query: str | sql.Composable,
        params: Sequence[Any] | dict[str, Any] | None = None,
        rows: int = 50_000,
    ) -> Iterator[pd.DataFrame]:
        """The result of `query` as frames of at most `rows` rows, through a server-side cursor.

        Why: `read_frame` materializes the whole result three times over (libpq's buffer, a list of Python
        tuples, the frame); a 300k-row option chain read that way was a peak of the options step (issue 10).
        Here the server holds the result and the client one chunk at a time. At least one (possibly empty)
        frame is yielded, so callers always see the columns.
        """
        with self.connect() as conn, conn.cursor(name=f"read_frames_{uuid.uuid4().hex}") as cur:
            cur.execute(query, params)
            names = [d.name for d in cur.description or []]
            first = True
            while True:
                batch = cur.fetchmany(rows)
                if not batch and not first:
                    return
                first = False
                yield pd.DataFrame(batch, columns=names)
                if len(batch) < rows:
                    return

    def scalar(self, query: str | sql.Composable, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
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
        """Bars of `symbols` with session in [start, end], sorted by symbol and ts, with pandas dtypes.

        Why a binary COPY of one row per symbol holding arrays: COPY delivers one protocol message per row, and
        psycopg spends a few microseconds of Python on each (1.0 s of a 279k-bar read, more than the server's
        work); text output also formats every float and computed the epoch as `numeric`. Here a read is a few
        hundred messages of fixed-size binary elements that numpy views in place: every value bit for bit what is
        stored. The arrays are unordered (ordering each aggregate cost the server more than a sort here does).
        `session` is returned as `datetime.date` values, `volume` as int64, `trade_count` as nullable Int64.
        """
        query = sql.SQL(
            "COPY (SELECT symbol, array_agg(ts), array_agg(session), {} FROM {} "
            "WHERE symbol = ANY({}) AND session BETWEEN {} AND {} GROUP BY symbol) TO STDOUT (FORMAT binary)"
        ).format(
            sql.SQL(", ").join(
                sql.SQL("array_agg(coalesce({}::float8, 'NaN'))").format(sql.Identifier(c)) for c in _BAR_NUMBERS
            ),
            sql.Identifier(*_check_table(table).split(".")),
            sql.Literal(list(symbols)),
            sql.Literal(start),
            sql.Literal(end),
        )
        data = bytearray()
        with self.connect() as conn, conn.cursor().copy(query) as copy:
            for chunk in copy:
                data += chunk
        names, columns = decode_array_rows(bytes(data), (">i8", ">i4", *(">f8",) * len(_BAR_NUMBERS)))
        if not names:
            return pd.DataFrame(columns=[*BAR_COLUMNS])
        counts = [part.size for part in columns[0]]
        ts_pg, days_pg, *numbers = (np.concatenate(parts) for parts in columns)
        codes = np.repeat(np.argsort(np.argsort(np.array(names, dtype=object))), counts)  # rank of the name
        order = np.lexsort((ts_pg, codes))
        distinct, where = np.unique(days_pg[order], return_inverse=True)  # ~a few hundred distinct sessions
        frame = pd.DataFrame(
            {
                "symbol": np.array(sorted(names), dtype=object)[codes[order]],
                "ts": pd.to_datetime(ts_pg[order] + PG_EPOCH_US, unit="us", utc=True),
                "session": (distinct + PG_EPOCH_DAYS).astype("datetime64[D]").astype(object)[where],
                **{name: values[order] for name, values in zip(_BAR_NUMBERS, numbers, strict=True)},
            }
        )
        frame["volume"] = frame["volume"].astype("int64")
        frame["trade_count"] = frame["trade_count"].astype("Int64")
        return frame.loc[:, list(BAR_COLUMNS)]
