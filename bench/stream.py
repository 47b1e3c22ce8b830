"""Benchmark: the WebSocket fan-out (`market-data serve`) at 1,000 clients, one process vs two.

One run: a private Redis (the bus) and the embedded PostgreSQL (tokens) in a scratch folder; N real
`market-data serve` OS processes; ``--client-procs`` client processes holding ``--clients`` WebSocket clients in
total (asyncio + websockets, Alpaca's protocol, msgpack as alpaca-py speaks it): each authenticates with a token
and subscribes to the quotes of ``--subs`` of the ``--symbols`` symbols (every symbol has the same number of
subscribers). The publisher appends quotes to the bus as the ingest service does (micro-batches, one XADD every
``--tick-ms``), each quote's ``t`` being its publish time, so a client's latency is source message (bus publish)
-> decoded at the client, clocks shared. Deliveries = quotes decoded by clients.

Per configuration (1 then 2 serve processes) two steps:

* **target**: the quote rate that gives ``--per-process`` deliveries/s per serve process (20,000 by default):
  deliveries/s, p50/p99 latency, serve CPU (of one core, from /proc via psutil);
* **capacity**: ``--overload`` times that rate, so that a serve process is saturated: what it delivers then is
  its capacity (quotes conflate per client and symbol, so the surplus is dropped, not queued); the ratio of the
  two configurations' capacities is the scaling figure.

Clients and publisher share the machine with the servers (2 cores here, shared with other work): the load
average is printed with each figure because it moves them.

    PYTHONPATH=$PWD .venv/bin/python bench/stream.py [--clients 1000] [--client-procs 4] [--seconds 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------- client process
async def _client(url: str, key: str, secret: str, symbols: list[str], got: list[tuple[int, int]],
                  ready: asyncio.Event) -> None:  # fmt: skip
    from websockets.asyncio.client import connect

    async with connect(url, additional_headers={"Content-Type": "application/msgpack"}, compression=None,
                       max_size=1 << 22, ping_interval=None, open_timeout=120) as ws:  # fmt: skip
        assert msgpack.unpackb(await ws.recv())[0]["msg"] == "connected"
        await ws.send(msgpack.packb({"action": "auth", "key": key, "secret": secret}))
        reply = msgpack.unpackb(await ws.recv())[0]
        if reply.get("msg") != "authenticated":
            raise RuntimeError(f"auth refused: {reply}")
        await ws.send(msgpack.packb({"action": "subscribe", "quotes": symbols}))
        assert msgpack.unpackb(await ws.recv())[0]["T"] == "subscription"
        ready.set()
        # no per-frame bookkeeping beyond the decode: the client processes share the cores with the servers
        async for frame in ws:
            now = time.time_ns()
            for msg in msgpack.unpackb(frame, timestamp=2):
                if msg.get("T") == "q":
                    got.append((msg["t"], now))


async def _client_main(args: argparse.Namespace) -> None:
    """One client process: ``--ids`` clients; "ready" on stdout when all subscribed; stop on stdin EOF."""
    spec = json.loads(args.worker)
    got: list[tuple[int, int]] = []
    readies = []
    tasks = []
    sem = asyncio.Semaphore(50)  # connect in waves: 1,000 simultaneous handshakes only measure the backlog

    async def one(i: int) -> None:
        ready = asyncio.Event()
        readies.append(ready)
        async with sem:
            task = asyncio.create_task(_client(spec["urls"][i % len(spec["urls"])], spec["key"], spec["secret"],
                                               spec["subs"][i], got, ready))  # fmt: skip
            tasks.append(task)
            await ready.wait()

    await asyncio.gather(*(one(i) for i in spec["ids"]))
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    np.save(spec["out"], np.array(got, dtype=np.int64).reshape(-1, 2))


# ---------------------------------------------------------------------------------------------- orchestration
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return json.loads(urllib.request.urlopen(url, timeout=2).read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Run:
    """One configuration: n serve processes and the client processes connected to them."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], key: str, secret: str, servers: int,
                 folder: Path) -> None:  # fmt: skip
        self.args, self.env, self.folder = args, env, folder
        self.ports = [_free_port() for _ in range(servers)]
        self.logs = [(folder / f"serve{p}.log").open("w") for p in self.ports]
        cli = [sys.executable, "-m", "market_assets.runtime.cli", "serve", "--port"]
        self.serves = [
            subprocess.Popen([*cli, str(p)], env=env, stdout=subprocess.DEVNULL, stderr=log)
            for p, log in zip(self.ports, self.logs, strict=True)
        ]
        for p in self.ports:
            _wait_http(f"http://127.0.0.1:{p}/healthz")
        names = [f"S{i:03d}" for i in range(args.symbols)]
        # client i subscribes to `subs` symbols spread evenly: every symbol has clients*subs/symbols subscribers
        subs = [[names[(i + k * (args.symbols // args.subs)) % args.symbols] for k in range(args.subs)]
                for i in range(args.clients)]  # fmt: skip
        self.outs = []
        self.clients = []
        urls = [f"ws://127.0.0.1:{p}/v2/iex" for p in self.ports]
        started = time.monotonic()
        for w in range(args.client_procs):
            out = folder / f"c{servers}-{w}.npy"
            self.outs.append(out)
            spec = {"urls": urls, "key": key, "secret": secret, "subs": subs, "out": str(out),
                    "ids": list(range(w, args.clients, args.client_procs))}  # fmt: skip
            self.clients.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))  # fmt: skip
        for c in self.clients:
            line = c.stdout.readline() if c.stdout else ""
            if line.strip() != "ready":
                raise RuntimeError("a client process failed to connect its clients")
        print(f"  {args.clients} clients connected, authenticated and subscribed to {len(self.ports)} serve "
              f"process(es) in {time.monotonic() - started:.1f} s")  # fmt: skip
        self.names = names

    def stop(self) -> list[np.ndarray]:
        for c in self.clients:
            if c.stdin:
                c.stdin.close()
        for c in self.clients:
            c.wait(60)
        for s in self.serves:
            s.send_signal(signal.SIGTERM)
        for s in self.serves:
            try:
                s.wait(20)
            except subprocess.TimeoutExpired:
                s.kill()
        for log in self.logs:
            log.close()
        return [np.load(o) for o in self.outs]


def publish(
    redis_url: str, key: str, names: list[str], rate: float, seconds: float, tick_ms: float
) -> tuple[int, int, int]:
    """Quotes on the bus at ``rate``/s for ``seconds``; returns (quotes, first publish ns, last publish ns)."""
    import redis

    r = redis.Redis.from_url(redis_url)
    per_tick = rate * tick_ms / 1000.0
    owed = 0.0
    n = 0
    start = time.monotonic()
    first = time.time_ns()
    next_at = start
    while time.monotonic() - start < seconds:
        owed += per_tick
        k = int(owed)
        owed -= k
        if k:
            now = time.time_ns()
            msgs = [{"T": "q", "S": names[(n + j) % len(names)], "bx": "V", "bp": 100.0, "bs": 1, "ax": "V",
                     "ap": 100.02, "as": 2, "c": ["R"], "z": "C", "t": msgpack.Timestamp.from_unix_nano(now)}
                    for j in range(k)]  # fmt: skip
            r.xadd(key, {"m": msgpack.packb(msgs, use_bin_type=True), "at": str(now)}, maxlen=10_000,
                   approximate=True)  # fmt: skip
            n += k
        next_at += tick_ms / 1000.0
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return n, first, time.time_ns()


def measure(run: Run, redis_url: str, bus: str, rate: float, seconds: float, tick_ms: float) -> dict[str, Any]:
    import psutil

    procs = [psutil.Process(s.pid) for s in run.serves]
    publish(redis_url, bus, run.names, rate, 2.0, tick_ms)  # warm-up
    cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    _, first, last = publish(redis_url, bus, run.names, rate, seconds, tick_ms)
    wall = time.monotonic() - t0
    cpu = [(sum(p.cpu_times()[:2]) - c) / wall * 100 for p, c in zip(procs, cpu0, strict=True)]
    time.sleep(1.0)  # the tail in flight
    health = [_wait_http(f"http://127.0.0.1:{p}/healthz") for p in run.ports]
    return {"server_p99_ms": max(h["bus_to_socket_ms"]["p99"] for h in health),
            "rate": rate, "first": first, "last": last, "wall": wall, "cpu": cpu,
            "load": (load0 + os.getloadavg()[0]) / 2}  # fmt: skip


def summarise(window: dict[str, Any], got: np.ndarray) -> dict[str, Any]:
    mine = got[(got[:, 0] >= window["first"]) & (got[:, 0] <= window["last"])]
    lat = (mine[:, 1] - mine[:, 0]) / 1e6
    return {
        "offered_quotes_s": window["rate"],
        "deliveries_s": len(mine) / (window["wall"]),
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "server_p99_ms": window["server_p99_ms"],
        "serve_cpu_pct": [round(c) for c in window["cpu"]],
        "cpu_us_per_delivery": sum(window["cpu"]) / 100 * window["wall"] / max(len(mine), 1) * 1e6,
        "load1": round(window["load"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--client-procs", type=int, default=4)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--subs", type=int, default=10, help="symbols per client")
    ap.add_argument("--per-process", type=float, default=20_000, help="target deliveries/s per serve process")
    ap.add_argument("--overload", type=float, default=3.0, help="capacity step: this times the target rate")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--tick-ms", type=float, default=10.0, help="the publisher's micro-batch interval")
    ap.add_argument("--servers", default="1,2", help="configurations to run (serve process counts)")
    args = ap.parse_args()
    if args.worker:
        asyncio.run(_client_main(args))
        return

    from bench.cache import start_private_redis
    from market_assets.live import tokens
    from market_assets.live.bus import bus_key
    from market_assets.runtime.embedded import ensure_postgres, stop_postgres
    from market_assets.warehouse.resource import WarehouseResource

    home = Path(tempfile.mkdtemp(prefix="mdbs-", dir="/tmp"))
    redis_url, redis_proc, redis_dir = start_private_redis()
    try:
        database_url = ensure_postgres(home).url("market")
        warehouse = WarehouseResource(database_url=database_url)
        warehouse.migrate()
        key, secret = tokens.create(warehouse, f"bench-{uuid.uuid4().hex[:6]}", max_connections=args.clients,
                                    max_symbols=args.symbols)  # fmt: skip
        prefix = "md:v1"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "MARKET_DATA_HOME": str(home)}  # fmt: skip
        bus = bus_key(prefix)
        # deliveries/s = quotes/s x subscribers per symbol
        fanout = args.clients * args.subs / args.symbols
        print(f"stream fan-out benchmark: {args.clients} clients in {args.client_procs} processes, {args.symbols} "
              f"symbols, {args.subs} quote subscriptions per client ({fanout:g} subscribers per symbol); "
              f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        results: dict[int, dict[str, dict[str, Any]]] = {}
        for n in [int(x) for x in args.servers.split(",")]:
            print(f"\n{n} serve process(es):")
            run = Run(args, env, key, secret, n, home)
            try:
                target = measure(run, redis_url, bus, n * args.per_process / fanout, args.seconds, args.tick_ms)
                over = measure(run, redis_url, bus, args.overload * n * args.per_process / fanout, args.seconds,
                               args.tick_ms)  # fmt: skip
            finally:
                got = np.concatenate(run.stop())
            results[n] = {"target": summarise(target, got), "capacity": summarise(over, got)}
            for step, r in results[n].items():
                print(f"  {step:8s} offered {r['offered_quotes_s']:7.0f} quotes/s -> {r['deliveries_s']:8.0f} "
                      f"deliveries/s ({r['deliveries_s'] / n:7.0f} per process), p50 {r['p50_ms']:6.1f} ms, "
                      f"p99 {r['p99_ms']:7.1f} ms (in serve: {r['server_p99_ms']} ms), "
                      f"serve CPU {r['serve_cpu_pct']} % of a core "
                      f"= {r['cpu_us_per_delivery']:.1f} us per delivery, load1 {r['load1']}")  # fmt: skip
        if 1 in results and 2 in results:
            one, two = results[1], results[2]
            ratio = two["capacity"]["deliveries_s"] / one["capacity"]["deliveries_s"]
            print("\nfigure                              target      measured")
            print(f"p99 at {args.clients} clients (1 process)      <= 100 ms   {one['target']['p99_ms']:.1f} ms")
            print(f"p99 at {args.clients} clients (2 processes)    <= 100 ms   {two['target']['p99_ms']:.1f} ms")
            print(f"deliveries/s per process (target)   >= 20,000   {one['target']['deliveries_s']:,.0f}")
            print(f"capacity, 1 process                             {one['capacity']['deliveries_s']:,.0f}/s")
            print(f"capacity, 2 processes                           {two['capacity']['deliveries_s']:,.0f}/s")
            print(f"2 processes / 1                     >= 1.8x     {ratio:.2f}x")
        print(json.dumps(results))
    finally:
        stop_postgres(home)
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(redis_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
