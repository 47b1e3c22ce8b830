"""Migration 063 on a warehouse that already holds levels: they move to the packed table unchanged.

A database of its own on the test server, migrated up to 062, given levels the old way (one row per level),
then migrated on: the view market.support_resistance must return exactly the rows the old table held.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from market_assets.runtime.embedded import create_database_if_missing
from market_assets.warehouse.resource import WarehouseResource, migration_files, to_conninfo

OLD_ROWS = [  # symbol, as_of, kind, level, touches, first_touch, last_touch, strength
    ("AAPL", "2024-01-02", "support", 180.25, 3, "2023-06-01 04:00+00", "2023-11-01 04:00+00", 0.61),
    ("AAPL", "2024-01-02", "resistance", 199.5, 1, "2023-12-14 05:00+00", "2023-12-14 05:00+00", 0.52),
    ("AAPL", "2024-01-02", "support", 120.0, 5, "2023-01-03 05:00+00", "2023-03-01 05:00+00", 0.7),
    ("AAPL", "2024-01-03", "support", 180.25, 3, "2023-06-01 04:00+00", "2023-11-01 04:00+00", 0.6),
    ("MSFT", "2024-01-02", "resistance", 380.0, 2, "2023-11-20 05:00+00", "2023-12-28 05:00+00", 0.9),
]


@pytest.fixture
def scratch_url(database_url: str) -> Iterator[str]:
    parts = urlsplit(to_conninfo(database_url))
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    name = f"market_mig_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(admin, name)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_levels_stored_one_row_per_level_move_to_the_packed_table(scratch_url: str) -> None:
    files = migration_files()
    before = [(name, text) for name, text in files if name < "063"]
    assert len(before) < len(files), "migration 063 is missing"
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        # the earlier files as the runner applies them: each executed, then recorded with its checksum
        conn.execute("CREATE SCHEMA IF NOT EXISTS market")
        conn.execute("CREATE TABLE market.schema_migrations (version text PRIMARY KEY, checksum text NOT NULL,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")  # fmt: skip
        for name, text in before:
            conn.execute(text)
            conn.execute("INSERT INTO market.schema_migrations (version, checksum) VALUES (%s, %s)",
                         (name, hashlib.sha256(text.encode()).hexdigest()))  # fmt: skip
        for row in OLD_ROWS:
            conn.execute(
                "INSERT INTO market.support_resistance (symbol, as_of, session, kind, level, touches, first_touch,"
                " last_touch, strength, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'old')",
                (row[0], row[1], row[1], *row[2:]),
            )
        old = conn.execute(
            "SELECT symbol, as_of, session, kind, level, touches, first_touch, last_touch, strength, run_id"
            " FROM market.support_resistance ORDER BY symbol, as_of, level"
        ).fetchall()
    applied = WarehouseResource(database_url=scratch_url).migrate()
    assert applied and applied[0].startswith("063")
    with psycopg.connect(scratch_url) as conn:
        new = conn.execute(
            "SELECT symbol, as_of, session, kind, level, touches, first_touch, last_touch, strength, run_id"
            " FROM market.support_resistance ORDER BY symbol, as_of, level"
        ).fetchall()
        packed = conn.execute(
            "SELECT symbol, as_of::text, level FROM market.support_resistance_packed ORDER BY 1, 2"
        ).fetchall()
        kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = 'market.support_resistance'::regclass")
        latest = conn.execute("SELECT symbol, as_of::text, level FROM market.v_levels_latest ORDER BY 1, 3").fetchall()
    assert new == old
    assert packed == [("AAPL", "2024-01-02", [120.0, 180.25, 199.5]), ("AAPL", "2024-01-03", [180.25]),
                      ("MSFT", "2024-01-02", [380.0])]  # fmt: skip
    assert kind.fetchone()[0] == "v"
    assert latest == [("AAPL", "2024-01-03", 180.25), ("MSFT", "2024-01-02", 380.0)]
