"""Benchmark: warming the cache for 5,000 symbols through the project vs a plain redis-py MSET.

Both sides write the same 5,000 keys with the same value bytes to the same Redis, in one run:

* project: ``CacheResource.write_market(models)``: serialises each validated ``MarketData`` to
  compact JSON and writes ``SET key value EX ttl`` pipelined in chunks of 1,000 (per-key TTL, and
  Cluster-safe: MSET across hash tags is a cross-slot error on a Cluster);
* anchor: ``redis.Redis.mset`` of the pre-serialised bytes: one command, no TTL, no validation.

Target: project keys/s >= 0.5 x MSET keys/s. Uses REDIS_URL if set (a private key prefix, deleted
afterwards), else a private redis-server on a temporary unix socket.

    .venv/bin/python bench/cache.py [--symbols 5000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import string
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import redis

from market_assets.cache.models import MarketData, TechnicalIndicators
from market_assets.cache.resource import CacheResource
from market_assets.runtime.embedded import redis_server_binary


def symbols(n: int) -> list[str]:
    letters = string.ascii_uppercase
    out = []
    for size in (3, 4):
        for combo in itertools.product(letters, repeat=size):
            out.append("".join(combo))
            if len(out) == n:
                return out
    return out


def models(names: list[str]) -> list[MarketData]:
    now = datetime.now(UTC)
    ind = TechnicalIndicators(timeframe="1Day", ts=now, rsi=55.1, macd=0.3, macd_signal=0.2, macd_hist=0.1,
                              sma_20=101.2, sma_50=99.9, sma_200=95.5)  # fmt: skip
    return [
        MarketData(symbol=s, session=date(2026, 6, 30), ts=now, source="1Day", price=100.0 + i / 100, open=99.5,
                   high=101.0, low=98.7, volume=1_000_000 + i, vwap=100.1, daily=ind, intraday=None, cached_at=now)
        for i, s in enumerate(names)
    ]  # fmt: skip


def start_private_redis() -> tuple[str, subprocess.Popen[bytes], Path]:
    folder = Path(tempfile.mkdtemp(prefix="mdb-", dir="/tmp"))
    sock = folder / "r.sock"
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
         "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(500):
        try:
            if redis.Redis(unix_socket_path=str(sock)).ping():
                break
        except (redis.ConnectionError, OSError):
            time.sleep(0.02)
    return f"unix://{sock}", proc, folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    url = os.environ.get("REDIS_URL")
    proc = folder = None
    if not url:
        url, proc, folder = start_private_redis()
    prefix = f"mdbench:{uuid.uuid4().hex[:8]}"
    cache = CacheResource(redis_url=url, key_prefix=prefix)
    client = redis.Redis.from_url(url)
    names = symbols(args.symbols)
    items = models(names)
    payload = {cache.key(m.symbol, "market"): m.to_json() for m in items}
    print(f"redis: {'REDIS_URL' if proc is None else 'private redis-server (unix socket)'}; "
          f"{len(items)} keys, {sum(map(len, payload.values())) / len(payload):.0f} bytes/value")  # fmt: skip
    pairs = [(m.symbol, payload[cache.key(m.symbol, "market")]) for m in items]
    project, anchor, project_bytes = [], [], []
    try:
        for _ in range(args.repeat):  # interleaved so both see the same machine state
            t0 = time.perf_counter()
            report = cache.write_market(items)
            project.append(time.perf_counter() - t0)
            assert report.ok and report.written["market"] == len(items), report
            t0 = time.perf_counter()
            client.mset(payload)
            anchor.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert cache.write_strings("market", pairs).ok
            project_bytes.append(time.perf_counter() - t0)
        ser = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for m in items:
                m.to_json()
            ser.append(time.perf_counter() - t0)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
        if keys:
            client.delete(*keys)
        cache.close()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
            shutil.rmtree(folder, ignore_errors=True)  # type: ignore[arg-type]
    p, a, s = statistics.median(project), statistics.median(anchor), statistics.median(ser)
    b = statistics.median(project_bytes)
    n = len(items)
    print(f"project write_market (serialise + SET EX pipelined): {p * 1000:7.1f} ms {n / p:>10,.0f} keys/s")
    print(f"  of which JSON serialisation of the models:         {s * 1000:7.1f} ms")
    print(f"project write_strings (same bytes, SET EX pipelined): {b * 1000:6.1f} ms {n / b:>10,.0f} keys/s")
    print(f"plain redis-py MSET of the same bytes:                {a * 1000:6.1f} ms {n / a:>10,.0f} keys/s")
    print(f"ratio project/MSET keys/s: end to end {a / p:.2f}, Redis stage alone {a / b:.2f}  (target >= 0.5)")


if __name__ == "__main__":
    main()
