"""BSM prices and Greeks against vollib, Hull's textbook numbers and put-call parity."""

from __future__ import annotations

import datetime as dt
import warnings
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from vollib.black_scholes_merton import black_scholes_merton as v_price
from vollib.black_scholes_merton.greeks import analytical as v_greeks

from market_assets.analytics.options.black_scholes import (
    as_is_call,
    bsm_price,
    early_exercise_flags,
    greeks,
    time_to_expiry,
)


@pytest.fixture(scope="module")
def grid() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 400
    S = rng.uniform(10, 500, n)
    return {
        "flag": np.where(rng.random(n) < 0.5, "c", "p"),
        "S": S,
        "K": S * np.exp(rng.normal(0, 0.4, n)),
        "T": rng.uniform(1 / 365, 3, n),
        "r": rng.uniform(-0.01, 0.08, n),
        "q": rng.uniform(0, 0.05, n),
        "sigma": rng.uniform(0.01, 5.0, n),
    }


def _ref(fn, g):  # type: ignore[no-untyped-def]
    return np.array(
        [
            fn(f, s, k, t, r, sg, q)
            for f, s, k, t, r, q, sg in zip(g["flag"], g["S"], g["K"], g["T"], g["r"], g["q"], g["sigma"], strict=True)
        ]
    )


def test_price_matches_vollib(grid: dict[str, np.ndarray]) -> None:
    p = bsm_price(grid["flag"], grid["S"], grid["K"], grid["T"], grid["r"], grid["q"], grid["sigma"])
    ref = _ref(v_price, grid)
    np.testing.assert_allclose(p, ref, rtol=0, atol=1e-10 * np.maximum(1, grid["S"]).max() / 100)


def test_greeks_match_vollib_analytical(grid: dict[str, np.ndarray]) -> None:
    g = greeks(grid["flag"], grid["S"], grid["K"], grid["T"], grid["r"], grid["q"], grid["sigma"])
    for name in ("delta", "gamma", "theta", "vega", "rho"):
        ref = _ref(getattr(v_greeks, name), grid)
        np.testing.assert_allclose(getattr(g, name), ref, rtol=0, atol=1e-10, err_msg=name)


def test_hull_example() -> None:
    # Hull, Options Futures and Other Derivatives: S=42, K=40, r=10%, sigma=20%, T=0.5
    assert bsm_price("c", 42, 40, 0.5, 0.1, 0.0, 0.2) == pytest.approx(4.76, abs=0.005)
    assert bsm_price("p", 42, 40, 0.5, 0.1, 0.0, 0.2) == pytest.approx(0.81, abs=0.005)
    # Hull example 17.1/17.2: delta 0.522, annual theta -4.31
    g = greeks("c", 49, 50, 0.3846, 0.05, 0.0, 0.2)
    assert g.delta == pytest.approx(0.522, abs=1e-3)
    assert g.theta * 365 == pytest.approx(-4.31, abs=0.01)
    assert g.gamma == pytest.approx(0.066, abs=1e-3)
    assert g.vega == pytest.approx(0.121, abs=1e-3)


def test_put_call_parity(grid: dict[str, np.ndarray]) -> None:
    S, K, T, r, q, sg = (grid[k] for k in ("S", "K", "T", "r", "q", "sigma"))
    c = bsm_price("c", S, K, T, r, q, sg)
    p = bsm_price("p", S, K, T, r, q, sg)
    np.testing.assert_allclose(c - p, S * np.exp(-q * T) - K * np.exp(-r * T), atol=1e-9)
    gc, gp = greeks(True, S, K, T, r, q, sg), greeks(False, S, K, T, r, q, sg)
    np.testing.assert_allclose(gc.delta - gp.delta, np.exp(-q * T), atol=1e-12)
    np.testing.assert_allclose(gc.gamma, gp.gamma, atol=1e-15)
    np.testing.assert_allclose(gc.vega, gp.vega, atol=1e-15)


