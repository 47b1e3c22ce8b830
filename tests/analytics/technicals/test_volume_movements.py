"""Volume and movement analytics: TA-Lib oracle where it defines them, hand checks elsewhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

talib = pytest.importorskip("talib")

from market_assets.analytics.technicals import frame as tx  # noqa: E402
from market_assets.analytics.technicals import movements as mv  # noqa: E402
from market_assets.analytics.technicals import volume as vol  # noqa: E402


def _data(seed: int, rows: int = 4, t: int = 500, scale: float = 100.0):
    rng = np.random.default_rng(seed)
    c = scale * np.exp(np.cumsum(rng.normal(0, 0.02, (rows, t)), axis=1))
    o = np.concatenate([c[:, :1], c[:, :-1]], axis=1) * (1 + rng.normal(0, 0.005, c.shape))
    h = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.008, c.shape)))
    lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.008, c.shape)))
    v = rng.integers(10_000, 5_000_000, c.shape).astype(float)
    return o, h, lo, c, v


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_obv_ad_match_talib(seed: int) -> None:
    _o, h, lo, c, v = _data(seed)
    c[:, 10] = c[:, 9]  # an unchanged close carries OBV
    h[:, 20] = lo[:, 20]  # a zero-range bar adds nothing to A/D
    mine_obv = vol.obv(c, v)
    mine_ad = vol.ad(h, lo, c, v)
    for i in range(c.shape[0]):
        np.testing.assert_array_equal(mine_obv[i], talib.OBV(c[i], v[i]))
        np.testing.assert_allclose(mine_ad[i], talib.AD(h[i], lo[i], c[i], v[i]), rtol=0, atol=1e-6)
        assert np.max(np.abs(mine_ad[i] - talib.AD(h[i], lo[i], c[i], v[i]))) <= 1e-9 * np.max(np.abs(mine_ad[i]))


def test_obv_ad_anchor_makes_window_exact() -> None:
    _o, h, lo, c, v = _data(3, rows=2)
    full_obv, full_ad = vol.obv(c, v), vol.ad(h, lo, c, v)
    cut, k = 300, 10  # window starts at bar 300; the stored value of bar 300+k is the anchor
    idx = np.array([k, k])
    w_obv = vol.obv(c[:, cut:], v[:, cut:], idx, full_obv[:, cut + k])
    w_ad = vol.ad(h[:, cut:], lo[:, cut:], c[:, cut:], v[:, cut:], idx, full_ad[:, cut + k])
    np.testing.assert_array_equal(w_obv[:, k:], full_obv[:, cut + k :])
    assert np.max(np.abs(w_ad[:, k:] - full_ad[:, cut + k :])) <= 1e-6


def test_relative_volume_uses_previous_sessions() -> None:
    v = np.array([100.0] * 20 + [1000.0, 100.0])
    rv = vol.relative_volume(v, 20)
    assert np.isnan(rv[:20]).all()
    assert rv[20] == pytest.approx(10.0)  # baseline excludes the spike itself
    assert rv[21] == pytest.approx(100.0 / ((19 * 100 + 1000) / 20))
    np.testing.assert_allclose(vol.volume_sma(v, 20)[19:], talib.SMA(v, 20)[19:])


def test_volume_zscore_and_spike() -> None:
    rng = np.random.default_rng(4)
    v = rng.normal(1000, 50, 60)
    v[45] = 1600
    z = vol.volume_zscore(v, 20)
    prev = v[25:45]
    assert z[45] == pytest.approx((v[45] - prev.mean()) / prev.std(ddof=1), rel=1e-9)
    spike = vol.volume_spike(v, 20)
    assert spike[45] and spike.dtype == bool and not spike[:20].any()
    flat = np.full(40, 5.0)
    assert np.isnan(vol.volume_zscore(flat)[20:]).all()


def test_daily_vwap_from_minutes() -> None:
    ts = pd.to_datetime(["2024-03-01 14:30", "2024-03-01 14:31", "2024-03-01 20:59", "2024-03-04 14:30"], utc=True)
    bars = pd.DataFrame(
        {
            "symbol": ["X", "X", "X", "X"],
            "ts": ts,
            "high": [11.0, 12.0, 13.0, 20.0],
            "low": [9.0, 10.0, 11.0, 18.0],
            "close": [10.0, 11.0, 12.0, 19.0],
            "volume": [100.0, 300.0, 100.0, 0.0],
            "vwap": [10.0, np.nan, 12.5, 19.0],
        }
    )
    out = vol.daily_vwap(bars)
    assert len(out) == 2
    expected = (10.0 * 100 + 11.0 * 300 + 12.5 * 100) / 500  # typical price (12+10+11)/3 = 11
    assert out["vwap"].iloc[0] == pytest.approx(expected)
    assert np.isnan(out["vwap"].iloc[1])


def test_returns_gap_trange_vol() -> None:
    o, h, lo, c, _v = _data(5, rows=2)
    for k in mv.RETURN_HORIZONS:
        r = mv.returns(c, k)
        assert np.isnan(r[:, :k]).all()
        np.testing.assert_allclose(r[:, k:], c[:, k:] / c[:, :-k] - 1, rtol=1e-14)
        np.testing.assert_allclose(mv.log_returns(c, k)[:, k:], np.log(c[:, k:] / c[:, :-k]), rtol=1e-12)
        np.testing.assert_allclose(r[0], talib.ROCR(c[0], k) - 1, atol=1e-12, equal_nan=True)
    g = mv.gap_pct(o, c)
    assert np.isnan(g[:, 0]).all()
    np.testing.assert_allclose(g[:, 1:], o[:, 1:] / c[:, :-1] - 1)
    np.testing.assert_array_equal(mv.true_range(h[0], lo[0], c[0]), talib.TRANGE(h[0], lo[0], c[0]))
    rv = mv.realized_volatility(c, 20)
    lr = np.log(c[0, 1:] / c[0, :-1])
    assert np.isnan(rv[0, :20]).all()
    assert rv[0, 20] == pytest.approx(np.std(lr[:20], ddof=1) * np.sqrt(252), rel=1e-9)
    assert rv[0, -1] == pytest.approx(np.std(lr[-20:], ddof=1) * np.sqrt(252), rel=1e-9)


def test_52w_distances_and_drawdown() -> None:
    _o, h, lo, c, _v = _data(6, rows=1, t=400)
    dh = mv.distance_from_high(c, h)
    dl = mv.distance_from_low(c, lo)
    assert np.isnan(dh[0, :251]).all()
    assert dh[0, -1] == pytest.approx(c[0, -1] / h[0, -252:].max() - 1)
    assert dl[0, -1] == pytest.approx(c[0, -1] / lo[0, -252:].min() - 1)
    dd = mv.drawdown(c)
    assert dd[0, 0] == 0.0 and (dd <= 0).all()
    assert dd[0, 100] == pytest.approx(c[0, 100] / c[0, :101].max() - 1)
    assert dd[0, -1] == pytest.approx(c[0, -1] / c[0, -252:].max() - 1)


def _bars(seed: int, symbols: int = 3, t: int = 900) -> pd.DataFrame:
    o, h, lo, c, v = _data(seed, rows=symbols, t=t)
    dates = pd.bdate_range("2015-01-01", periods=t, tz="UTC")
    frames = []
    for i in range(symbols):
        n = t - 150 * i  # later listings
        frames.append(
            pd.DataFrame(
                {
                    "symbol": f"S{i}",
                    "ts": dates[-n:],
                    "open": o[i, -n:],
                    "high": h[i, -n:],
                    "low": lo[i, -n:],
                    "close": c[i, -n:],
                    "volume": v[i, -n:],
                    "trade_count": 1,
                    "vwap": c[i, -n:],
                }
            )
        )
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_compute_daily_technicals_shape_and_talib() -> None:
    bars = _bars(7)
    out = tx.compute_daily_technicals(bars)
    assert len(out) == len(bars)
    assert list(out["symbol"]) == list(bars["symbol"]) and set(tx.TECHNICAL_COLUMNS) <= set(out.columns)
    s = bars.assign(_i=np.arange(len(bars))).query("symbol == 'S2'").sort_values("ts")
    got = out.iloc[s["_i"].to_numpy()]
    cl = s["close"].to_numpy()
    np.testing.assert_allclose(got["rsi"], talib.RSI(cl), atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got["macd_signal"], talib.MACD(cl)[1], atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got["sma_200"], talib.SMA(cl, 200), atol=1e-9, equal_nan=True)
    ref_atr = talib.ATR(s.high.to_numpy(), s.low.to_numpy(), cl)
    np.testing.assert_allclose(got["atr_14"], ref_atr, atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(got["obv"], talib.OBV(cl, s.volume.to_numpy()))
    assert got["volume_spike"].dtype == bool


def test_compute_daily_technicals_incremental_partition() -> None:
    bars = _bars(8, symbols=2, t=1000)
    full = tx.compute_daily_technicals(bars).set_index(["symbol", "ts"]).sort_index()
    dates = np.sort(bars["ts"].unique())
    part_start = dates[-5]
    window_start = dates[-5 - tx.LOOKBACK_SESSIONS]
    window = bars[bars["ts"] >= window_start]
    anchors = full.reset_index()
    anchors = anchors[anchors["ts"] == dates[-6]][["symbol", "ts", "obv", "ad"]]
    part = tx.compute_daily_technicals(window, anchors=anchors).set_index(["symbol", "ts"]).sort_index()
    a = full[full.index.get_level_values("ts") >= part_start]
    b = part[part.index.get_level_values("ts") >= part_start]
    for col in tx.TECHNICAL_COLUMNS:
        x, y = a[col].to_numpy(dtype=float), b[col].to_numpy(dtype=float)
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=col)
        tol = 1e-6 if col == "ad" else 1e-9
        assert np.nanmax(np.abs(x - y)) <= tol, col


def test_empty_frame() -> None:
    empty = _bars(9).iloc[:0]
    out = tx.compute_daily_technicals(empty)
    assert out.empty and "rsi" in out.columns
