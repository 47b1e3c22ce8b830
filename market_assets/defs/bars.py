"""Ingestion assets: the symbol universe, daily bars and minute bars.

Thin by design: fetch through the Alpaca resource, split with the pandera contract, write with
the warehouse's one writer, and report what happened as metadata and check results.
"""

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from market_assets.alpaca.resource import AlpacaResource
from market_assets.config import load_settings, parse_symbols
from market_assets.contracts.bars import coerce_raw_bars, split_bars
from market_assets.defs.partitions import daily_partitions
from market_assets.domain.sessions import NEW_YORK, session_of_daily_ts, session_of_minute_ts, sessions_between
from market_assets.warehouse import tables
from market_assets.warehouse.resource import WarehouseResource

BARS_SOURCE = "alpaca:/v2/stocks/bars"
# A backfill run covers up to a month of days: one request stream per symbol batch instead of one
# per day, while a month of minute bars for 500 symbols (~4M rows) still fits comfortably in memory.
BACKFILL_POLICY = BackfillPolicy.multi_run(max_partitions_per_run=31)


class SymbolsConfig(Config):
    """The universe to seed; empty means MARKET_SYMBOLS (or the built-in default)."""

    symbols: list[str] = []


@asset(group_name="ingestion", description="The symbol universe (market.symbols), seeded from configuration.")
def symbols(context: AssetExecutionContext, config: SymbolsConfig, warehouse: WarehouseResource) -> MaterializeResult:
    universe = (
        parse_symbols(",".join(config.symbols), "symbols (run config)") if config.symbols else load_settings().symbols
    )
    warehouse.upsert_symbols(list(universe))
    with warehouse.connect() as conn:
        conn.execute(
            "UPDATE market.symbols SET active = false, updated_at = now() WHERE active AND NOT symbol = ANY(%s)",
            (list(universe),),
        )
    context.log.info("universe: %d symbols", len(universe))
    return MaterializeResult(metadata={"symbols": MetadataValue.int(len(universe)), "universe": ", ".join(universe)})


def active_symbols(warehouse: WarehouseResource) -> list[str]:
    frame = warehouse.read_frame("SELECT symbol FROM market.symbols WHERE active ORDER BY symbol")
    return frame["symbol"].tolist() if not frame.empty else []


@dataclass(frozen=True)
class IngestResult:
    written: int
    quarantined: int
    fetched: int
    kept: pd.DataFrame
    rejected: pd.DataFrame


def partition_dates(context: AssetExecutionContext) -> tuple[date, date]:
    """First and last calendar day of the partition (or partition range) being materialized."""
    window = context.partition_time_window
    return window.start.date(), (window.end - timedelta(days=1)).date()


