"""Candlesticks against TA-Lib; chart patterns, levels and pivots on constructed series."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

talib = pytest.importorskip("talib")

from market_assets.analytics.technicals import frame as tx  # noqa: E402
from market_assets.analytics.technicals import levels as lv  # noqa: E402
from market_assets.analytics.technicals import patterns as pt  # noqa: E402
from tests.analytics.technicals.talib_candles import TALIB  # noqa: E402


def _candles(seed: int, scale: float, rows: int = 20, t: int = 1500):
    rng = np.random.default_rng(seed)
    c = scale * np.exp(np.cumsum(rng.normal(0, 0.015, (rows, t)), axis=1))
    o = np.concatenate([c[:, :1], c[:, :-1]], axis=1) * (1 + rng.normal(0, 0.006, (rows, t)))
    small = rng.random((rows, t)) < 0.15  # plenty of dojis / small bodies
    o = np.where(small, c * (1 + rng.normal(0, 0.0003, (rows, t))), o)
    h = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.006, (rows, t))))
    lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.006, (rows, t))))
    return o, h, lo, c


@pytest.mark.parametrize(("seed", "scale"), [(0, 1.0), (1, 100.0), (2, 5000.0)])
def test_candles_agree_with_talib(seed: int, scale: float) -> None:
    o, h, lo, c = _candles(seed, scale)
    for name, fn in pt.CANDLE_FUNCTIONS.items():
        mine = fn(o, h, lo, c)
        ref = np.array([TALIB[name](o[i], h[i], lo[i], c[i]) for i in range(o.shape[0])])
        assert (mine == ref).mean() == 1.0, name
        if name not in ("cdl_3_white_soldiers", "cdl_3_black_crows"):
            assert (ref != 0).sum() > 0, name  # the data exercises the pattern


def test_constructed_candles() -> None:
    n = 20
    o = np.linspace(100, 90, n)
    c = o - 1.0  # a downtrend of black candles
    h = o + 0.2
    lo = c - 0.2
    # bar 19: bullish engulfing of bar 18
    o[19], c[19] = c[18] - 0.1, o[18] + 0.1
    h[19], lo[19] = c[19] + 0.1, o[19] - 0.1
    eng = pt.cdlengulfing(o, h, lo, c)
    assert eng[19] == 100 and (eng[:19] == 0).all()
    np.testing.assert_array_equal(eng, talib.CDLENGULFING(o, h, lo, c))
    doji_o = o.copy()
    doji_c = c.copy()
    doji_c[15] = doji_o[15]  # zero body
    d = pt.cdldoji(doji_o, h, lo, doji_c)
    assert d[15] == 100 and d[14] == 0


def _swingy(peaks: list[tuple[int, float]], n: int, base: float = 100.0) -> np.ndarray:
    """Piecewise-linear close path through (index, price) knots."""
    idx = [0] + [p[0] for p in peaks] + [n - 1]
    val = [base] + [p[1] for p in peaks] + [peaks[-1][1]]
    return np.interp(np.arange(n), idx, val)


def test_double_top_found_and_absent() -> None:
    c = _swingy([(30, 120), (50, 105), (70, 120.5), (90, 95)], 120)
    h, lo = c * 1.002, c * 0.998
    hits = pt.double_tops_bottoms(h, lo, c)
    tops = [x for x in hits if x.pattern == "double_top"]
    assert len(tops) == 1
    hit = tops[0]
    assert hit.direction == "bearish" and 0 < hit.strength <= 1
    assert c[hit.index] < hit.details["neckline"] <= c[hit.index - 1]
    assert hit.index > 70 + 5  # not before the second peak is confirmed
    # unequal peaks: no double top
    c2 = _swingy([(30, 120), (50, 105), (70, 135), (90, 95)], 120)
    assert not [x for x in pt.double_tops_bottoms(c2 * 1.002, c2 * 0.998, c2) if x.pattern == "double_top"]


def test_double_bottom_mirror() -> None:
    c = _swingy([(30, 80), (50, 95), (70, 80.5), (90, 105)], 120)
    hits = [x for x in pt.double_tops_bottoms(c * 1.002, c * 0.998, c) if x.pattern == "double_bottom"]
    assert len(hits) == 1 and hits[0].direction == "bullish"


def test_head_and_shoulders() -> None:
    c = _swingy([(20, 110), (32, 100), (45, 125), (58, 101), (70, 111), (90, 90)], 110)
    hits = pt.head_and_shoulders(c * 1.002, c * 0.998, c)
    hs = [x for x in hits if x.pattern == "head_and_shoulders"]
    assert len(hs) == 1
    assert hs[0].direction == "bearish" and 0 < hs[0].strength <= 1
    assert hs[0].index > 75 and c[hs[0].index] < hs[0].details["neckline_at_break"]
    inv = _swingy([(20, 90), (32, 100), (45, 75), (58, 99), (70, 89), (90, 110)], 110)
    ihs = [x for x in pt.head_and_shoulders(inv * 1.002, inv * 0.998, inv) if x.pattern == "inverse_head_and_shoulders"]
    assert len(ihs) == 1 and ihs[0].direction == "bullish"
    # no head: three equal peaks is not H&S
    flat = _swingy([(20, 110), (32, 100), (45, 110), (58, 100), (70, 110), (90, 90)], 110)
    assert not [x for x in pt.head_and_shoulders(flat * 1.002, flat * 0.998, flat) if x.pattern == "head_and_shoulders"]


def test_crosses_and_signals() -> None:
    fast = np.array([1.0, 2.0, 3.0, 4.0, 3.0, 2.0])
    slow = np.full(6, 2.5)
    hits = pt.ma_crosses(fast, slow)
    assert [(x.index, x.pattern) for x in hits] == [(2, "golden_cross"), (5, "death_cross")]
    r = np.array([50, 65, 72, 80, 69, 40, 25, 20, 35], dtype=float)
    sig = {(x.index, x.pattern) for x in pt.rsi_signals(r)}
    assert sig == {
        (2, "rsi_overbought_entry"),
        (4, "rsi_overbought_exit"),
        (6, "rsi_oversold_entry"),
        (8, "rsi_oversold_exit"),
    }
    m = np.array([-1.0, -0.5, 0.5, 1.0, 0.2])
    s = np.array([0.0, 0.0, 0.0, 0.5, 0.5])
    mc = pt.macd_crosses(m, s, np.full(5, 100.0))
    assert [(x.index, x.direction) for x in mc] == [(2, "bullish"), (4, "bearish")]


def test_breakout_with_volume_strength() -> None:
    c = np.concatenate([100 + np.sin(np.arange(40)), [105.0, 106.0]])
    h, lo = c + 0.5, c - 0.5
    rv = np.ones_like(c)
    rv[40] = 3.0
    hits = pt.breakouts(h, lo, c, rv, 20)
    up = [x for x in hits if x.pattern == "breakout_resistance"]
    assert [x.index for x in up] == [40]  # bar 41 is already above: no repeat
    assert up[0].strength == 1.0 and up[0].details["relative_volume"] == 3.0


def test_swing_points_and_levels() -> None:
    c = _swingy([(10, 110), (20, 100), (30, 110.5), (40, 100.3), (50, 110.2), (69, 103)], 70)
    h, lo = c + 0.1, c - 0.1
    sh, sl = lv.swing_points(h, lo, 3)
    assert list(np.flatnonzero(sh)) == [10, 30, 50]
    assert list(np.flatnonzero(sl)) == [20, 40]
    levels = lv.support_resistance_levels(h, lo, c, w=3, tolerance_pct=0.01)
    res = [x for x in levels if x["kind"] == "resistance"]
    sup = [x for x in levels if x["kind"] == "support"]
    assert len(res) == 1 and res[0]["touches"] == 3 and abs(res[0]["level"] - 110.33) < 0.1
    assert len(sup) == 1 and sup[0]["touches"] == 2
    assert all(0 <= x["strength"] <= 1 for x in levels)


def test_floor_pivots() -> None:
    piv = lv.floor_pivots(np.array([12.0, 13.0]), np.array([8.0, 9.0]), np.array([10.0, 11.0]))
    assert piv.iloc[0].isna().all()
    p = (12 + 8 + 10) / 3
    row = piv.iloc[1]
    assert row["pivot"] == pytest.approx(p)
    assert row["r1"] == pytest.approx(2 * p - 8) and row["s1"] == pytest.approx(2 * p - 12)
    assert row["r2"] == pytest.approx(p + 4) and row["s2"] == pytest.approx(p - 4)
    assert row["r3"] == pytest.approx(12 + 2 * (p - 8)) and row["s3"] == pytest.approx(8 - 2 * (12 - p))


def _bars() -> pd.DataFrame:
    o, h, lo, c = _candles(5, 100.0, rows=2, t=600)
    dates = pd.bdate_range("2020-01-01", periods=600, tz="UTC")
    rng = np.random.default_rng(5)
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "symbol": f"S{i}",
                    "ts": dates,
                    "open": o[i],
                    "high": h[i],
                    "low": lo[i],
                    "close": c[i],
                    "volume": rng.integers(1000, 9000, 600).astype(float),
                    "trade_count": 1,
                    "vwap": c[i],
                }
            )
            for i in range(2)
        ],
        ignore_index=True,
    )


def test_frame_level_patterns_levels_pivots() -> None:
    bars = _bars()
    pats = tx.detect_patterns(bars)
    assert list(pats.columns) == ["symbol", "ts", "pattern", "direction", "strength", "details"]
    assert set(pats["direction"]) <= {"bullish", "bearish", "neutral"}
    assert pats["strength"].between(0, 1).all()
    json.dumps(pats["details"].tolist())  # JSON-able
    s0 = bars[bars.symbol == "S0"]
    doji = talib.CDLDOJI(*(s0[k].to_numpy() for k in ("open", "high", "low", "close")))
    got = pats[(pats.symbol == "S0") & (pats.pattern == "cdl_doji")]
    assert len(got) == int((doji != 0).sum())
    sr = tx.support_resistance(bars, bars["ts"].iloc[400])
    assert list(sr.columns) == ["symbol", "as_of", "kind", "level", "touches", "first_touch", "last_touch", "strength"]
    assert (sr["last_touch"] <= bars["ts"].iloc[400]).all() and len(sr) > 0
    pv = tx.pivot_points(bars)
    assert len(pv) == len(bars) and pv.groupby("symbol")["pivot"].apply(lambda x: x.isna().sum()).eq(1).all()
