"""`market-data run` as a user runs it: a subprocess, the real servers, the in-process simulator."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from market_assets.warehouse.resource import WarehouseResource, to_conninfo


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "market_assets.runtime.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_materializes_the_graph_and_prints_a_summary(
    warehouse: WarehouseResource, database_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`warehouse` empties every table first: `status` counts whole tables, which other tests share."""
    started = time.time()
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
    assert "] symbols: seed the universe" in out and "] daily bars 2026-10-01 .. 2026-10-30" in out
    assert "] the last session 2026-10-30: daily_market_job (bars, technicals, options, cache)" in out
    assert "SIMULATED" in out and "feed           simulator" in out
    assert "result: SUCCESS" in out and "checks:" in out and " 0 failed" in out
    assert "market.bars_daily" in out and "market.quarantine" in out and "market.option_greeks" in out
    with psycopg.connect(to_conninfo(database_url)) as conn:
        n = conn.execute(
            "SELECT count(*) FROM market.bars_daily WHERE session BETWEEN '2026-10-01' AND '2026-10-30'"
        ).fetchone()[0]
        minutes = conn.execute("SELECT count(DISTINCT session) FROM market.bars_minute").fetchone()[0]
        feeds = conn.execute(
            "SELECT array_agg(DISTINCT feed) FROM market.bars_daily WHERE session BETWEEN '2026-10-01' AND '2026-10-30'"
        ).fetchone()[0]
        vwap = conn.execute(
            "SELECT count(vwap_intraday) FROM market.indicators_daily WHERE session = '2026-10-30'"
        ).fetchone()[0]
    assert n == 2 * 22  # October 2026 has 22 sessions in 1..30
    assert minutes >= 1
    assert feeds == ["simulator"]  # simulated data is stored as such
    assert vwap == 2  # minute bars loaded before the technicals that read them
    # the runs are in Dagster's own storage, so the UI shows them, under their named jobs, re-executable
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()
    from dagster import DagsterInstance

    from market_assets.config import load_settings
    from market_assets.runtime.services import resolve_endpoints

    storage = resolve_endpoints(load_settings({**os.environ, **env})).dagster_storage_url
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage)
    with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        # Dagster's storage is shared by the session's tests: this run's runs are those started after this test began
        runs = [r.dagster_run for r in instance.get_run_records() if r.create_timestamp.timestamp() >= started]
        jobs = sorted(r.job_name for r in runs)
        origins = {r.remote_job_origin.location_name for r in runs if r.remote_job_origin}
    assert sorted(set(jobs)) == ["daily_bars_job", "daily_market_job", "symbols_job", "technicals_job"]
    assert origins == {"market_assets.definitions"} and all(r.status.value == "SUCCESS" for r in runs)

    status = cli(["status"], env)
    assert status.returncode == 0, status.stdout + status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip().startswith("market.")}
    assert set(lines) >= {"market.bars_daily", "market.indicators_daily", "market.option_greeks"}
    daily = lines["market.bars_daily"].split()
    assert daily[1] == "2026-10-30" and daily[2] == str(2 * 22) and daily[3] == "0"
    assert "daily_market_job" in lines["market.bars_daily"] and lines["market.bars_daily"].endswith("SUCCESS")
    assert "after_close_schedule" in status.stdout and "on (default)" in status.stdout
    assert "default_automation_condition_sensor" in status.stdout
    assert "XDG_RUNTIME_DIR" not in done.stderr + status.stderr


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
    # exit 3 (retry later) with the cause on stderr; the URL alone proves nothing (the CLI echoes it at start-up)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "cannot reach the PostgreSQL server of DATABASE_URL" in done.stderr
    assert "127.0.0.1" in done.stderr and "Traceback" not in done.stderr


CLEARED = {name: "" for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "ALPACA_DATA_URL", "ALPACA_TRADING_URL")}


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["run", "--symbols", ""], {}, "--symbols"),
        (["run"], {"MARKET_SYMBOLS": ""}, "MARKET_SYMBOLS"),
        (["run", "--start", "2030-01-02", "--end", "2030-01-31"], {}, "--end"),
        (["run", "--start", "2026-10-03", "--end", "2026-10-04"], {}, "no NYSE session"),  # a weekend
        (["run", "--intraday-days", "-3"], {}, "--intraday-days"),
        (["run"], {"ALPACA_HTTP_TIMEOUT_SECONDS": "nan"}, "ALPACA_HTTP_TIMEOUT_SECONDS"),
        (["run"], {"ALPACA_DATA_URL": "http://127.0.0.1:9"}, "ALPACA_DATA_URL"),
        (["run"], {"MARKET_DATA_HOME": "/tmp/" + "d" * 100}, "MARKET_DATA_HOME"),
    ],
)
def test_bad_input_exits_2_naming_it_before_anything_is_created(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    """Issue 13, item 10: each of these was accepted (or failed late, exit 1, or with a traceback)."""
    home = tmp_path / "home"
    done = cli(args, {**CLEARED, "MARKET_DATA_HOME": str(home), "REDIS_URL": "", **env})
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
    assert not home.exists() and not Path(env.get("MARKET_DATA_HOME", home)).exists()  # nothing created


def test_a_database_url_naming_a_missing_database_creates_nothing(database_url: str, tmp_path: Path) -> None:
    parts = urlsplit(database_url)
    missing = urlunsplit((parts.scheme, parts.netloc, "/no_such_db_i13", parts.query, ""))
    done = cli(["run", "--symbols", "AAPL"], {**CLEARED, "DATABASE_URL": missing, "MARKET_DATA_HOME": str(tmp_path)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "DATABASE_URL" in done.stderr and "no_such_db_i13" in done.stderr
    with psycopg.connect(to_conninfo(database_url)) as conn:
        created = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'no_such_db_i13%'").fetchone()[0]
    assert created == 0
