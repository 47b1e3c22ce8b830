"""The production topology without containers: code server, webserver and daemon as separate processes.

The same commands as docker-compose.yml's code-server, webserver and daemon services, with the
same instance file (deploy/dagster/dagster.yaml, copied unchanged into DAGSTER_HOME) and the same
workspace file (deploy/dagster/workspace.yaml with the code server's address made local: the only
difference from the containers), on the machine's PostgreSQL and Redis. The code server connects
as a login in market_writer, as in compose. A partition backfill is launched through the
webserver's GraphQL API; the daemon must dequeue its runs (QueuedRunCoordinator) and the code
server run them (DefaultRunLauncher); then the warehouse is checked. The after-close schedule is
evaluated for a real tick through the same API, against the running code server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import psycopg
import pytest
import redis
import yaml
from psycopg import sql

from market_assets.domain.sessions import NEW_YORK, session_open_close, sessions_between
from market_assets.warehouse.resource import WarehouseResource, to_conninfo

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "dagster"
BIN = Path(sys.executable).parent
MACHINE_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
MACHINE_REDIS_URL = "redis://127.0.0.1:6379/0"
SYMBOLS = ["AAPL", "MSFT"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_database(url: str, database: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc if user is None else f"{user}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


class Topology:
    """The three Dagster processes, their logs, and a GraphQL client for the webserver."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.grpc_port, self.web_port = free_port(), free_port()

    def start(self, name: str, command: list[str]) -> None:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 (kept open for the process's lifetime)
        self.procs[name] = subprocess.Popen(command, cwd=self.home, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.home.glob("*.log")))

    def wait(self, what: str, ready: Any, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {'exited: ' + ', '.join(dead) if dead else 'timed out'}\n{self.logs()}")
            time.sleep(1)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"GraphQL HTTP {exc.code}: {exc.read().decode()[:2000]}") from None
        assert "errors" not in body, body
        return body["data"]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _server_info(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def machine() -> Iterator[dict[str, str]]:
    """Fresh databases on the machine's PostgreSQL (warehouse + Dagster storage) and a writer login."""
    base = os.environ.get("DATABASE_URL") or MACHINE_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or MACHINE_REDIS_URL
    try:
        psycopg.connect(to_conninfo(with_database(base, "postgres")), connect_timeout=3).close()
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except (psycopg.OperationalError, redis.RedisError, OSError) as exc:
        pytest.skip(f"the machine's PostgreSQL/Redis is not reachable: {exc}")
    tag = uuid.uuid4().hex[:8]
    warehouse_db, storage_db, pipeline = f"mdtopo_{tag}", f"mdtopo_{tag}_dagster", f"mdtopo_pipeline_{tag}"
    admin = to_conninfo(with_database(base, "postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        for db in (warehouse_db, storage_db):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    owner_url = with_database(base, warehouse_db)
    WarehouseResource(database_url=owner_url).migrate()
    with psycopg.connect(to_conninfo(owner_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE market_writer").format(sql.Identifier(pipeline)))
        conn.execute("INSERT INTO market.symbols (symbol) SELECT unnest(%s::text[])", (SYMBOLS,))
    parts = urlsplit(base)
    try:
        yield {
            "owner_url": owner_url,
            "writer_url": with_database(base, warehouse_db, user=pipeline),
            "redis_url": redis_url,
            "pg_host": parts.hostname or "127.0.0.1",
            "pg_port": str(parts.port or 5432),
            "pg_user": parts.username or "postgres",
            "pg_password": parts.password or "",
            "storage_db": storage_db,
        }
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for db in (warehouse_db, storage_db):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(pipeline)))


@pytest.fixture(scope="module")
def topology(machine: dict[str, str]) -> Iterator[Topology]:
    home = Path(tempfile.mkdtemp(prefix="mdtopo-", dir="/tmp"))
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "ALPACA_", "MARKET_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        DAGSTER_HOME=str(home),
        DAGSTER_STORAGE_DIR=str(home / "storage"),
        DAGSTER_PG_USERNAME=machine["pg_user"],
        DAGSTER_PG_PASSWORD=machine["pg_password"],
        DAGSTER_PG_HOST=machine["pg_host"],
        DAGSTER_PG_PORT=machine["pg_port"],
        DAGSTER_PG_DB=machine["storage_db"],
        DAGSTER_MAX_CONCURRENT_RUNS="2",
        DATABASE_URL=machine["writer_url"],
        REDIS_URL=machine["redis_url"],
        MARKET_DATA_HOME=str(home / "data"),
        MARKET_SYMBOLS=",".join(SYMBOLS),
    )
    topo = Topology(home, env)
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=topo.grpc_port)
    (home / "workspace.yaml").write_text(yaml.safe_dump(workspace))

    def command(service: str, replace: dict[str, str]) -> list[str]:
        """The compose service's command, with container addresses made local."""
        words = [replace.get(w, w) for w in compose[service]["command"]]
        words[0] = str(BIN / words[0])
        return words

    local = {"0.0.0.0": "127.0.0.1", "/opt/dagster/home/workspace.yaml": str(home / "workspace.yaml")}
    try:
        topo.start("code-server", command("code-server", {**local, "4000": str(topo.grpc_port)}))
        grpc_check = [str(BIN / "dagster"), "api", "grpc-health-check", "--host", "127.0.0.1", "--port",
                      str(topo.grpc_port)]  # fmt: skip
        topo.wait(
            "code server", lambda: subprocess.run(grpc_check, env=env, capture_output=True, timeout=60).returncode == 0
        )
        topo.start("webserver", command("webserver", {**local, "3000": str(topo.web_port)}))
        topo.start("daemon", command("daemon", local))
        topo.wait("webserver", lambda: _server_info(topo.web_port))
        yield topo
    finally:
        topo.stop()
        shutil.rmtree(home, ignore_errors=True)


LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}"""
BACKFILL = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
  }
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}"""
EVENTS = """
query($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run { eventConnection { events { __typename } } }
  }
}"""
DRY_RUN = """
mutation($selector: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick {
      timestamp
      evaluationResult { skipReason error { message } runRequests { runKey jobName tags { key value } } }
    }
    ... on PythonError { message }
  }
}"""


