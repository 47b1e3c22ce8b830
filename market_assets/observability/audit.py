"""The audit trail writer (market.audit_log, migration 040): append-only rows, in the caller's transaction.

Why the caller's connection: an audit row describes a change (a universe update, a migration, the API calls that
produced a partition); written in the same transaction, it exists exactly when the change does, never for a
rolled-back one and never missing for a committed one. Where there is no data transaction (settings at start-up,
a cache warm, a WebSocket connection) ``record_now`` opens its own short one.

Every string and the details are masked (``config.secret_values``) before they are written: the trail is read by
more people than the keys are meant for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg

from market_assets.observability.logging import SecretMasker

KINDS = ("api_calls", "websocket", "cache_warm", "migration", "universe", "token", "settings")


def _masked(value: Any, mask: SecretMasker) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {str(k): _masked(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_masked(v, mask) for v in value]
    return value


def record(
    conn: psycopg.Connection,
    kind: str,
    action: str,
    *,
    actor: str,
    subject: str | None = None,
    run_id: str | None = None,
    partition_key: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one audit row on `conn` (inside its transaction; committed or rolled back with it)."""
    if kind not in KINDS:
        raise ValueError(f"unknown audit kind {kind!r}; one of {', '.join(KINDS)}")
    mask = SecretMasker()
    conn.execute("SELECT market.audit_log_partition(now())")
    conn.execute(
        "INSERT INTO market.audit_log (kind, action, actor, subject, run_id, partition_key, details)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)",
        (
            kind,
            action,
            actor,
            _masked(subject, mask),
            run_id,
            partition_key,
            json.dumps(_masked(dict(details or {}), mask), default=str, allow_nan=False),
        ),
    )


def record_now(conninfo: str, kind: str, action: str, **fields: Any) -> None:
    """Append one row in a transaction of its own (for events that change no warehouse data)."""
    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        record(conn, kind, action, **fields)


def audit_table_exists(conn: psycopg.Connection) -> bool:
    """False before migration 040 has run (the migrator itself audits only once the table exists)."""
    return conn.execute("SELECT to_regclass('market.audit_log') IS NOT NULL").fetchone()[0]
