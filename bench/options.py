"""Benchmark: implied volatility and Greeks of this project vs py_vollib_vectorized and vollib.

Run: ``.venv/bin/python bench/options.py [n]`` (default 1,000,000 options). Prints options/s,
ratios and the worst |iv - true sigma| over options with time value >= half a cent.
Needs the ``bench`` extra (py_vollib, py_vollib_vectorized); importing py_vollib_vectorized
monkey-patches py_vollib, so vollib's scalar loop is timed through the separate ``vollib`` package.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from market_assets.analytics.options.black_scholes import bsm_price, greeks
from market_assets.analytics.options.implied_vol import implied_vol


def _best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(n: int = 1_000_000) -> None:
    import py_vollib_vectorized as pvv
    from vollib.black_scholes_merton.implied_volatility import implied_volatility as v_iv

    rng = np.random.default_rng(20240119)
    S = rng.uniform(10, 600, n)
    K = S * np.exp(rng.normal(0, 0.3, n))
    T = np.exp(rng.uniform(np.log(1 / 365), np.log(3), n))
    r = rng.uniform(0.0, 0.06, n)
    q = rng.uniform(0.0, 0.04, n)
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(5.0), n))
    flag = np.where(rng.random(n) < 0.5, "c", "p")
    price = bsm_price(flag, S, K, T, r, q, sigma)
    w = np.where(flag == "c", 1.0, -1.0)
    tv = price - np.maximum(w * (S * np.exp(-q * T) - K * np.exp(-r * T)), 0)
    ok = tv >= 0.005
    print(f"options: {n:,}  with time value >= 0.005: {ok.sum():,}")

    # --- implied volatility ---
    implied_vol(price[:1000], S[:1000], K[:1000], T[:1000], r[:1000], q[:1000], flag[:1000])
    t_ours = _best_of(lambda: implied_vol(price, S, K, T, r, q, flag))
    iv, _ = implied_vol(price, S, K, T, r, q, flag)
    err_ours = np.nanmax(np.abs(iv[ok] - sigma[ok]))
    nan_ours = int(np.isnan(iv[ok]).sum())

    def pvv_iv(sl: slice = slice(None)) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pvv.vectorized_implied_volatility(
                price[sl],
                S[sl],
                K[sl],
                T[sl],
                r[sl],
                flag[sl],
                q=q[sl],
                model="black_scholes_merton",
                return_as="numpy",
                on_error="ignore",
            )

    pvv_iv(slice(0, 1000))  # numba JIT warm-up
    t_pvv = _best_of(pvv_iv)
    iv_pvv = pvv_iv()
    err_pvv = np.nanmax(np.abs(iv_pvv[ok] - sigma[ok]))

    m = 2000
    idx = rng.choice(n, m, replace=False)
    t0 = time.perf_counter()
    for i in idx:
        with contextlib.suppress(Exception):  # vollib raises on below-intrinsic / above-maximum prices
            v_iv(price[i], S[i], K[i], T[i], r[i], q[i], flag[i])
    t_vollib = (time.perf_counter() - t0) / m * n

    print("\nimplied volatility (best of 3)")
    print(
        f"  market_assets        {n / t_ours / 1e6:8.3f} M options/s   max|iv-sigma| {err_ours:.2e} "
        f"NaN among valid {nan_ours}"
    )
    print(f"  py_vollib_vectorized {n / t_pvv / 1e6:8.3f} M options/s   max|iv-sigma| {err_pvv:.2e}")
    print(f"  vollib scalar loop   {n / t_vollib / 1e6:8.3f} M options/s   (sample of {m}, extrapolated)")
    print(f"  ratio vs py_vollib_vectorized: {t_pvv / t_ours:.2f}x   vs vollib loop: {t_vollib / t_ours:.1f}x")

    # --- Greeks, full set ---
    greeks(flag[:1000], S[:1000], K[:1000], T[:1000], r[:1000], q[:1000], sigma[:1000])
    t_g = _best_of(lambda: greeks(flag, S, K, T, r, q, sigma), repeat=5)
    is_call = flag == "c"
    t_gb = _best_of(lambda: greeks(is_call, S, K, T, r, q, sigma), repeat=5)

    def pvv_greeks() -> Any:
        return pvv.get_all_greeks(flag, S, K, T, r, sigma, q, model="black_scholes_merton", return_as="dict")

    pvv.get_all_greeks(
        flag[:100],
        S[:100],
        K[:100],
        T[:100],
        r[:100],
        sigma[:100],
        q[:100],
        model="black_scholes_merton",
        return_as="dict",
    )
    t_pg = _best_of(pvv_greeks)
    print("\nGreeks: delta, gamma, theta, vega, rho (best of runs)")
    print(f"  market_assets ('c'/'p' flags) {n / t_g / 1e6:8.2f} M options/s")
    print(f"  market_assets (bool flags)    {n / t_gb / 1e6:8.2f} M options/s")
    print(f"  py_vollib_vectorized          {n / t_pg / 1e6:8.2f} M options/s")
    print(f"  ratio vs py_vollib_vectorized: {t_pg / t_g:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
