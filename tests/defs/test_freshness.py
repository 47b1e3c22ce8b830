"""Freshness checks: the last session loaded against the last completed NYSE session (half days respected)."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest
from dagster import Definitions

from market_assets.defs.freshness import FRESH_TABLES, freshness_checks, freshness_result
from market_assets.warehouse import tables
from market_assets.warehouse.resource import WarehouseResource


def ny(local: str) -> datetime:
    return pd.Timestamp(local, tz="America/New_York").to_pydatetime()


@pytest.mark.parametrize(
    ("now", "loaded", "fresh"),
    [
        ("2024-11-26 19:00", date(2024, 11, 26), True),  # loaded the day's session after the close
        ("2024-11-26 19:00", date(2024, 11, 25), False),  # the run after the close did not happen
        ("2024-11-26 17:00", date(2024, 11, 25), True),  # within the grace after the 16:00 close
        ("2024-11-29 15:30", date(2024, 11, 29), True),  # half day: closed 13:00, loaded
        ("2024-11-29 15:30", date(2024, 11, 27), False),  # half day: closed 13:00, not loaded 2.5 h later
        ("2024-11-30 12:00", date(2024, 11, 29), True),  # Saturday: Friday's (half-day) session is the last
        ("2024-11-28 12:00", date(2024, 11, 27), True),  # Thanksgiving: no session, Wednesday is the last
        ("2024-11-26 19:00", None, False),  # empty table
    ],
)
def test_freshness_follows_the_nyse_calendar(now: str, loaded: date | None, fresh: bool) -> None:
    result = freshness_result(tables.BARS_DAILY, loaded, ny(now))
    assert result.passed is fresh
    assert result.metadata["last_session_loaded"].value == (str(loaded) if loaded else "none")


def test_checks_read_the_warehouse(warehouse: WarehouseResource) -> None:
    """Through Dagster and a real (empty) warehouse: every daily table is stale, visibly."""
    defs = Definitions(asset_checks=freshness_checks, resources={"warehouse": warehouse})
    job = defs.get_implicit_global_asset_job_def()
    run = job.execute_in_process(raise_on_error=False)
    evaluations = run.get_asset_check_evaluations()
    assert {e.asset_key.to_user_string() for e in evaluations} == set(FRESH_TABLES)
    assert not any(e.passed for e in evaluations)
    assert all(e.metadata["last_session_loaded"].value == "none" for e in evaluations)
