"""The Definitions object loads, with the schedule, the jobs and the blocking checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

from market_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_with_schedule_job_and_checks() -> None:
    repo = defs.get_repository_def()
    assert repo.get_schedule_def("after_close_schedule").cron_schedule == "30 13,16 * * 1-5"
    assert repo.get_job("daily_market_job") is not None
    checks = {(k.asset_key, k.name) for k in repo.asset_graph.asset_check_keys}
    assert (AssetKey("daily_bars"), "no_missing_sessions") in checks
    assert (AssetKey("daily_bars"), "bars_contract") in checks
    assert (AssetKey("intraday_bars"), "bars_contract") in checks
    assert (AssetKey("technical_indicators"), "rsi_in_range") in checks
    assert (AssetKey("option_greeks"), "iv_plausible") in checks
    assert (AssetKey("market_cache"), "cache_complete") in checks
    specs = {(s.asset_key.to_user_string(), s.name): s for a in defs.assets for s in getattr(a, "check_specs", [])}
    # a stored row that breaks the contract stops everything downstream ...
    assert specs[("daily_bars", "bars_contract")].blocking
    # ... a symbol without data does not: it is named in a failed ERROR check and the others proceed (issue 13, 9)
    assert not specs[("daily_bars", "no_missing_sessions")].blocking


def test_daily_job_covers_every_daily_asset_and_the_sensor_is_registered() -> None:
    repo = defs.get_repository_def()
    job_assets = {k.to_user_string() for k in repo.get_job("daily_market_job").asset_layer.selected_asset_keys}
    expected = {
        "daily_bars", "intraday_bars", "technical_indicators", "chart_patterns", "support_resistance_levels",
        "pivot_levels", "technicals_charts", "option_contracts", "option_chain", "option_greeks", "options_flow",
        "market_cache",
    }  # fmt: skip
    assert expected <= job_assets and "symbols" not in job_assets
    sensor = repo.get_sensor_def("intraday_refresh_sensor")
    assert sensor.job_name == "intraday_refresh_job"


def test_a_bad_setting_stops_the_code_location_from_loading_with_its_name() -> None:
    env = {**os.environ, "DIVIDEND_YIELDS": "AAPL=five"}
    done = subprocess.run(
        [sys.executable, "-c", "import market_assets.definitions"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "SettingsError" in done.stderr and "DIVIDEND_YIELDS" in done.stderr
