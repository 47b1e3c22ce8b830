"""Shared fixtures: a real PostgreSQL and a real Redis, never mocks.

With DATABASE_URL / REDIS_URL set (CI does this for the machine's own servers) the tests use
those servers, in a database created for this session and a key prefix of their own; unset,
they start the embedded servers in a temporary data directory, exactly as a user's first run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from market_assets.embedded import (
    create_database_if_missing,
    ensure_postgres,
    ensure_redis,
    stop_postgres,
    stop_redis,
)
from market_assets.resources.warehouse import WarehouseResource, to_conninfo

TRUNCATE = "TRUNCATE market.bars_daily, market.bars_minute, market.quarantine, market.ingestion_log, market.symbols"


@pytest.fixture(scope="session")
def data_home() -> Iterator[Path]:
    # short path: unix socket paths are limited to ~107 bytes
    home = Path(tempfile.mkdtemp(prefix="mdt-", dir="/tmp"))
    yield home
    stop_redis(home)
    stop_postgres(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(data_home: Path) -> Iterator[str]:
    external = os.environ.get("DATABASE_URL")
    if not external:
        yield ensure_postgres(data_home).url("market")
        return
    name = f"market_test_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(external)
    admin = to_conninfo(urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, "")))
    create_database_if_missing(admin, name)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def redis_url(data_home: Path) -> str:
    return os.environ.get("REDIS_URL") or ensure_redis(data_home)


@pytest.fixture(scope="session")
def migrated_warehouse(database_url: str) -> WarehouseResource:
    warehouse = WarehouseResource(database_url=database_url)
    warehouse.migrate()
    return warehouse


@pytest.fixture
def warehouse(migrated_warehouse: WarehouseResource) -> WarehouseResource:
    """An empty warehouse for each test."""
    with migrated_warehouse.connect() as conn:
        conn.execute(TRUNCATE)
    return migrated_warehouse
