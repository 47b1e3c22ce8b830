"""market.audit_log: a row for each kind of event, written with the data it describes, and append-only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from psycopg import errors

from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import FaultConfig, SimulatorServer
from market_assets.defs.bars import daily_bars
from market_assets.observability import audit
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.pipeline import alpaca_for, run, seed_symbols

CLOCK = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(MarketModel(seed=5), clock=CLOCK, enable_ws=False) as server:
        yield server


def rows(warehouse: WarehouseResource, kind: str) -> list[tuple]:
    with warehouse.connect() as conn:
        return conn.execute(
            "SELECT action, actor, subject, run_id, partition_key, details FROM market.audit_log"
            " WHERE kind = %s ORDER BY id",
            (kind,),
        ).fetchall()


def test_migrations_are_audited_in_their_own_transaction(database_url: str, migrated_warehouse: WarehouseResource):
    # the session fixture migrated an empty database: 040 creates the table, so every file after it is audited,
    # and a later no-op migrate() adds nothing
    with migrated_warehouse.connect() as conn:
        applied = [r[0] for r in conn.execute("SELECT version FROM market.schema_migrations ORDER BY version")]
        audited = [r[0] for r in conn.execute("SELECT subject FROM market.audit_log WHERE kind = 'migration'")]
    assert set(audited) <= set(applied)
    assert migrated_warehouse.migrate() == []
    with migrated_warehouse.connect() as conn:
        again = conn.execute("SELECT count(*) FROM market.audit_log WHERE kind = 'migration'").fetchone()[0]
    assert again == len(audited)


def test_universe_changes_and_api_calls_are_audited(sim: SimulatorServer, warehouse: WarehouseResource) -> None:
    seed_symbols(["AAPL", "MSFT"], warehouse)
    seed_symbols(["AAPL", "SPY"], warehouse)
    seed_symbols(["AAPL", "SPY"], warehouse)  # no change: no row
    changes = [r[5] for r in rows(warehouse, "universe")]
    assert changes == [
        {"added": ["AAPL", "MSFT"], "deactivated": [], "active": 2},
        {"added": ["SPY"], "deactivated": ["MSFT"], "active": 2},
    ]

    sim.faults = FaultConfig(seed=1, rate_limit_every=2, rate_limit_reset_seconds=0)
    result = run(
        [daily_bars],
        {"alpaca": alpaca_for(sim, symbols_per_request=1), "warehouse": warehouse},
        window=("2026-06-01", "2026-06-30"),
    )
    assert result.success
    (summary,) = rows(warehouse, "api_calls")
    action, actor, subject, run_id, partition_key, details = summary
    assert (action, actor, subject, partition_key) == ("summary", "pipeline", "daily_bars", "2026-06-01..2026-06-30")
    assert run_id == result.run_id
    endpoint = details["endpoints"]["/v2/stocks/bars"]
    assert endpoint["requests"] == sim.stats.total
    assert endpoint["statuses"] == {str(code): n for code, n in sim.stats.statuses.items()}
    assert endpoint["retries"] == sim.stats.statuses[429]
    assert details["status"] == "success"
    # the same transaction as the ingestion log row: one each
    assert warehouse.scalar("SELECT count(*) FROM market.ingestion_log WHERE run_id = %s", (run_id,)) == 1


def test_an_audit_row_rolls_back_with_its_data(warehouse: WarehouseResource) -> None:
    with pytest.raises(RuntimeError), warehouse.connect() as conn:
        conn.execute("INSERT INTO market.symbols (symbol) VALUES ('ZZZ')")
        audit.record(conn, "universe", "changed", actor="test", details={"added": ["ZZZ"]})
        raise RuntimeError("the write failed after the audit row")
    assert rows(warehouse, "universe") == []
    assert warehouse.scalar("SELECT count(*) FROM market.symbols") == 0


def test_secrets_are_masked_in_audit_details(warehouse: WarehouseResource, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ALPACA_SECRET_KEY", "SECRETxAUDITx0123456789")
    monkeypatch.setenv("ALPACA_API_KEY", "KEYxAUDITx0123456789")
    warehouse.audit("settings", "start", actor="test", details={"oops": "key=SECRETxAUDITx0123456789", "n": 1})
    ((_, _, _, _, _, details),) = rows(warehouse, "settings")
    assert details == {"oops": "key=***", "n": 1}


def test_unknown_kind_is_refused(warehouse: WarehouseResource) -> None:
    with pytest.raises(ValueError, match="unknown audit kind"), warehouse.connect() as conn:
        audit.record(conn, "gossip", "x", actor="test")


def test_append_only_even_for_the_owner_and_no_delete_grant_for_the_pipeline_role(
    warehouse: WarehouseResource,
) -> None:
    warehouse.audit("token", "created", actor="test", subject="token-1")
    with warehouse.connect() as conn, pytest.raises(errors.InsufficientPrivilege, match="append-only"):
        conn.execute("DELETE FROM market.audit_log")
    with warehouse.connect() as conn, pytest.raises(errors.InsufficientPrivilege, match="append-only"):
        conn.execute("UPDATE market.audit_log SET actor = 'someone else'")

    # the pipeline's role (issue 15 creates it; created here when it does not exist yet): the guarded
    # restriction grants it SELECT/INSERT only, on the parent and on every month partition
    with warehouse.connect(autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'market_writer'").fetchone()
        if not exists:
            with contextlib.suppress(errors.DuplicateObject):  # another session created it meanwhile
                conn.execute("CREATE ROLE market_writer NOLOGIN")
        conn.execute("GRANT USAGE ON SCHEMA market TO market_writer")
        conn.execute("SELECT market.audit_log_restrict()")
    with warehouse.connect() as conn:
        conn.execute("SET ROLE market_writer")
        audit.record(conn, "token", "revoked", actor="pipeline", subject="token-1")  # INSERT is granted
        partition = conn.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'market.audit_log'::regclass LIMIT 1"
        ).fetchone()[0]
        conn.execute("SAVEPOINT s")
        for statement in (
            "DELETE FROM market.audit_log",
            "TRUNCATE market.audit_log",
            "UPDATE market.audit_log SET kind = kind",
            f"DELETE FROM {partition}",  # a month partition directly: same restriction
        ):
            with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
                conn.execute(statement)
            conn.execute("ROLLBACK TO SAVEPOINT s")
    assert [r[0] for r in rows(warehouse, "token")] == ["created", "revoked"]


def test_month_partitions_are_created_on_demand(warehouse: WarehouseResource) -> None:
    with warehouse.connect() as conn:
        conn.execute("SELECT market.audit_log_partition('2031-02-15 12:00+00')")
        conn.execute(
            "INSERT INTO market.audit_log (ts, kind, action, actor) VALUES ('2031-02-28 23:59+00', 'token', 'x', 't')"
        )
        where = conn.execute(
            "SELECT tableoid::regclass::text FROM market.audit_log WHERE ts = '2031-02-28 23:59+00'"
        ).fetchone()[0]
    assert where == "market.audit_log_203102"
