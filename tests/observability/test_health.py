"""`market-data health`: one line per check, exit 0 only when the warehouse, migrations, Redis and Alpaca are fine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import SimulatorServer
from market_assets.config import load_settings
from market_assets.observability.health import check_alpaca, check_warehouse, run_checks
from market_assets.warehouse.resource import WarehouseResource, to_conninfo


def test_all_checks_pass_on_a_migrated_warehouse(
    migrated_warehouse: WarehouseResource, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "MARKET_DATA_HOME": str(tmp_path)}
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "ALPACA_DATA_URL", "MARKET_LOG_FORMAT"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "market_assets.runtime.cli", "health"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "warehouse"],
        ["ok", "migrations"],
        ["ok", "redis"],
        ["ok", "alpaca"],
    ]


def test_each_failure_is_one_line_naming_what_was_tried(migrated_warehouse: WarehouseResource, tmp_path: Path) -> None:
    settings = load_settings(
        {"DATABASE_URL": "postgresql://u:hunter2secret@127.0.0.1:1/none", "REDIS_URL": "redis://127.0.0.1:1/0",
         "MARKET_DATA_HOME": str(tmp_path)}
    )  # fmt: skip
    checks = {c.name: c for c in run_checks(settings)}
    assert not checks["warehouse"].ok and "127.0.0.1:1" in checks["warehouse"].detail
    assert "hunter2secret" not in checks["warehouse"].line()
    assert not checks["migrations"].ok and not checks["redis"].ok
    assert checks["alpaca"].ok  # the simulator

    # nothing embedded running under an empty data home: "not running", and nothing started
    settings = load_settings({"MARKET_DATA_HOME": str(tmp_path)})
    checks = {c.name: c for c in run_checks(settings)}
    assert "not running" in checks["warehouse"].detail and "not running" in checks["redis"].detail
    assert not (tmp_path / "postgres").exists()


def test_missing_migration_fails(migrated_warehouse: WarehouseResource) -> None:
    with migrated_warehouse.connect() as conn:
        conn.execute("DELETE FROM market.schema_migrations WHERE version = '040_audit.sql'")
        conninfo = migrated_warehouse.conninfo()
        conn.commit()
    try:
        _, migrations = check_warehouse(conninfo, "test")
        assert not migrations.ok and "040_audit.sql" in migrations.detail
    finally:
        with migrated_warehouse.connect() as conn:
            conn.execute(
                "INSERT INTO market.schema_migrations (version, checksum) SELECT '040_audit.sql', encode(sha256("
                "convert_to(%s, 'UTF8')), 'hex')",
                (_migration_text("040_audit.sql"),),
            )
    assert check_warehouse(to_conninfo(migrated_warehouse.database_url or ""), "test")[1].ok


def _migration_text(name: str) -> str:
    from market_assets.warehouse.migrations import migration_files

    return dict(migration_files())[name]


def test_alpaca_refusing_the_keys_fails(tmp_path: Path) -> None:
    with SimulatorServer(MarketModel(seed=1), enable_ws=False) as sim:
        good = load_settings({"ALPACA_API_KEY": sim.api_key, "ALPACA_SECRET_KEY": sim.secret_key,
                              "ALPACA_DATA_URL": sim.base_url, "MARKET_DATA_HOME": str(tmp_path)})  # fmt: skip
        bad = load_settings({"ALPACA_API_KEY": sim.api_key, "ALPACA_SECRET_KEY": "wrong",
                             "ALPACA_DATA_URL": sim.base_url, "MARKET_DATA_HOME": str(tmp_path)})  # fmt: skip
        ok, refused = check_alpaca(good), check_alpaca(bad)
    assert ok.ok, ok.line()
    assert not refused.ok and "HTTP 401" in refused.detail and "wrong" not in refused.line()