def test_flag_forms_and_broadcasting() -> None:
    a = bsm_price(["c", "p"], 100, [90, 110], 0.5, 0.03, 0.01, 0.3)
    b = bsm_price(np.array([True, False]), 100, [90, 110], 0.5, 0.03, 0.01, 0.3)
    c = bsm_price(pd.Series(["CALL", "put"]), 100, [90, 110], 0.5, 0.03, 0.01, 0.3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert a.shape == (2,)
    assert isinstance(bsm_price("c", 100, 100, 1, 0.0, 0.0, 0.2), float)
    with pytest.raises(ValueError):
        as_is_call(["c", "x"])


def test_expiry_and_degenerate_inputs_without_warnings() -> None:
    flags = ["c", "c", "c", "p", "p", "p"]
    K = [90, 100, 110, 90, 100, 110]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = bsm_price(flags, 100.0, K, 0.0, 0.05, 0.0, 0.2)
        g = greeks(flags, 100.0, K, 0.0, 0.05, 0.0, 0.2)
        z = bsm_price(["c", "p"], 100.0, [90, 110], 1.0, 0.05, 0.0, 0.0)
        neg = bsm_price("c", 100.0, 100.0, 1.0, 0.05, 0.0, -0.1)
    np.testing.assert_array_equal(p, [10, 0, 0, 0, 0, 10])
    np.testing.assert_array_equal(g.delta, [1, 0.5, 0, 0, -0.5, -1])
    for name in ("gamma", "theta", "vega", "rho"):
        np.testing.assert_array_equal(getattr(g, name), 0.0)
    np.testing.assert_allclose(z, [100 - 90 * np.exp(-0.05), 110 * np.exp(-0.05) - 100])
    assert np.isnan(neg)


def test_extreme_vols_match_vollib() -> None:
    for sg in (0.01, 5.0):
        for f, k in (("c", 80), ("p", 120), ("c", 100)):
            ref = v_price(f, 100, k, 0.25, 0.02, sg, 0.01)
            assert bsm_price(f, 100, k, 0.25, 0.02, 0.01, sg) == pytest.approx(ref, abs=1e-10)


def test_time_to_expiry() -> None:
    ny = ZoneInfo("America/New_York")
    quote = dt.datetime(2024, 1, 19, 9, 30, tzinfo=ny)
    assert time_to_expiry(quote, dt.date(2024, 1, 19)) == pytest.approx(6.5 / 24 / 365)
    # one full day plus: quote at 16:00 the day before
    assert time_to_expiry(dt.datetime(2024, 1, 18, 16, 0, tzinfo=ny), "2024-01-19") == pytest.approx(1 / 365)
    # UTC input, DST boundary handled by the timezone database (16:00 EDT = 20:00 UTC)
    utc = dt.datetime(2024, 7, 19, 19, 0, tzinfo=dt.UTC)
    assert time_to_expiry(utc, dt.date(2024, 7, 19)) == pytest.approx(1 / 24 / 365)
    assert time_to_expiry(dt.datetime(2024, 1, 20, tzinfo=ny), dt.date(2024, 1, 19)) == 0.0
    arr = time_to_expiry(pd.Series([quote, quote]), pd.Series([dt.date(2024, 1, 19), dt.date(2024, 2, 16)]))
    assert arr.shape == (2,)
    assert arr[1] == pytest.approx((28 + 6.5 / 24) / 365)
    with pytest.raises(ValueError):
        time_to_expiry(dt.datetime(2024, 1, 19, 9, 30), dt.date(2024, 1, 19))


def test_early_exercise_flags() -> None:
    out = early_exercise_flags(
        ["p", "p", "c", "c", "p"],
        100.0,
        [150, 70, 60, 100, 100],
        1.0,
        [0.05, 0.05, 0.05, 0.05, 0.0],
        [0.0, 0.0, 0.05, 0.0, 0.0],
        0.2,
    )
    # deep ITM put with r > 0: material premium; far OTM put: small; deep ITM call with q > 0: material
    assert bool(out["early_exercise_flag"][0])
    assert bool(out["early_exercise_flag"][2])
    # call without dividends and put with r = 0: never exercised early, bound is 0
    assert not out["early_exercise_flag"][3] and np.isnan(out["early_exercise_premium"][3])
    assert not out["early_exercise_flag"][4]
    # premium never exceeds its bound; deep ITM put premium at least the exercise-now gap
    ok = out["early_exercise_premium"].notna()
    assert (out.loc[ok, "early_exercise_premium"] <= out.loc[ok, "premium_upper_bound"] + 1e-9).all()
    assert out["early_exercise_premium"][0] >= 50 - out["european_price"][0] - 1e-6
