"""The ``market_cache`` asset: warm Redis from the warehouse after the day's assets have run.

Why the cache is an asset (and not a side effect inside each producer): lineage shows it is
downstream of bars, indicators, Greeks and flow, so it runs after all of them in the daily job,
and a failed producer keeps yesterday's cache instead of a half-updated one. Why it never fails
because of Redis: nothing in the warehouse depends on the cache. With Redis down or full the
asset still succeeds, says what it skipped (metadata, a WARN check, a warning in the log), and
the next materialization rewrites every key. Key schema and TTLs: the `market_assets.cache` package doc.
"""

import time
from datetime import UTC, datetime

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from market_assets.cache.reader import load_chains, load_flows, load_market_data
from market_assets.cache.resource import CacheResource, WarmReport
from market_assets.defs.partitions import BACKFILL_POLICY, daily_partitions, partition_dates
from market_assets.defs.universe import run_universe
from market_assets.warehouse.queries.bars import latest_daily_session
from market_assets.warehouse.resource import WarehouseResource

# what the cache reads: bars (prices), indicators_daily, option_chain + option_greeks, options_flow_daily
CACHE_DEPS = [
    AssetKey("daily_bars"),
    AssetKey("intraday_bars"),
    AssetKey("technical_indicators"),
    AssetKey("adjusted_history"),  # re-warmed after a new action re-adjusted a symbol's history
    AssetKey("option_greeks"),
    AssetKey("options_flow"),
]
CHAIN_BATCH_UNDERLYINGS = 50


def warm_cache(
    cache: CacheResource,
    warehouse: WarehouseResource,
    symbols: list[str],
    *,
    generation: str,
    kinds: tuple[str, ...] = ("market", "chain", "flow"),
) -> WarmReport:
    """Load the latest rows of `symbols` from the warehouse and write them to Redis (pipelined).

    Warehouse errors propagate (the data is wrong or missing: the run must fail); Redis errors
    are collected in the report (the cache is an accelerator, not a source of truth).
    """
    now = datetime.now(UTC)
    report = WarmReport()
    if "market" in kinds:
        report.merge(cache.write_market(load_market_data(warehouse, symbols, now)))
    if "chain" in kinds:
        # a batch of underlyings at a time: 500 underlyings' chains are ~300k quote models, most of the cache
        # step's memory when built at once (issue 10); one generation and time stamp for all of them
        for start in range(0, len(symbols), CHAIN_BATCH_UNDERLYINGS):
            batch = symbols[start : start + CHAIN_BATCH_UNDERLYINGS]
            report.merge(cache.write_chains(load_chains(warehouse, batch, generation, now)))
    if "flow" in kinds:
        report.merge(cache.write_flows(load_flows(warehouse, symbols, now)))
    cache.record_warm(report, generation=generation)
    return report


def report_metadata(report: WarmReport) -> dict[str, MetadataValue]:
    return {
        "keys_written": MetadataValue.int(sum(report.written.values())),
        "keys_skipped": MetadataValue.int(sum(report.skipped.values())),
        **{f"written_{k}": MetadataValue.int(v) for k, v in sorted(report.written.items())},
        **{f"skipped_{k}": MetadataValue.int(v) for k, v in sorted(report.skipped.items())},
        "redis_errors": MetadataValue.text("; ".join(report.errors) or "none"),
        "redis_seconds": MetadataValue.float(round(report.seconds, 4)),
    }


@asset(
    group_name="cache",
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=CACHE_DEPS,
    # eager covers only the latest partition: exactly the one whose data the cache holds
    automation_condition=AutomationCondition.eager(),
    check_specs=[
        AssetCheckSpec(
            "cache_complete",
            asset="market_cache",
            description="Warns when Redis was down or full and some keys could not be written (next run rewrites).",
        )
    ],
    description=(
        "Latest market data, option chains (our IV/Greeks) and options flow of the active universe, "
        "warmed into Redis from the warehouse. Redis down or full: succeeds with a warning."
    ),
)
def market_cache(
    context: AssetExecutionContext, cache: CacheResource, warehouse: WarehouseResource
) -> MaterializeResult:
    t0 = time.perf_counter()
    _, last = partition_dates(context)
    latest = latest_daily_session(warehouse)
    if latest is not None and last < latest:
        # the cache holds the LATEST values: re-running an old partition must not overwrite them
        note = f"partition ends {last}, before the latest stored session {latest}: cache left as is"
        context.log.info(note)
        return MaterializeResult(
            metadata={"skipped": note},
            check_results=[AssetCheckResult(check_name="cache_complete", passed=True, metadata={"note": note})],
        )
    symbols = run_universe(context, warehouse)
    report = warm_cache(cache, warehouse, symbols, generation=f"{last}:{context.run.run_id[:8]}")
    if not report.ok:
        context.log.warning(
            "cache warm incomplete: skipped %s (%s); the warehouse is unaffected and the next run rewrites the keys",
            dict(report.skipped),
            "; ".join(report.errors),
        )
    warehouse.audit(
        "cache_warm",
        "warmed" if report.ok else "incomplete",
        actor="pipeline",
        subject=cache.key_prefix,
        run_id=context.run.run_id,
        partition_key=str(last),
        details={"written": dict(report.written), "skipped": dict(report.skipped), "errors": report.errors},
    )
    metadata = {
        **report_metadata(report),
        "symbols": MetadataValue.int(len(symbols)),
        "latest_session": str(latest),
        "key_prefix": cache.key_prefix,
        "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
    }
    check = AssetCheckResult(
        check_name="cache_complete",
        passed=report.ok,
        severity=AssetCheckSeverity.WARN,
        metadata={"skipped": MetadataValue.int(sum(report.skipped.values())), "errors": "; ".join(report.errors)},
    )
    return MaterializeResult(metadata=metadata, check_results=[check])
