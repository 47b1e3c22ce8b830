"""Ingestion assets: the symbol universe, daily bars and minute bars.

Thin by design: fetch through the Alpaca resource, split with the pandera contract, write with
the warehouse's one writer, and report what happened as metadata and check results. The reads and
checks are named queries (`market_assets.warehouse.queries.bars`); the shared checks are in
`market_assets.defs.checks`.
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
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from market_assets.alpaca.resource import AlpacaResource
from market_assets.config import load_settings, parse_symbols
from market_assets.contracts.bars import coerce_raw_bars, split_bars
from market_assets.defs.checks import no_missing_sessions_check, none_found_check, quarantine_rate_check
from market_assets.defs.partition_report import report_partitions, run_totals
from market_assets.defs.partitions import BACKFILL_POLICY, daily_partitions, partition_dates
from market_assets.defs.universe import run_universe
from market_assets.domain.reconcile import Reconciliation, compare_minute_bars
from market_assets.domain.sessions import NEW_YORK, session_of_daily_ts, session_of_minute_ts, sessions_between
from market_assets.warehouse import tables
from market_assets.warehouse.queries.bars import (
    active_symbols,
    contract_violations,
    missing_daily_bars,
    seed_universe,
    streamed_minute_bars,
)
from market_assets.warehouse.resource import WarehouseResource

__all__ = ["BACKFILL_POLICY", "active_symbols", "daily_bars", "intraday_bars", "partition_dates", "symbols"]

BARS_SOURCE = "alpaca:/v2/stocks/bars"


class SymbolsConfig(Config):
    """The universe to set; empty means MARKET_SYMBOLS (or the built-in default).

    `seed_only`: set it only if no symbol is active yet (a first run), else just register unknown symbols
    inactive; how ``market-data run`` uses it, so a run never changes the universe the schedule ingests.
    """

    symbols: list[str] = []
    seed_only: bool = False


@asset(
    group_name="ingestion",
    description="The active symbol universe (market.symbols), set from configuration; every change is recorded in "
    "market.audit_log.",
)
def symbols(context: AssetExecutionContext, config: SymbolsConfig, warehouse: WarehouseResource) -> MaterializeResult:
    universe = (
        parse_symbols(",".join(config.symbols), "symbols (run config)") if config.symbols else load_settings().symbols
    )
    if config.seed_only:
        seeded = seed_universe(warehouse, list(universe), run_id=context.run.run_id)
        context.log.info("universe: %s", "seeded" if seeded else "left as it is (only `universe set` changes it)")
        change = {"added": list(universe) if seeded else [], "deactivated": []}
    else:
        change = warehouse.set_universe(list(universe), run_id=context.run.run_id)  # audited in the same transaction
        context.log.info(
            "universe: %d symbols (added %s, deactivated %s)",
            len(universe),
            ", ".join(change["added"]) or "none",
            ", ".join(change["deactivated"]) or "none",
        )
    return MaterializeResult(
        metadata={
            "symbols": MetadataValue.int(len(universe)),
            "universe": ", ".join(universe),
            "added": ", ".join(change["added"]) or "none",
            "deactivated": ", ".join(change["deactivated"]) or "none",
        }
    )


@dataclass(frozen=True)
class IngestResult:
    written: int
    quarantined: int
    fetched: int
    kept: pd.DataFrame
    rejected: pd.DataFrame


def _fetch_and_split(
    alpaca: AlpacaResource, universe: list[str], timeframe: str, first: date, last: date, run_id: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(typed, kept, rejected, quarantine records) of [first, last] New York days."""
    start = pd.Timestamp(first, tz=NEW_YORK).to_pydatetime()
    end = pd.Timestamp(last + timedelta(days=1), tz=NEW_YORK).to_pydatetime() - timedelta(microseconds=1)
    raw = alpaca.fetch_bars(universe, timeframe, start, end) if universe else pd.DataFrame()
    failed = raw.attrs.get("failed_symbols", {})
    if raw.empty:
        typed = coerce_raw_bars(pd.DataFrame(columns=["symbol", "t", "o", "h", "l", "c", "v", "n", "vw"]))
        raw = pd.DataFrame({"payload": []})
    else:
        typed = coerce_raw_bars(raw)
    split = split_bars(typed, timeframe)
    kept = split.valid.copy()
    kept["session"] = (
        session_of_daily_ts(kept["ts"]).dt.date if timeframe == "1Day" else session_of_minute_ts(kept["ts"])
    )
    kept["volume"] = kept["volume"].astype("int64")
    kept["trade_count"] = kept["trade_count"].astype("Int64")
    kept["feed"] = alpaca.stored_feed
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
    typed.attrs["failed_symbols"] = failed
    return typed, kept, rejected, quarantine


