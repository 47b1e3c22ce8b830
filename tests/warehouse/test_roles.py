"""Least privilege (migration 041): the pipeline writes as a market_writer login, analysts read as market_reader.

Real logins on the real server (embedded or DATABASE_URL): the pipeline's assets run end to end
through a WarehouseResource that connects as the writer, and every forbidden statement is tried
and must be refused by PostgreSQL itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import SimulatorServer
from market_assets.config import redact
from market_assets.defs.bars import daily_bars, intraday_bars
from market_assets.warehouse.resource import WarehouseResource, ensure_month_partitions, to_conninfo
from market_assets.warehouse.tables import TABLES
from tests.fixtures.pipeline import alpaca_for, run, seed_symbols

CLOCK = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)
DAY = "2026-06-30"


def login_url(database_url: str, user: str, password: str) -> str:
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", parts.path, parts.query, ""))


@pytest.fixture(scope="module")
def logins(migrated_warehouse: WarehouseResource, database_url: str) -> Iterator[dict[str, str]]:
    """A pipeline login in market_writer and an analyst login in market_reader (unique: roles are cluster-wide)."""
    tag = uuid.uuid4().hex[:8]
    users = {"writer": (f"mdt_pipeline_{tag}", "market_writer"), "reader": (f"mdt_analyst_{tag}", "market_reader")}
    password = uuid.uuid4().hex
    with migrated_warehouse.connect(autocommit=True) as conn:
        for user, group in users.values():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(user), sql.Literal(password), sql.Identifier(group)
                )
            )
    yield {name: login_url(database_url, user, password) for name, (user, _) in users.items()}
    with migrated_warehouse.connect(autocommit=True) as conn:
        for user, _ in users.values():
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(MarketModel(seed=5), clock=CLOCK, enable_ws=False) as server:
        yield server


def refused(url: str, statement: str, params: tuple[object, ...] | None = None) -> bool:
    """True when PostgreSQL refuses `statement` for lack of privilege (the transaction is rolled back)."""
    with psycopg.connect(to_conninfo(url)) as conn:
        try:
            conn.execute(statement, params)
        except psycopg.errors.InsufficientPrivilege:
            return True
        finally:
            conn.rollback()
    return False


def test_roles_exist_nologin(warehouse: WarehouseResource) -> None:
    roles = warehouse.read_frame(
        "SELECT rolname, rolcanlogin, rolcreatedb, rolcreaterole, rolsuper FROM pg_roles "
        "WHERE rolname IN ('market_writer', 'market_reader') ORDER BY rolname"
    )
    assert roles["rolname"].tolist() == ["market_reader", "market_writer"]
    assert not roles[["rolcanlogin", "rolcreatedb", "rolcreaterole", "rolsuper"]].to_numpy().any()


def test_pipeline_runs_as_market_writer_and_cannot_ddl(
    warehouse: WarehouseResource, logins: dict[str, str], sim: SimulatorServer
) -> None:
    writer = WarehouseResource(database_url=logins["writer"])
    assert writer.migrate() == []  # already migrated by the owner: a read-only check, no DDL
    seed_symbols(["AAPL", "MSFT"], writer)
    resources = {"alpaca": alpaca_for(sim), "warehouse": writer}
    assert run([daily_bars], resources, window=("2026-06-01", DAY)).success
    assert run([intraday_bars], resources, partition=DAY).success
    assert run([daily_bars], resources, window=("2026-06-29", DAY)).success  # a replace: DELETE + COPY again
    sessions = warehouse.scalar("SELECT count(DISTINCT session) FROM market.bars_daily")
    assert sessions == 21  # June 2026: 22 weekdays less Juneteenth
    assert warehouse.scalar("SELECT count(*) FROM market.bars_daily") == 2 * sessions
    assert warehouse.scalar("SELECT count(*) FROM market.bars_minute WHERE session = %s", (DAY,)) > 0
    assert warehouse.scalar("SELECT count(*) FROM market.ingestion_log") >= 3

    # a new month's partition is created for the writer through the definer function only
    with writer.connect() as conn:
        ensure_month_partitions(conn, "market.bars_minute", pd.Series([pd.Timestamp("2031-01-15", tz="UTC")]))
    assert warehouse.scalar("SELECT to_regclass('market.bars_minute_203101')::text") == "market.bars_minute_203101"
    owner = warehouse.scalar("SELECT tableowner FROM pg_tables WHERE tablename = 'bars_minute_203101'")
    assert owner != urlsplit(logins["writer"]).username
    with warehouse.connect() as conn:
        conn.execute("DROP TABLE market.bars_minute_203101")

    url = logins["writer"]
    forbidden = [
        "DROP TABLE market.bars_daily",
        "DROP SCHEMA market CASCADE",
        "TRUNCATE market.bars_daily",
        "ALTER TABLE market.bars_daily ADD COLUMN x int",
        "CREATE TABLE market.evil (x int)",
        "CREATE TABLE public.evil (x int)",
        "CREATE INDEX evil ON market.bars_daily (close)",
        "CREATE VIEW market.evil AS SELECT 1",
        "CREATE OR REPLACE VIEW market.v_technical_snapshot AS SELECT 1 AS x",
        "DROP VIEW market.v_technical_snapshot",
        "DELETE FROM market.schema_migrations",
        "CREATE FUNCTION market.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ]
    for statement in forbidden:
        assert refused(url, statement), statement
    # the audit trail stays append-only for the writer (migration 040's restriction, re-applied by 041)
    privileges = warehouse.read_frame(
        "SELECT p, has_table_privilege('market_writer', 'market.audit_log', p) AS granted "
        "FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p"
    )
    assert dict(zip(privileges["p"], privileges["granted"], strict=True)) == {
        "SELECT": True, "INSERT": True, "UPDATE": False, "DELETE": False, "TRUNCATE": False
    }  # fmt: skip
    assert refused(url, "SELECT market.ensure_month_partition('market.audit_log', '2031-01-01')")
    # the definer function refuses anything but a partitioned table of schema market
    assert refused(url, "SELECT market.ensure_month_partition('market.symbols', '2031-01-01')")
    assert refused(url, "SELECT market.ensure_month_partition('public.pg_class', '2031-01-01')")
    # BRIN summaries (migration 064): the writer's writes summarized their ranges through the definer function,
    # which refuses anything but a table of schema market
    assert writer.summarize_new_ranges("market.bars_daily") == 0
    assert refused(url, "SELECT market.summarize_new_ranges('public.pg_class')")
    assert refused(url, "SELECT market.summarize_new_ranges('market.v_technical_snapshot')")


def test_analyst_in_market_reader_reads_every_view_and_writes_nothing(
    warehouse: WarehouseResource, logins: dict[str, str]
) -> None:
    url = logins["reader"]
    views = warehouse.read_frame(
        "SELECT table_name FROM information_schema.views WHERE table_schema = 'market' ORDER BY 1"
    )["table_name"].tolist()
    assert {"v_technical_snapshot", "v_put_call_ratio", "v_iv_term_structure", "vwap_daily"} <= set(views)
    assert refused(url, "SELECT * FROM market.api_tokens")  # credentials (hashed), not market data
    with psycopg.connect(to_conninfo(url)) as conn:
        for view in views:
            conn.execute(sql.SQL("SELECT * FROM market.{} LIMIT 1").format(sql.Identifier(view)))
        for table in TABLES:
            if table != "market.api_tokens":
                conn.execute(f"SELECT count(*) FROM {table}")
    for name, table in TABLES.items():
        column = table.key[0]
        assert refused(url, f"DELETE FROM {name}"), name
        assert refused(url, f"UPDATE {name} SET {column} = {column}"), name
        assert refused(url, f"TRUNCATE {name}"), name
    assert refused(url, "INSERT INTO market.symbols (symbol) VALUES ('ZZZZ')")
    assert refused(url, "INSERT INTO market.bars_daily SELECT * FROM market.bars_daily LIMIT 1")
    assert refused(url, "CREATE TABLE market.mine (x int)")
    assert refused(url, "DROP VIEW market.v_technical_snapshot")
    assert refused(url, "SELECT market.ensure_month_partition('market.bars_minute', '2031-02-01')")
    assert refused(url, "SELECT nextval('market.quarantine_id_seq')")


def test_passwords_never_printed(logins: dict[str, str]) -> None:
    password = urlsplit(logins["writer"]).password
    assert password and password not in redact(logins["writer"])
