"""The composition root: the one Definitions object, and the one place that picks real or simulated Alpaca.

Resources are bound from the environment with EnvVar, so secrets stay out of run config and the UI. Unset optional
variables are bound as None: the warehouse and cache then fall back to the embedded servers. With no Alpaca keys and
no ALPACA_DATA_URL, the offline simulator is bound here, and nowhere else knows it exists.
"""

from __future__ import annotations

import os

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    EnvVar,
    load_assets_from_modules,
)

from market_assets.alpaca.resource import AlpacaResource, Endpoint
from market_assets.cache.resource import CacheResource
from market_assets.config import Settings, load_settings
from market_assets.defs import bars, charts, corporate_actions, options, technicals
from market_assets.defs import cache as cache_assets
from market_assets.defs.freshness import freshness_checks, freshness_job, freshness_schedule
from market_assets.defs.housekeeping import dead_cli_runs_sensor
from market_assets.defs.intraday import intraday_refresh_job, intraday_refresh_sensor
from market_assets.defs.jobs import CLI_JOBS
from market_assets.defs.resources import MarketClockResource, OptionParameters
from market_assets.defs.scale_out import daily_market_celery_job
from market_assets.defs.schedules import after_close_schedule, daily_market_job
from market_assets.observability.dagster_logger import market_loggers
from market_assets.warehouse.resource import WarehouseResource

# How Dagster stores the events of a run over a partition range (read by Dagster from the environment, in whatever
# process runs the steps: the CLI, a run worker, a Celery worker; all of them import this module first). Without
# them a one-year backfill chunk of the five technicals assets stored 2,500 events one by one (1,250 "planned" ones
# before the first step started): 27 s of a 53 s run. With them: one planned event per asset and run (a failed run's
# partitions then read "missing", not "failed", in the UI; the run itself still reads failed) and each asset's
# per-session materializations stored in one batch. `setdefault`: an operator's own value wins.
DAGSTER_EVENT_SETTINGS = {"DAGSTER_EVENT_BATCH_SIZE": "1000", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"}
for _name, _value in DAGSTER_EVENT_SETTINGS.items():
    os.environ.setdefault(_name, _value)


class SimulatedAlpacaResource(AlpacaResource):
    """The same client code pointed at the offline simulator, started in-process on first use (never at load)."""

    serves_option_history: bool = True
    source: str = "simulator"

    def endpoint(self) -> Endpoint:
        import alpaca_sim

        sim = alpaca_sim.shared_server()
        return Endpoint(sim.api_key, sim.secret_key, sim.base_url, sim.base_url)


def _env(name: str) -> EnvVar | None:
    return EnvVar(name) if os.environ.get(name) else None


# The local simulator has no account limit: unless ALPACA_RATE_LIMIT_PER_MINUTE says otherwise, the client-side
# limit (kept for real keys) is lifted for it, so a backfill is bound by work, not by a limit that is not there.
SIMULATOR_RATE_LIMIT_PER_MINUTE = 1_000_000.0


def alpaca_resource(settings: Settings) -> AlpacaResource:
    limits = {
        "feed": settings.alpaca_feed,
        "rate_limit_per_minute": settings.rate_limit_per_minute,
        "timeout_seconds": settings.http_timeout_seconds,
    }
    if settings.uses_simulator:
        if not os.environ.get("ALPACA_RATE_LIMIT_PER_MINUTE"):
            limits["rate_limit_per_minute"] = SIMULATOR_RATE_LIMIT_PER_MINUTE
        return SimulatedAlpacaResource(**limits)
    return AlpacaResource(
        api_key=_env("ALPACA_API_KEY"),
        secret_key=_env("ALPACA_SECRET_KEY"),
        data_url=settings.alpaca_data_url,
        trading_url=settings.alpaca_trading_url,
        **limits,
    )


def build_resources() -> dict[str, object]:
    settings = load_settings()  # fails at load with the variable's name when a value is bad
    return {
        "alpaca": alpaca_resource(settings),
        "warehouse": WarehouseResource(
            database_url=_env("DATABASE_URL"),
            data_home=str(settings.data_home),
            price_adjustment=settings.price_adjustment,  # which bars the analytics read
        ),
        "cache": CacheResource(redis_url=_env("REDIS_URL"), data_home=str(settings.data_home)),
        "market_clock": MarketClockResource(),
        # validates RISK_FREE_RATE / DIVIDEND_YIELDS / ... at load, naming the variable; visible in the UI
        "option_parameters": OptionParameters.from_environment(),
    }


# Evaluates the assets' automation conditions (market_cache is eager); on by default, since a condition nobody
# evaluates does nothing. Stop it in the UI (Automation) or with `dagster sensor stop`.
automation_sensor = AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
)

defs = Definitions(
    assets=load_assets_from_modules([bars, cache_assets, charts, corporate_actions, options, technicals]),
    asset_checks=freshness_checks,
    jobs=[daily_market_job, daily_market_celery_job, intraday_refresh_job, freshness_job, *CLI_JOBS],
    sensors=[intraday_refresh_sensor, automation_sensor, dead_cli_runs_sensor],
    schedules=[after_close_schedule, freshness_schedule],
    resources=build_resources(),
    loggers=market_loggers(),  # MARKET_LOG_FORMAT=json: one JSON object per line from every run
)
