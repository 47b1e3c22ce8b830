"""Windows of complete minutes for the intraday refresh: what the sensor requests, and its cursor.

Pure calendar logic (no Dagster): given "now" and the cursor of the last requested window, which
minutes of which NYSE session are new. Exactly-once rests on two properties kept here: the cursor
is the end of the last window actually requested, and a window's `run_key` depends only on the
window, so re-planning the same moment yields the same key (see `market_assets.defs.intraday`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pandas as pd

from market_assets.domain.sessions import NEW_YORK, is_session, session_open_close

MAX_WINDOW_MINUTES = 390  # a whole regular session: a sensor that was down all day still catches up


@dataclass(frozen=True)
class IntradayWindow:
    """Minutes [start, end) of `session` whose bars are new to the refresh (UTC timestamps)."""

    session: date
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def run_key(self) -> str:
        """Deterministic per window: a re-evaluation of the same window cannot launch a second run."""
        lo, hi = self.start.tz_convert(NEW_YORK), self.end.tz_convert(NEW_YORK)
        return f"intraday:{self.session}:{lo:%H%M}-{hi:%H%M}"

    def cursor(self) -> str:
        return json.dumps({"session": self.session.isoformat(), "window_end": self.end.isoformat()})


def parse_cursor(cursor: str | None) -> tuple[date, pd.Timestamp] | None:
    """(session, window_end) of the last requested window; None for no or an unreadable cursor."""
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
        return date.fromisoformat(data["session"]), pd.Timestamp(data["window_end"]).tz_convert(UTC)
    except (ValueError, KeyError, TypeError):
        return None


def plan_window(
    now: datetime, cursor: str | None, *, max_window_minutes: int = MAX_WINDOW_MINUTES
) -> IntradayWindow | str:
    """The window to request at `now` given the cursor, or the reason there is none (a skip message)."""
    now_ts = pd.Timestamp(now).tz_convert(UTC)
    local = now_ts.tz_convert(NEW_YORK)
    day = local.date()
    if not is_session(day):
        return f"{day} ({local:%A}) is not an NYSE session (weekend or holiday)"
    open_, close = session_open_close(day)
    open_local, close_local = open_.tz_convert(NEW_YORK), close.tz_convert(NEW_YORK)
    if now_ts < open_ + timedelta(minutes=1):
        return (
            f"{local:%H:%M:%S} is before the first complete minute bar of {day} "
            f"(opens {open_local:%H:%M}, first window at {open_local + timedelta(minutes=1):%H:%M})"
        )
    end = min(now_ts.floor("min"), close)
    last = parse_cursor(cursor)
    start = last[1] if last is not None and last[0] == day else open_
    start = max(start, open_, end - timedelta(minutes=max_window_minutes))
    if start >= end:
        if now_ts >= close:
            return (
                f"market closed at {close_local:%H:%M} on {day}; its last window (to {close_local:%H:%M}) "
                "was already requested"
            )
        return f"no new complete minute since {start.tz_convert(NEW_YORK):%H:%M}"
    return IntradayWindow(session=day, start=start, end=end)


def fetch_start(session: date, window_start: pd.Timestamp, trailing_minutes: int) -> pd.Timestamp:
    """Where a refresh re-fetches from: `trailing_minutes` before the window (revised bars), not before the open."""
    open_, _ = session_open_close(session)
    return max(open_, window_start - timedelta(minutes=trailing_minutes))
