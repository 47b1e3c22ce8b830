"""The embedded servers: shared safely by several processes, reused, and recovered after a crash."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from market_assets.runtime import embedded
from market_assets.runtime.embedded import (
    ensure_postgres,
    ensure_redis,
    server_settings,
    stop_postgres,
    stop_redis,
)


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mde-", dir="/tmp"))
    yield path
    stop_redis(path)
    stop_postgres(path)
    shutil.rmtree(path, ignore_errors=True)


def postmaster_pid(home: Path) -> int:
    return int((home / "postgres" / "postmaster.pid").read_text().splitlines()[0])


START_IN_CHILD = (
    "import sys; from pathlib import Path; from market_assets.runtime.embedded import ensure_postgres, ensure_redis;"
    "h = Path(sys.argv[1]); pg = ensure_postgres(h); r = ensure_redis(h); print(pg.conninfo('market'), r)"
)


def test_concurrent_processes_share_one_server(home: Path) -> None:
    children = [
        subprocess.Popen([sys.executable, "-c", START_IN_CHILD, str(home)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [c.communicate(timeout=120)[0].strip() for c in children]
    assert all(c.returncode == 0 for c in children), outputs
    assert len(set(outputs)) == 1  # everyone got the same endpoints
    pid = postmaster_pid(home)
    again = ensure_postgres(home)  # and this process reuses it
    assert postmaster_pid(home) == pid
    with psycopg.connect(again.conninfo("market")) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("market",)
    with psycopg.connect(again.conninfo("dagster")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_server_runs_with_its_bulk_load_settings_and_is_not_restarted_under_a_client(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new data directory is started, tuned (ALTER SYSTEM) and restarted once, before anyone uses it; when the
    wanted settings change, a start that finds a client connected never restarts the server, one that finds none
    does."""
    pg = ensure_postgres(home)

    def running(conninfo: str, name: str) -> int:
        with psycopg.connect(conninfo) as conn:
            return int(conn.execute("SELECT pg_size_bytes(current_setting(%s))", (name,)).fetchone()[0])

    for name, value in server_settings().items():
        assert running(pg.conninfo("market"), name) == int(value.removesuffix("MB").removesuffix("GB")) * (
            2**20 if value.endswith("MB") else 2**30
        ), name
    pid = postmaster_pid(home)
    monkeypatch.setattr(embedded, "server_settings", lambda: {"shared_buffers": "256MB", "max_wal_size": "2GB"})
    with psycopg.connect(pg.conninfo("market"), autocommit=True) as client:
        assert not embedded.tune_postgres(pg.conninfo("postgres"))  # stored, but a client is connected
        ensure_postgres(home)
        assert postmaster_pid(home) == pid
        assert client.execute("SELECT 1").fetchone() == (1,)
        assert running(pg.conninfo("market"), "max_wal_size") == 2 * 2**30  # applies on reload
    ensure_postgres(home)  # no client now: restarted with what is stored
    assert postmaster_pid(home) != pid
    assert running(pg.conninfo("market"), "shared_buffers") == 256 * 2**20


def test_shared_buffers_are_a_sixteenth_of_memory_within_bounds() -> None:
    assert server_settings(2 * 2**30)["shared_buffers"] == "128MB"  # small machines keep the default
    assert server_settings(8 * 2**30)["shared_buffers"] == "512MB"
    assert server_settings(64 * 2**30)["shared_buffers"] == "1024MB"
    assert server_settings(8 * 2**30)["max_wal_size"] == "4GB"


def test_a_crashed_postgres_is_restarted(home: Path) -> None:
    pg = ensure_postgres(home)
    with psycopg.connect(pg.conninfo("market"), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    old = postmaster_pid(home)
    os.kill(old, signal.SIGKILL)  # leaves a stale postmaster.pid behind
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(old, 0)
            time.sleep(0.05)
        except ProcessLookupError:
            break
    pg = ensure_postgres(home)
    assert postmaster_pid(home) != old
    with psycopg.connect(pg.conninfo("market")) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)  # data survived the crash


def test_redis_is_reused_and_recovered_after_a_crash(home: Path) -> None:
    url = ensure_redis(home)
    client = redis.Redis.from_url(url)
    client.set("k", "v")
    assert ensure_redis(home) == url and client.get("k") == b"v"  # reused, not restarted
    pid = int((home / "redis" / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # stale pid file and socket remain
    time.sleep(0.2)
    assert ensure_redis(home) == url
    assert redis.Redis.from_url(url).ping()
    assert int((home / "redis" / "redis.pid").read_text()) != pid


def test_stop_reports_what_it_stopped(home: Path) -> None:
    ensure_redis(home)
    assert stop_redis(home) is True
    assert stop_redis(home) is False


def test_child_servers_do_not_inherit_secrets(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13, item 6: the embedded PostgreSQL carried ALPACA_SECRET_KEY in its environment for its whole life."""
    monkeypatch.setenv("ALPACA_SECRET_KEY", "sekret-do-not-leak")
    monkeypatch.setenv("REDIS_URL", "redis://:pw-do-not-leak@host")
    pg = ensure_postgres(home)
    ensure_redis(home)
    # PostgreSQL reuses its /proc environ area for the process title: ask a program it starts instead
    with psycopg.connect(pg.conninfo("market"), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE env (line text)")
        conn.execute("COPY env FROM PROGRAM 'env'")
        postgres_env = "\n".join(r[0] for r in conn.execute("SELECT line FROM env").fetchall())
    assert "PATH=" in postgres_env and "do-not-leak" not in postgres_env
    redis_pid = int((home / "redis" / "redis.pid").read_text().strip())
    assert b"do-not-leak" not in Path(f"/proc/{redis_pid}/environ").read_bytes()
    assert os.environ["ALPACA_SECRET_KEY"] == "sekret-do-not-leak"  # withheld only for the start