def ingest_bars(
    context: AssetExecutionContext,
    alpaca: AlpacaResource,
    warehouse: WarehouseResource,
    *,
    table: tables.Table,
    timeframe: str,
    universe: list[str],
) -> IngestResult:
    """Fetch, validate and write bars of the partition's New York days, replacing what was there; log the run."""
    first, last = partition_dates(context)
    started = datetime.now().astimezone()
    requests_before, retries_before = alpaca.stats.requests, alpaca.stats.retries
    endpoints_before = alpaca.stats.snapshot()
    partition_key = f"{first}..{last}" if first != last else str(first)
    dataset = table.name.split(".")[1]

    def log(status: str, fetched: int = 0, written: int = 0, quarantined: int = 0, error: str | None = None) -> None:
        warehouse.log_ingestion(
            run_id=context.run.run_id,
            asset=context.asset_key.to_user_string(),
            partition_key=partition_key,
            dataset=dataset,
            symbols=len(universe),
            rows_fetched=fetched,
            rows_written=written,
            rows_quarantined=quarantined,
            http_requests=alpaca.stats.requests - requests_before,
            http_retries=alpaca.stats.retries - retries_before,
            started_at=started,
            status=status,
            error=error,
            api_calls=alpaca.stats.since(endpoints_before),
        )

    try:
        typed, kept, rejected, quarantine = _fetch_and_split(
            alpaca, universe, timeframe, first, last, context.run.run_id
        )
        result = warehouse.replace_partition(
            table,
            kept,
            sessions=(first, last),
            symbols=universe,
            quarantine=quarantine,
            dataset=dataset,
            partition_key=partition_key,
            # a symbol the source returned nothing for keeps its history (issue 13, item 1)
            only_delivered=True,
        )
    except Exception as exc:
        log("failed", error=str(exc)[:2000])
        raise
    log("success", len(typed), result.rows_written, result.rows_quarantined)
    failed = typed.attrs.get("failed_symbols") or {}
    if failed:  # isolated by the client; they keep their rows and no_missing_sessions names them
        context.log.warning(
            "%s bars of %s could not be fetched, the other symbols proceed: %s",
            dataset,
            ", ".join(failed),
            "; ".join(f"{s}: {reason}" for s, reason in failed.items()),
        )
    if len(rejected):
        context.log.warning("%d %s row(s) quarantined, e.g. %s", len(rejected), dataset, rejected["reason"].iloc[0])
    return IngestResult(result.rows_written, result.rows_quarantined, len(typed), kept, rejected)


def undelivered_sessions(kept: pd.DataFrame, universe: list[str], sessions: list[date]) -> pd.DataFrame:
    """(symbol, session) pairs of the run's universe that the source did not deliver a valid bar for."""
    expected = pd.MultiIndex.from_product([sorted(universe), sessions], names=["symbol", "session"])
    delivered = pd.MultiIndex.from_frame(kept[["symbol", "session"]]) if len(kept) else expected[:0]
    return expected.difference(delivered).to_frame(index=False).sort_values(["session", "symbol"])


def bar_metadata(result: IngestResult, universe: list[str], first: date, last: date, elapsed: float) -> dict[str, Any]:
    kept = result.kept
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
    }


def movers_preview(kept: pd.DataFrame, rows: int = 10) -> str:
    """The last session's largest moves (close against open): the rows worth a look, not the last symbols."""
    if kept.empty:
        return "_no rows_"
    last = kept[kept["session"] == kept["session"].max()]
    change = (last["close"] / last["open"] - 1.0).abs()
    top = last.assign(change_pct=((last["close"] / last["open"] - 1.0) * 100).round(2)).loc[
        change.sort_values(ascending=False, kind="stable").index[:rows]
    ]
    columns = ["symbol", "session", "open", "high", "low", "close", "change_pct", "volume"]
    return top[columns].round({"open": 2, "high": 2, "low": 2, "close": 2}).to_markdown(index=False)


