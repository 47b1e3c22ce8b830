"""Ordered, idempotent DDL shipped inside the package (``NNN_name.sql``), applied by ``WarehouseResource.migrate``.

Append-only: a file that was applied may never change (the runner compares checksums); add a new one instead.
"""

from __future__ import annotations

from importlib.resources import files

from market_assets.errors import MigrationsMissingError


def migration_files() -> list[tuple[str, str]]:
    """(file name, SQL text) of every migration in order; fails loudly when the package carries none."""
    found = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in files(__package__).iterdir()
        if entry.name.endswith(".sql")
    )
    if not found:
        raise MigrationsMissingError(
            f"no migrations found in {__package__}: the installed package is incomplete (reinstall it)"
        )
    return found
