"""Indicators against TA-Lib (oracle), hand-worked cases, edge cases, properties, incrementality."""

from __future__ import annotations

import numpy as np
import pytest

talib = pytest.importorskip("talib")

from market_assets.analytics.technicals import indicators as ind  # noqa: E402

TOL = 1e-9


def _walk(seed: int, scale: float, rows: int = 8, t: int = 700, vol: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return scale * np.exp(np.cumsum(rng.normal(0.0, vol, (rows, t)), axis=1))


def _ohlc(seed: int, scale: float, rows: int = 6, t: int = 600) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed + 1000)
    c = _walk(seed, scale, rows, t)
    o = np.concatenate([c[:, :1], c[:, :-1]], axis=1) * (1 + rng.normal(0, 0.005, c.shape))
    h = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.008, c.shape)))
    lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.008, c.shape)))
    return o, h, lo, c


def _same(mine: np.ndarray, ref: np.ndarray, tol: float = TOL) -> None:
    ref = np.asarray(ref, dtype=float)
    assert mine.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
    if np.isfinite(ref).any():
        assert np.nanmax(np.abs(mine - ref)) <= tol


def _rows(fn, *arrays):
    return np.array([fn(*[a[i] for a in arrays]) for i in range(arrays[0].shape[0])])


SEEDS_SCALES = [(0, 1.0), (1, 10.0), (2, 250.0), (3, 1000.0), (4, 5000.0)]


@pytest.mark.parametrize(("seed", "scale"), SEEDS_SCALES)
def test_sma_ema_match_talib(seed: int, scale: float) -> None:
    x = _walk(seed, scale)
    for n in (1, 2, 7, 20, 37, 50, 200):
        _same(ind.sma(x, n), _rows(lambda r, n=n: talib.SMA(r, n), x))
    for n in (2, 9, 12, 26, 50):
        _same(ind.ema(x, n), _rows(lambda r, n=n: talib.EMA(r, n), x))
    multi = ind.smas(x, (20, 50, 200))
    for n, arr in multi.items():
        _same(arr, _rows(lambda r, n=n: talib.SMA(r, n), x))


@pytest.mark.parametrize(("seed", "scale"), SEEDS_SCALES)
def test_rsi_macd_match_talib(seed: int, scale: float) -> None:
    x = _walk(seed, scale)
    for n in (2, 14, 30):
        _same(ind.rsi(x, n), _rows(lambda r, n=n: talib.RSI(r, n), x))
    for fast, slow, sig in ((12, 26, 9), (5, 35, 5), (26, 12, 9)):
        mine = ind.macd(x, fast, slow, sig)
        for k in range(3):
            _same(mine[k], _rows(lambda r, f=fast, s=slow, g=sig, k=k: talib.MACD(r, f, s, g)[k], x))


@pytest.mark.parametrize(("seed", "scale"), SEEDS_SCALES)
def test_bbands_atr_stoch_trange_match_talib(seed: int, scale: float) -> None:
    _o, h, lo, c = _ohlc(seed, scale)
    mine_bb = ind.bbands(c, 20, 2.0, 2.0)
    # TA-Lib forms the variance as E[x^2]-mean^2 on raw prices; at high price levels its own
    # cancellation error approaches 1e-9, so the band tolerance scales with price (see docstring)
    bb_tol = max(TOL, 1e-12 * scale * scale / 10)
    for k in range(3):
        _same(mine_bb[k], _rows(lambda r, k=k: talib.BBANDS(r, 20, 2.0, 2.0)[k], c), bb_tol)
    _same(ind.atr(h, lo, c, 14), _rows(lambda a, b, d: talib.ATR(a, b, d, 14), h, lo, c))
    sk, sd = ind.stoch(h, lo, c)
    _same(sk, _rows(lambda a, b, d: talib.STOCH(a, b, d)[0], h, lo, c))
    _same(sd, _rows(lambda a, b, d: talib.STOCH(a, b, d)[1], h, lo, c))
    _same(ind.trange(h, lo, c), _rows(talib.TRANGE, h, lo, c), 0.0)
    _same(ind.rolling_max(h, 30), _rows(lambda r: talib.MAX(r, 30), h), 0.0)
    _same(ind.rolling_min(lo, 252), _rows(lambda r: talib.MIN(r, 252), lo), 0.0)


