"""`market-data health`: can this deployment work right now? One line per check, exit 0 only if all pass.

Why these four: every run needs the warehouse (reachable, and on the schema this code expects: a deploy that forgot
to migrate fails in the middle of a run otherwise), Redis (the cache the apps read) and Alpaca (the only source).
Each check has a short timeout and names what it tried (URLs with passwords masked), so the line is the diagnosis.
Health never starts anything: with no DATABASE_URL / REDIS_URL it checks the embedded servers the CLI started and
says "not running" when they are not. Dagster's own checks complement it: ``dagster api grpc-health-check``,
``dagster-daemon liveness-check`` and the webserver's ``/server_info``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import redis
import requests

from market_assets.config import Settings, redact
from market_assets.runtime.embedded import WAREHOUSE_DB, running_postgres, running_redis
from market_assets.warehouse.migrations import migration_files
from market_assets.warehouse.resource import to_conninfo

TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name:<10} {self.detail}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def check_warehouse(conninfo: str | None, shown: str) -> tuple[Check, Check]:
    if conninfo is None:
        failed = Check("warehouse", False, f"{shown}: not running (market-data services start)")
        return failed, Check("migrations", False, "warehouse unreachable")
    try:
        with psycopg.connect(conninfo, connect_timeout=int(TIMEOUT_SECONDS)) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            has_table = conn.execute("SELECT to_regclass('market.schema_migrations') IS NOT NULL").fetchone()[0]
            applied = dict(conn.execute("SELECT version, checksum FROM market.schema_migrations").fetchall()) if (
                has_table) else {}  # fmt: skip
    except psycopg.Error as exc:
        return Check("warehouse", False, f"{shown}: {_first_line(exc)}"), Check(
            "migrations", False, "warehouse unreachable"
        )
    warehouse = Check("warehouse", True, f"{shown}: PostgreSQL {version}")
    shipped = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in migration_files()}
    missing = sorted(set(shipped) - set(applied))
    changed = sorted(n for n in shipped if n in applied and applied[n] != shipped[n])
    unknown = sorted(set(applied) - set(shipped))
    if missing or changed:
        parts = [f"{len(missing)} not applied ({', '.join(missing[:3])})"] if missing else []
        parts += [f"changed after apply: {', '.join(changed)}"] if changed else []
        return warehouse, Check("migrations", False, "; ".join(parts) + " (market-data run applies them)")
    note = f"; {len(unknown)} applied by newer code" if unknown else ""
    return warehouse, Check("migrations", True, f"{len(shipped)} applied, checksums match{note}")


def check_redis(url: str | None, shown: str) -> Check:
    if url is None:
        return Check("redis", False, f"{shown}: not running (market-data services start)")
    try:
        client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS)
        client.ping()
        version = client.info("server").get("redis_version", "?")
        client.close()
    except (redis.RedisError, OSError) as exc:
        return Check("redis", False, f"{shown}: {_first_line(exc)}")
    return Check("redis", True, f"{shown}: Redis {version}")


def check_alpaca(settings: Settings, get: Callable[..., requests.Response] = requests.get) -> Check:
    """One cheap authenticated request (latest bar of SPY); the offline simulator needs no check."""
    if settings.uses_simulator:
        return Check("alpaca", True, "offline simulator (started in-process on first use)")
    base = settings.alpaca_data_url or "https://data.alpaca.markets"
    headers = {}
    if settings.alpaca_api_key and settings.alpaca_secret_key:
        headers = {"APCA-API-KEY-ID": settings.alpaca_api_key, "APCA-API-SECRET-KEY": settings.alpaca_secret_key}
    url = f"{base}/v2/stocks/bars/latest"
    try:
        response = get(url, params={"symbols": "SPY", "feed": settings.alpaca_feed}, headers=headers,
                       timeout=TIMEOUT_SECONDS)  # fmt: skip
    except requests.RequestException as exc:
        return Check("alpaca", False, f"{base}: {type(exc).__name__}")
    if response.status_code in (401, 403):
        return Check("alpaca", False, f"{base}: HTTP {response.status_code}, check ALPACA_API_KEY/ALPACA_SECRET_KEY")
    if response.status_code >= 500:
        return Check("alpaca", False, f"{base}: HTTP {response.status_code}")
    return Check("alpaca", True, f"{base}: HTTP {response.status_code}")


def run_checks(settings: Settings) -> list[Check]:
    if settings.database_url:
        conninfo: str | None = to_conninfo(settings.database_url)
        shown = redact(settings.database_url)
    else:
        embedded = running_postgres(settings.data_home)
        conninfo, shown = (embedded.conninfo(WAREHOUSE_DB) if embedded else None), "embedded PostgreSQL"
    if settings.redis_url:
        redis_url, redis_shown = settings.redis_url, redact(settings.redis_url)
    else:
        redis_url, redis_shown = running_redis(settings.data_home), "embedded Redis"
    return [*check_warehouse(conninfo, shown), check_redis(redis_url, redis_shown), check_alpaca(settings)]