def report(
    context: AssetExecutionContext, table: tables.Table, result: IngestResult, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Each partition's own counts (see `partition_report`); the run-wide metadata, renamed `run_*`."""
    report_partitions(
        context,
        result.kept,
        date_column="session",
        table=table,
        quarantined=result.rejected["ts"] if "ts" in result.rejected else pd.Series([], dtype=object),
        latest=lambda: {"preview": MetadataValue.md(movers_preview(result.kept))},
    )
    return run_totals(metadata, ("rows_written", "rows_fetched", "rows_quarantined", "symbols_with_data"))


def _bar_checks(
    warehouse: WarehouseResource,
    table: tables.Table,
    result: IngestResult,
    universe: list[str],
    first: date,
    last: date,
) -> list[AssetCheckResult]:
    violations = contract_violations(warehouse, table, universe, first, last)
    return [
        none_found_check("bars_contract", violations, "violations"),
        quarantine_rate_check(quarantined=result.quarantined, fetched=result.fetched, check_name="quarantine_rate"),
    ]


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
            # not blocking: one symbol without data must not stop technicals, options and cache for the others
            # (issue 13, item 9); the failed check names it and the CLI exits non-zero
            blocking=False,
            description="The source delivered a valid daily bar for every symbol of the run on every NYSE session "
            "of the partition; a symbol that did not keeps its previous rows and is named here.",
        ),
        AssetCheckSpec(
            "quarantine_rate",
            asset="daily_bars",
            description="Warns when more than 1% of fetched rows were rejected.",
        ),
    ],
    description=(
        "Raw daily bars (market.bars_daily) from Alpaca for the active universe; one partition per NYSE session."
    ),
)
def daily_bars(
    context: AssetExecutionContext, alpaca: AlpacaResource, warehouse: WarehouseResource
) -> MaterializeResult:
    t0 = time.perf_counter()
    first, last = partition_dates(context)
    universe = run_universe(context, warehouse)
    table = tables.BARS_DAILY
    result = ingest_bars(context, alpaca, warehouse, table=table, timeframe="1Day", universe=universe)
    sessions = sessions_between(first, last)
    undelivered = undelivered_sessions(result.kept, universe, sessions)
    still_missing = missing_daily_bars(warehouse, universe, sessions)
    checks = _bar_checks(warehouse, table, result, universe, first, last)
    checks.insert(1, no_missing_sessions_check(undelivered, still_missing=len(still_missing)))
    if len(undelivered):
        context.log.error(
            "no valid daily bar delivered for %s (%d symbol-sessions; previous rows kept)",
            ", ".join(sorted(undelivered["symbol"].unique())),
            len(undelivered),
        )
    metadata = bar_metadata(result, universe, first, last, time.perf_counter() - t0)
    return MaterializeResult(metadata=report(context, table, result, metadata), check_results=checks)


def stream_reconciliation_check(rec: Reconciliation) -> AssetCheckResult:
    """A warning, never blocking: the batch is the final word, the difference measures the live path."""
    return AssetCheckResult(
        check_name="stream_reconciliation",
        passed=rec.clean or rec.streamed_rows == 0,
        severity=AssetCheckSeverity.WARN,
        metadata=rec.metadata(),
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
        AssetCheckSpec(
            "stream_reconciliation",
            asset="intraday_bars",
            description="The minute bars `market-data stream` wrote vs this batch, before it replaces them: warns on "
            "missing, extra or different minutes (passes when nothing was streamed).",
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
    universe = run_universe(context, warehouse)
    table = tables.BARS_MINUTE
    streamed = streamed_minute_bars(warehouse, universe, first, last)  # the replace below erases them
    result = ingest_bars(context, alpaca, warehouse, table=table, timeframe="1Min", universe=universe)
    checks = _bar_checks(warehouse, table, result, universe, first, last)
    checks.append(stream_reconciliation_check(compare_minute_bars(streamed, result.kept, first)))
    metadata = bar_metadata(result, universe, first, last, time.perf_counter() - t0)
    return MaterializeResult(metadata=report(context, table, result, metadata), check_results=checks)
