"""A past window with real-key semantics (an Alpaca-compatible server that serves option snapshots only as of
now): bars, corporate actions and adjusted technicals succeed, the options step is skipped with its reason, and
the run exits 0."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import psycopg

from alpaca_sim.server import SimulatorServer
from market_assets.runtime.cli import options_skip_reason
from market_assets.warehouse.resource import to_conninfo
from tests.runtime.test_cli import cli


def test_skip_reason_only_for_a_window_ending_before_the_latest_session() -> None:
    from datetime import UTC, datetime

    now = datetime(2024, 6, 12, 22, 0, tzinfo=UTC)  # after Wednesday's close
    assert options_skip_reason(date(2024, 6, 12), serves_history=False, now=now) is None
    assert options_skip_reason(date(2024, 6, 11), serves_history=True, now=now) is None
    reason = options_skip_reason(date(2024, 6, 11), serves_history=False, now=now)
    assert reason is not None and "only as of now" in reason and "2024-06-12" in reason


def test_past_window_skips_options_and_succeeds(database_url: str, redis_url: str, tmp_path: Path) -> None:
    with SimulatorServer() as sim:
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "MARKET_DATA_HOME": str(tmp_path),
            "ALPACA_API_KEY": sim.api_key,
            "ALPACA_SECRET_KEY": sim.secret_key,
            "ALPACA_DATA_URL": sim.base_url,  # a plain Alpaca resource: snapshots as of now only, like Alpaca
            "ALPACA_TRADING_URL": sim.base_url,
            "DAGSTER_HOME": "",
            "DAGSTER_POSTGRES_URL": "",
        }
        args = ["run", "--symbols", "AAPL", "--start", "2020-08-03", "--end", "2020-10-01", "--intraday-days", "0"]
        done = cli(args, env)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "skipped: Alpaca serves option snapshots only as of now; the window ends 2020-10-01" in out
    assert "result: SUCCESS" in out
    with psycopg.connect(to_conninfo(database_url)) as conn:
        split = conn.execute(
            "SELECT new_rate, old_rate FROM market.corporate_actions WHERE symbol = 'AAPL' AND type = 'forward_split'"
            " AND ex_date = '2020-08-31'"
        ).fetchone()
        worst = conn.execute(
            "SELECT min(return_1d) FROM market.indicators_daily WHERE symbol = 'AAPL'"
            " AND session BETWEEN '2020-08-03' AND '2020-10-01'"
        ).fetchone()[0]
    assert split == (4.0, 1.0)
    assert worst > -0.2  # adjusted: the split is not a 75 % crash
