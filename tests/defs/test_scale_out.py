"""Celery scale-out: two real dagster-celery worker processes share a multi-partition backfill.

The broker and result backend are the test session's real Redis (embedded or REDIS_URL) on a
queue of this test's own; the Dagster instance is a real on-disk one that the workers open too
(they run steps out of process, so an ephemeral instance cannot work). Each worker runs one step
at a time (concurrency 1, prefetch 1, late acks), so the independent steps of each partition must
be spread over both; the engine events name the worker that ran each step.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest
import redis
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, execute_job
from dagster._core.definitions.reconstruct import ReconstructableRepository

from market_assets.defs.scale_out import CELERY_BROKER_ENV, celery_execution_config
from market_assets.domain.sessions import sessions_between
from market_assets.runtime.embedded import redis_server_binary
from market_assets.warehouse.resource import WarehouseResource

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SYMBOLS = ["AAPL", "MSFT"]
SELECTION = [AssetKey("daily_bars"), AssetKey("intraday_bars"), AssetKey("technical_indicators")]


@contextmanager
def tcp_broker(redis_url: str) -> Iterator[str]:
    """The session's Redis as the broker; over TCP, because Celery's result backend has no unix-socket URL form.

    A TCP REDIS_URL (the machine's server in CI) is used as it is; with the embedded Redis (a unix
    socket) a redis-server of the same binary is started on a loopback port for the test.
    """
    if not redis_url.startswith("unix://"):
        yield redis_url
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if redis.Redis.from_url(url).ping():
                    break
            except (redis.ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def workers(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    with ExitStack() as stack:
        yield from _workers(stack, database_url, redis_url, monkeypatch)


def _workers(
    stack: ExitStack, database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, object]]:
    home = Path(tempfile.mkdtemp(prefix="mdcel-", dir="/tmp"))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    queue = f"md-test-{uuid.uuid4().hex[:8]}"
    broker = stack.enter_context(tcp_broker(redis_url))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "DAGSTER_"))}
    # dagster-celery execs `celery` from PATH: the venv's bin must come first
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT), DAGSTER_HOME=str(home),
               DATABASE_URL=database_url, REDIS_URL=redis_url, MARKET_DATA_HOME=str(home / "data"),
               **{CELERY_BROKER_ENV: broker})  # fmt: skip
    for name in ("DAGSTER_HOME", "DATABASE_URL", "REDIS_URL", "MARKET_DATA_HOME", CELERY_BROKER_ENV):
        monkeypatch.setenv(name, env[name])
    for name in [k for k in os.environ if k.startswith("ALPACA_")]:
        monkeypatch.delenv(name)
    with DagsterInstance.from_config(str(home)) as instance:  # create the storage once, before two workers race to
        instance.get_runs(limit=1)
    config = celery_execution_config(queue)
    # dagster-celery reads the executor block under execution.config (as in deploy/celery/celery.yaml)
    (home / "celery.yaml").write_text(yaml.safe_dump({"execution": {"config": config}}))
    names = [f"w{i}-{queue}" for i in (1, 2)]
    procs = []
    for name in names:
        log = open(home / f"{name}.log", "wb")  # noqa: SIM115 (open for the worker's lifetime)
        command = [
            str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(home / "celery.yaml"),
            "-q", queue, "-n", f"{name}@%h", "--", "--concurrency=1",
        ]  # fmt: skip
        # a session of its own: `dagster-celery worker start` execs `celery` as a child, and both must stop
        procs.append(
            subprocess.Popen(command, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
    deadline = time.monotonic() + 180
    try:
        while not all(" ready." in (home / f"{n}.log").read_text() for n in names):
            dead = [n for n, p in zip(names, procs, strict=True) if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join((home / f"{n}.log").read_text()[-2000:] for n in names)
                raise AssertionError(f"celery workers not ready ({dead or 'timeout'}):\n{logs}")
            time.sleep(1)
        yield {"home": home, "queue": queue, "names": names, "config": config}
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_backfill_runs_on_two_celery_workers(workers: dict[str, object], warehouse: WarehouseResource) -> None:
    warehouse.upsert_symbols(SYMBOLS)
    today = date.today()
    sessions = list(sessions_between(today - timedelta(days=40), today - timedelta(days=7)))[-3:]
    recon = ReconstructableRepository.for_module(
        "market_assets.definitions", "defs", working_directory=str(ROOT)
    ).get_reconstructable_job("daily_market_celery_job")
    ran_on: dict[str, set[str]] = {}
    with DagsterInstance.get() as instance:
        for session in sessions:
            result = execute_job(
                recon,
                instance=instance,
                run_config={"execution": {"config": workers["config"]}},
                tags={"dagster/partition": session.isoformat()},
                asset_selection=SELECTION,
            )
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            for record in instance.all_logs(result.run_id, of_type=DagsterEventType.ENGINE_EVENT):
                data = record.dagster_event.event_specific_data if record.dagster_event else None
                metadata = getattr(data, "metadata", None) or {}
                if "Celery worker" in metadata:
                    ran_on.setdefault(str(metadata["Celery worker"].value), set()).add(record.step_key or "")
    hosts = {h.split("@")[0] for h in ran_on}
    assert hosts == set(workers["names"]), f"both workers must have run steps: {ran_on}"  # type: ignore[arg-type]
    # an asset_selection override brings the selected assets' own checks along (the freshness checks run as steps too)
    steps = set().union(*ran_on.values())
    assert {s for s in steps if not s.endswith("_fresh")} == {"daily_bars", "intraday_bars", "technical_indicators"}

    stored = warehouse.read_frame("SELECT session, count(*) AS n FROM market.bars_daily GROUP BY 1 ORDER BY 1")
    assert stored["session"].tolist() == sessions and set(stored["n"]) == {len(SYMBOLS)}
    log = warehouse.read_frame(
        "SELECT asset, partition_key, count(*) AS n FROM market.ingestion_log WHERE status = 'success' GROUP BY 1, 2"
    )
    assert len(log[log["asset"] == "daily_bars"]) == len(sessions) and set(log["n"]) == {1}, log  # no duplicate
    indicators = warehouse.scalar("SELECT count(*) FROM market.indicators_daily WHERE session = ANY(%s)", (sessions,))
    assert indicators == len(sessions) * len(SYMBOLS)
