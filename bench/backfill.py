"""Backfill benchmark: `market-data run` end to end on the simulator, side by side with the limits of the same work.

One run, on fresh storage (a scratch MARKET_DATA_HOME; the warehouse is DATABASE_URL's server or the embedded one):

1. `market-data run` for N symbols over Y years (daily bars + all technicals, then the options of the last
   session; no minute bars), timed from outside, peak RSS of the CLI process sampled every 0.1 s;
2. the same command again (resume: nothing complete is fetched again);
3. one new session after the window through the CLI (its last-session step runs the schedule's whole job:
   bars, minute bars, technicals, options, cache);
4. the three sessions after that, each through the two jobs that hold bars and technicals only (`daily_bars_job`,
   `technicals_job`), each timed as the CLI times a step: the "one new session, bars + technicals" figures, each
   with the number of symbols that went ex (a split or dividend on that session makes `adjusted_history`
   recompute that symbol's whole derived history, so a day's cost depends on how many there are); then each of
   them `REPEATS` more times with that day's factors made newer than the derived rows (the same work again, those
   symbols' histories included), printed beside the first run with the median: one run of a few seconds on a
   machine whose speed drifts says little.

The limits, computed for the same work and printed beside the measurements:

* API: the fewest requests Alpaca allows for the rows written (bars: ceil(rows / 10,000) pages of many symbols;
  contracts: ceil(contracts / 10,000); chains: one page of up to 1,000 snapshots per underlying and page),
  and their time at Alpaca's 200 requests/min;
* COPY: a binary COPY of the same rows (bars and every derived table) into empty copies of their tables;
* kernels: the technicals computed once over the whole window in memory (indicators, patterns, levels as of
  every session, pivots), with no I/O.

    python bench/backfill.py [--symbols 500] [--years 10] [--end 2026-10-30]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import resource
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
BARS_PAGE = 10_000
CONTRACTS_PAGE = 10_000
CHAIN_PAGE = 1_000
API_PER_MINUTE = 200
NEW_SESSIONS = 3  # sessions measured one at a time after the CLI's new session
REPEATS = 2  # each of them measured again this many times: one run of a few seconds says little on a drifting machine
DERIVED = ("indicators_daily", "patterns", "support_resistance_packed", "pivot_points")
CPU: list[float] = []  # CPU seconds (user + system) of each CLI run, simulator included (it runs in-process)


def universe(n: int) -> list[str]:
    """n distinct valid tickers (three letters, spread over the alphabet)."""
    step = max(1, 26**3 // n)
    return ["".join(p) for p in itertools.islice(itertools.product(string.ascii_uppercase, repeat=3), 0, None, step)][
        :n
    ]


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, int, str, int]:
    """(wall seconds, peak RSS bytes of the CLI process, stdout, exit code); CPU seconds in CPU[-1]."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "market_assets.runtime.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peak = max(peak, ps.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return time.perf_counter() - t0, peak, out, proc.returncode


def step_seconds(out: str) -> list[float]:
    return [float(x) for x in re.findall(r"\bok in ([0-9.]+)s", out)]


def conninfo(env: dict[str, str]) -> str:
    from market_assets.runtime.services import resolve_endpoints
    from market_assets.warehouse.resource import to_conninfo

    os.environ.update(env)
    from market_assets.config import load_settings

    return to_conninfo(resolve_endpoints(load_settings()).database_url)


def copy_limit(dsn: str) -> tuple[int, float]:
    """(rows, seconds) of a binary COPY of every written bar and derived row into empty copies of the tables."""
    rows, seconds = 0, 0.0
    with psycopg.connect(dsn) as conn:
        for name in ("bars_daily", *DERIVED):
            buf = bytearray()
            with conn.cursor().copy(f"COPY market.{name} TO STDOUT (FORMAT binary)") as cp:
                for chunk in cp:
                    buf += chunk
            n = conn.execute(f"SELECT count(*) FROM market.{name}").fetchone()[0]
            conn.execute(f"CREATE TEMP TABLE bench_{name} (LIKE market.{name} INCLUDING ALL)")
            t0 = time.perf_counter()
            with conn.cursor().copy(f"COPY bench_{name} FROM STDIN (FORMAT binary)") as cp:
                cp.write(bytes(buf))
            seconds += time.perf_counter() - t0
            rows += n
        conn.rollback()
    return rows, seconds


def kernels_limit(dsn: str) -> float:
    """Seconds of the technicals over the whole window in memory (JIT warmed on a small slice first)."""
    from market_assets.analytics.technicals.frame import (
        LOOKBACK_SESSIONS,
        compute_daily_technicals,
        detect_patterns,
        pivot_points,
        support_resistance_by_session,
    )
    from market_assets.domain.sessions import session_before

    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            "SELECT symbol, ts, session, open, high, low, close, volume FROM market.bars_daily ORDER BY symbol, ts"
        )
        bars = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    for col in ("open", "high", "low", "close", "volume"):
        bars[col] = bars[col].astype(float)
    sessions = sorted(set(bars["session"]))
    starts = [session_before(d, LOOKBACK_SESSIONS) for d in sessions]
    warm = bars[bars["symbol"].isin(bars["symbol"].unique()[:2])]
    compute_daily_technicals(warm), detect_patterns(warm), pivot_points(warm)
    support_resistance_by_session(warm, sessions[:5], starts[:5])
    t0 = time.perf_counter()
    compute_daily_technicals(bars)
    detect_patterns(bars)
    support_resistance_by_session(bars, sessions, starts)
    pivot_points(bars)
    return time.perf_counter() - t0


