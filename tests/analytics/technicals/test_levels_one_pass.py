"""The one-pass support/resistance equals the per-session algorithm, row for row and bit for bit.

The reference is the algorithm the assets used before issue 10: for every session, slice the
history window and run :func:`frame.support_resistance` on it. It is kept (it is also the public
single-as-of function) and serves here as the oracle, on real bars (``/work/shared/data/real``
when present) and on simulated ones with holes (halts, new listings).
"""

from __future__ import annotations

import bisect
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from market_assets.analytics.technicals import frame as tx
from market_assets.analytics.technicals import levels as lv

REAL = Path("/work/shared/data/real/wiki_sample_2014.csv")
HISTORY = 557  # sessions of history per as-of, as the assets read (LOOKBACK_SESSIONS)


def _per_session(bars: pd.DataFrame, sessions: list[date], starts: list[date]) -> pd.DataFrame:
    """The previous per-session algorithm (the oracle)."""
    frames = []
    for day, start in zip(sessions, starts, strict=True):
        window = bars[(bars["session"] >= start) & (bars["session"] <= day)]
        if window.empty or not (window["session"] == day).any():
            continue
        levels = tx.support_resistance(window, pd.Timestamp(day, tz="America/New_York"))
        if len(levels):
            frames.append(levels.assign(as_of=day, session=day))
    out = pd.concat(frames, ignore_index=True)
    out["touches"] = out["touches"].astype("int64")
    for name in ("first_touch", "last_touch"):
        out[name] = pd.to_datetime(out[name], utc=True)
    return out


def _windows(bars: pd.DataFrame, first: date, last: date) -> tuple[list[date], list[date]]:
    days = sorted(set(bars["session"]))
    sessions = [d for d in days if first <= d <= last]
    starts = [days[max(bisect.bisect_left(days, d) - HISTORY, 0)] for d in sessions]
    return sessions, starts


def _assert_same(bars: pd.DataFrame, first: date, last: date) -> int:
    sessions, starts = _windows(bars, first, last)
    old = _per_session(bars, sessions, starts)
    new = tx.support_resistance_by_session(bars, sessions, starts)
    assert len(new) == len(old) > 0
    for name in ("symbol", "as_of", "kind", "level", "touches", "first_touch", "last_touch", "strength", "session"):
        assert (new[name].to_numpy() == old[name].to_numpy()).all(), name  # exact, no tolerance
    return len(new)


def _daily(symbols: list[str], seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2016-01-04", periods=n)
    frames = []
    for i, sym in enumerate(symbols):
        c = 20.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        o = np.round(c * (1 + rng.normal(0, 0.005, n)), 2)
        c = np.round(c, 2)
        h = np.round(np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.01, n))), 2)
        lo = np.round(np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.01, n))), 2)
        frames.append(
            pd.DataFrame({"symbol": sym, "day": days, "open": o, "high": h, "low": lo, "close": c, "volume": 1e6})
        )
    bars = pd.concat(frames, ignore_index=True)
    bars["ts"] = bars["day"].dt.tz_localize("America/New_York").dt.tz_convert("UTC")
    bars["session"] = bars["day"].dt.date
    return bars.drop(columns="day")


def test_equal_on_simulated_bars_with_holes() -> None:
    bars = _daily(["AAA", "BBB", "CCC"], seed=3, n=900)
    bars = bars.drop(index=bars.index[::41])  # halts
    late = (bars["symbol"] == "CCC") & (bars["session"] < date(2017, 6, 1))
    bars = bars[~late].reset_index(drop=True)  # a new listing
    assert _assert_same(bars, date(2016, 3, 1), date(2019, 6, 28)) > 1000


@pytest.mark.skipif(not REAL.exists(), reason="real data not on this machine")
def test_equal_on_real_bars() -> None:
    wiki = pd.read_csv(REAL).rename(columns={"ticker": "symbol"})
    wiki["symbol"] = wiki["symbol"].str.replace("_", ".")
    day = pd.to_datetime(wiki["date"])
    wiki["ts"] = day.dt.tz_localize("America/New_York").dt.tz_convert("UTC")
    wiki["session"] = day.dt.date
    bars = wiki[["symbol", "ts", "session", "open", "high", "low", "close", "volume"]]
    assert _assert_same(bars, date(2014, 1, 2), date(2014, 12, 31)) > 1000


def test_numpy_mean_replica_is_bit_exact() -> None:
    """The kernel's running means must be numpy's pairwise sums (a numpy upgrade could change them)."""
    rng = np.random.default_rng(11)
    for n in [*range(1, 400), 1000, 4099]:
        x = np.round(rng.random(n) * rng.choice([1.0, 100.0, 1e5]) + 3.0, int(rng.integers(0, 5)))
        assert lv.np_mean(x, n) == np.mean(list(x))


def test_no_history_gives_no_levels() -> None:
    bars = _daily(["AAA"], seed=1, n=30)
    assert tx.support_resistance_by_session(bars.iloc[0:0], [date(2016, 1, 4)], [date(2016, 1, 4)]).empty
    out = tx.support_resistance_by_session(bars, [date(2015, 1, 2)], [date(2014, 1, 2)])
    assert out.empty and list(out.columns) == tx.LEVEL_FRAME_COLUMNS


def test_pivots_in_one_pass_equal_per_symbol_pivots() -> None:
    """The vectorised pivots never borrow another symbol's bar (symbols of different lengths)."""
    bars = _daily(["AAA", "BBB", "CCC"], seed=5, n=300)
    bars = bars[~((bars["symbol"] == "AAA") & (bars["session"] < date(2016, 6, 1)))].sample(frac=1.0, random_state=2)
    got = tx.pivot_points(bars)
    for sym, part in got.groupby("symbol"):
        mine = bars[bars["symbol"] == sym].sort_values("ts")
        want = lv.floor_pivots(mine["high"].to_numpy(), mine["low"].to_numpy(), mine["close"].to_numpy())
        assert (part["ts"].to_numpy() == mine["ts"].to_numpy()).all()
        for name in ("pivot", "r1", "s1", "r2", "s2", "r3", "s3"):
            np.testing.assert_array_equal(part[name].to_numpy(), want[name].to_numpy())
