"""Concurrent and killed `market-data run` processes (issue 13, items 2 and 3), as a user would start them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from market_assets.warehouse.resource import WarehouseResource, to_conninfo
from tests.fixtures.databases import truncate_all

CLEARED = ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "ALPACA_DATA_URL", "ALPACA_TRADING_URL", "DAGSTER_HOME",
           "DAGSTER_POSTGRES_URL")  # fmt: skip


@pytest.fixture
def emptied_after(migrated_warehouse: WarehouseResource) -> Iterator[None]:
    """These runs write real rows into the session's warehouse: leave it empty for the tests that count rows."""
    yield
    truncate_all(migrated_warehouse)


def environment(database_url: str, redis_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MARKET_SYMBOLS"}  # set-but-empty is refused (item 10)
    return {**env, **dict.fromkeys(CLEARED, ""), "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "MARKET_DATA_HOME": str(home)}  # fmt: skip


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "market_assets.runtime.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def dagster_storage(database_url: str) -> str:
    """The `<db>_dagster` database the CLI puts next to DATABASE_URL."""
    parts = urlsplit(database_url)
    return to_conninfo(urlunsplit((parts.scheme, parts.netloc, f"{parts.path}_dagster", parts.query, "")))


def runs_tagged(database_url: str, key: str, value: str) -> list[tuple[str, str]]:
    with psycopg.connect(dagster_storage(database_url)) as conn:
        return conn.execute(
            "SELECT r.run_id, r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id"
            " WHERE t.key = %s AND t.value = %s ORDER BY r.id",
            (key, value),
        ).fetchall()


@pytest.mark.timeout(900)
def test_concurrent_runs_with_different_universes_each_write_exactly_their_own(
    database_url: str, redis_url: str, tmp_path: Path, emptied_after: None
) -> None:
    """Item 2: `run --symbols KO` and `run --symbols PEP` 0.3 s apart; the KO run used to write only PEP."""
    env = environment(database_url, redis_url, tmp_path)
    window = ["--start", "2026-10-26", "--end", "2026-10-30", "--intraday-days", "0"]
    with psycopg.connect(to_conninfo(database_url)) as conn:
        active_before = conn.execute("SELECT symbol FROM market.symbols WHERE active ORDER BY 1").fetchall()
    ko = start(["run", "--symbols", "KO", *window], env)
    time.sleep(0.3)
    pep = start(["run", "--symbols", "PEP", *window], env)
    outputs = [p.communicate(timeout=800)[0] for p in (ko, pep)]
    assert ko.returncode == 0 and pep.returncode == 0, outputs
    with psycopg.connect(to_conninfo(database_url)) as conn:
        for symbol in ("KO", "PEP"):
            run_ids = [r for r, _ in runs_tagged(database_url, "market/universe", symbol)]
            assert run_ids, symbol
            written = conn.execute(
                "SELECT DISTINCT symbol FROM market.bars_daily WHERE run_id = ANY(%s)", (run_ids,)
            ).fetchall()
            assert written == [(symbol,)], (symbol, written)
            sessions = conn.execute(
                "SELECT count(*) FROM market.bars_daily WHERE symbol = %s AND session BETWEEN '2026-10-26' AND "
                "'2026-10-30'",
                (symbol,),
            ).fetchone()[0]
            assert sessions == 5
        active_after = conn.execute("SELECT symbol FROM market.symbols WHERE active ORDER BY 1").fetchall()
    if active_before:  # a run never changes an existing active universe (only `market-data universe set` does)
        assert active_after == active_before


def kill_two_runs_mid_step(database_url: str, env: dict[str, str]) -> dict[int, str]:
    """Start two long `market-data run`s, kill -9 each inside its daily step; {pid: run_id}, both left STARTED."""
    long_window = ["--start", "2026-01-02", "--end", "2026-10-30", "--intraday-days", "0"]
    victims = [start(["run", "--symbols", s, *long_window], env) for s in ("JNJ", "WMT")]
    started: dict[int, str] = {}
    deadline = time.monotonic() + 600
    while len(started) < 2 and time.monotonic() < deadline:
        for proc in victims:
            if proc.pid in started:
                continue
            if proc.poll() is not None:
                raise AssertionError(f"a victim run exited by itself:\n{proc.communicate()[0][-3000:]}")
            try:
                runs = runs_tagged(database_url, "market/cli_pid", str(proc.pid))
            except (psycopg.OperationalError, psycopg.errors.UndefinedTable):  # <db>_dagster not set up yet
                continue
            # kill inside the long daily step (bars and technicals of ten months), not between steps
            if len(runs) >= 2 and runs[-1][1] == "STARTED":
                os.kill(proc.pid, signal.SIGKILL)
                started[proc.pid] = runs[-1][0]
        time.sleep(0.2)
    for proc in victims:
        proc.wait(timeout=30)
    assert len(started) == 2, "the runs never reached the daily step"
    for pid, run_id in started.items():
        assert runs_tagged(database_url, "market/cli_pid", str(pid))[-1] == (run_id, "STARTED")  # stuck
    return started


@pytest.mark.timeout(900)
def test_killed_runs_are_marked_failed_and_free_the_queue(
    database_url: str, redis_url: str, tmp_path: Path, emptied_after: None
) -> None:
    """Item 3: kill -9 two runs mid-flight; they used to stay STARTED forever and hold both queue slots."""
    env = environment(database_url, redis_url, tmp_path)
    started = kill_two_runs_mid_step(database_url, env)

    t0 = time.monotonic()
    survivor = start(["run", "--symbols", "AAPL", "--start", "2026-10-30", "--end", "2026-10-30",
                      "--intraday-days", "0"], env)  # fmt: skip
    out = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, out
    assert out.count("marked failed") == 2, out
    for pid, run_id in started.items():
        assert runs_tagged(database_url, "market/cli_pid", str(pid))[-1] == (run_id, "FAILURE")
    with psycopg.connect(dagster_storage(database_url)) as conn:
        in_progress = conn.execute("SELECT count(*) FROM runs WHERE status IN ('STARTED', 'STARTING')").fetchone()[0]
    assert in_progress == 0  # both QueuedRunCoordinator slots (max_concurrent_runs: 2) are free again
    print(f"recovered and completed in {time.monotonic() - t0:.1f}s")


def run_status(database_url: str, run_id: str) -> str:
    with psycopg.connect(dagster_storage(database_url)) as conn:
        return conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone()[0]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_daemon_frees_the_slots_of_killed_runs_and_a_queued_run_completes(
    database_url: str, redis_url: str, tmp_path: Path, emptied_after: None
) -> None:
    """Item 3 through the daemon: with nobody running the CLI again, two killed runs used to hold both
    QueuedRunCoordinator slots forever ("Maximum is 2, won't launch more"); the daemon's dead_cli_runs_sensor
    must free them so a queued run is launched and completes, within a bounded time."""
    env = environment(database_url, redis_url, tmp_path)
    started = kill_two_runs_mid_step(database_url, env)
    parts = urlsplit(database_url)
    daemon_env = {
        **env,
        # the project's instance as the CLI left it: its dagster.yaml (QueuedRunCoordinator, max 2; run monitoring)
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        # <db>_dagster, through psycopg2 as the CLI sets it (dagster-postgres's NOTIFY does not work on psycopg 3)
        "DAGSTER_POSTGRES_URL": urlunsplit(
            ("postgresql+psycopg2", parts.netloc, f"{parts.path}_dagster", parts.query, "")
        ),
    }
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()
    bin_dir = Path(sys.executable).parent
    launched = subprocess.run(
        [str(bin_dir / "dagster"), "job", "launch", "-m", "market_assets.definitions", "-j", "symbols_job",
         "--config-json", '{"ops": {"symbols": {"config": {"seed_only": true}}}}'],
        env=daemon_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    with psycopg.connect(dagster_storage(database_url)) as conn:
        queued = conn.execute(
            "SELECT run_id FROM runs WHERE pipeline_name = 'symbols_job' ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]
    assert run_status(database_url, queued) == "QUEUED"  # both slots are held by the dead runs

    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 (kept open for the daemon's lifetime)
    daemon = subprocess.Popen(
        [str(bin_dir / "dagster-daemon"), "run", "-m", "market_assets.definitions"],
        cwd=tmp_path, env=daemon_env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    t0 = time.monotonic()
    try:
        status = run_status(database_url, queued)
        # bound: the sensor's first tick (at daemon start-up, then every 60 s), a dequeue, one short run
        while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() - t0 < 240:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(1)
            status = run_status(database_url, queued)
        elapsed = time.monotonic() - t0
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
    assert status == "SUCCESS", f"queued run {status} after {elapsed:.0f}s\n" + (
        tmp_path / "daemon.log").read_text()[-3000:]  # fmt: skip
    for run_id in started.values():
        assert run_status(database_url, run_id) == "FAILURE"
    print(f"daemon freed the queue; the queued run completed {elapsed:.1f}s after the daemon started")
