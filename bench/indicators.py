"""Benchmark: market_assets indicators vs TA-Lib (C) vs pandas-ta-classic, side by side.

500 symbols x 2520 daily bars of seeded random walks.  Each row times one workload through
(a) this project's 2-D functions (numba kernels), on one thread and on numba's N threads,
(b) TA-Lib called per symbol (as a user would loop; TA-Lib is single-threaded), and
(c) pandas-ta-classic per symbol with ``talib=False`` (its own implementation; with TA-Lib
installed it would otherwise just call TA-Lib).  Best of N wall-clock runs, runs interleaved so
machine noise hits all of them alike.  Max |diff| is against TA-Lib over all values both define
(worst of the one- and N-thread results).  The kernels' one-time JIT compile (or on-disk cache
load) is done and reported before anything is timed.

Run: ``.venv/bin/python bench/indicators.py [--symbols 500 --bars 2520 --repeat 7]``
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pandas as pd
import talib

from market_assets.analytics.technicals import indicators as ind
from market_assets.analytics.technicals import volume as vol

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


def _workloads(
    d: dict[str, np.ndarray],
) -> list[tuple[str, Callable[[], list[np.ndarray]], Callable[[], list[np.ndarray]], Callable[[], Any]]]:
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
            rows.append(
                [talib.RSI(x, 14), *talib.MACD(x, 12, 26, 9), talib.SMA(x, 20), talib.SMA(x, 50), talib.SMA(x, 200)]
            )
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
        (
            "RSI14",
            lambda: [ind.rsi(c, 14)],
            lambda: per_symbol(lambda i: talib.RSI(c[i], 14), 1),
            lambda: [pta.rsi(cs[i], 14, talib=False) for i in range(n)],
        ),
        (
            "MACD12/26/9",
            lambda: list(ind.macd(c)),
            lambda: per_symbol(lambda i: talib.MACD(c[i]), 3),
            lambda: [pta.macd(cs[i], 12, 26, 9, talib=False) for i in range(n)],
        ),
        (
            "SMA20/50/200",
            lambda: list(ind.smas(c, (20, 50, 200)).values()),
            lambda: [np.array([talib.SMA(c[i], w) for i in range(n)]) for w in (20, 50, 200)],
            lambda: [[pta.sma(cs[i], w, talib=False) for w in (20, 50, 200)] for i in range(n)],
        ),
        (
            "BBANDS20,2",
            lambda: list(ind.bbands(c, 20, 2.0, 2.0)),
            lambda: per_symbol(lambda i: talib.BBANDS(c[i], 20, 2.0, 2.0), 3),
            lambda: [pta.bbands(cs[i], 20, 2.0, talib=False) for i in range(n)],
        ),
        (
            "ATR14",
            lambda: [ind.atr(h, lo, c, 14)],
            lambda: per_symbol(lambda i: talib.ATR(h[i], lo[i], c[i], 14), 1),
            lambda: [pta.atr(hs[i], ls[i], cs[i], 14, talib=False) for i in range(n)],
        ),
        (
            "STOCH5,3,3",
            lambda: list(ind.stoch(h, lo, c, 5, 3, 3)),
            lambda: per_symbol(lambda i: talib.STOCH(h[i], lo[i], c[i]), 2),
            lambda: [pta.stoch(hs[i], ls[i], cs[i], 5, 3, 3, talib=False) for i in range(n)],
        ),
        (
            "OBV",
            lambda: [vol.obv(c, v)],
            lambda: per_symbol(lambda i: talib.OBV(c[i], v[i]), 1),
            lambda: [pta.obv(cs[i], vs[i], talib=False) for i in range(n)],
        ),
    ]


def _kernels() -> list[Any]:
    """Every numba dispatcher the benchmarked functions can reach (serial and threaded)."""
    mods = (ind, vol)
    return [f for m in mods for f in vars(m).values() if isinstance(f, numba.core.registry.CPUDispatcher)]


def _warm_up(workloads: list[tuple[str, Callable[[], Any], Callable[[], Any], Callable[[], Any]]]) -> str:
    """Call every workload once per thread mode so no JIT compile lands in a timed run."""
    n_threads = numba.get_num_threads()
    t0 = time.perf_counter()
    for mode, threads in (("never", 1), ("always", n_threads)):
        ind._parallel_mode = mode
        numba.set_num_threads(threads)
        for _name, ours, _ref, _pta in workloads:
            ours()
    elapsed = time.perf_counter() - t0
    hits = sum(sum(k.stats.cache_hits.values()) for k in _kernels())
    misses = sum(sum(k.stats.cache_misses.values()) for k in _kernels())
    how = "compiled" if misses else "loaded from numba's on-disk cache"
    return (
        f"one-time JIT warm-up {elapsed:.2f} s ({how}: {misses} kernel signatures compiled, "
        f"{hits} loaded; paid once per machine with cache=True)"
    )


def _timed(fn: Callable[[], Any], mode: str, threads: int) -> tuple[float, Any]:
    ind._parallel_mode = mode
    numba.set_num_threads(threads)
    return _best(fn, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--bars", type=int, default=2520)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--pta-repeat", type=int, default=2, help="pandas-ta is slow; fewer repeats")
    args = ap.parse_args()
    d = _data(args.symbols, args.bars)
    workloads = _workloads(d)
    n_threads = numba.get_num_threads()
    print(f"{args.symbols} symbols x {args.bars} bars, best of {args.repeat} (pandas-ta best of {args.pta_repeat})")
    print(_warm_up(workloads))
    print(
        f"threads: ours 1T = 1 thread, ours {n_threads}T = {n_threads} numba threads "
        f"({numba.threading_layer()} layer); TA-Lib and pandas-ta: 1 thread"
    )
    header = (
        f"{'workload':<26}{'ours 1T':>9}{f'ours {n_threads}T':>9}{'talib':>9}{'pta':>10}"
        f"{'1T/talib':>10}{f'{n_threads}T/talib':>10}{'pta/1T':>8}{'max|diff|':>11}"
    )
    print(header + "   (times in ms)")
    print("-" * len(header))
    for name, ours, ref, pta in workloads:
        t1 = tn = t_ref = float("inf")
        mine1 = mine_n = theirs = None
        for _ in range(args.repeat):  # interleave so background load affects all alike
            t, mine1 = _timed(ours, "never", 1)
            t1 = min(t1, t)
            t, mine_n = _timed(ours, "always", n_threads)
            tn = min(tn, t)
            t, theirs = _best(ref, 1)
            t_ref = min(t_ref, t)
        worst = max(_maxdiff(mine1, theirs), _maxdiff(mine_n, theirs))
        t_pta, _ = _best(pta, args.pta_repeat)
        print(
            f"{name:<26}{t1 * 1e3:>9.1f}{tn * 1e3:>9.1f}{t_ref * 1e3:>9.1f}{t_pta * 1e3:>10.1f}"
            f"{t1 / t_ref:>10.2f}{tn / t_ref:>10.2f}{t_pta / t1:>8.1f}{worst:>11.2e}"
        )
    ind._parallel_mode = "auto"
    numba.set_num_threads(n_threads)
    print(
        f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs "
        "(the library's default uses threads only when a core is idle)"
    )


if __name__ == "__main__":
    main()