def test_bbands_more_accurate_than_talib_at_high_prices() -> None:
    x = _walk(9, 5000.0, rows=3, t=800)
    upper, middle, _lower = ind.bbands(x, 20, 2.0, 2.0)
    from numpy.lib.stride_tricks import sliding_window_view

    exact = sliding_window_view(x, 20, axis=1).std(axis=-1)
    assert np.max(np.abs((upper - middle)[:, 19:] / 2.0 - exact)) <= 1e-9


def test_one_dimensional_inputs_match_two_dimensional() -> None:
    x = _walk(5, 100.0, rows=3)
    for fn in (lambda a: ind.rsi(a), lambda a: ind.sma(a, 20), lambda a: ind.ema(a, 12), lambda a: ind.macd(a)[2]):
        two = fn(x)
        for i in range(3):
            np.testing.assert_allclose(fn(x[i]), two[i], rtol=0, atol=1e-12)


def test_rsi_hand_computed_16_bars() -> None:
    # changes: +1 x7, -1 x7 in the first 14 -> avg gain = avg loss = 0.5 -> RSI 50 at bar 14
    closes = [10.0]
    for d in [1, -1] * 7 + [2.0]:
        closes.append(closes[-1] + d)
    x = np.array(closes)
    out = ind.rsi(x, 14)
    assert np.isnan(out[:14]).all()
    assert out[14] == pytest.approx(50.0, abs=1e-12)
    # bar 15: +2 -> gain = (0.5*13 + 2)/14, loss = 0.5*13/14
    g, lo = (0.5 * 13 + 2) / 14, 0.5 * 13 / 14
    assert out[15] == pytest.approx(100 * g / (g + lo), abs=1e-12)
    np.testing.assert_allclose(out, talib.RSI(x, 14), atol=1e-12, equal_nan=True)


def test_ema_and_macd_seeding_positions() -> None:
    x = _walk(6, 50.0, rows=1, t=120)[0]
    e = ind.ema(x, 10)
    assert np.isnan(e[:9]).all() and e[9] == pytest.approx(x[:10].mean(), abs=1e-12)
    m, s, h = ind.macd(x)
    assert np.isnan(m[:33]).all() and np.isfinite(m[33])
    np.testing.assert_allclose(h[33:], m[33:] - s[33:], atol=1e-12)


def test_properties() -> None:
    const = np.full(300, 42.5)
    np.testing.assert_allclose(ind.sma(const, 20)[19:], 42.5, atol=1e-12)
    np.testing.assert_allclose(ind.ema(const, 20)[19:], 42.5, atol=1e-12)
    rising = np.linspace(10, 20, 100)
    assert np.allclose(ind.rsi(rising)[14:], 100.0)
    x = _walk(7, 300.0, rows=2)
    _u, mid, _l = ind.bbands(x, 20)
    np.testing.assert_allclose(mid, ind.sma(x, 20), atol=1e-9, equal_nan=True)
    # flat prices: RSI follows TA-Lib's convention (0), Bollinger collapses onto the SMA
    np.testing.assert_array_equal(ind.rsi(const)[14:], talib.RSI(const)[14:])
    u, m2, lo = ind.bbands(const, 20)
    np.testing.assert_array_equal(u[19:], m2[19:])
    np.testing.assert_array_equal(lo[19:], m2[19:])


def test_short_series_all_nan() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert np.isnan(ind.sma(x, 20)).all()
    assert np.isnan(ind.ema(x, 12)).all()
    assert np.isnan(ind.rsi(x, 14)).all()
    assert all(np.isnan(a).all() for a in ind.macd(x))
    assert np.isnan(ind.atr(x, x, x, 14)).all()
    assert all(np.isnan(a).all() for a in ind.bbands(x, 20))
    assert all(np.isnan(a).all() for a in ind.stoch(x, x, x))
    empty = np.empty((3, 0))
    assert ind.rsi(empty).shape == (3, 0)


def test_leading_nan_rows_match_talib_on_valid_tail() -> None:
    _o, h, lo, c = _ohlc(11, 80.0, rows=4, t=400)
    for arr in (h, lo, c):
        arr[1, :50] = np.nan
        arr[2, :300] = np.nan
        arr[3, :] = np.nan
    for fn, tf in (
        (lambda a: ind.rsi(a), talib.RSI),
        (lambda a: ind.ema(a, 12), lambda r: talib.EMA(r, 12)),
        (lambda a: ind.sma(a, 50), lambda r: talib.SMA(r, 50)),
        (lambda a: ind.macd(a)[1], lambda r: talib.MACD(r)[1]),
        (lambda a: ind.bbands(a, 20)[0], lambda r: talib.BBANDS(r, 20)[0]),
    ):
        _same(fn(c), _rows(tf, c))
    _same(ind.atr(h, lo, c), _rows(talib.ATR, h, lo, c))
    _same(ind.stoch(h, lo, c)[1], _rows(lambda a, b, d: talib.STOCH(a, b, d)[1], h, lo, c))


