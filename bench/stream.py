"""Benchmark: the WebSocket fan-out (`market-data serve`) at 1,000 clients, one process, then two.

One run: a private Redis (the bus) and the embedded PostgreSQL (tokens) in a scratch folder; N real
`market-data serve` OS processes; ``--client-procs`` client processes holding ``--clients`` WebSocket clients in
total (asyncio + websockets, Alpaca's protocol, msgpack as alpaca-py speaks it): each authenticates with a token
and subscribes to the quotes of ``--subs`` of the ``--symbols`` symbols (every symbol has the same number of
subscribers). The publisher appends quotes to the bus as the ingest service does (micro-batches, one XADD every
``--tick-ms``), each quote's ``t`` being its publish time, so a client's latency is source message (bus publish)
-> received at the client, clocks shared. Deliveries = quotes received by clients.

The clients are cheap on purpose (on 2 shared cores they, not serve, are the first limit): a frame is not decoded;
its quotes are counted and their ``t`` read straight from the msgpack bytes (each quote's ``"t"`` key followed by
a timestamp64 extension), so a delivery costs the client a few C-level byte scans and two array appends.

Per configuration (1 serve process, then 2), a ramp of quote rates (``--ramp``: fractions of the target rate, the
one that gives ``--per-process`` deliveries/s per serve process; past its last level it grows by ``--ramp-growth``
per step) until p99 passes ``--p99-ms`` or the clients receive less than 95 % of what was offered (the surplus
conflates away). Capacity = the highest step that kept both. Per step: deliveries/s, p50/p99, serve CPU per
process, the client processes' CPU, the machine's CPU and load average; the output says plainly whether the limit
was serve or the machine (the clients' share of the cores).
2 vs 1: the capacity ratio and the ratio of serve CPU per delivery (the cost that scaling out must keep flat).

``--serve-cpu QUOTA`` holds each serve process to QUOTA of a core (a cgroup v1 cpu controller group per process,
with a short CFS period so throttling pauses stay far below the latency bound). Why: on 2 cores the load generator
(the client processes need more CPU per delivery than serve) saturates the machine before one serve process
saturates its core, so uncapped the 2 / 1 capacity ratio measures the machine. Capped low enough that the serve
processes plus the clients fit in the cores, serve's quota is the limit and the ratio is serve's scale-out. The
default ramp then starts at QUOTA x the target and grows by 10 % per step, so both configurations reach their
capped capacity with a fine enough grid for the ratio. It needs root and /sys/fs/cgroup/cpu (else it stops with an
error: it never runs uncapped instead); the groups are removed at the end, also on errors and SIGINT.

Never hangs: every phase has a deadline (serve start, clients connected, each step, stops), the whole run has
``--deadline``, and every child process is killed at the end, on an exception or on SIGINT. The token's secret goes
to the client processes on their stdin, never on a command line. Between configurations the token's connection
leases in Redis must be back to zero (the previous configuration's 1,000 clients closed at once): checked.

    PYTHONPATH=$PWD .venv/bin/python bench/stream.py [--clients 1000] [--client-procs 4] [--seconds 6]
    PYTHONPATH=$PWD .venv/bin/python bench/stream.py --serve-cpu 0.2   # serve capped: its own scale-out
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# a quote's "t" (fixstr "t") followed by msgpack's timestamp64 extension (fixext8, type -1): 8 bytes follow
_T64 = re.compile(rb"\xa1t\xd7\xff(.{8})", re.DOTALL)
_SECONDS_MASK = (1 << 34) - 1


# ---------------------------------------------------------------------------------------------- client process
async def _client(url: str, key: str, secret: str, symbols: list[str], sent: array.array, lat: array.array,
                  ready: asyncio.Event, conns: list[Any]) -> None:  # fmt: skip
    from websockets.asyncio.client import connect

    ws = await connect(url, additional_headers={"Content-Type": "application/msgpack"}, compression=None,
                       max_size=1 << 22, ping_interval=None, open_timeout=120, close_timeout=2)  # fmt: skip
    conns.append(ws)
    assert msgpack.unpackb(await ws.recv())[0]["msg"] == "connected"
    await ws.send(msgpack.packb({"action": "auth", "key": key, "secret": secret}))
    reply = msgpack.unpackb(await ws.recv())[0]
    if reply.get("msg") != "authenticated":
        raise RuntimeError(f"auth refused: {reply}")
    await ws.send(msgpack.packb({"action": "subscribe", "quotes": symbols}))
    assert msgpack.unpackb(await ws.recv())[0]["T"] == "subscription"
    ready.set()
    findall = _T64.findall
    from_bytes = int.from_bytes
    async for frame in ws:
        now = time.time_ns()
        for raw in findall(frame):  # type: ignore[arg-type]
            v = from_bytes(raw, "big")
            t = (v & _SECONDS_MASK) * 1_000_000_000 + (v >> 34)
            sent.append(t)
            lat.append(now - t)


async def _client_main() -> None:
    """One client process: its spec (with the token) is the first line of stdin; "ready" on stdout when all its
    clients subscribed; then per line ``{"first", "last", "out"}`` on stdin: save (source ns, latency ns) of the
    quotes published in [first, last] to ``out``, forget everything received so far, answer "saved"; on stdin EOF:
    close every socket at once (the burst of disconnects that serve's leases must survive)."""
    spec = json.loads(sys.stdin.readline())
    sent, lat = array.array("q"), array.array("q")
    conns: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    sem = asyncio.Semaphore(50)  # connect in waves: 1,000 simultaneous handshakes only measure the backlog

    async def one(i: int) -> None:
        ready = asyncio.Event()
        async with sem:
            task = asyncio.create_task(_client(spec["urls"][i % len(spec["urls"])], spec["key"], spec["secret"],
                                               spec["subs"][i], sent, lat, ready, conns))  # fmt: skip
            tasks.append(task)
            done, _ = await asyncio.wait([task, asyncio.create_task(ready.wait())],
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if task in done:
                task.result()  # raises what refused it

    await asyncio.gather(*(one(i) for i in spec["ids"]))
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        ask = json.loads(line)
        source, latency = np.frombuffer(sent, np.int64).copy(), np.frombuffer(lat, np.int64).copy()
        del sent[:], lat[:]
        inside = (source >= ask["first"]) & (source <= ask["last"])
        np.save(ask["out"], np.stack([source[inside], latency[inside]]))
        print("saved", flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.wait_for(asyncio.gather(*(c.close() for c in conns), return_exceptions=True), 10)


# ---------------------------------------------------------------------------------------------- orchestration
CHILDREN: list[subprocess.Popen[Any]] = []
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")  # cgroup v1's cpu controller
CGROUPS: list[Path] = []  # every group this run created, removed at the end once its process is gone


class CpuCap:
    """One serve process's CPU budget: a cgroup v1 cpu group with ``quota`` of a core per ``period_us``.

    A short period (10 ms by default, against the kernel's 100 ms) because a throttled process waits for the next
    period: with 100 ms periods a capped serve would stall for tens of ms at a time and the p99 bound would measure
    the throttling, not serve. Creating or writing the group raises (never a silently uncapped run)."""

    def __init__(self, name: str, quota: float, period_us: int) -> None:
        self.path = CGROUP_CPU / name
        try:
            self.path.mkdir()
        except OSError as e:
            raise RuntimeError(f"--serve-cpu: cannot create the cgroup {self.path} ({e}); capping serve needs root "
                               f"and the cgroup v1 cpu controller mounted at {CGROUP_CPU}") from e  # fmt: skip
        CGROUPS.append(self.path)
        (self.path / "cpu.cfs_period_us").write_text(str(period_us))
        (self.path / "cpu.cfs_quota_us").write_text(str(round(quota * period_us)))

    def add(self, pid: int) -> None:
        """Moves the process with all its threads (cgroup.procs, not tasks) into the group, and checks it is there."""
        (self.path / "cgroup.procs").write_text(str(pid))
        if str(pid) not in (self.path / "cgroup.procs").read_text().split():
            raise RuntimeError(f"--serve-cpu: process {pid} is not in {self.path} after being moved there")

    def throttling(self) -> tuple[int, int]:
        """(CFS periods the group ran in, periods it was throttled in), cumulative."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["nr_periods"]), int(stat["nr_throttled"])


def check_cpu_cap(quota: float, period_us: int) -> None:
    """Fails fast, before anything starts, when the cap cannot work: bad numbers, no controller, not root."""
    if not 0 < quota <= (os.cpu_count() or 1):
        raise SystemExit(f"--serve-cpu {quota}: a fraction of a core, > 0 (e.g. 0.2)")
    if not 1000 <= period_us <= 1_000_000 or quota * period_us < 1000:
        raise SystemExit(f"--cfs-period-us {period_us}: the kernel wants a period of 1,000-1,000,000 us and a "
                         f"quota (--serve-cpu x period = {quota * period_us:.0f} us) of at least 1,000 us")  # fmt: skip
    if not (CGROUP_CPU / "cpu.cfs_quota_us").exists():
        raise SystemExit(f"--serve-cpu needs the cgroup v1 cpu controller at {CGROUP_CPU} (cpu.cfs_quota_us "
                         "missing): refusing to run uncapped")  # fmt: skip
    try:
        CpuCap(f"market-bench-{os.getpid()}-probe", quota, period_us)
    except (RuntimeError, OSError) as e:
        raise SystemExit(str(e)) from e
    finally:
        _remove_cgroups()


def _remove_cgroups() -> None:
    """rmdir every group this run created; a group empties only once its process has exited (after _kill_all)."""
    for path in CGROUPS[:]:
        deadline = time.monotonic() + 5
        while True:
            try:
                path.rmdir()
                CGROUPS.remove(path)
                break
            except FileNotFoundError:
                CGROUPS.remove(path)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    print(f"could not remove the cgroup {path}: {e}", file=sys.stderr)
                    break
                time.sleep(0.1)


def ramp_levels(listed: list[float], growth: float) -> Iterator[float]:
    """The ramp's fractions of the target: the listed ones, then on by ``growth`` per step, without end (the ramp
    stops at the first step over the limit, or its caller's step bound)."""
    yield from listed
    level = listed[-1]
    while True:
        level *= growth
        yield round(level, 4)


def _spawn(cmd: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    proc = subprocess.Popen(cmd, **kwargs)
    CHILDREN.append(proc)
    return proc


def _kill_all() -> None:
    """Every child process this run started: SIGTERM, then SIGKILL for those still there after 5 s."""
    for proc in CHILDREN:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 5
    for proc in CHILDREN:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


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


def _readline(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
        raise TimeoutError("a client process did not connect its clients in time")
    return proc.stdout.readline()


def _cpu(pids: list[int]) -> list[float]:
    import psutil

    out = []
    for pid in pids:
        try:
            out.append(sum(psutil.Process(pid).cpu_times()[:2]))
        except psutil.NoSuchProcess:
            out.append(float("nan"))
    return out


class Run:
    """One configuration: n serve processes and the client processes connected to them."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], key: str, secret: str, servers: int,
                 folder: Path, redis_pid: int) -> None:  # fmt: skip
        self.args, self.folder, self.redis_pid = args, folder, redis_pid
        self.ports = [_free_port() for _ in range(servers)]
        self.logs = [folder / f"serve{servers}-{p}.log" for p in self.ports]
        cli = [sys.executable, "-m", "market_assets.runtime.cli", "serve", "--port"]
        self.caps: list[CpuCap] = []
        self.serves: list[subprocess.Popen[Any]] = []
        for i, (p, log) in enumerate(zip(self.ports, self.logs, strict=True)):
            cap = None
            if args.serve_cpu is not None:  # the group first: a failure leaves no uncapped serve behind
                cap = CpuCap(f"market-bench-{os.getpid()}-{servers}-{i}", args.serve_cpu, args.cfs_period_us)
                self.caps.append(cap)
            self.serves.append(_spawn([*cli, str(p)], env=env, stdout=subprocess.DEVNULL, stderr=log.open("w")))
            if cap is not None:  # at once: serve is still importing, long before it serves anyone
                cap.add(self.serves[-1].pid)
        for p in self.ports:
            _wait_http(f"http://127.0.0.1:{p}/healthz", 60)
        self.names = [f"S{i:03d}" for i in range(args.symbols)]
        # client i subscribes to `subs` symbols spread evenly: every symbol has clients*subs/symbols subscribers
        subs = [[self.names[(i + k * (args.symbols // args.subs)) % args.symbols] for k in range(args.subs)]
                for i in range(args.clients)]  # fmt: skip
        urls = [f"ws://127.0.0.1:{p}/v2/iex" for p in self.ports]
        self.clients: list[subprocess.Popen[str]] = []
        started = time.monotonic()
        for w in range(args.client_procs):
            spec = {"urls": urls, "key": key, "secret": secret, "subs": subs,
                    "ids": list(range(w, args.clients, args.client_procs))}  # fmt: skip
            proc = _spawn([sys.executable, __file__, "--worker"], env=env, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)  # fmt: skip
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(spec) + "\n")  # the secret travels on stdin, not in argv
            proc.stdin.flush()
            self.clients.append(proc)
        deadline = started + 180
        for c in self.clients:
            if _readline(c, deadline).strip() != "ready":
                raise RuntimeError("a client process failed to connect its clients (its stderr is above)")
        print(f"  {args.clients} clients connected, authenticated and subscribed to {servers} serve process(es) "
              f"in {time.monotonic() - started:.1f} s")  # fmt: skip

    def collect(self, first: int, last: int) -> np.ndarray:
        """What the clients received of the quotes published in [first, last]: 2 x n (source ns, latency ns)."""
        outs = []
        for w, c in enumerate(self.clients):
            out = self.folder / f"window-{w}.npy"
            assert c.stdin is not None
            c.stdin.write(json.dumps({"first": first, "last": last, "out": str(out)}) + "\n")
            c.stdin.flush()
            outs.append(out)
        deadline = time.monotonic() + 60
        for c in self.clients:
            if _readline(c, deadline).strip() != "saved":
                raise RuntimeError("a client process did not save its window")
        return np.concatenate([np.load(o) for o in outs], axis=1)

    def stop_clients(self) -> None:
        """Every client closes (all at once: the burst of disconnects that serve's leases must survive)."""
        for c in self.clients:
            if c.stdin:
                c.stdin.close()
        for c in self.clients:
            try:
                c.wait(60)
            except subprocess.TimeoutExpired:
                print("  a client process did not exit within 60 s: killed")
                c.kill()

    def stop_serves(self) -> list[float]:
        """SIGTERM; returns how long each serve process took to exit (killed after 20 s: inf)."""
        stops = []
        for s in self.serves:
            s.send_signal(signal.SIGTERM)
        started = time.monotonic()
        for s in self.serves:
            try:
                s.wait(max(0.1, started + 20 - time.monotonic()))
                stops.append(time.monotonic() - started)
            except subprocess.TimeoutExpired:
                print("  a serve process did not exit within 20 s of SIGTERM: killed")
                s.kill()
                stops.append(float("inf"))
        return stops


def publish(r: Any, key: str, names: list[str], rate: float, seconds: float, tick_ms: float) -> tuple[int, int]:
    """Quotes on the bus at ``rate``/s for ``seconds``; returns (first publish ns, last publish ns)."""
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
            stamp = msgpack.Timestamp.from_unix_nano(now)
            msgs = [{"T": "q", "S": names[(n + j) % len(names)], "bx": "V", "bp": 100.0, "bs": 1, "ax": "V",
                     "ap": 100.02, "as": 2, "c": ["R"], "z": "C", "t": stamp} for j in range(k)]  # fmt: skip
            r.xadd(key, {"m": msgpack.packb(msgs, use_bin_type=True), "at": str(now)}, maxlen=10_000,
                   approximate=True)  # fmt: skip
            n += k
        next_at += tick_ms / 1000.0
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return first, time.time_ns()


def step(run: Run, r: Any, bus: str, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """One step of the ramp: warm-up, ``--seconds`` measured at ``rate`` quotes/s, the clients' figures."""
    import psutil

    serve_pids = [s.pid for s in run.serves]
    client_pids = [c.pid for c in run.clients]
    publish(r, bus, run.names, rate, 1.5, args.tick_ms)  # warm-up: the ramp's previous step drains
    serve0, client0, redis0 = _cpu(serve_pids), _cpu(client_pids), _cpu([run.redis_pid])
    throttle0 = [c.throttling() for c in run.caps]
    me0 = sum(os.times()[:2])
    psutil.cpu_percent()
    t0 = time.monotonic()
    first, last = publish(r, bus, run.names, rate, args.seconds, args.tick_ms)
    wall = time.monotonic() - t0
    machine = psutil.cpu_percent()  # of all cores, 100 = every core busy
    serve = [(b - a) / wall * 100 for a, b in zip(serve0, _cpu(serve_pids), strict=True)]
    clients = sum((b - a) for a, b in zip(client0, _cpu(client_pids), strict=True)) / wall * 100
    publisher = (sum(os.times()[:2]) - me0) / wall * 100
    redis_cpu = (_cpu([run.redis_pid])[0] - redis0[0]) / wall * 100
    throttled = [(t1 - t0) / max(p1 - p0, 1) * 100
                 for (p0, t0), (p1, t1) in zip(throttle0, (c.throttling() for c in run.caps), strict=True)]  # fmt: skip
    time.sleep(1.0)  # the tail in flight
    window = {"rate": rate, "first": first, "last": last, "wall": wall, "serve_cpu": serve, "clients_cpu": clients,
              "publisher_cpu": publisher, "redis_cpu": redis_cpu, "machine_cpu": machine,
              "load1": os.getloadavg()[0], "throttled": throttled}  # fmt: skip
    budget = 100.0 if args.serve_cpu is None else args.serve_cpu * 100
    return summarise(window, run.collect(first, last), args.clients * args.subs / args.symbols, args.p99_ms, budget)


def summarise(window: dict[str, Any], got: np.ndarray, fanout: float, p99_limit: float,
              budget_pct: float = 100.0) -> dict[str, Any]:  # fmt: skip
    """One step's figures; ``budget_pct`` is what one serve process may use, in % of a core (100: uncapped)."""
    lat = got[1] / 1e6
    delivered = len(lat) / window["wall"]
    offered = window["rate"] * fanout
    cores = os.cpu_count() or 1
    p99 = float(np.percentile(lat, 99)) if len(lat) else float("nan")
    serve_total = sum(window["serve_cpu"])
    throttled = window.get("throttled", [])
    # serve is the limit when a process used (nearly) all it may: a whole core, or its quota (then it is throttled)
    # (bursts get a capped process throttled in a few periods well below the limit: "most periods" is the quota)
    serve_full = max(window["serve_cpu"]) >= 0.9 * budget_pct or (bool(throttled) and max(throttled) >= 50)
    return {
        "offered_quotes_s": round(window["rate"], 1),
        "offered_deliveries_s": round(offered),
        "deliveries_s": round(delivered),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else float("nan"),
        "p99_ms": round(p99, 1),
        "serve_cpu_pct": [round(c) for c in window["serve_cpu"]],
        "clients_cpu_pct": round(window["clients_cpu"]),
        "publisher_cpu_pct": round(window["publisher_cpu"]),
        "redis_cpu_pct": round(window["redis_cpu"]),
        "machine_cpu_pct": round(window["machine_cpu"]),
        "serve_us_per_delivery": round(serve_total / 100 * window["wall"] / max(len(lat), 1) * 1e6, 2),
        "clients_us_per_delivery": round(window["clients_cpu"] / 100 * window["wall"] / max(len(lat), 1) * 1e6, 2),
        "load1": round(window["load1"], 2),
        "ok": bool(len(lat)) and p99 <= p99_limit and delivered >= 0.95 * offered,
        # the machine is the limit when its cores are (nearly) all busy and serve itself is not using all it may
        "machine_bound": window["machine_cpu"] >= 90 and not serve_full,
        "serve_bound": serve_full,
        "serve_budget_pct": round(budget_pct),
        # % of the CFS periods in which each capped serve process hit its quota (empty: uncapped)
        "serve_throttled_pct": [round(t) for t in throttled],
        "cores": cores,
        # everything else on the machine (other work sharing the cores), in % of one core
        "others_cpu_pct": max(
            0,
            round(
                window["machine_cpu"] * cores
                - serve_total
                - window["clients_cpu"]
                - window["publisher_cpu"]
                - window["redis_cpu"]
            ),
        ),
    }


def _line(r: dict[str, Any], n: int) -> str:
    capped = "" if not r["serve_throttled_pct"] else (
        f"of {r['serve_budget_pct']} each, throttled in {r['serve_throttled_pct']} % of periods ")  # fmt: skip
    return (f"  offered {r['offered_quotes_s']:7.0f} quotes/s ({r['offered_deliveries_s']:7,} deliveries/s) -> "
            f"{r['deliveries_s']:7,}/s ({r['deliveries_s'] / n:7,.0f} per process), p50 {r['p50_ms']:6.1f} ms, "
            f"p99 {r['p99_ms']:7.1f} ms; CPU % of a core: serve {r['serve_cpu_pct']} {capped}"
            f"({r['serve_us_per_delivery']:.1f} us/delivery), clients {r['clients_cpu_pct']} "
            f"({r['clients_us_per_delivery']:.1f} us/delivery), publisher {r['publisher_cpu_pct']}, "
            f"Redis {r['redis_cpu_pct']}; machine {r['machine_cpu_pct']} % of {r['cores']} cores "
            f"(other work {r['others_cpu_pct']}); load1 {r['load1']}"
            f"{'' if r['ok'] else '  <- over the limit'}")  # fmt: skip


def verdict(f: dict[str, Any], quota: float | None) -> str:
    """Who set the limit at the first step over it: the machine, serve (a whole core, or its quota), or neither.

    Uncapped, serve is the limit only when a process uses a whole core; capped, when a process uses its quota
    (the kernel throttles it), however idle the machine."""
    if f["machine_bound"]:
        return (f"the machine, not serve: its {f['cores']} cores were busy ({f['machine_cpu_pct']} %) while no serve "
                f"process used {'its quota' if quota is not None else 'a whole core'} (serve "
                f"{sum(f['serve_cpu_pct'])} % of a core in all, the client processes {f['clients_cpu_pct']} %, other "
                f"work {f['others_cpu_pct']} %); the clients cost {f['clients_us_per_delivery']:.1f} us per delivery "
                f"to serve's {f['serve_us_per_delivery']:.1f} us")  # fmt: skip
    if f["serve_bound"] and quota is not None:
        also = ("" if f["machine_cpu_pct"] < 90 else "; but the machine was busy too (other work "
                f"{f['others_cpu_pct']} % of a core): partly the machine's limit: measure when quiet")  # fmt: skip
        return (f"serve, at its CPU quota: serve processes used {f['serve_cpu_pct']} % of a core of their "
                f"{f['serve_budget_pct']} % each, throttled in {f['serve_throttled_pct']} % of the CFS periods, while "
                f"the machine was at {f['machine_cpu_pct']} % of its {f['cores']} cores{also}")  # fmt: skip
    if f["serve_bound"]:
        return "serve (a serve process used a whole core)"
    return (f"neither serve nor the machine was saturated: latency from scheduling (load average {f['load1']}, "
            f"machine {f['machine_cpu_pct']} %, other work {f['others_cpu_pct']} % of a core)")  # fmt: skip


def leases_back_to_zero(r: Any, lease_key: str, timeout: float) -> float:
    """Seconds until the token's lease set is empty; raises when it is not within ``timeout``."""
    started = time.monotonic()
    while (held := int(r.zcard(lease_key))) > 0:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{held} connection lease(s) still held {timeout:.0f} s after every client closed: "
                               "the next configuration would be refused with 406")  # fmt: skip
        time.sleep(0.1)
    return time.monotonic() - started


def _on_deadline(signum: int, frame: Any) -> None:
    raise TimeoutError("the benchmark passed its --deadline")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--client-procs", type=int, default=4)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--subs", type=int, default=10, help="symbols per client")
    ap.add_argument("--per-process", type=float, default=20_000, help="the target: deliveries/s per serve process")
    ap.add_argument("--ramp", default=None,
                    help="the steps, as fractions of the target rate (default 0.25,0.35,0.5,0.7,1,1.4,2,2.8,4; "
                    "with --serve-cpu: QUOTA); past the last one the ramp grows by --ramp-growth per step; it ends "
                    "at the first step over the limit (uncapped: once the target itself was measured)")  # fmt: skip
    ap.add_argument("--ramp-growth", type=float, default=None,
                    help="factor per step past the listed ones (default 1.4; with --serve-cpu 1.1, the grid of "
                    "the capacity ratio)")  # fmt: skip
    ap.add_argument("--max-steps", type=int, default=30, help="per configuration, the ramp's bound")
    ap.add_argument("--serve-cpu", type=float, default=None, metavar="QUOTA",
                    help="hold each serve process to QUOTA of a core (cgroup v1 cpu controller; root), e.g. 0.2: "
                    "the clients share the cores, so uncapped the machine, not serve, is the limit")  # fmt: skip
    ap.add_argument("--cfs-period-us", type=int, default=10_000,
                    help="the cap's CFS period: short, so a throttled serve pauses far less than --p99-ms")  # fmt: skip
    ap.add_argument("--p99-ms", type=float, default=100.0, help="the latency limit of the capacity")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per step")
    ap.add_argument("--tick-ms", type=float, default=10.0, help="the publisher's micro-batch interval")
    ap.add_argument("--servers", default="1,2", help="configurations to run (serve process counts, ascending)")
    ap.add_argument("--deadline", type=float, default=1200.0, help="the whole run, seconds")
    args = ap.parse_args()
    capped = args.serve_cpu is not None
    default_ramp = str(args.serve_cpu) if capped else "0.25,0.35,0.5,0.7,1,1.4,2,2.8,4"
    ramp = sorted(float(x) for x in (args.ramp or default_ramp).split(","))
    growth = args.ramp_growth or (1.1 if capped else 1.4)
    if growth <= 1:
        raise SystemExit("--ramp-growth must be > 1")
    if args.worker:
        asyncio.run(_client_main())
        return

    import redis

    from bench.cache import start_private_redis
    from market_assets.live import tokens
    from market_assets.live.bus import bus_key
    from market_assets.live.leases import ConnectionLeases
    from market_assets.runtime.embedded import ensure_postgres, stop_postgres
    from market_assets.warehouse.resource import WarehouseResource

    if capped:
        check_cpu_cap(args.serve_cpu, args.cfs_period_us)
    signal.signal(signal.SIGALRM, _on_deadline)
    signal.signal(signal.SIGTERM, _on_deadline)
    signal.alarm(int(args.deadline))
    home = Path(tempfile.mkdtemp(prefix="mdbs-", dir="/tmp"))
    redis_url, redis_proc, redis_dir = start_private_redis()
    CHILDREN.append(redis_proc)
    try:
        database_url = ensure_postgres(home).url("market")
        warehouse = WarehouseResource(database_url=database_url)
        warehouse.migrate()
        key, secret = tokens.create(warehouse, f"bench-{uuid.uuid4().hex[:6]}", max_connections=args.clients,
                                    max_symbols=args.symbols)  # fmt: skip
        prefix = "md:v1"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "MARKET_DATA_HOME": str(home)}  # fmt: skip
        r = redis.Redis.from_url(redis_url, socket_timeout=10)
        bus = bus_key(prefix)
        lease_key = ConnectionLeases(None, prefix).key(key)  # type: ignore[arg-type]
        fanout = args.clients * args.subs / args.symbols  # deliveries/s = quotes/s x subscribers per symbol
        print(f"stream fan-out benchmark: {args.clients} clients in {args.client_procs} processes, {args.symbols} "
              f"symbols, {args.subs} quote subscriptions per client ({fanout:g} subscribers per symbol); "
              f"{os.cpu_count()} cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
        if capped:
            print(f"serve capped at {args.serve_cpu:g} of a core per process (cgroup v1 cpu controller: quota "
                  f"{round(args.serve_cpu * args.cfs_period_us):,} us per {args.cfs_period_us:,} us period), because "
                  f"the load generator (client processes, publisher, Redis) shares this machine's {os.cpu_count()} "
                  "cores: uncapped, the machine saturates before serve does, so the 2 / 1 capacity ratio would be "
                  "the machine's; capped, serve's quota is the limit and the ratio is serve's scale-out. Ramp: "
                  f"{', '.join(f'{x:g}' for x in ramp)} x the target, then x{growth:g} per step until the first "
                  "step over the limit")  # fmt: skip
        results: dict[int, dict[str, Any]] = {}
        for n in sorted(int(x) for x in args.servers.split(",")):
            print(f"\n{n} serve process(es), load average {os.getloadavg()[0]:.2f}:")
            run = Run(args, env, key, secret, n, home, redis_proc.pid)
            steps: list[dict[str, Any]] = []
            try:
                for fraction in ramp_levels(ramp, growth):
                    steps.append(step(run, r, bus, fraction * n * args.per_process / fanout, args))
                    steps[-1]["fraction_of_target"] = fraction
                    print(_line(steps[-1], n), flush=True)
                    # over the limit (uncapped: once the target step was measured, the figure issue 14 asks for)
                    if not steps[-1]["ok"] and (capped or fraction >= 1):
                        break
                    if len(steps) >= args.max_steps:
                        break
            finally:
                run.stop_clients()
                try:  # while serve still runs: its own releases, not its shutdown, must free the slots
                    freed = leases_back_to_zero(r, lease_key, 15)
                finally:
                    stops = run.stop_serves()
            first_over = next((s for s in steps if not s["ok"]), None)
            below = steps[: steps.index(first_over)] if first_over is not None else steps
            capacity = below[-1] if below else None  # the last step before the first one over the limit
            for log in run.logs:  # serve logs each stop step with its duration
                lines = log.read_text().splitlines()
                stop_lines = [ln.split(" stop", 1)[-1] for ln in lines if " stop" in ln and "live.serve" in ln]
                print(f"  {log.name}: stop{'; stop'.join(stop_lines)}")
            print(f"  the token's {args.clients} connection leases were back to zero {freed:.1f} s after the "
                  f"clients closed; serve exited {', '.join(f'{s:.1f} s' for s in stops)} after SIGTERM")  # fmt: skip
            if capacity is None:
                print(f"  capacity: none of the steps kept p99 <= {args.p99_ms:.0f} ms")
            else:
                print(f"  capacity (p99 <= {args.p99_ms:.0f} ms, >= 95 % delivered): {capacity['deliveries_s']:,}/s "
                      f"({capacity['deliveries_s'] / n:,.0f} per process)")  # fmt: skip
            if first_over is not None:
                print(f"  limit reached at {first_over['offered_deliveries_s']:,} deliveries/s: "
                      f"{verdict(first_over, args.serve_cpu)}")  # fmt: skip
            else:
                print(f"  no step reached the limit within --max-steps {args.max_steps}: raise it or --ramp-growth")
            results[n] = {"steps": steps, "capacity": capacity, "serve_stop_s": stops, "leases_freed_s": freed,
                          "limit": first_over}  # fmt: skip
        if 1 in results and 2 in results:
            one, two = results[1], results[2]
            first1 = next((s for s in one["steps"] if s["fraction_of_target"] == 1), None)
            first2 = next((s for s in two["steps"] if s["fraction_of_target"] == 1), None)
            how = "" if not capped else f", serve capped at {args.serve_cpu:g} core"
            print("\nfigure                                        target      measured")
            if first1 is not None and first2 is not None:  # the target step is uncapped serve's figure
                print(f"deliveries/s per process (target step, 1 proc) >= 20,000   {first1['deliveries_s']:,}")
                print(f"p99 at {args.clients} clients, target step, 1 process   <= 100 ms   {first1['p99_ms']:.1f} ms")
                print(f"p99 at {args.clients} clients, target step, 2 processes <= 100 ms   {first2['p99_ms']:.1f} ms")
            cap1 = one["capacity"]["deliveries_s"] if one["capacity"] else None
            cap2 = two["capacity"]["deliveries_s"] if two["capacity"] else None
            print(f"{f'capacity at p99 <= 100 ms, 1 process{how}':<56} {cap1 if cap1 is None else f'{cap1:,}/s'}")
            print(f"{f'capacity at p99 <= 100 ms, 2 processes{how}':<56} {cap2 if cap2 is None else f'{cap2:,}/s'}")
            if cap1 and cap2:
                grid = "" if not capped else f" (ramp steps x{growth:g}: each capacity is within one step)"
                print(f"{f'2 processes / 1, measured capacity{how}':<44} >= 1.8x     {cap2 / cap1:.2f}x{grid}")
            # serve's cost per delivery at the same total rate (frames carry more quotes at higher rates per process)
            same = max(set(s["offered_deliveries_s"] for s in one["steps"])
                       & set(s["offered_deliveries_s"] for s in two["steps"]), default=None)  # fmt: skip
            if same is not None:
                cost1 = next(s for s in one["steps"] if s["offered_deliveries_s"] == same)["serve_us_per_delivery"]
                cost2 = next(s for s in two["steps"] if s["offered_deliveries_s"] == same)["serve_us_per_delivery"]
                print(f"serve CPU per delivery at {same:,}/s, 2 processes / 1 ~1.0  {cost2 / cost1:.2f} "
                      f"({cost1:.1f} vs {cost2:.1f} us)")  # fmt: skip
            limits = [one["limit"], two["limit"]]
            if two["limit"] is not None and two["limit"]["machine_bound"]:
                print("the 2-process capacity is the machine's (client processes and other work on the same cores), "
                      f"not serve's: no serve process used {'its quota' if capped else 'a whole core'}; serve's own "
                      "scaling is its CPU per delivery ratio above"
                      + ("; lower --serve-cpu so that the capped serve processes and the clients fit in the cores"
                         if capped else ""))  # fmt: skip
            elif capped and all(lim is not None and lim["serve_bound"] for lim in limits):
                busy = [lim["machine_cpu_pct"] for lim in limits if lim["machine_cpu_pct"] >= 90]
                print(f"both limits were serve's CPU quota ({args.serve_cpu:g} of a core per process): the 2 / 1 "
                      "capacity ratio is serve's scale-out"
                      + (f", but the machine was also busy ({busy} %) at a limit: read it as a lower bound"
                         if busy else ", not the machine's"))  # fmt: skip
        print(json.dumps(results))
    finally:
        signal.alarm(0)
        _kill_all()
        _remove_cgroups()  # after _kill_all: a group with a process left in it cannot be removed
        stop_postgres(home)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(redis_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
