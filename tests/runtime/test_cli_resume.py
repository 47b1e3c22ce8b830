"""Stopping `market-data run` with SIGTERM mid-backfill, then resuming with the same command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import psycopg

from market_assets.domain.sessions import sessions_between
from market_assets.warehouse.resource import WarehouseResource, to_conninfo
from tests.fixtures.databases import truncate_all

# a window no other test materializes: Dagster's run storage is shared by the session's tests, and resuming trusts it
START, END = date(2026, 4, 1), date(2026, 8, 31)
ARGS = ["run", "--symbols", "AAPL,MSFT", "--start", str(START), "--end", str(END), "--intraday-days", "0"]
SESSIONS = len(sessions_between(START, END))
CHUNK = 20  # sessions per run


def _env(database_url: str, redis_url: str, home: Path) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "MARKET_DATA_HOME": str(home)}
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "ALPACA_DATA_URL", "DAGSTER_HOME", "DAGSTER_POSTGRES_URL"):
        env[name] = ""
    return env


def _bars(database_url: str) -> int:
    with psycopg.connect(to_conninfo(database_url)) as conn:
        return conn.execute("SELECT count(*) FROM market.bars_daily").fetchone()[0]


def test_sigterm_stops_cleanly_and_the_same_command_resumes(database_url: str, redis_url: str, tmp_path: Path) -> None:
    warehouse = WarehouseResource(database_url=database_url)
    warehouse.migrate()
    truncate_all(warehouse)  # the session's database: other tests' bars would hide ours
    env = _env(database_url, redis_url, tmp_path)
    cmd = [sys.executable, "-m", "market_assets.runtime.cli", *ARGS, "--chunk-sessions", str(CHUNK)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # the daily step has started: our handlers and Dagster's are in place
        seen.append(line)
        if line.startswith("[2/"):
            break
    # wait until the second chunk has written its bars: the first chunk's run has then ended and Dagster holds its
    # materializations. (SIGTERM right after a chunk's commit may land before Dagster records that chunk: the re-run
    # then redoes it, idempotently, which is correct but would not show "resuming:".)
    deadline = time.monotonic() + 240
    while _bars(database_url) <= 2 * CHUNK and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "".join(seen)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    out = "".join(seen) + rest
    stopped_after = time.monotonic() - sent
    assert proc.returncode == 130, out
    assert "Run the same command again" in out
    assert stopped_after < 30, stopped_after  # the step under way is interrupted, not the whole backfill
    partial = _bars(database_url)
    assert 2 * CHUNK < partial < 2 * SESSIONS and partial % 2 == 0  # whole partitions only

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming:" in done.stdout
    assert _bars(database_url) == 2 * SESSIONS
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stdout + again.stderr
