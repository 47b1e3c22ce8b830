"""`market-data migrate` (the deployment's one-shot step) and DAGSTER_HOME's instance file, on real PostgreSQL."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from market_assets.config import load_settings
from market_assets.runtime.services import INSTANCE_TEMPLATE, _with_database, prepare_dagster_home
from market_assets.warehouse.migrations import migration_files
from market_assets.warehouse.resource import to_conninfo

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    """An empty database beside the test warehouse: what the compose `migrate` service starts from."""
    name = f"mig_{uuid.uuid4().hex[:8]}"
    admin = to_conninfo(_with_database(database_url, "postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(database_url, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MIGRATE_DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "market_assets.runtime.cli", *args], capture_output=True, text=True,
                          env={**base, "PYTHONPATH": str(ROOT), **env}, timeout=300)  # fmt: skip


def test_migrate_applies_every_migration_once_from_the_named_variable(fresh_database: str, tmp_path: Path) -> None:
    # only MIGRATE_DATABASE_URL, as in the compose service (its environment replaces the app's)
    env = {"MIGRATE_DATABASE_URL": fresh_database, "MARKET_DATA_HOME": str(tmp_path)}
    first = _cli(["migrate"], env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "migrations applied to" in first.stdout
    with psycopg.connect(to_conninfo(fresh_database)) as conn:
        recorded = conn.execute("SELECT count(*) FROM market.schema_migrations").fetchone()[0]
    assert recorded == len(migration_files())
    again = _cli(["migrate"], env)
    assert again.returncode == 0 and "is up to date" in again.stdout, again.stderr[-2000:]
    # no embedded server was started for it: the data home stayed empty
    assert not any(tmp_path.iterdir())


def test_migrate_reports_an_unreachable_server_in_one_line_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://owner:s3cr3t-pw@127.0.0.1:1/market"
    done = _cli(["migrate", "--url-env", "OWNER_URL"], {"OWNER_URL": url, "MARKET_DATA_HOME": str(tmp_path)})
    assert done.returncode != 0 and "127.0.0.1" in done.stderr
    assert "s3cr3t-pw" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_prepare_dagster_home_leaves_someone_elses_instance_file_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    own = (ROOT / "deploy" / "dagster" / "dagster.yaml").read_text()  # the image's instance file
    (home / "dagster.yaml").write_text(own)
    with caplog.at_level(logging.WARNING, logger="market_assets.runtime.services"):
        assert prepare_dagster_home(load_settings()) == home
    assert (home / "dagster.yaml").read_text() == own
    assert any("not market-data's instance file: left as is" in r.message for r in caplog.records)


def test_prepare_dagster_home_writes_and_refreshes_its_own_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("MARKET_DATA_HOME", str(tmp_path))
    home = prepare_dagster_home(load_settings())
    assert (home / "dagster.yaml").read_text() == INSTANCE_TEMPLATE.read_text()
    # an older copy of ours (same first line, other settings) is refreshed, silently
    older = INSTANCE_TEMPLATE.read_text().replace("max_concurrent_runs: 2", "max_concurrent_runs: 1")
    assert older != INSTANCE_TEMPLATE.read_text()
    (home / "dagster.yaml").write_text(older)
    with caplog.at_level(logging.WARNING, logger="market_assets.runtime.services"):
        prepare_dagster_home(load_settings())
    assert (home / "dagster.yaml").read_text() == INSTANCE_TEMPLATE.read_text()
    assert not caplog.records