def test_interior_nan_contract() -> None:
    x = _walk(12, 100.0, rows=1, t=300)[0]
    x[150] = np.nan
    # windowed: only windows containing the NaN are NaN
    s = ind.sma(x, 20)
    assert np.isnan(s[150:170]).all() and np.isfinite(s[170:]).all()
    np.testing.assert_allclose(s[19:150], talib.SMA(x[:150], 20)[19:], atol=TOL)
    # recursive: identical before the NaN, NaN from it on (TA-Lib's RSI reports 0 there instead)
    for fn, tf in ((lambda a: ind.rsi(a), talib.RSI), (lambda a: ind.ema(a, 10), lambda r: talib.EMA(r, 10))):
        out = fn(x)
        np.testing.assert_allclose(out[:150], tf(x[:150]), atol=TOL, equal_nan=True)
        assert np.isnan(out[150:]).all()


def test_gaps_in_prices_are_just_values() -> None:
    x = np.concatenate([np.full(60, 100.0), np.full(60, 130.0), np.full(60, 90.0)])
    x = x + np.sin(np.arange(180))
    _same(ind.rsi(x), talib.RSI(x))
    _same(ind.macd(x)[0], talib.MACD(x)[0])


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_incremental_equals_full_history(seed: int) -> None:
    x = _walk(seed, 150.0, rows=4, t=2000)
    _o, h, lo, _c = _ohlc(seed, 150.0, rows=4, t=2000)
    h, lo = np.maximum(h, x), np.minimum(lo, x)
    k = 30
    lb = ind.required_lookback(1e-13)
    assert lb >= ind.macd_lookback(tolerance=1e-13) >= ind.ema_lookback(26, 1e-13)
    cut = x.shape[1] - (k + lb)
    checks = [
        lambda a, hh, ll: ind.rsi(a),
        lambda a, hh, ll: ind.ema(a, 26),
        lambda a, hh, ll: ind.ema(a, 12),
        lambda a, hh, ll: ind.macd(a)[0],
        lambda a, hh, ll: ind.macd(a)[1],
        lambda a, hh, ll: ind.macd(a)[2],
        lambda a, hh, ll: ind.atr(hh, ll, a),
        lambda a, hh, ll: ind.sma(a, 200),
        lambda a, hh, ll: ind.bbands(a, 20)[0],
        lambda a, hh, ll: ind.stoch(hh, ll, a)[1],
    ]
    for f in checks:
        full = f(x, h, lo)[:, -k:]
        part = f(x[:, cut:], h[:, cut:], lo[:, cut:])[:, -k:]
        assert np.max(np.abs(full - part)) <= TOL
    # and the lookback is not wildly larger than needed: a much shorter window differs
    short = ind.rsi(x[:, -(k + 20) :])[:, -k:]
    assert np.max(np.abs(short - ind.rsi(x)[:, -k:])) > TOL


def test_lookback_helpers_monotone() -> None:
    assert ind.ema_lookback(26, 1e-6) < ind.ema_lookback(26, 1e-12)
    assert ind.wilder_lookback(14, 1e-10) > 14
    assert ind.required_lookback(1e-10) == max(
        ind.ema_lookback(26, 1e-10), ind.wilder_lookback(14, 1e-10), ind.macd_lookback(tolerance=1e-10)
    )


