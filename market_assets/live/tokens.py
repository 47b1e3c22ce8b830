"""API tokens of the fan-out service: created, listed and revoked from the CLI, stored hashed in the warehouse.

Why the warehouse: every ``serve`` process must accept the same tokens and refuse a revoked one at once, and the
warehouse is the one durable store all of them already reach. Only ``sha256(secret)`` is stored: the secret is
shown once, at creation. See migrations/009_api_tokens.sql for why a fast hash is right for random secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from market_assets.errors import SettingsError
from market_assets.observability import audit
from market_assets.warehouse.resource import WarehouseResource

DEFAULT_MAX_CONNECTIONS = 10
DEFAULT_MAX_SYMBOLS = 1_000
_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class Token:
    key: str
    name: str
    max_connections: int
    max_symbols: int
    created_at: datetime | None = None
    revoked_at: datetime | None = None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(
    warehouse: WarehouseResource,
    name: str,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_symbols: int = DEFAULT_MAX_SYMBOLS,
) -> tuple[str, str]:
    """A new token: returns (key, secret); the secret is not stored and cannot be shown again."""
    name = name.strip()
    if not name:
        raise SettingsError("token name is empty")
    if max_connections < 1 or max_symbols < 1:
        raise SettingsError("--max-connections and --max-symbols must be at least 1")
    key = "MK" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(18))
    secret = secrets.token_urlsafe(32)
    with warehouse.connect() as conn:
        taken = conn.execute(
            "SELECT 1 FROM market.api_tokens WHERE name = %s AND revoked_at IS NULL", (name,)
        ).fetchone()
        if taken:
            raise SettingsError(f"a live token named {name!r} exists: revoke it first or pick another name")
        conn.execute(
            "INSERT INTO market.api_tokens (key, name, secret_hash, max_connections, max_symbols)"
            " VALUES (%s, %s, %s, %s, %s)",
            (key, name, hash_secret(secret), max_connections, max_symbols),
        )
        details = {"name": name, "max_connections": max_connections, "max_symbols": max_symbols}
        audit.record(conn, "token", "created", actor="cli", subject=key, details=details)  # same transaction
    return key, secret


def list_tokens(warehouse: WarehouseResource, *, include_revoked: bool = True) -> list[Token]:
    where = "" if include_revoked else " WHERE revoked_at IS NULL"
    frame = warehouse.read_frame(
        "SELECT key, name, max_connections, max_symbols, created_at, revoked_at FROM market.api_tokens"
        f"{where} ORDER BY created_at, name"
    )
    return [
        Token(r.key, r.name, int(r.max_connections), int(r.max_symbols), r.created_at, _none(r.revoked_at))
        for r in frame.itertuples(index=False)
    ]


def _none(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def revoke(warehouse: WarehouseResource, key_or_name: str) -> int:
    """Revoke the live token with this key or name; returns how many were revoked (0 or 1)."""
    with warehouse.connect() as conn:
        revoked = conn.execute(
            "UPDATE market.api_tokens SET revoked_at = now() WHERE (key = %s OR name = %s) AND revoked_at IS NULL"
            " RETURNING key, name",
            (key_or_name, key_or_name),
        ).fetchall()
        for key, name in revoked:  # audited in the same transaction as the revocation
            audit.record(conn, "token", "revoked", actor="cli", subject=key, details={"name": name})
        return len(revoked)


def verify(warehouse: WarehouseResource, key: object, secret: object) -> Token | None:
    """The live token matching (key, secret), else None; constant-time comparison of the hashes."""
    if not isinstance(key, str) or not isinstance(secret, str) or not key or len(key) > 64 or len(secret) > 256:
        return None
    with warehouse.connect() as conn:
        row = conn.execute(
            "SELECT key, name, max_connections, max_symbols, secret_hash FROM market.api_tokens"
            " WHERE key = %s AND revoked_at IS NULL",
            (key,),
        ).fetchone()
    if row is None or not hmac.compare_digest(row[4], hash_secret(secret)):
        return None
    return Token(row[0], row[1], int(row[2]), int(row[3]))


def live_keys(warehouse: WarehouseResource, keys: list[str]) -> set[str]:
    """Which of ``keys`` are still live: a serve process re-checks its connected tokens with this."""
    if not keys:
        return set()
    frame = warehouse.read_frame(
        "SELECT key FROM market.api_tokens WHERE key = ANY(%s) AND revoked_at IS NULL", (keys,)
    )
    return set(frame["key"]) if not frame.empty else set()