def option_minimum(symbols: list[str], session: date) -> tuple[int, int, int]:
    """(contracts, minimum contracts requests, minimum chain requests) for the CLI's option window."""
    from alpaca_sim.market_model import MarketModel
    from market_assets.config import load_option_settings

    horizon = load_option_settings().expiry_horizon_days
    model = MarketModel()
    contracts, chain_requests = 0, 0
    for u in symbols:
        chain = model.chain_frame(u, session)
        n = int(((chain["expiration"] >= session) & (chain["expiration"] <= session + timedelta(days=horizon))).sum())
        contracts += n
        chain_requests += max(1, math.ceil(n / CHAIN_PAGE))
    return contracts, math.ceil(contracts / CONTRACTS_PAGE), chain_requests


def logged_requests(dsn: str, assets: tuple[str, ...]) -> tuple[int, int, int]:
    """(requests, retries, rows written) the ingestion log recorded for these assets."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(http_requests), 0), coalesce(sum(http_retries), 0), coalesce(sum(rows_written), 0)"
            " FROM market.ingestion_log WHERE asset = ANY(%s) AND status = 'success'",
            (list(assets),),
        ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


BARS_AND_TECHNICALS = """
import sys, time
from datetime import date
import alpaca_sim
from market_assets.config import load_settings
from market_assets.runtime.cli import _materialize
from market_assets.runtime.launch import cli_instance
from market_assets.runtime.services import export_environment, resolve_endpoints
settings = load_settings()
export_environment(settings, resolve_endpoints(settings))
day = date.fromisoformat(sys.argv[1])
if len(sys.argv) > 3:  # a repeat of the day: its factors made newer than the derived rows, so the same symbols'
    import psycopg  # histories are recomputed again, as on the day itself (the same work, measured again)
    with psycopg.connect(sys.argv[3], autocommit=True) as conn:
        conn.execute("UPDATE market.adjustment_factors SET computed_at = now() WHERE ex_date = %s", (day,))