@pytest.mark.parametrize("mode", ["never", "always"])
def test_serial_and_threaded_kernels_match_talib(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both kernel families (serial, and ``prange`` on numba's threads when > 1) give TA-Lib's values."""
    monkeypatch.setattr(ind, "_parallel_mode", mode)
    _o, h, lo, c = _ohlc(31, 700.0, rows=64, t=600)  # 38 400 values: above the threading threshold
    c[5, :100] = np.nan
    h[5, :100] = lo[5, :100] = np.nan
    _same(ind.rsi(c), _rows(talib.RSI, c))
    _same(ind.ema(c, 12), _rows(lambda r: talib.EMA(r, 12), c))
    for k in range(3):
        _same(ind.macd(c)[k], _rows(lambda r, k=k: talib.MACD(r)[k], c))
    for n, arr in ind.smas(c, (20, 50, 200)).items():
        _same(arr, _rows(lambda r, n=n: talib.SMA(r, n), c))
    _same(ind.bbands(c, 20)[0], _rows(lambda r: talib.BBANDS(r, 20)[0], c))
    _same(ind.atr(h, lo, c), _rows(talib.ATR, h, lo, c))
    _same(ind.stoch(h, lo, c)[0], _rows(lambda a, b, d: talib.STOCH(a, b, d)[0], h, lo, c))
    _same(ind.rolling_max(h, 30), _rows(lambda r: talib.MAX(r, 30), h), 0.0)


def test_forked_child_after_threaded_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    """GNU OpenMP kills a forked child that launches threads after its parent did; the child must
    fall back to the serial kernels and still compute."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    monkeypatch.setattr(ind, "_parallel_mode", "always")
    x = _walk(32, 100.0, rows=64, t=600)
    expected = ind.rsi(x)  # threaded launch in the parent
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply(ind.rsi, (x,))
    np.testing.assert_array_equal(got, expected)


def test_stoch_slowk_leading_nan_matches_talib_on_valid_tail() -> None:
    _o, h, lo, c = _ohlc(33, 60.0, rows=3, t=200)
    for arr in (h, lo, c):
        arr[1, :40] = np.nan
    for k in range(2):
        _same(ind.stoch(h, lo, c)[k], _rows(lambda a, b, d, k=k: talib.STOCH(a, b, d)[k], h, lo, c))
        _same(
            ind.stoch(h, lo, c, 14, 3, 5)[k],
            _rows(lambda a, b, d, k=k: talib.STOCH(a, b, d, 14, 3, 0, 5, 0)[k], h, lo, c),
        )


def test_rolling_extremes_trending_and_nan_windows() -> None:
    from numpy.lib.stride_tricks import sliding_window_view

    down = np.linspace(500.0, 100.0, 1000)  # every bar the maximum leaves the window
    _same(ind.rolling_max(down, 1), down, 0.0)
    for n in (2, 5, 30, 252):
        _same(ind.rolling_max(down, n), talib.MAX(down, n), 0.0)
        _same(ind.rolling_min(down[::-1], n), talib.MIN(down[::-1], n), 0.0)
    x = _walk(34, 50.0, rows=1, t=400)[0]
    x[[100, 103, 250]] = np.nan
    for n in (4, 7, 60):
        win = sliding_window_view(x, n)
        ref = np.full(x.shape, np.nan)
        ref[n - 1 :] = win.max(axis=1)  # NaN for windows holding a NaN
        _same(ind.rolling_max(x, n), ref, 0.0)
        ref[n - 1 :] = win.min(axis=1)
        _same(ind.rolling_min(x, n), ref, 0.0)


def test_windowed_recovery_after_interior_nan_matches_talib_on_the_rest() -> None:
    _o, h, lo, c = _ohlc(35, 900.0, rows=2, t=500)
    gap = 180
    for arr in (h, lo, c):
        arr[:, gap] = np.nan
    tail = slice(gap + 1, None)
    _same(ind.sma(c, 50)[:, tail], _rows(lambda r: talib.SMA(r, 50), c[:, tail]))
    _same(ind.bbands(c, 20)[1][:, tail], _rows(lambda r: talib.BBANDS(r, 20)[1], c[:, tail]))
    _same(ind.bbands(c, 20)[0][:, tail], _rows(lambda r: talib.BBANDS(r, 20)[0], c[:, tail]))
    # slow %D at t reads bars t-8..t (5 + 3 + 3 - 2): exactly those windows hold the gap
    slowd = ind.stoch(h, lo, c)[1]
    assert np.isnan(slowd[:, gap : gap + 9]).all() and np.isfinite(slowd[:, gap + 9 :]).all()


def test_long_series_running_sums_stay_exact() -> None:
    """Re-anchored running sums do not drift on long, high-priced series (minute bars)."""
    from numpy.lib.stride_tricks import sliding_window_view

    x = _walk(36, 5000.0, rows=2, t=30_000, vol=0.002)
    for n in (20, 200):
        exact = sliding_window_view(x, n, axis=1).mean(axis=-1)
        assert np.max(np.abs(ind.sma(x, n)[:, n - 1 :] - exact)) <= 1e-9
        _same(ind.sma(x, n), _rows(lambda r, n=n: talib.SMA(r, n), x))
    _upper, middle, _lower = ind.bbands(x, 20)
    std = sliding_window_view(x, 20, axis=1).std(axis=-1)
    assert np.max(np.abs((_upper - middle)[:, 19:] / 2.0 - std)) <= 1e-9
