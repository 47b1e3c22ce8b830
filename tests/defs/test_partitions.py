"""Partitions are NYSE sessions: no weekends, no exchange holidays, half days kept, keys YYYY-MM-DD."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
from dagster import PartitionKeyRange

from market_assets.defs.partitions import daily_partitions
from market_assets.defs.schedules import evaluate_after_close
from market_assets.domain.sessions import sessions_between

NOW = datetime(2026, 11, 30, 12, 0)


def test_keys_are_exactly_the_sessions() -> None:
    keys = daily_partitions.get_partition_keys_in_range(PartitionKeyRange("2024-01-02", "2024-12-31"))
    assert keys == [d.isoformat() for d in sessions_between(date(2024, 1, 2), date(2024, 12, 31))]
    assert len(keys) == 252
    assert "2024-07-04" not in keys and "2024-12-25" not in keys and "2024-03-29" not in keys  # holidays
    assert "2024-07-06" not in keys  # a Saturday
    assert "2024-11-29" in keys and "2024-07-03" in keys  # half days are sessions


def test_a_session_window_is_its_own_day() -> None:
    window = daily_partitions.time_window_for_partition_key("2024-06-07")  # a Friday
    assert (window.start.date(), window.end.date()) == (date(2024, 6, 7), date(2024, 6, 8))


def test_the_after_close_run_requests_an_existing_partition() -> None:
    tick = pd.Timestamp("2026-11-27 13:30", tz="America/New_York")  # a half day, the evening of the session
    request = evaluate_after_close(tick)
    keys = daily_partitions.get_partition_keys(current_time=tick.to_pydatetime())
    assert request.partition_key == "2026-11-27" and request.partition_key in keys


def test_no_weekend_or_holiday_anywhere() -> None:
    keys = daily_partitions.get_partition_keys(current_time=NOW)
    sessions = {d.isoformat() for d in sessions_between(date(2015, 1, 2), date(2026, 11, 30))}
    assert set(keys) == sessions
