"""NYSE sessions from exchange_calendars: holidays, half days, open and close times.

Why a library: hand-kept holiday lists go stale and miss half days (e.g. the Friday after
Thanksgiving closes at 13:00), which would make "a missing daily bar" checks cry wolf.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

NEW_YORK = "America/New_York"


@lru_cache(maxsize=1)
def nyse() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS", start="2015-01-01")


def weekday_holidays(start: date) -> list[date]:
    """Weekdays from `start` to the end of the calendar on which NYSE is closed (holidays, closures).

    exchange_calendars knows about a year ahead; weekends are excluded separately by a cron rule.
    """
    cal = nyse()
    days = pd.date_range(max(pd.Timestamp(start), cal.first_session), cal.last_session, freq="B")
    return [d.date() for d in days.difference(cal.sessions)]


def sessions_between(start: date, end: date) -> list[date]:
    """NYSE sessions in [start, end] (inclusive)."""
    cal = nyse()
    lo = max(pd.Timestamp(start), cal.first_session)
    hi = min(pd.Timestamp(end), cal.last_session)
    if lo > hi:
        return []
    return [s.date() for s in cal.sessions_in_range(lo, hi)]


def is_session(day: date) -> bool:
    cal = nyse()
    ts = pd.Timestamp(day)
    return bool(cal.first_session <= ts <= cal.last_session and cal.is_session(ts))


def session_open_close(day: date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC open and close of a session (close is 13:00 New York on half days)."""
    cal = nyse()
    ts = pd.Timestamp(day)
    return cal.session_open(ts), cal.session_close(ts)


def session_of_daily_ts(ts: pd.Series) -> pd.Series:
    """The session a daily bar belongs to, or NaT if its ts is not midnight New York of a session."""
    local = pd.to_datetime(ts, utc=True).dt.tz_convert(NEW_YORK)
    midnight = local.dt.normalize()
    days = midnight.dt.tz_localize(None)
    cal = nyse()
    in_range = (days >= cal.first_session) & (days <= cal.last_session)
    valid_sessions = cal.sessions
    ok = (local == midnight) & in_range & days.isin(valid_sessions)
    return days.where(ok)


def minute_in_session(ts: pd.Series) -> pd.Series:
    """True where a minute bar's start lies in [open, close) of its NYSE session."""
    utc = pd.to_datetime(ts, utc=True)
    days = utc.dt.tz_convert(NEW_YORK).dt.normalize().dt.tz_localize(None)
    cal = nyse()
    schedule = cal.schedule
    opens = pd.Series(schedule["open"].to_numpy(), index=schedule.index)
    closes = pd.Series(schedule["close"].to_numpy(), index=schedule.index)
    day_open = days.map(opens)
    day_close = days.map(closes)
    result = (utc >= day_open) & (utc < day_close)
    return result.fillna(False).astype(bool)


def session_of_minute_ts(ts: pd.Series) -> pd.Series:
    """Session date (New York calendar date) of intraday timestamps."""
    return pd.to_datetime(ts, utc=True).dt.tz_convert(NEW_YORK).dt.date


def last_completed_session(now: datetime) -> date | None:
    """The latest session whose close is at or before `now` (tz-aware)."""
    cal = nyse()
    now_ts = pd.Timestamp(now).tz_convert("UTC")
    closes = cal.schedule["close"]
    done = closes[closes <= now_ts]
    return None if done.empty else done.index[-1].date()


def session_before(first: date, sessions: int) -> date:
    """The NYSE session `sessions` sessions before the first session on or after `first`.

    Counted on the exchange calendar so that a holiday-rich stretch still yields `sessions` bars
    of history; clamped to the calendar's first session.
    """
    cal_sessions = nyse().sessions
    index = int(cal_sessions.searchsorted(pd.Timestamp(first)))
    return cal_sessions[max(index - sessions, 0)].date()


def after_close_due(now: pd.Timestamp, delay: timedelta) -> date | str:
    """The session whose run is due at `now` (within a minute of its close + `delay`), or why none is.

    Half days close at 13:00, so a schedule ticking after both possible closes asks this at each
    tick and only the tick matching the day's real close gets a session back.
    """
    local = now.tz_convert(NEW_YORK)
    day = local.date()
    if not is_session(day):
        return f"{day} is not an NYSE session (weekend or holiday)"
    _, close = session_open_close(day)
    close_local = close.tz_convert(NEW_YORK)
    due = close_local + delay
    if abs(local - due) > timedelta(minutes=1):
        return f"{day} closes at {close_local:%H:%M}; its run is due at {due:%H:%M}"
    return day


def as_days(values: pd.Series) -> np.ndarray:
    """Dates (``datetime.date`` objects, strings or naive timestamps) as ``datetime64[D]``, NaT where missing.

    Why not ``pd.to_datetime`` on the column: a frame of support/resistance rows for a year of 500 symbols holds
    1.5 M ``date`` objects but only ~252 distinct days; parsing each object cost ~10 s per such column. The
    distinct values are converted once and spread back by their codes.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values).to_numpy(dtype="datetime64[D]")
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    days = np.append(pd.to_datetime(pd.Series(uniques, dtype=object)).to_numpy(dtype="datetime64[D]"),
                     np.datetime64("NaT", "D"))  # fmt: skip
    return days[codes]  # code -1 (missing) picks the trailing NaT
