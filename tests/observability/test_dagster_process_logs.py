"""Dagster's own processes log JSON lines in the deployment: the compose daemon command, run on this machine.

Dagster takes the log format of its processes (webserver, daemon, code server) from their ``--log-format`` flag,
not from dagster.yaml (``python_logs`` there only shapes the loggers of runs), so the check is on the command the
compose file runs, started with this project's instance file on the machine's PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from market_assets.runtime.services import INSTANCE_TEMPLATE, _with_database, _with_driver
from market_assets.warehouse.resource import to_conninfo

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def storage_url(database_url: str) -> Iterator[str]:
    """An empty Dagster storage database beside the test warehouse (psycopg2 URL, as dagster-postgres wants)."""
    name = f"dlog_{uuid.uuid4().hex[:8]}"
    admin = to_conninfo(_with_database(database_url, "postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_driver(_with_database(database_url, name), "psycopg2")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_compose_dagster_services_ask_for_json() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("code-server", "webserver", "daemon"):
        command = services[name]["command"]
        assert command[command.index("--log-format") + 1] == "json", name


def test_daemon_started_as_compose_does_writes_parseable_json_lines(storage_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_TEMPLATE.read_text())  # the project's instance file
    (tmp_path / "defs.py").write_text("import dagster as dg\n\ndefs = dg.Definitions()\n")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_file": str(tmp_path / "defs.py")}]}))
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["daemon"]["command"]
    command = [str(BIN / command[0]), *(str(workspace) if w.endswith("workspace.yaml") else w for w in command[1:])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env.update(DAGSTER_HOME=str(home), DAGSTER_POSTGRES_URL=storage_url, PYTHONPATH=str(ROOT))
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr)
        try:
            deadline = time.monotonic() + 90
            while "Instance is configured with the following daemons" not in out.read_text() + err.read_text():
                assert proc.poll() is None, err.read_text()[-3000:]
                assert time.monotonic() < deadline, (out.read_text()[-2000:], err.read_text()[-2000:])
                time.sleep(0.2)
            time.sleep(2)  # the daemons' first iterations log too
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    lines = [line for text in (out.read_text(), err.read_text()) for line in text.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line from the daemon: {line!r}")
    assert len(records) >= 2  # the start-up line and the shutdown lines at least
    assert all({"event", "level", "timestamp", "logger"} <= set(r) for r in records), records
    assert any(r["event"].startswith("Instance is configured with the following daemons") for r in records)
