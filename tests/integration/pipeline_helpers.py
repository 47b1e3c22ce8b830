"""Helpers to materialize assets in-process against the simulator and a real warehouse."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import pandas as pd
from dagster import AssetsDefinition, DagsterInstance, ExecuteInProcessResult, materialize

from market_assets.resources.alpaca import AlpacaResource
from market_assets.resources.warehouse import WarehouseResource
from market_assets.sources.simulator import SimulatorServer

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
VALUE_COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume", "trade_count", "vwap"]


def alpaca_for(sim: SimulatorServer, **overrides: Any) -> AlpacaResource:
    """Fast retries so injected faults cost milliseconds, not seconds."""
    params: dict[str, Any] = {
        "api_key": sim.api_key,
        "secret_key": sim.secret_key,
        "data_url": sim.base_url,
        "trading_url": sim.base_url,
        "rate_limit_per_minute": 100_000,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "timeout_seconds": 5,
    }
    params.update(overrides)
    return AlpacaResource(**params)


def run(
    assets: Sequence[AssetsDefinition],
    resources: dict[str, Any],
    *,
    partition: str | None = None,
    window: tuple[date | str, date | str] | None = None,
    run_config: dict[str, Any] | None = None,
    instance: DagsterInstance | None = None,
) -> ExecuteInProcessResult:
    tags = {}
    if window:
        tags = {RANGE_START: str(window[0]), RANGE_END: str(window[1])}
    return materialize(
        list(assets),
        resources=resources,
        partition_key=partition,
        tags=tags,
        run_config=run_config,
        instance=instance or DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def seed_symbols(symbols: Sequence[str], warehouse: WarehouseResource) -> None:
    from market_assets.assets.bars import symbols as symbols_asset

    result = run(
        [symbols_asset],
        {"warehouse": warehouse},
        run_config={"ops": {"symbols": {"config": {"symbols": list(symbols)}}}},
    )
    assert result.success


def stored_bars(warehouse: WarehouseResource, table: str = "market.bars_daily") -> pd.DataFrame:
    frame = warehouse.read_frame(f"SELECT {', '.join(VALUE_COLUMNS)} FROM {table} ORDER BY symbol, ts")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[ns, UTC]")
    frame["volume"] = frame["volume"].astype("int64")
    frame["trade_count"] = frame["trade_count"].astype("int64")
    return frame.reset_index(drop=True)


def check_results(result: ExecuteInProcessResult) -> dict[str, bool]:
    return {f"{e.asset_key.to_user_string()}.{e.check_name}": e.passed for e in result.get_asset_check_evaluations()}