def ingest_bars(
    context: AssetExecutionContext,
    alpaca: AlpacaResource,
    warehouse: WarehouseResource,
    *,
    timeframe: str,
    table: str,
    first: date,
    last: date,
    universe: list[str],
) -> IngestResult:
    """Fetch, validate and write bars of [first, last] New York days, replacing what was there."""
    started = datetime.now().astimezone()
    requests_before, retries_before = alpaca.stats.requests, alpaca.stats.retries
    start = pd.Timestamp(first, tz=NEW_YORK).to_pydatetime()
    end = pd.Timestamp(last + timedelta(days=1), tz=NEW_YORK).to_pydatetime() - timedelta(microseconds=1)
    partition_key = f"{first}..{last}" if first != last else str(first)
    run_id = context.run.run_id
    dataset = table.split(".")[1]
    try:
        raw = alpaca.fetch_bars(universe, timeframe, start, end) if universe else pd.DataFrame()
        if raw.empty:
            typed = coerce_raw_bars(pd.DataFrame(columns=["symbol", "t", "o", "h", "l", "c", "v", "n", "vw"]))
            raw = pd.DataFrame({"payload": []})
        else:
            typed = coerce_raw_bars(raw)
        split = split_bars(typed, timeframe)
        kept = split.valid.copy()
        if timeframe == "1Day":
            kept["session"] = session_of_daily_ts(kept["ts"]).dt.date
        else:
            kept["session"] = session_of_minute_ts(kept["ts"])
        kept["volume"] = kept["volume"].astype("int64")
        kept["trade_count"] = kept["trade_count"].astype("Int64")
        kept["feed"] = alpaca.feed
        kept["run_id"] = run_id
        rejected = split.rejected
        quarantine = pd.DataFrame(
            {
                "source": BARS_SOURCE,
                "symbol": rejected["symbol"],
                "ts": rejected["ts"],
                "payload": raw.loc[rejected.index, "payload"] if len(rejected) else pd.Series(dtype=object),
                "reason": rejected["reason"],
                "run_id": run_id,
            }
        )
        result = warehouse.replace_partition(
            tables.table(table),
            kept,
            sessions=(first, last),
            symbols=universe,
            quarantine=quarantine,
            dataset=dataset,
            partition_key=partition_key,
        )
    except Exception as exc:
        warehouse.log_ingestion(
            run_id=run_id,
            asset=context.asset_key.to_user_string(),
            partition_key=partition_key,
            dataset=dataset,
            symbols=len(universe),
            rows_fetched=0,
            rows_written=0,
            rows_quarantined=0,
            http_requests=alpaca.stats.requests - requests_before,
            http_retries=alpaca.stats.retries - retries_before,
            started_at=started,
            status="failed",
            error=str(exc)[:2000],
        )
        raise
    warehouse.log_ingestion(
        run_id=run_id,
        asset=context.asset_key.to_user_string(),
        partition_key=partition_key,
        dataset=dataset,
        symbols=len(universe),
        rows_fetched=len(typed),
        rows_written=result.rows_written,
        rows_quarantined=result.rows_quarantined,
        http_requests=alpaca.stats.requests - requests_before,
        http_retries=alpaca.stats.retries - retries_before,
        started_at=started,
        status="success",
        error=None,
    )
    if len(rejected):
        context.log.warning("%d %s row(s) quarantined, e.g. %s", len(rejected), dataset, rejected["reason"].iloc[0])
    return IngestResult(result.rows_written, result.rows_quarantined, len(typed), kept, rejected)


def bar_metadata(result: IngestResult, universe: list[str], first: date, last: date, elapsed: float) -> dict[str, Any]:
    kept = result.kept
    preview = kept.sort_values(["ts", "symbol"]).tail(10)[["symbol", "ts", "open", "high", "low", "close", "volume"]]
    return {
        "rows_written": MetadataValue.int(result.written),
        "rows_fetched": MetadataValue.int(result.fetched),
        "rows_quarantined": MetadataValue.int(result.quarantined),
        "symbols": MetadataValue.int(len(universe)),
        "symbols_with_data": MetadataValue.int(int(kept["symbol"].nunique()) if len(kept) else 0),
        "window": f"{first} .. {last}",
        "first_ts": str(kept["ts"].min()) if len(kept) else "none",
        "last_ts": str(kept["ts"].max()) if len(kept) else "none",
        "seconds": MetadataValue.float(round(elapsed, 3)),
        "preview": MetadataValue.md(preview.to_markdown(index=False) if len(preview) else "_no rows_"),
    }


def missing_daily_bars(warehouse: WarehouseResource, universe: list[str], first: date, last: date) -> pd.DataFrame:
    """(symbol, session) pairs with no daily bar although NYSE was open."""
    sessions = sessions_between(first, last)
    if not sessions or not universe:
        return pd.DataFrame(columns=["symbol", "session"])
    return warehouse.read_frame(
        "SELECT u.symbol, s.session FROM unnest(%s::text[]) AS u(symbol) CROSS JOIN unnest(%s::date[]) AS s(session) "
        "WHERE NOT EXISTS (SELECT 1 FROM market.bars_daily b WHERE b.symbol = u.symbol AND b.session = s.session) "
        "ORDER BY s.session, u.symbol",
        (universe, sessions),
    )


def contract_violations(warehouse: WarehouseResource, table: str, universe: list[str], first: date, last: date) -> int:
    """Rows in the written window that break the bar contract: must be 0 (the writer only gets valid rows)."""
    return int(
        warehouse.scalar(
            f"SELECT count(*) FROM {table} WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s AND NOT ("
            "open > 0 AND high > 0 AND low > 0 AND close > 0 AND volume >= 0 AND low <= least(open, close)"
            " AND greatest(open, close) <= high AND symbol ~ '^[A-Z]{1,5}(\\.[A-Z]{1,2})?$')",
            (universe, first, last),
        )
    )


