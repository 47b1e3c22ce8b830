"""Benchmark: pattern detection (candles + chart patterns) for 500 symbols, beside its compiled limit.

Bars are the simulator's daily bars (``alpaca_sim`` MarketModel) for ``--symbols`` symbols over the
last ``--sessions`` NYSE sessions to 2025-06-30.  For each size it times, best and median of
``--repeat`` runs:

* ``detect_patterns``: every hit of every bar as the public long frame (details as dicts);
* ``pattern_rows``, one new session: what the ``chart_patterns`` asset computes for a daily run
  (rows of the last session plus the chart markers of the last 126 sessions, details as JSON);
* ``pattern_rows``, the last 252 sessions: a one-year backfill chunk.

beside the limit, the compiled work alone on arrays already in memory: the indicators the
detectors read (SMA-50/200, RSI, MACD, relative volume) plus :func:`patterns.pattern_block`, the one
compiled pass over every symbol (with the same bars emitted as the workload).  TA-Lib's eight
``CDL*`` functions, called per symbol on the same arrays, are printed as the C reference for the
candle part.  The indicator kernels are pinned to one thread (other work shares this host); the
one-time numba cache load is paid and reported before anything is timed.

Run: ``.venv/bin/python bench/patterns.py [--symbols 500 --sessions 252,558,2520 --repeat 5]``
(558 = ``LOOKBACK_SESSIONS`` + 1: the history a daily run of the asset actually reads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alpaca_sim.market_model import MarketModel  # noqa: E402
from market_assets.analytics.technicals import frame as tx  # noqa: E402
from market_assets.analytics.technicals import indicators as ind  # noqa: E402
from market_assets.analytics.technicals import patterns as pt  # noqa: E402
from market_assets.analytics.technicals import rows as rw  # noqa: E402
from market_assets.analytics.technicals import volume as vol  # noqa: E402
from market_assets.domain.sessions import session_before, session_of_daily_ts  # noqa: E402
from market_assets.reporting.technicals import CHART_SESSIONS  # noqa: E402

END = date(2025, 6, 30)  # the simulator starts on 2015-01-02: room for 2,520 sessions

try:
    import talib
except ImportError:  # the C reference is optional
    talib = None


def _bars(symbols: int, sessions: int) -> pd.DataFrame:
    universe = [f"B{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(symbols)]
    bars = MarketModel(seed=11).daily_bars(universe, session_before(END, sessions - 1), END)
    bars["ts"] = pd.to_datetime(bars["ts"], utc=True)
    bars["session"] = pd.to_datetime(session_of_daily_ts(bars["ts"])).dt.date
    return bars.sort_values(["symbol", "ts"]).reset_index(drop=True)  # as the warehouse reads them


def _times(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return min(runs), statistics.median(runs)


def _compiled(bars: pd.DataFrame, keep: np.ndarray | None) -> tuple[Callable[[], Any], Callable[[], Any] | None]:
    """(the compiled work of a pattern run on prepared arrays, TA-Lib's eight CDL per symbol)."""
    block = tx._Block(bars)
    o, h, lo, c, v = (block.field(name) for name in ("open", "high", "low", "close", "volume"))
    offsets = block.width - block.counts
    starts = np.concatenate([[0], np.cumsum(block.counts)[:-1]])
    emit = np.ones(len(bars), dtype=bool) if keep is None else keep[block.order]

    def kernels() -> None:
        sma = ind.smas(c, (50, 200))
        macd_v, sig_v, _ = ind.macd(c)
        arrays = {
            "open": o, "high": h, "low": lo, "close": c, "sma_50": sma[50], "sma_200": sma[200],
            "rsi": ind.rsi(c, 14), "macd": macd_v, "macd_signal": sig_v, "relative_volume": vol.relative_volume(v, 20),
        }  # fmt: skip
        pt.pattern_block(arrays, offsets, starts, emit)

    if talib is None:
        return kernels, None
    functions = (
        talib.CDLDOJI, talib.CDLHAMMER, talib.CDLSHOOTINGSTAR, talib.CDLENGULFING, talib.CDLMORNINGSTAR,
        talib.CDLEVENINGSTAR, talib.CDL3WHITESOLDIERS, talib.CDL3BLACKCROWS,
    )  # fmt: skip

    def talib_candles() -> None:
        for fn in functions:
            for r in range(o.shape[0]):
                off = offsets[r]
                fn(o[r, off:], h[r, off:], lo[r, off:], c[r, off:])

    return kernels, talib_candles


def _workloads(bars: pd.DataFrame) -> list[tuple[str, Callable[[], Any], np.ndarray | None]]:
    """(name, workload, bars it emits hits for (None: all))."""
    days = np.array(sorted(set(bars["session"])))
    last = days[-1]
    since = session_before(last, CHART_SESSIONS)
    first_year = days[max(len(days) - 252, 0)]
    session = bars["session"].to_numpy()
    out: list[tuple[str, Callable[[], Any], np.ndarray | None]] = [
        ("detect_patterns (every hit, dicts)", lambda: tx.detect_patterns(bars), None),
        (
            "pattern_rows, one new session",
            lambda: rw.pattern_rows(bars, last, last, since=since),
            (session == last) | (session > since),
        ),
    ]
    if len(days) > 252:
        out.append(
            (
                "pattern_rows, last 252 sessions",
                lambda: rw.pattern_rows(bars, first_year, last, since=since),
                (session >= first_year) | (session > since),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--sessions", default="252,558,2520", help="comma-separated history lengths")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sessions.split(",")]
    ind._parallel_mode = "never"
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    t0 = time.perf_counter()
    full = _bars(args.symbols, max(sizes))
    print(f"simulator bars: {len(full):,} rows in {time.perf_counter() - t0:.1f} s (not timed below)")
    days = np.array(sorted(set(full["session"])))
    t0 = time.perf_counter()
    warm = full[full["symbol"].isin(full["symbol"].unique()[:2])]
    tx.detect_patterns(warm), rw.pattern_rows(warm, days[-1], days[-1], since=days[-5])
    print(f"first call (numba cache load or compile) {time.perf_counter() - t0:.2f} s, paid once per process")
    for n in sizes:
        bars = full[full["session"] >= days[-n]].reset_index(drop=True)
        hits = tx.pattern_hits(bars)
        print(
            f"\n{args.symbols} symbols x {n} sessions: {len(bars):,} bars, {len(hits):,} hits; "
            f"best / median of {args.repeat}, seconds"
        )
        header = f"{'work':<36}{'best':>8}{'median':>8}{'limit':>8}{'ratio':>7}   limit = compiled work alone"
        print(header)
        print("-" * len(header))
        talib_time = None
        for name, work, keep in _workloads(bars):
            kernels, talib_candles = _compiled(bars, keep)
            kernels()
            best, median = _times(work, args.repeat)
            limit, _ = _times(kernels, args.repeat)
            print(f"{name:<36}{best:>8.3f}{median:>8.3f}{limit:>8.3f}{best / limit:>6.1f}x")
            if talib_candles is not None and talib_time is None:
                talib_time, _ = _times(talib_candles, max(1, args.repeat // 2))
                kernel_only = limit
        if talib_time is not None:
            print(
                f"TA-Lib's 8 CDL functions per symbol (C, candles only): {talib_time:.3f} s; "
                f"the whole compiled pass above (indicators + every pattern): {kernel_only:.3f} s"
            )
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
