"""The after-close schedule over real NYSE days: full days, half days, holidays, weekends."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import RunRequest, SkipReason

from market_assets.defs.schedules import evaluate_after_close


def tick(local: str) -> pd.Timestamp:
    return pd.Timestamp(local, tz="America/New_York")


@pytest.mark.parametrize(
    ("when", "partition"),
    [
        ("2024-11-26 16:30", "2024-11-26"),  # an ordinary Tuesday
        ("2024-11-29 13:30", "2024-11-29"),  # day after Thanksgiving closes at 13:00
        ("2024-12-24 13:30", "2024-12-24"),  # Christmas Eve half day
        ("2024-07-03 13:30", "2024-07-03"),  # Independence Day eve half day
    ],
)
def test_runs_once_after_the_real_close(when: str, partition: str) -> None:
    decision = evaluate_after_close(tick(when))
    assert isinstance(decision, RunRequest)
    assert decision.partition_key == partition
    assert decision.run_key == f"daily-{partition}"


@pytest.mark.parametrize(
    ("when", "why"),
    [
        ("2024-11-26 13:30", "closes at 16:00"),  # full day: the early tick skips
        ("2024-11-29 16:30", "closes at 13:00"),  # half day: the late tick skips
        ("2024-11-28 16:30", "not an NYSE session"),  # Thanksgiving
        ("2024-12-25 13:30", "not an NYSE session"),  # Christmas
        ("2024-11-30 16:30", "not an NYSE session"),  # Saturday
    ],
)
def test_skips_with_a_reason(when: str, why: str) -> None:
    decision = evaluate_after_close(tick(when))
    assert isinstance(decision, SkipReason)
    assert why in (decision.skip_message or "")
