"""Resolve where the warehouse, Dagster's storage and Redis live, starting embedded servers if needed.

Why here and not in each resource: the CLI must hand the very same endpoints to every process it
starts (UI, daemon, run workers), so it resolves them once and exports them as environment
variables; resources then see plain URLs and never need to know about the embedded servers.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from market_assets.config import Settings, redact
from market_assets.errors import SettingsError, UnreachableError
from market_assets.runtime.embedded import (
    DAGSTER_DB,
    WAREHOUSE_DB,
    create_database_if_missing,
    ensure_postgres,
    ensure_redis,
)
from market_assets.warehouse.resource import to_conninfo

INSTANCE_TEMPLATE = Path(__file__).with_name("dagster.yaml")
# the first line of market_assets/runtime/dagster.yaml, in every version: a file that starts with it is a copy this
# package wrote (perhaps an older one, refreshed); any other dagster.yaml is someone's own instance file
OWN_INSTANCE_MARKER = "# Dagster instance for this project:"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    database_url: str  # for the warehouse (psycopg 3)
    dagster_storage_url: str  # for dagster-postgres (psycopg2)
    redis_url: str


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def _with_driver(url: str, driver: str) -> str:
    _, rest = url.split("://", 1)
    return f"postgresql+{driver}://{rest}"


def check_warehouse_database(database_url: str) -> None:
    """The warehouse database must exist before anything is created next to it.

    A typo in DATABASE_URL's database name used to create ``<typo>_dagster`` on the server first and fail later
    (issue 13, item 10); it is a configuration error (exit 2), reported before any side effect.
    """
    try:
        with psycopg.connect(to_conninfo(database_url), connect_timeout=10):
            pass
    except psycopg.OperationalError as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        database = urlsplit(database_url).path.lstrip("/") or "postgres"
        if "does not exist" in text and f'"{database}"' in text:
            raise SettingsError(
                f"DATABASE_URL ({redact(database_url)}) names database {database!r}, which does not exist on that "
                "server: create it (CREATE DATABASE) or fix the name"
            ) from exc
        raise UnreachableError(
            f"cannot reach the PostgreSQL server of DATABASE_URL ({redact(database_url)}): {redact(text)}"
        ) from exc


def resolve_endpoints(settings: Settings) -> Endpoints:
    if settings.database_url:
        database_url = settings.database_url
        check_warehouse_database(database_url)
        storage_url = os.environ.get("DAGSTER_POSTGRES_URL")
        if not storage_url:
            warehouse_db = urlsplit(database_url).path.lstrip("/") or "postgres"
            storage_db = f"{warehouse_db}_dagster"
            try:
                create_database_if_missing(to_conninfo(_with_database(database_url, "postgres")), storage_db)
            except psycopg.OperationalError as exc:
                raise UnreachableError(
                    f"cannot reach the PostgreSQL server of DATABASE_URL ({redact(database_url)}): "
                    f"{str(exc).strip().splitlines()[0]}"
                ) from exc
            except psycopg.Error as exc:  # e.g. no CREATEDB privilege
                raise UnreachableError(
                    f"cannot create Dagster's storage database {storage_db!r} next to DATABASE_URL "
                    f"({redact(database_url)}): {str(exc).strip().splitlines()[0]}; create it, or set "
                    "DAGSTER_POSTGRES_URL to an existing database"
                ) from exc
            storage_url = _with_driver(_with_database(database_url, storage_db), "psycopg2")
    else:
        pg = ensure_postgres(settings.data_home)
        database_url = pg.url(WAREHOUSE_DB, "psycopg")
        storage_url = os.environ.get("DAGSTER_POSTGRES_URL") or pg.url(DAGSTER_DB, "psycopg2")
    redis_url = settings.redis_url or ensure_redis(settings.data_home)
    return Endpoints(database_url=database_url, dagster_storage_url=storage_url, redis_url=redis_url)


def prepare_dagster_home(settings: Settings) -> Path:
    """$DAGSTER_HOME under the data directory unless set, holding this project's dagster.yaml.

    An existing dagster.yaml that this package did not write (a container's or an operator's own instance file,
    e.g. deploy/dagster/dagster.yaml in the image's DAGSTER_HOME) is left alone, with a warning that says so:
    overwriting it would silently move runs to another storage. A copy this package wrote is refreshed, so an
    upgrade's instance settings take effect."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_home / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    template = INSTANCE_TEMPLATE.read_text()
    if target.exists():
        current = target.read_text()
        if current == template:
            return home
        if not current.startswith(OWN_INSTANCE_MARKER):
            log.warning(
                "%s is not market-data's instance file: left as is (its storage and run settings apply; delete it "
                "to get market-data's, %s)",
                target,
                INSTANCE_TEMPLATE,
            )
            return home
    shutil.copyfile(INSTANCE_TEMPLATE, target)
    return home


def export_environment(settings: Settings, endpoints: Endpoints) -> dict[str, str]:
    """The variables every child process needs to land on the same servers and data."""
    env = {
        "MARKET_DATA_HOME": str(settings.data_home),
        "DATABASE_URL": endpoints.database_url,
        "REDIS_URL": endpoints.redis_url,
        "DAGSTER_POSTGRES_URL": endpoints.dagster_storage_url,
        "DAGSTER_HOME": str(prepare_dagster_home(settings)),
    }
    os.environ.update(env)
    return env
