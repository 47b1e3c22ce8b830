"""Implied volatility: round trips to 1e-10, agreement with vollib, and every failure reason."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from vollib.black_scholes_merton import black_scholes_merton as v_price
from vollib.black_scholes_merton.implied_volatility import implied_volatility as v_iv

from market_assets.analytics.options.black_scholes import bsm_price
from market_assets.analytics.options.implied_vol import implied_vol


def _grid(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    S = rng.uniform(5, 1000, n)
    return {
        "flag": np.where(rng.random(n) < 0.5, "c", "p"),
        "S": S,
        "K": S * np.exp(rng.normal(0, 0.5, n)),  # deep ITM to deep OTM
        "T": np.exp(rng.uniform(np.log(1 / 365), np.log(3), n)),
        "r": rng.uniform(-0.01, 0.08, n),
        "q": rng.uniform(0, 0.06, n),
        "sigma": np.exp(rng.uniform(np.log(0.01), np.log(5.0), n)),
    }


def _time_value(g: dict[str, np.ndarray], price: np.ndarray) -> np.ndarray:
    w = np.where(g["flag"] == "c", 1.0, -1.0)
    fwd_minus_k = g["S"] * np.exp(-g["q"] * g["T"]) - g["K"] * np.exp(-g["r"] * g["T"])
    disc_intrinsic = np.maximum(w * fwd_minus_k, 0)
    return price - disc_intrinsic


def test_round_trip_to_1e10_on_random_grid() -> None:
    g = _grid(200_000, 11)
    price = bsm_price(g["flag"], g["S"], g["K"], g["T"], g["r"], g["q"], g["sigma"])
    iv, reason = implied_vol(price, g["S"], g["K"], g["T"], g["r"], g["q"], g["flag"])
    ok = _time_value(g, price) >= 0.005
    assert ok.sum() > 50_000
    assert np.all(reason[ok] == None)  # noqa: E711 - elementwise comparison on an object array
    assert np.max(np.abs(iv[ok] - g["sigma"][ok])) <= 1e-10
    # where a volatility is returned at all it is never a fake number: NaN exactly when reason set
    assert np.array_equal(np.isnan(iv), reason != None)  # noqa: E711


def test_round_trip_on_vollib_prices() -> None:
    g = _grid(1500, 12)
    price = np.array(
        [
            v_price(f, s, k, t, r, sg, q)
            for f, s, k, t, r, q, sg in zip(g["flag"], g["S"], g["K"], g["T"], g["r"], g["q"], g["sigma"], strict=True)
        ]
    )
    iv, _ = implied_vol(price, g["S"], g["K"], g["T"], g["r"], g["q"], g["flag"])
    ok = _time_value(g, price) >= 0.005
    assert np.max(np.abs(iv[ok] - g["sigma"][ok])) <= 1e-10


def test_matches_vollib_implied_volatility() -> None:
    g = _grid(600, 13)
    price = bsm_price(g["flag"], g["S"], g["K"], g["T"], g["r"], g["q"], g["sigma"])
    ok = _time_value(g, price) >= 0.005
    iv, _ = implied_vol(price, g["S"], g["K"], g["T"], g["r"], g["q"], g["flag"])
    for i in np.flatnonzero(ok):
        ref = v_iv(price[i], g["S"][i], g["K"][i], g["T"][i], g["r"][i], g["q"][i], g["flag"][i])
        assert iv[i] == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("sigma", [0.01, 0.2, 5.0])
@pytest.mark.parametrize("T", [1 / 365, 0.25, 3.0])
def test_extremes_of_vol_and_time(sigma: float, T: float) -> None:
    K = np.array([50.0, 80, 95, 100, 105, 120, 200])
    for flag in ("c", "p"):
        price = bsm_price(flag, 100.0, K, T, 0.04, 0.01, sigma)
        iv, reason = implied_vol(price, 100.0, K, T, 0.04, 0.01, flag)
        w = 1.0 if flag == "c" else -1.0
        tv = price - np.maximum(w * (100 * np.exp(-0.01 * T) - K * np.exp(-0.04 * T)), 0)
        ok = tv >= 0.005
        np.testing.assert_allclose(iv[ok], sigma, rtol=0, atol=1e-10)
        assert np.all(reason[ok] == None)  # noqa: E711


def test_reasons_and_no_exceptions() -> None:
    S, K, T, r, q = 100.0, 100.0, 0.5, 0.05, 0.0
    c_itm_intrinsic = 100 - 80 * np.exp(-r * T)
    prices = np.array([0.0, -1.0, 5.0, 5.0, c_itm_intrinsic - 0.01, 100.5, 101.0, np.nan, 5.0])
    strikes = np.array([K, K, K, K, 80, K, 90, K, K])
    times = np.array([T, T, 0.0, -0.1, T, T, T, T, T])
    spots = np.array([S, S, S, S, S, S, S, S, -1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iv, reason = implied_vol(prices, spots, strikes, times, r, q, "c")
    assert list(reason) == [
        "non_positive_price",
        "non_positive_price",
        "expired",
        "expired",
        "below_intrinsic",
        "above_upper_bound",
        "above_upper_bound",
        "invalid_input",
        "invalid_input",
    ]
    assert np.all(np.isnan(iv))
    # put upper bound is K e^{-rT}; lower bound is the discounted intrinsic K e^{-rT} - S e^{-qT}
    put_intrinsic = 120 * np.exp(-r * T) - 100
    iv, reason = implied_vol([120 * np.exp(-r * T), put_intrinsic - 1e-9], 100, [120, 120], T, r, 0.0, "p")
    assert list(reason) == ["above_upper_bound", "below_intrinsic"]


def test_zero_dte_and_scalar_inputs() -> None:
    T = 2 / 24 / 365  # two hours left on expiry day
    price = bsm_price("p", 450.0, 450.0, T, 0.05, 0.0, 0.15)
    iv, reason = implied_vol(price, 450.0, 450.0, T, 0.05, 0.0, "p")
    assert iv.shape == ()
    assert reason.item() is None
    assert float(iv) == pytest.approx(0.15, abs=1e-10)


def test_put_call_parity_gives_same_vol_for_itm_and_otm() -> None:
    S, K, T, r, q, sg = 100.0, 70.0, 1.0, 0.03, 0.02, 0.35
    c = bsm_price("c", S, K, T, r, q, sg)  # deep ITM call
    p = bsm_price("p", S, K, T, r, q, sg)  # its OTM put
    iv, _ = implied_vol([c, p], S, K, T, r, q, ["c", "p"])
    np.testing.assert_allclose(iv, sg, atol=1e-12)
