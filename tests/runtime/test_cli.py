"""`market-data run` as a user runs it: a subprocess, the real servers, the in-process simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from market_assets.warehouse.resource import to_conninfo


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "market_assets.runtime.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_materializes_the_graph_and_prints_a_summary(database_url: str, redis_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "MARKET_DATA_HOME": str(tmp_path)}
    for name in (
        "ALPACA_API_KEY",
        "ALPACA_SECRET_KEY",
        "ALPACA_DATA_URL",
        "DAGSTER_HOME",
        "DAGSTER_POSTGRES_URL",
    ):
        env[name] = ""
    done = cli(
        [
            "run",
            "--symbols",
            "AAPL,MSFT",
            "--start",
            "2026-10-01",
            "--end",
            "2026-10-30",
            "--intraday-days",
            "1",
        ],
        env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "] symbols: seed the universe" in out and "] daily partitions 2026-10-01 .. 2026-10-30" in out
    assert "] options for the last session 2026-10-30" in out
    assert "result: SUCCESS" in out and "checks:" in out and " 0 failed" in out
    assert "market.bars_daily" in out and "market.quarantine" in out and "market.option_greeks" in out
    with psycopg.connect(to_conninfo(database_url)) as conn:
        n = conn.execute(
            "SELECT count(*) FROM market.bars_daily WHERE session BETWEEN '2026-10-01' AND '2026-10-30'"
        ).fetchone()[0]
        minutes = conn.execute("SELECT count(DISTINCT session) FROM market.bars_minute").fetchone()[0]
    assert n == 2 * 22  # October 2026 has 22 sessions in 1..30
    assert minutes >= 1
    # the runs are in Dagster's own storage, so the UI shows them
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()


def test_bad_settings_exit_2_naming_the_variable(tmp_path: Path) -> None:
    done = cli(["run"], {"MARKET_SYMBOLS": "AAPL,not-a-symbol", "MARKET_DATA_HOME": str(tmp_path)})
    assert done.returncode == 2
    assert "MARKET_SYMBOLS" in done.stderr and "NOT-A-SYMBOL" in done.stderr
    done = cli(["run", "--start", "2026-13-01"], {"MARKET_DATA_HOME": str(tmp_path)})
    assert done.returncode == 2 and "--start" in done.stderr
    done = cli(["run"], {"RISK_FREE_RATE": "4.5", "MARKET_DATA_HOME": str(tmp_path)})
    assert done.returncode == 2 and "RISK_FREE_RATE" in done.stderr


def test_unreachable_database_is_reported(tmp_path: Path) -> None:
    done = cli(
        ["run", "--symbols", "AAPL"],
        {"DATABASE_URL": "postgresql://x@127.0.0.1:1/none", "MARKET_DATA_HOME": str(tmp_path)},
    )
    assert done.returncode != 0
    assert "127.0.0.1" in (done.stderr + done.stdout) and "Traceback" not in done.stderr
