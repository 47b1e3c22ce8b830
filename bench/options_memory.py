"""Benchmark: peak RSS and requests of the CLI's options step for N underlyings, and checksums of what it stored.

One `market-data run` of one session (the window's bars and technicals are one session, so the options step sets
the peak), on fresh storage, peak RSS of the CLI process (the simulator runs in-process) sampled every 0.1 s.
Then: the HTTP requests the ingestion log recorded for the option assets beside the API minimum, and an md5 per
option table (every column but run ids and load times, rows in key order) and of the Redis cache contents, so two
builds can be compared for identical output.

    python bench/options_memory.py [--symbols 500] [--end 2026-10-30]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import psutil
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backfill import conninfo, logged_requests, option_minimum, run_cli, universe

OPTION_TABLES = (
    "option_contracts",
    "open_interest",
    "option_chain",
    "option_greeks",
    "options_flow_daily",
    "options_by_expiry",
    "options_by_strike",
    "options_unusual_activity",
    "quarantine",
)
VOLATILE = {"id", "run_id", "ingested_at", "updated_at", "computed_at", "quarantined_at"}


def table_checksums(dsn: str) -> dict[str, str]:
    """md5 of every option table's stable columns, rows ordered by all of them."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for name in OPTION_TABLES:
            cols = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'market' "
                    "AND table_name = %s ORDER BY ordinal_position",
                    (name,),
                )
                if r[0] not in VOLATILE
            ]
            row = ", ".join(f'"{c}"' for c in cols)
            n, digest = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) "
                f"FROM (SELECT ROW({row})::text AS r FROM market.{name}) t"
            ).fetchone()
            out[name] = f"{n} rows {digest}"
    return out


def _stable(value: bytes) -> object:
    """A cached value without what differs per warm (its time stamp and generation token)."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return value

    def strip(node: object) -> object:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in sorted(node.items()) if k not in ("cached_at", "generation")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(parsed)


def redis_checksum(url: str) -> str:
    """md5 over every cached key and its value (type-aware, order-independent; warm bookkeeping and per-warm time
    stamps and generation tokens left out) in the cache database."""
    r = redis.Redis.from_url(url)
    h, keys = hashlib.md5(), sorted(k for k in r.scan_iter(count=1000) if not k.endswith(b":warm:last"))
    for key in keys:
        kind = r.type(key).decode()
        if kind == "string":
            value: object = _stable(r.get(key))
        elif kind == "hash":
            value = sorted((f, _stable(v)) for f, v in r.hgetall(key).items())
        elif kind == "zset":
            value = r.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = r.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(r.smembers(key))
        else:
            value = kind
        h.update(key + repr(value).encode())
    return f"{len(keys)} keys {h.hexdigest()}"


def step_windows(env: dict[str, str]) -> list[tuple[str, float, float]]:
    """(step, start, end) in wall-clock seconds from Dagster's event log of the run."""
    import psycopg2  # Dagster's own storage driver

    from market_assets.config import load_settings
    from market_assets.runtime.services import resolve_endpoints

    os.environ.update(env)
    url = resolve_endpoints(load_settings()).dagster_storage_url.replace("postgresql+psycopg2://", "postgresql://")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT step_key, min(extract(epoch FROM timestamp)), max(extract(epoch FROM timestamp)) "
            "FROM event_logs WHERE dagster_event_type IN ('STEP_START', 'STEP_SUCCESS', 'STEP_FAILURE') "
            "GROUP BY run_id, step_key ORDER BY 2"
        )
        return [(str(k), float(a), float(b)) for k, a, b in cur.fetchall()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--end", default="2026-10-30", help="the session")
    args = ap.parse_args()
    end = date.fromisoformat(args.end)
    symbols = universe(args.symbols)
    home = tempfile.mkdtemp(prefix="bench-options-")
    env = {**os.environ, "MARKET_DATA_HOME": home, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "ALPACA_DATA_URL", "DAGSTER_HOME"):
        env.pop(name, None)
    cmd = ["run", "--symbols", ",".join(symbols), "--intraday-days", "0", "--start", str(end), "--end", str(end)]
    timeline: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:  # every CLI child's RSS, with the wall time, to attribute the peak to a step
        while not stop.is_set():
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                cmd_line = proc.info["cmdline"] or []
                mine = "market_assets.runtime.cli" in cmd_line and proc.ppid() == os.getpid()
                if mine and proc.info["memory_info"] is not None:
                    timeline.append((time.time(), proc.info["memory_info"].rss))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wall, peak, out, code = run_cli(cmd, env)
    stop.set()
    print(out[-2500:], flush=True)
    if code != 0:
        raise SystemExit(f"market-data run failed with exit code {code}")
    dsn = conninfo(env)
    requests, retries, _ = logged_requests(dsn, ("option_contracts", "option_chain"))
    _, contracts_min, chains_min = option_minimum(symbols, end)
    from market_assets.config import load_settings
    from market_assets.runtime.services import resolve_endpoints

    print(f"\n{len(symbols)} underlyings, session {end}, CLI wall {wall:.1f} s")
    print(f"peak RSS of the CLI process: {peak / 2**20:,.0f} MiB (target <= 1.5 GB)")
    print(f"option requests: {requests} ({retries} retries); API minimum {contracts_min + chains_min}")
    for name, digest in table_checksums(dsn).items():
        print(f"  {name:26s} {digest}")
    print(f"  {'redis':26s} {redis_checksum(resolve_endpoints(load_settings()).redis_url)}")
    print("peak RSS per Dagster step (sampled):")
    for step, lo, hi in step_windows(env):
        inside = [rss for t, rss in timeline if lo <= t <= hi]
        print(f"  {step:28s} {hi - lo:7.1f} s  peak {max(inside, default=0) / 2**20:7,.0f} MiB")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")


if __name__ == "__main__":
    main()
