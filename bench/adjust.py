"""Benchmark: one new split, incremental (that symbol only) vs a full recompute of the universe, side by side.

Setup: ``--symbols`` symbols x ``--years`` of daily bars from the simulator's market model, written straight
into ``market.bars_daily`` (the HTTP path is not what is measured), and their derived tables (indicators,
patterns, support/resistance, pivots) computed once over the whole history.

Then a new 2:1 split arrives for one symbol, ex-date in the middle of its history:

* incremental: store the action, refresh the factors of the universe (only that symbol's change; the others
  are compared and left alone), find the stale symbols, recompute that symbol's whole derived history
  (``defs.corporate_actions.refresh_factors`` + ``stale_symbols`` + ``recompute_history``: what the
  ``corporate_actions`` and ``adjusted_history`` assets do);
* full: recompute the derived history of every symbol of the universe (what a platform without the stale
  tracking would have to do).

Both end in the same stored rows for the split symbol (checked). The ratio full / incremental should be about
the universe size: the incremental path costs O(that symbol's history).

    .venv/bin/python bench/adjust.py [--symbols 50] [--years 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alpaca_sim.market_model import MarketModel  # noqa: E402
from market_assets.defs.corporate_actions import recompute_history, refresh_factors  # noqa: E402
from market_assets.domain.sessions import session_of_daily_ts  # noqa: E402
from market_assets.runtime.embedded import ensure_postgres, stop_postgres  # noqa: E402
from market_assets.warehouse import tables  # noqa: E402
from market_assets.warehouse.queries.corporate_actions import stale_symbols  # noqa: E402
from market_assets.warehouse.resource import WarehouseResource  # noqa: E402

ALL = (date(1900, 1, 1), date(2999, 12, 31))


def load_bars(warehouse: WarehouseResource, symbols: list[str], start: date, end: date) -> int:
    bars = MarketModel(seed=11).daily_bars(symbols, start, end)
    bars["session"] = session_of_daily_ts(bars["ts"])
    bars = bars.assign(feed="sip", run_id="bench")
    warehouse.replace_partition(tables.BARS_DAILY, bars, sessions=ALL, symbols=symbols)
    return len(bars)


def derived_rows(warehouse: WarehouseResource, symbol: str) -> dict[str, pd.DataFrame]:
    out = {}
    for table in ("market.indicators_daily", "market.pivot_points"):
        frame = warehouse.read_frame(f"SELECT * FROM {table} WHERE symbol = %s ORDER BY ts", (symbol,))
        out[table] = frame.drop(columns=["run_id", "computed_at"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--years", type=int, default=4)
    args = ap.parse_args()
    if os.environ.get("DATABASE_URL"):
        sys.exit("unset DATABASE_URL: this benchmark truncates tables, so it runs on its own embedded PostgreSQL")
    home = Path(tempfile.mkdtemp(prefix="mdba-", dir="/tmp"))
    try:
        warehouse = WarehouseResource(database_url=ensure_postgres(home).url("market"))
        warehouse.migrate()
        universe = [f"B{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(args.symbols)]
        end = date(2024, 12, 31)
        start = date(end.year - args.years + 1, 1, 2)
        n_bars = load_bars(warehouse, universe, start, end)
        warehouse.upsert_symbols(universe)
        t0 = time.perf_counter()
        recompute_history(warehouse, universe, "initial")
        initial = time.perf_counter() - t0
        print(f"universe {len(universe)} symbols x {args.years} years: {n_bars} bars; initial derive {initial:.1f}s")

        symbol = universe[len(universe) // 2]
        sessions = warehouse.read_frame(
            "SELECT session FROM market.bars_daily WHERE symbol = %s ORDER BY session", (symbol,)
        )["session"]
        ex_date = sessions.iloc[len(sessions) // 2]
        action = {c: None for c in tables.CORPORATE_ACTIONS.column_names} | {
            "id": f"bench-split-{symbol}", "type": "forward_split", "symbol": symbol, "ex_date": ex_date,
            "process_date": ex_date, "new_rate": 2.0, "old_rate": 1.0, "payload": json.dumps({"bench": True}),
            "run_id": "bench",
        }  # fmt: skip

        # incremental: store, refresh factors (universe), find stale, recompute that symbol
        t0 = time.perf_counter()
        warehouse.upsert(tables.CORPORATE_ACTIONS, pd.DataFrame([action]), changed_only=True)
        changed, _ = refresh_factors(warehouse, universe, "bench")
        stale = stale_symbols(warehouse, universe)
        rows = recompute_history(warehouse, stale, "incremental")
        incremental = time.perf_counter() - t0
        assert changed == [symbol] and stale == [symbol], (changed, stale)
        after_incremental = derived_rows(warehouse, symbol)

        # full: every symbol's history
        t0 = time.perf_counter()
        full_rows = recompute_history(warehouse, universe, "full")
        full = time.perf_counter() - t0
        after_full = derived_rows(warehouse, symbol)
        for table, frame in after_full.items():
            pd.testing.assert_frame_equal(frame, after_incremental[table], check_exact=False, rtol=1e-12)

        inc_rows = sum(rows.values())
        all_rows = sum(full_rows.values())
        print()
        print("| path | symbols recomputed | derived rows written | seconds |")
        print("|---|---|---|---|")
        print(f"| incremental (new split on {symbol}, ex {ex_date}) | 1 | {inc_rows:,} | {incremental:.2f} |")
        print(f"| full universe recompute | {len(universe)} | {all_rows:,} | {full:.2f} |")
        print()
        print(f"full / incremental: {full / incremental:.1f}x (universe size {len(universe)}); "
              f"rows {all_rows / max(inc_rows, 1):.1f}x; same stored rows for {symbol}: yes")  # fmt: skip
    finally:
        stop_postgres(home)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
