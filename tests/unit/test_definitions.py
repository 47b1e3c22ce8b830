"""The Definitions object loads, with the schedule, the jobs and the blocking checks."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey

from market_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_load_with_schedule_job_and_checks() -> None:
    repo = defs.get_repository_def()
    assert repo.get_schedule_def("after_close_schedule").cron_schedule == "30 13,16 * * 1-5"
    assert repo.get_job("daily_market_job") is not None
    checks = {(k.asset_key, k.name) for k in repo.asset_graph.asset_check_keys}
    assert (AssetKey("daily_bars"), "no_missing_sessions") in checks
    assert (AssetKey("daily_bars"), "bars_contract") in checks
    assert (AssetKey("intraday_bars"), "bars_contract") in checks
    spec = next(s for a in defs.assets for s in getattr(a, "check_specs", []) if s.name == "no_missing_sessions")
    assert spec.blocking


def test_instance_yaml_shipped_in_the_package_is_the_documented_one() -> None:
    assert (ROOT / "dagster.yaml").read_text() == (ROOT / "market_assets" / "dagster.yaml").read_text()
