"""The one Definitions object: assets, checks, jobs, schedules and resources.

Resources are bound from the environment with EnvVar, so secrets stay out of run config and the
UI. Unset optional variables are bound as None: the resources then fall back to the embedded
servers and the offline simulator.
"""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar, load_assets_from_modules

from market_assets.alpaca.resource import AlpacaResource
from market_assets.cache.resource import CacheResource
from market_assets.config import load_option_settings, load_settings
from market_assets.defs import bars, options, technicals
from market_assets.defs import cache as cache_assets
from market_assets.defs.intraday import MarketClockResource, intraday_refresh_job, intraday_refresh_sensor
from market_assets.defs.schedules import after_close_schedule, daily_market_job
from market_assets.warehouse.resource import WarehouseResource


def _env(name: str) -> EnvVar | None:
    return EnvVar(name) if os.environ.get(name) else None


def build_resources() -> dict[str, object]:
    settings = load_settings()  # fails at load with the variable's name when a value is bad
    load_option_settings()  # likewise RISK_FREE_RATE / DIVIDEND_YIELDS, before any run starts
    return {
        "alpaca": AlpacaResource(
            api_key=_env("ALPACA_API_KEY"),
            secret_key=_env("ALPACA_SECRET_KEY"),
            feed=settings.alpaca_feed,
            data_url=settings.alpaca_data_url,
            trading_url=settings.alpaca_trading_url,
            rate_limit_per_minute=settings.rate_limit_per_minute,
            timeout_seconds=settings.http_timeout_seconds,
        ),
        "warehouse": WarehouseResource(database_url=_env("DATABASE_URL"), data_home=str(settings.data_home)),
        "cache": CacheResource(redis_url=_env("REDIS_URL"), data_home=str(settings.data_home)),
        "market_clock": MarketClockResource(),
    }


defs = Definitions(
    assets=load_assets_from_modules([bars, cache_assets, options, technicals]),
    jobs=[daily_market_job, intraday_refresh_job],
    sensors=[intraday_refresh_sensor],
    schedules=[after_close_schedule],
    resources=build_resources(),
)
