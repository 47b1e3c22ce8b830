"""One exception hierarchy for the platform; the CLI maps its exit codes from it.

Why one: the CLI, the Dagster code location and the services must tell a user the same thing for the same fault,
and a scheduler must be able to trust the exit code: 2 for bad configuration (fix the input, do not retry),
3 for an unreachable server (retry later), 1 for a run that failed.
"""

from __future__ import annotations


class MarketDataError(Exception):
    """Base of every error the platform raises on purpose."""

    exit_code = 1


class SettingsError(MarketDataError, ValueError):
    """A configuration value is wrong; the message names the variable (or flag) and what is expected."""

    exit_code = 2


class UnreachableError(MarketDataError, ConnectionError):
    """A server the platform needs (PostgreSQL, Redis) does not answer; retrying later may help."""

    exit_code = 3


class MigrationsMissingError(MarketDataError, RuntimeError):
    """The installed package carries no migrations: writing would fail far away, so fail here."""


class MigrationChangedError(MarketDataError, RuntimeError):
    """A migration that was applied has changed on disk; migrations are append-only."""


class AlpacaError(MarketDataError, RuntimeError):
    """Base class for errors talking to Alpaca (or the simulator)."""


class AlpacaAuthError(AlpacaError):
    """Keys rejected: retrying cannot help, so this is raised at once."""


class AlpacaUnavailableError(AlpacaError):
    """Retries exhausted on timeouts, dropped connections, 429s or 5xx."""


class InvalidSymbolsError(MarketDataError, ValueError):
    """A symbol that cannot be a ticker: refused before any request is spent on it."""


class WriteConflictError(MarketDataError, RuntimeError):
    """Another writer held the same dataset and partition for longer than the bounded wait: nothing was written."""
