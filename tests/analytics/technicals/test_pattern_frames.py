"""Frame-level patterns (one compiled pass over every symbol) against independent references.

TA-Lib per symbol for the candles, on a block whose symbols differ in length and have holes; hand-built
chart patterns for the rows of a window and their stored JSON; Python's ``round``, ``json.dumps`` and
``Timestamp.isoformat`` for the vectorised helpers that stand in for them.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

talib = pytest.importorskip("talib")

from market_assets.analytics.technicals import frame as tx  # noqa: E402
from market_assets.analytics.technicals import patterns as pt  # noqa: E402
from market_assets.analytics.technicals import rows as rw  # noqa: E402
from tests.analytics.technicals.talib_candles import TALIB  # noqa: E402

DAYS = pd.bdate_range("2019-01-01", periods=700)


def _series(rng: np.random.Generator, n: int, scale: float) -> dict[str, np.ndarray]:
    c = scale * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
    o = np.concatenate([c[:1], c[:-1]]) * (1 + rng.normal(0, 0.006, n))
    small = rng.random(n) < 0.15  # dojis and stars
    o = np.where(small, c * (1 + rng.normal(0, 0.0003, n)), o)
    h = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.006, n)))
    lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.006, n)))
    return {"open": o, "high": h, "low": lo, "close": c, "volume": rng.integers(1000, 9000, n).astype(float)}


def _frame(symbol: str, days: pd.DatetimeIndex, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    ts = days.tz_localize("America/New_York").tz_convert("UTC")
    return pd.DataFrame({"symbol": symbol, "ts": ts, "session": days.date, **cols})


def _hostile_block(seed: int = 4) -> pd.DataFrame:
    """Symbols of every length around the candle lookbacks, halts, a late listing, constant prices,
    NaN volume; rows shuffled."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, n in enumerate([1, 2, 3, 10, 11, 12, 13, 14, 40, 300, 700]):
        parts.append(_frame(f"L{k:02d}", DAYS[-n:], _series(rng, n, 50.0 * (k + 1))))
    halted = _frame("HALT", DAYS, _series(rng, len(DAYS), 80.0))
    parts.append(halted[rng.random(len(DAYS)) > 0.15])  # sessions without a bar
    flat = {name: np.full(300, 25.0) for name in ("open", "high", "low", "close")}
    parts.append(_frame("FLAT", DAYS[:300], {**flat, "volume": np.full(300, 100.0)}))
    novol = _frame("NOVOL", DAYS, _series(rng, len(DAYS), 30.0))
    novol.loc[rng.random(len(DAYS)) < 0.1, "volume"] = np.nan
    parts.append(novol)
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_frame_candles_equal_talib_per_symbol() -> None:
    bars = _hostile_block()
    found = tx.detect_patterns(bars)
    checked = 0
    for symbol, sym_bars in bars.groupby("symbol"):
        sym_bars = sym_bars.sort_values("ts")
        arrays = [sym_bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close")]
        for name, fn in TALIB.items():
            ref = fn(*arrays)
            got = found[(found["symbol"] == symbol) & (found["pattern"] == name)]
            hits = np.flatnonzero(ref)
            assert list(got["ts"]) == list(sym_bars["ts"].iloc[hits]), (symbol, name)
            assert [d["talib_value"] for d in got["details"]] == ref[hits].tolist(), (symbol, name)
            assert list(got["strength"]) == (np.abs(ref[hits]) / 100.0).tolist()
            expected = ["neutral" if name == "cdl_doji" else ("bullish" if v > 0 else "bearish") for v in ref[hits]]
            assert list(got["direction"]) == expected
            checked += len(hits)
    assert checked > 500
    assert not found[found["symbol"].isin(["L00", "L01", "L02"])].shape[0]  # shorter than every window


def test_detect_patterns_does_not_depend_on_row_order() -> None:
    bars = _hostile_block()
    a = tx.detect_patterns(bars)
    b = tx.detect_patterns(bars.sort_values(["symbol", "ts"]).reset_index(drop=True))
    assert a.drop(columns="details").equals(b.drop(columns="details"))
    assert a["details"].tolist() == b["details"].tolist()


def _swingy(peaks: list[tuple[int, float]], n: int, base: float = 100.0) -> np.ndarray:
    """Piecewise-linear close path through (index, price) knots."""
    idx = [0] + [p[0] for p in peaks] + [n - 1]
    val = [base] + [p[1] for p in peaks] + [peaks[-1][1]]
    return np.interp(np.arange(n), idx, val)


def _chart_bars(close: np.ndarray, days: pd.DatetimeIndex, symbol: str = "DT") -> pd.DataFrame:
    cols = {"open": close, "high": close * 1.002, "low": close * 0.998, "close": close}
    return _frame(symbol, days, {**cols, "volume": np.full(close.size, 1e4)})


def test_pattern_rows_one_session_double_top() -> None:
    """A double top (peaks 120 at bar 230 and 120.5 at bar 270, neckline the 105 low at bar 250) stored on the
    session of the first close below the neckline; the session before stores nothing of it."""
    n = 320
    close = _swingy([(230, 120), (250, 105), (270, 120.5), (290, 95)], n)
    days = DAYS[-n:]
    bars = pd.concat([_chart_bars(close, days), _chart_bars(close[::-1].copy(), days, "UP")], ignore_index=True)
    neckline = 105 * 0.998
    done = next(i for i in range(275, n) if close[i] < neckline)  # the definition, read off the path
    day = days[done].date()
    found, recent = rw.pattern_rows(bars, day, day, since=days[done - 10].date())
    top = found[found["pattern"] == "double_top"]
    assert list(top["symbol"]) == ["DT"] and list(top["session"]) == [day]
    expected = {
        "first_peak": round(120 * 1.002, 10),
        "first_peak_ts": _frame("DT", days, {})["ts"].iloc[230].isoformat(),
        "neckline": round(neckline, 10),
        "second_peak": round(120.5 * 1.002, 10),
        "second_peak_ts": _frame("DT", days, {})["ts"].iloc[270].isoformat(),
    }
    assert top["details"].iloc[0] == json.dumps(expected)  # keys sorted, as stored
    assert (found["session"] == day).all()
    assert (recent["session"] > days[done - 10].date()).all() and (recent["pattern"] == "double_top").any()
    assert json.loads(top["details"].iloc[0]) == recent.loc[recent["pattern"] == "double_top", "details"].iloc[0]
    before = days[done - 1].date()
    earlier, _ = rw.pattern_rows(bars, before, before, since=before)
    assert not (earlier["pattern"] == "double_top").any()


def test_two_hits_on_one_bar_are_stored_weakest_first() -> None:
    """Peaks 121, 121.05, 119 (bars 20, 40, 60) with lows 100 and 110 between, then a gap down at bar 70:
    both peak pairs complete on that bar.  The writer keeps the last row per (symbol, ts, pattern), so
    the strongest (the nearly equal first pair) must come last."""
    close = _swingy([(20, 121), (30, 100), (40, 121.05), (50, 110), (60, 119.0), (69, 112), (70, 95)], 100)
    days = DAYS[:100]
    bars = _chart_bars(close, days)
    day = days[70].date()
    found, _ = rw.pattern_rows(bars, day, day, since=day)
    tops = found[found["pattern"] == "double_top"]
    necklines = [json.loads(d)["neckline"] for d in tops["details"]]
    assert necklines == [round(110 * 0.998, 10), round(100 * 0.998, 10)]  # the 121/121.05 pair last
    assert tops["strength"].is_monotonic_increasing and tops["strength"].iloc[0] < tops["strength"].iloc[1]
    listed = tx.detect_patterns(bars)
    listed = listed[listed["pattern"] == "double_top"]
    assert [d["neckline"] for d in listed["details"]] == [round(100 * 0.998, 10), round(110 * 0.998, 10)]


def test_breakout_without_volume_is_stored_with_null_relative_volume() -> None:
    close = np.concatenate([100 + np.sin(np.arange(60)), [105.0]])
    days = DAYS[: close.size]
    bars = _chart_bars(close, days)
    bars.loc[bars.index[-25:], "volume"] = np.nan  # no relative volume on the breakout bar
    day = days[-1].date()
    found, _ = rw.pattern_rows(bars, day, day, since=day)
    row = found[found["pattern"] == "breakout_resistance"]
    assert len(row) == 1 and row["strength"].iloc[0] == 0.0
    level = round(float(np.max(close[-21:-1] * 1.002)), 10)
    assert row["details"].iloc[0] == f'{{"level": {level!r}, "relative_volume": null, "window": 20}}'


def test_pattern_rows_of_no_bars_and_of_a_window_without_hits() -> None:
    empty, recent = rw.pattern_rows(pd.DataFrame(), date(2024, 1, 2), date(2024, 1, 2), since=date(2024, 1, 1))
    assert empty.empty and recent.empty and list(empty.columns) == list(rw.PATTERN_ROW_COLUMNS)
    bars = _hostile_block()
    found, recent = rw.pattern_rows(bars, date(1990, 1, 2), date(1990, 1, 3), since=date(2100, 1, 1))
    assert found.empty and recent.empty


def test_details_texts_are_details_json() -> None:
    """The column-wise JSON equals json.dumps of each hit's details (sort_keys, NaN as null)."""
    bars = _hostile_block(7)
    hits = tx.pattern_hits(bars)
    texts = rw.details_texts(hits)
    assert texts == [rw.details_json(d) for d in hits.details()]
    assert {name for name in hits.patterns()} >= {"double_top", "breakout_resistance", "macd_bullish_cross"}


def test_round10_is_pythons_round() -> None:
    rng = np.random.default_rng(11)
    x = np.concatenate(
        [
            rng.normal(0, 1, 20000) * 10.0 ** rng.integers(-14, 6, 20000),
            (rng.integers(-(10**12), 10**12, 20000) + 0.5) / 1e10,  # near decimal ties
            (2 * rng.integers(-(10**8), 10**8, 20000) + 1) / 2048.0,  # exact decimal ties: half-even
            np.nextafter((rng.integers(-(10**9), 10**9, 20000) + 0.5) / 1e10, np.inf),
            [0.0, -0.0, -1e-12, 5e-11, -5e-11, 1.5e-10, np.nan, np.inf, -np.inf, 4.6e5, -7e5, 1e300, 5e-324],
        ]
    )
    got = pt.round10(x)
    assert [repr(v) for v in got] == [repr(round(v, 10)) for v in x.tolist()]  # repr: -0.0 and nan too


def test_isoformat_is_timestamp_isoformat() -> None:
    cases = [
        pd.date_range("2015-01-02 05:00", periods=500, freq="B", tz="UTC"),
        pd.date_range("2015-01-02 05:00", periods=50, freq="B", tz="UTC").as_unit("us"),
        pd.date_range("2015-01-02 05:00:00.25", periods=5, freq="s", tz="UTC"),
        pd.date_range("2015-01-02", periods=50, freq="D", tz="America/New_York"),
    ]
    for stamps in cases:
        assert tx.isoformat(stamps) == [t.isoformat() for t in stamps]
