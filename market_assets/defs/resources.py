"""Dagster resources of the Dagster layer that carry configuration rather than connections.

Why a resource for the option parameters: run workers, the UI and tests must see the same rate and
yields; read from the environment inside an asset body they were invisible in the UI and tests had
to patch the environment. Bound once in the composition root from ``config.load_option_settings()``
(which validates and names a bad variable at load), they show in the UI's resource view, and a test
passes its own values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from market_assets.config import (
    DEFAULT_EXPIRY_HORIZON_DAYS,
    DEFAULT_RISK_FREE_RATE,
    OPTION_FEEDS,
    OptionSettings,
    load_option_settings,
)


class OptionParameters(ConfigurableResource):
    """What the option assets need to know: the pricing inputs and what to ingest."""

    risk_free_rate: float = Field(
        default=DEFAULT_RISK_FREE_RATE, description="Continuously compounded annual rate (RISK_FREE_RATE)."
    )
    dividend_yields: dict[str, float] = Field(
        default_factory=dict,
        description="Continuous dividend yield per underlying; an unlisted one has 0 (DIVIDEND_YIELDS).",
    )
    expiry_horizon_days: int = Field(
        default=DEFAULT_EXPIRY_HORIZON_DAYS,
        description="Only contracts expiring within this many days of the snapshot (OPTION_EXPIRY_HORIZON_DAYS).",
    )
    feed: str = Field(default="indicative", description=f"Options feed, one of {OPTION_FEEDS} (OPTIONS_FEED).")

    @classmethod
    def from_settings(cls, settings: OptionSettings) -> OptionParameters:
        return cls(
            risk_free_rate=settings.risk_free_rate,
            dividend_yields=dict(settings.dividend_yields),
            expiry_horizon_days=settings.expiry_horizon_days,
            feed=settings.feed,
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> OptionParameters:
        """The parameters the environment configures; raises SettingsError naming a bad variable."""
        return cls.from_settings(load_option_settings(environ))


class MarketClockResource(ConfigurableResource):
    """ "Now" for the sensor. ``now_override`` (ISO time) replays a moment: tests, simulations and
    re-evaluating a past tick; unset (production) it is the wall clock."""

    now_override: str | None = None

    def now(self) -> datetime:
        if self.now_override:
            ts = pd.Timestamp(self.now_override)
            return (ts if ts.tzinfo else ts.tz_localize(UTC)).to_pydatetime()
        return datetime.now(UTC)