instance = cli_instance()  # as the CLI holds it
import market_assets.definitions  # loaded before the clock starts, as the CLI (or a code server) has it loaded
# the in-process simulator generates each symbol's whole series and corporate actions on first use: a stand-in for
# data Alpaca (or a long-running simulator service) already has, so it is paid before the clock starts, reported apart
t0 = time.perf_counter()
alpaca_sim.shared_server().warm(sys.argv[2].split(","))
print(f"simulator_warmup True {time.perf_counter() - t0:.2f}", flush=True)
for job in ("daily_bars_job", "technicals_job"):
    outcome = _materialize(job, job, instance=instance, partition_range=(day, day))
    print(f"{job} {outcome.success} {outcome.seconds:.2f}", flush=True)
"""


def ex_symbols(dsn: str, day: date) -> int:
    """Symbols with an adjustment factor dated `day`: each had its derived history recomputed that session."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(DISTINCT symbol) FROM market.adjustment_factors WHERE ex_date = %s", (day,)
        ).fetchone()[0]


def bars_and_technicals(
    day: date, symbols: list[str], env: dict[str, str], repeat_dsn: str | None = None
) -> dict[str, float]:
    """Seconds of daily_bars_job and technicals_job for one session, in a fresh process that has loaded the
    definitions (start-up and imports excluded, as in the CLI's step times; first-use costs inside the run count,
    except the in-process simulator's series and action records, built first and reported as `simulator_warmup`).

    With `repeat_dsn`, the session again (bars replaced, technicals recomputed, and the histories of the symbols
    going ex that day recomputed again): the machine's own spread, next to the one real first run."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            BARS_AND_TECHNICALS,
            day.isoformat(),
            ",".join(symbols),
            *([repeat_dsn] * bool(repeat_dsn)),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = {}
    for line in out.stdout.splitlines():
        job, ok, value = line.split()
        if ok != "True":
            raise SystemExit(f"{job} failed for {day}:\n{out.stdout}\n{out.stderr[-3000:]}")
        seconds[job] = float(value)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--end", default="2026-10-30", help="last session of the window")
    ap.add_argument("--home", default=None, help="MARKET_DATA_HOME (default: a fresh temporary directory)")
    args = ap.parse_args()

    from market_assets.domain.sessions import sessions_between

    end = date.fromisoformat(args.end)
    start = max(date(2015, 1, 2), date(end.year - args.years, end.month, end.day) + timedelta(days=1))
    symbols = universe(args.symbols)
    home = args.home or tempfile.mkdtemp(prefix="bench-backfill-")
    env = {**os.environ, "MARKET_DATA_HOME": home, "PYTHONPATH": str(ROOT)}
    for name in (
        "ALPACA_API_KEY",
        "ALPACA_SECRET_KEY",
        "ALPACA_DATA_URL",
        "DAGSTER_HOME",
        "ALPACA_RATE_LIMIT_PER_MINUTE",
    ):
        env.pop(name, None)
    sessions = sessions_between(start, end)
    common = ["run", "--symbols", ",".join(symbols), "--intraday-days", "0"]
    print(f"{len(symbols)} symbols x {len(sessions)} sessions ({start} .. {end}), storage {home}", flush=True)

    wall, peak, out, code = run_cli([*common, "--start", str(start), "--end", str(end)], env)
    main_cpu = CPU[-1]
    print(out[-3000:], flush=True)
    if code != 0:
        raise SystemExit(f"market-data run failed with exit code {code}")
    steps = step_seconds(out)
    dsn = conninfo(env)
    bar_requests, bar_retries, bar_rows = logged_requests(dsn, ("daily_bars",))
    opt_requests, opt_retries, _ = logged_requests(dsn, ("option_contracts", "option_chain"))
    with psycopg.connect(dsn) as conn:
        contract_requests = conn.execute(
            "SELECT coalesce(sum(http_requests), 0) FROM market.ingestion_log WHERE asset = 'option_contracts'"
        ).fetchone()[0]

    resume_wall, _, resume_out, _ = run_cli([*common, "--start", str(start), "--end", str(end)], env)
    after = sessions_between(end + timedelta(days=1), end + timedelta(days=10))[0]
    one_wall, _, one_out, _ = run_cli([*common, "--start", str(after), "--end", str(after)], env)
    one_steps = step_seconds(one_out)
    following = sessions_between(after + timedelta(days=1), after + timedelta(days=10))[:NEW_SESSIONS]
    new_sessions = [
        (
            day,
            [bars_and_technicals(day, symbols, env, dsn if k else None) for k in range(1 + REPEATS)],
            ex_symbols(dsn, day),
        )
        for day in following
    ]

    copy_rows, copy_s = copy_limit(dsn)
    kernel_s = kernels_limit(dsn)
    api_min = math.ceil(bar_rows / BARS_PAGE)
    api_s = api_min / API_PER_MINUTE * 60
    contracts, contracts_min, chains_min = option_minimum(symbols, end)
    limits = api_s + copy_s + kernel_s
    # steps: symbols, daily bars of the window, technicals before the last session, the last session's whole job
    daily_s = sum(steps[1:3]) if len(steps) > 2 else float("nan")
    opt_s = steps[3] if len(steps) > 3 else float("nan")

    print()
    print("| work | measured | limit (same work) | target |")
    print("|---|---|---|---|")
    print(
        f"| {len(symbols)} symbols x {len(sessions)} sessions, daily bars + all technicals (the CLI's daily step) "
        f"| {daily_s:.1f} s (bars {steps[1]:.1f}, technicals {steps[2]:.1f}) "
        f"| {limits:.1f} s = API {api_s:.1f} s ({api_min} requests at 200/min) "
        f"+ COPY {copy_s:.1f} s ({copy_rows:,} rows) + kernels {kernel_s:.1f} s | {daily_s / limits:.2f}x the limits |"
    )
    print(
        f"| the whole CLI run (start-up, symbols, daily step, options of the last session, cache) "
        f"| {wall:.1f} s wall, {main_cpu:.1f} s CPU (last session's whole job, options included, {opt_s:.1f} s) | | |"
    )
    print(f"| bars requests | {bar_requests} ({bar_retries} retries) for {bar_rows:,} rows | {api_min} | |")
    skipped = resume_out.count("already complete")
    print(f"| re-run of the same command (resume) | {resume_wall:.1f} s, {skipped} step(s) already complete | | |")
    print(
        f"| one new session ({after}), the CLI's last-session step "
        f"| {one_steps[1] if len(one_steps) > 1 else float('nan'):.1f} s "
        f"(CLI wall {one_wall:.1f} s, {CPU[-1]:.1f} s CPU, incl. minute bars, options, cache and start-up) | | |"
    )
    for day, runs, went_ex in new_sessions:
        bt, totals = runs[0], [r["daily_bars_job"] + r["technicals_job"] for r in runs]
        print(
            f"| one new session ({day}, {went_ex} symbol(s) ex-dividend or split), bars + technicals "
            f"(daily_bars_job + technicals_job) | {totals[0]:.1f} s "
            f"(bars {bt['daily_bars_job']:.1f}, technicals {bt['technicals_job']:.1f}; "
            f"simulator series and actions generated before: {bt['simulator_warmup']:.1f} s); "
            f"the same session {REPEATS} more times: {', '.join(f'{t:.1f}' for t in totals[1:])} s, "
            f"median of all {statistics.median(totals):.1f} s | | <= 5 s |"
        )
    print(
        f"| option chains + contracts, {len(symbols)} underlyings, requests | {opt_requests} ({opt_retries} retries; "
        f"contracts {contract_requests}) | {contracts_min + chains_min} (contracts {contracts_min} for {contracts:,}, "
        f"chains {chains_min}) | {opt_requests / max(1, contracts_min + chains_min):.3f}x (<= 1.05x) |"
    )
    print(f"| peak RSS of the CLI process, main run | {peak / 2**20:,.0f} MiB | | <= 1.5 GB |")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")


if __name__ == "__main__":
    main()
