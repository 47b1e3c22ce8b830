"""Benchmark: market_assets indicators vs TA-Lib (C) vs pandas-ta-classic, side by side.

500 symbols x 2520 daily bars of seeded random walks.  Each row times one workload through
(a) this project's 2-D functions, (b) TA-Lib called per symbol (as a user would loop), and
(c) pandas-ta-classic per symbol with ``talib=False`` (its own implementation; with TA-Lib
installed it would otherwise just call TA-Lib).  Best of N wall-clock runs, runs interleaved so
machine noise hits all three alike.  Max |diff| is against TA-Lib over all values both define.

Run: ``.venv/bin/python bench/indicators.py [--symbols 500 --bars 2520 --repeat 7]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import talib

from market_assets.analytics import indicators as ind
from market_assets.analytics import volume as vol

warnings.filterwarnings("ignore")


def _data(symbols: int, bars: int, seed: int = 42) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    start = rng.uniform(10, 1000, (symbols, 1))
    c = start * np.exp(np.cumsum(rng.normal(0, 0.02, (symbols, bars)), axis=1))
    o = np.concatenate([c[:, :1], c[:, :-1]], axis=1) * (1 + rng.normal(0, 0.005, c.shape))
    h = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.008, c.shape)))
    lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.008, c.shape)))
    v = rng.integers(10_000, 5_000_000, c.shape).astype(float)
    return {"open": o, "high": h, "low": lo, "close": c, "volume": v}


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _maxdiff(mine: list[np.ndarray], ref: list[np.ndarray]) -> float:
    worst = 0.0
    for m, r in zip(mine, ref, strict=True):
        both = np.isfinite(m) & np.isfinite(r)
        if (np.isnan(m) != np.isnan(r)).any():
            return float("inf")
        if both.any():
            worst = max(worst, float(np.max(np.abs(m[both] - r[both]))))
    return worst


def _workloads(d: dict[str, np.ndarray]) -> list[tuple[str, Callable[[], list[np.ndarray]], Callable[[], list[np.ndarray]], Callable[[], Any]]]:  # noqa: E501
    import pandas_ta_classic as pta

    c, h, lo, v = d["close"], d["high"], d["low"], d["volume"]
    n = c.shape[0]
    cs = [pd.Series(c[i]) for i in range(n)]
    hs = [pd.Series(h[i]) for i in range(n)]
    ls = [pd.Series(lo[i]) for i in range(n)]
    vs = [pd.Series(v[i]) for i in range(n)]

    def ours_core() -> list[np.ndarray]:
        r = ind.rsi(c, 14)
        m = ind.macd(c, 12, 26, 9)
        s = ind.smas(c, (20, 50, 200))
        return [r, *m, s[20], s[50], s[200]]

    def talib_core() -> list[np.ndarray]:
        rows = []
        for i in range(n):
            x = c[i]
            rows.append([talib.RSI(x, 14), *talib.MACD(x, 12, 26, 9), talib.SMA(x, 20), talib.SMA(x, 50),
                         talib.SMA(x, 200)])
        return [np.array([row[k] for row in rows]) for k in range(7)]

    def pta_core() -> None:
        for i in range(n):
            x = cs[i]
            pta.rsi(x, 14, talib=False)
            pta.macd(x, 12, 26, 9, talib=False)
            pta.sma(x, 20, talib=False)
            pta.sma(x, 50, talib=False)
            pta.sma(x, 200, talib=False)

    def per_symbol(fn: Callable[[int], Any], k: int) -> list[np.ndarray]:
        res = [fn(i) for i in range(n)]
        if k == 1:
            return [np.array(res)]
        return [np.array([r[j] for r in res]) for j in range(k)]

    return [
        ("RSI14+MACD+SMA20/50/200", ours_core, talib_core, pta_core),
        ("RSI14", lambda: [ind.rsi(c, 14)], lambda: per_symbol(lambda i: talib.RSI(c[i], 14), 1),
         lambda: [pta.rsi(cs[i], 14, talib=False) for i in range(n)]),
        ("MACD12/26/9", lambda: list(ind.macd(c)), lambda: per_symbol(lambda i: talib.MACD(c[i]), 3),
         lambda: [pta.macd(cs[i], 12, 26, 9, talib=False) for i in range(n)]),
        ("SMA20/50/200", lambda: list(ind.smas(c, (20, 50, 200)).values()),
         lambda: [np.array([talib.SMA(c[i], w) for i in range(n)]) for w in (20, 50, 200)],
         lambda: [[pta.sma(cs[i], w, talib=False) for w in (20, 50, 200)] for i in range(n)]),
        ("BBANDS20,2", lambda: list(ind.bbands(c, 20, 2.0, 2.0)),
         lambda: per_symbol(lambda i: talib.BBANDS(c[i], 20, 2.0, 2.0), 3),
         lambda: [pta.bbands(cs[i], 20, 2.0, talib=False) for i in range(n)]),
        ("ATR14", lambda: [ind.atr(h, lo, c, 14)], lambda: per_symbol(lambda i: talib.ATR(h[i], lo[i], c[i], 14), 1),
         lambda: [pta.atr(hs[i], ls[i], cs[i], 14, talib=False) for i in range(n)]),
        ("STOCH5,3,3", lambda: list(ind.stoch(h, lo, c, 5, 3, 3)),
         lambda: per_symbol(lambda i: talib.STOCH(h[i], lo[i], c[i]), 2),
         lambda: [pta.stoch(hs[i], ls[i], cs[i], 5, 3, 3, talib=False) for i in range(n)]),
        ("OBV", lambda: [vol.obv(c, v)], lambda: per_symbol(lambda i: talib.OBV(c[i], v[i]), 1),
         lambda: [pta.obv(cs[i], vs[i], talib=False) for i in range(n)]),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--bars", type=int, default=2520)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--pta-repeat", type=int, default=2, help="pandas-ta is slow; fewer repeats")
    args = ap.parse_args()
    d = _data(args.symbols, args.bars)
    print(f"{args.symbols} symbols x {args.bars} bars, best of {args.repeat} (pandas-ta best of {args.pta_repeat})")
    header = (f"{'workload':<26}{'ours ms':>10}{'talib ms':>10}{'pta ms':>11}"
              f"{'ours/talib':>12}{'pta/ours':>10}{'max|diff|':>12}")
    print(header)
    print("-" * len(header))
    for name, ours, ref, pta in _workloads(d):
        t_ours = t_ref = float("inf")
        mine = theirs = None
        for _ in range(args.repeat):  # interleave so background load affects both alike
            t, mine = _best(ours, 1)
            t_ours = min(t_ours, t)
            t, theirs = _best(ref, 1)
            t_ref = min(t_ref, t)
        t_pta, _ = _best(pta, args.pta_repeat)
        diff = _maxdiff(mine, theirs)
        print(f"{name:<26}{t_ours * 1e3:>10.1f}{t_ref * 1e3:>10.1f}{t_pta * 1e3:>11.1f}"
              f"{t_ours / t_ref:>12.2f}{t_pta / t_ours:>10.1f}{diff:>12.2e}")


if __name__ == "__main__":
    main()