def recent_sessions(count: int) -> list[date]:
    today = date.today()
    return list(sessions_between(today - timedelta(days=40), today - timedelta(days=7)))[-count:]


def test_backfill_through_the_webserver_runs_on_the_daemon_and_fills_the_warehouse(
    topology: Topology, machine: dict[str, str]
) -> None:
    sessions = recent_sessions(3)
    params = {
        "partitionNames": [s.isoformat() for s in sessions],
        "assetSelection": [{"path": ["daily_bars"]}],
        "title": "topology test",
    }
    launched = topology.graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    state: dict[str, Any] = {}

    def finished() -> bool:
        data = topology.graphql(BACKFILL, {"id": backfill_id})
        state.update(status=data["partitionBackfillOrError"].get("status"), runs=data["runsOrError"]["results"])
        done = {"SUCCESS", "FAILURE", "CANCELED"}
        return state["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED") and all(
            r["status"] in done for r in state["runs"]
        )

    topology.wait(f"backfill {backfill_id}", finished, timeout=420)
    assert state["runs"] and all(r["status"] == "SUCCESS" for r in state["runs"]), (state, topology.logs())
    assert state["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), state
    events = topology.graphql(EVENTS, {"runId": state["runs"][0]["runId"]})["runOrError"]["eventConnection"]
    kinds = [e["__typename"] for e in events["events"]]
    # queued by the webserver's backfill, started only once the daemon's run queue let it go
    assert kinds.index("RunEnqueuedEvent") < kinds.index("RunStartingEvent") < kinds.index("RunSuccessEvent"), kinds

    owner = WarehouseResource(database_url=machine["owner_url"])
    stored = owner.read_frame("SELECT symbol, session FROM market.bars_daily ORDER BY session, symbol")
    assert sorted(set(stored["session"])) == sessions
    assert len(stored) == len(sessions) * len(SYMBOLS)
    log = owner.read_frame("SELECT status, run_id FROM market.ingestion_log WHERE asset = 'daily_bars'")
    assert set(log["status"]) == {"success"} and set(log["run_id"]) <= {r["runId"] for r in state["runs"]}


def test_after_close_schedule_tick_requests_the_session_run(topology: Topology) -> None:
    session = recent_sessions(1)[0]
    _, close = session_open_close(session)
    due = pd.Timestamp(close).tz_convert(NEW_YORK) + pd.Timedelta(minutes=30)
    selector = {"repositoryLocationName": "market_assets", "repositoryName": "__repository__",
                "scheduleName": "after_close_schedule"}  # fmt: skip
    result = topology.graphql(DRY_RUN, {"selector": selector, "timestamp": due.timestamp() - 60})["scheduleDryRun"]
    assert result["__typename"] == "DryRunInstigationTick", result
    evaluation = result["evaluationResult"]
    assert evaluation["error"] is None and evaluation["skipReason"] is None, evaluation
    (request,) = evaluation["runRequests"]
    tags = {t["key"]: t["value"] for t in request["tags"]}
    assert request["runKey"] == f"daily-{session}"
    assert tags["dagster/partition"] == tags["market/session"] == session.isoformat()