@asset(
    group_name="ingestion",
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[symbols],
    check_specs=[
        AssetCheckSpec(
            "bars_contract",
            asset="daily_bars",
            blocking=True,
            description="No stored row breaks the bar contract (prices > 0, low <= open/close <= high).",
        ),
        AssetCheckSpec(
            "no_missing_sessions",
            asset="daily_bars",
            blocking=True,
            description="Every NYSE session in the partition has a daily bar for every active symbol.",
        ),
        AssetCheckSpec(
            "quarantine_rate",
            asset="daily_bars",
            description="Warns when more than 1% of fetched rows were rejected.",
        ),
    ],
    description=(
        "Raw daily bars (market.bars_daily) from Alpaca for the active universe; one partition per New York day."
    ),
)
def daily_bars(
    context: AssetExecutionContext, alpaca: AlpacaResource, warehouse: WarehouseResource
) -> MaterializeResult:
    t0 = time.perf_counter()
    first, last = partition_dates(context)
    universe = active_symbols(warehouse)
    result = ingest_bars(
        context,
        alpaca,
        warehouse,
        timeframe="1Day",
        table="market.bars_daily",
        first=first,
        last=last,
        universe=universe,
    )
    missing = missing_daily_bars(warehouse, universe, first, last)
    violations = contract_violations(warehouse, "market.bars_daily", universe, first, last)
    rate = result.quarantined / result.fetched if result.fetched else 0.0
    checks = [
        AssetCheckResult(check_name="bars_contract", passed=violations == 0, metadata={"violations": violations}),
        AssetCheckResult(
            check_name="no_missing_sessions",
            passed=missing.empty,
            metadata={
                "missing": MetadataValue.int(len(missing)),
                "examples": MetadataValue.md(missing.head(20).to_markdown(index=False) if len(missing) else "none"),
            },
        ),
        AssetCheckResult(
            check_name="quarantine_rate",
            passed=rate <= 0.01,
            severity=AssetCheckSeverity.WARN,
            metadata={"quarantined": result.quarantined, "rate": MetadataValue.float(round(rate, 6))},
        ),
    ]
    return MaterializeResult(
        metadata=bar_metadata(result, universe, first, last, time.perf_counter() - t0), check_results=checks
    )


@asset(
    group_name="ingestion",
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[symbols],
    check_specs=[
        AssetCheckSpec(
            "bars_contract",
            asset="intraday_bars",
            blocking=True,
            description="No stored minute bar breaks the bar contract.",
        ),
        AssetCheckSpec(
            "quarantine_rate",
            asset="intraday_bars",
            description="Warns when more than 1% of fetched minute bars were rejected.",
        ),
    ],
    description=(
        "Raw regular-session minute bars (market.bars_minute) of the day. A missing minute is not an error: "
        "no trades, no bar. The day is replaced whole at T+1 because Alpaca revises recent bars."
    ),
)
def intraday_bars(
    context: AssetExecutionContext, alpaca: AlpacaResource, warehouse: WarehouseResource
) -> MaterializeResult:
    t0 = time.perf_counter()
    first, last = partition_dates(context)
    universe = active_symbols(warehouse)
    result = ingest_bars(
        context,
        alpaca,
        warehouse,
        timeframe="1Min",
        table="market.bars_minute",
        first=first,
        last=last,
        universe=universe,
    )
    violations = contract_violations(warehouse, "market.bars_minute", universe, first, last)
    rate = result.quarantined / result.fetched if result.fetched else 0.0
    checks = [
        AssetCheckResult(check_name="bars_contract", passed=violations == 0, metadata={"violations": violations}),
        AssetCheckResult(
            check_name="quarantine_rate",
            passed=rate <= 0.01,
            severity=AssetCheckSeverity.WARN,
            metadata={"quarantined": result.quarantined, "rate": MetadataValue.float(round(rate, 6))},
        ),
    ]
    return MaterializeResult(
        metadata=bar_metadata(result, universe, first, last, time.perf_counter() - t0), check_results=checks
    )
