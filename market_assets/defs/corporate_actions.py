"""Corporate actions: ingestion, adjustment factors, and the recompute of the history they change.

Thin by design: fetch (``market_assets.alpaca.corporate_actions``), validate (``contracts.corporate_actions``),
compute factors (``analytics.adjustments``), read and write through named queries
(``warehouse.queries.corporate_actions``).

Why two assets: ``corporate_actions`` stores what Alpaca delivered and the factors; ``adjusted_history``
recomputes every derived table (indicators, patterns, levels, pivots) of exactly the symbols whose factors
changed after their rows were computed, over their whole stored history. That step is idempotent (a second run
finds nothing stale) and costs O(those symbols' history), not O(universe).
"""

import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from market_assets.alpaca.corporate_actions import SOURCE, fetch_corporate_actions, request_window
from market_assets.alpaca.resource import AlpacaResource
from market_assets.analytics.adjustments import factor_table, propagate_renames, unexplained_moves
from market_assets.analytics.technicals.frame import LOOKBACK_SESSIONS, compute_daily_technicals
from market_assets.analytics.technicals.rows import indicator_rows, levels_for_sessions, pattern_rows, pivot_rows
from market_assets.contracts.corporate_actions import coerce_actions, quarantine_rows, split_actions
from market_assets.defs.partitions import BACKFILL_POLICY, daily_partitions, partition_dates
from market_assets.defs.universe import run_universe
from market_assets.domain.sessions import session_before, sessions_between
from market_assets.warehouse import tables
from market_assets.warehouse.queries import corporate_actions as queries
from market_assets.warehouse.queries.bars import daily_bars
from market_assets.warehouse.queries.technicals import intraday_vwap
from market_assets.warehouse.resource import WarehouseResource

#: An overnight move beyond this (open / previous close - 1, raw) with no action that day is flagged: a 4:1 split
#: reads as -75 %, a 1:10 reverse split as +900 %, while real single-day moves of large caps beyond 35 % are
#: rare enough to deserve a look anyway.
MISSING_ACTION_MOVE = 0.35
_EPOCH = date(1900, 1, 1)
_DERIVED = (tables.INDICATORS_DAILY, tables.PATTERNS, tables.SUPPORT_RESISTANCE, tables.PIVOT_POINTS)


def refresh_factors(warehouse: WarehouseResource, universe: list[str], run_id: str) -> tuple[list[str], int]:
    """Recompute the factors of `universe` from the stored actions; (symbols whose factors changed, factor rows)."""
    actions, closes = queries.actions_for_factors(warehouse, universe)
    # a renamed symbol's later actions (and the closes their factors need) reach its old bars
    renames = actions.loc[actions["type"] == "name_change", ["symbol", "new_symbol"]]
    closes = pd.concat(
        [closes, *(closes.loc[closes["symbol"] == new].assign(symbol=old) for old, new in renames.itertuples(False))],
        ignore_index=True,
    ).drop_duplicates(["symbol", "session"])
    factors = factor_table(propagate_renames(actions), closes)
    factors = factors.loc[factors["symbol"].isin(universe)]
    return queries.write_factors(warehouse, factors, universe, run_id), len(factors)


def missing_action_check(
    warehouse: WarehouseResource, universe: list[str], first: date, last: date
) -> AssetCheckResult:
    """WARN: overnight moves beyond `MISSING_ACTION_MOVE` in the window that no stored action explains."""
    start = session_before(first, 1)
    flagged = unexplained_moves(
        queries.raw_opens_and_closes(warehouse, universe, start, last),
        queries.action_dates(warehouse, universe, start, last),
        MISSING_ACTION_MOVE,
    )
    flagged = flagged.loc[flagged["session"] >= first] if len(flagged) else flagged
    listing = flagged.assign(move=(flagged["move"] * 100).round(1)).rename(columns={"move": "move_pct"})
    return AssetCheckResult(
        check_name="possible_missing_corporate_action",
        passed=flagged.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "flagged": MetadataValue.int(len(flagged)),
            "threshold_pct": MetadataValue.float(MISSING_ACTION_MOVE * 100),
            "moves": MetadataValue.md(listing.head(50).to_markdown(index=False) if len(flagged) else "none"),
        },
        description="possible missing corporate action" if len(flagged) else None,
    )


@asset(
    group_name="ingestion",
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[AssetKey("daily_bars")],
    check_specs=[
        AssetCheckSpec(
            "possible_missing_corporate_action",
            asset="corporate_actions",
            description=f"Warns on an overnight move beyond {MISSING_ACTION_MOVE:.0%} (raw) with no action that "
            "day: a split or reverse split Alpaca has not (yet) delivered.",
        ),
    ],
    description=(
        "Corporate actions (market.corporate_actions) of the universe from Alpaca's /v1/corporate-actions, "
        "requested by process date up to 120 days past the partition so every ex-date in it is covered, and "
        "the adjustment factors (market.adjustment_factors) behind market.bars_daily_adjusted."
    ),
)
def corporate_actions(
    context: AssetExecutionContext, alpaca: AlpacaResource, warehouse: WarehouseResource
) -> MaterializeResult:
    t0 = time.perf_counter()
    first, last = partition_dates(context)
    universe = run_universe(context, warehouse)
    start, end = request_window(first, last)
    raw = fetch_corporate_actions(alpaca, universe, start, end)
    split = split_actions(coerce_actions(raw))
    run_id = context.run.run_id
    key = f"{first}..{last}" if first != last else str(first)
    rejected = quarantine_rows(split.rejected, SOURCE, run_id) if len(split.rejected) else None
    # one transaction: the actions this run stores are found again by its run_id (factor_symbols) only if a failure
    # cannot leave them stored without their factors
    with warehouse.transaction():
        stored = queries.store_actions(warehouse, split.valid, run_id)
        quarantined = warehouse.replace_quarantine("corporate_actions", key, universe, rejected)
        refreshed = queries.factor_symbols(warehouse, universe, first, last, run_id)
        changed, factor_rows = refresh_factors(warehouse, refreshed, run_id)
    by_type = split.valid["type"].value_counts().to_dict() if len(split.valid) else {}
    context.log.info("corporate actions %s..%s: %d fetched, %d new or changed, factors changed for %s",
                     first, last, len(raw), stored, changed or "none")  # fmt: skip
    return MaterializeResult(
        metadata={
            "fetched": MetadataValue.int(len(raw)),
            "new_or_changed": MetadataValue.int(stored),
            "quarantined": MetadataValue.int(quarantined),
            "by_type": MetadataValue.json({str(k): int(v) for k, v in by_type.items()}),
            "process_date_window": f"{start} .. {end}",
            "symbols_refreshed": MetadataValue.int(len(refreshed)),
            "factor_rows": MetadataValue.int(factor_rows),
            "symbols_with_changed_factors": MetadataValue.json(changed),
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
        },
        check_results=[missing_action_check(warehouse, universe, first, last)],
    )


def recompute_history(warehouse: WarehouseResource, symbols: list[str], run_id: str) -> dict[str, int]:
    """Every derived row of `symbols` over their whole stored history, from the bars as now adjusted.

    The same pure functions as the partitioned assets, over the full history, which is what a clean run
    computes (each partition reads enough history to equal a full run: see ``defs.technicals``).

    Why a writer thread: each table's COPY is the server's work (on its own core) while Python waits, and the
    next table's rows are Python's work; so table k is written while table k + 1 is computed, in the one
    transaction (the thread runs in this context, so it joins it; the four writes still run one at a time on its
    connection). Everything is read before the transaction, so the thread is the connection's only user.
    """
    bars = daily_bars(warehouse, symbols, _EPOCH, date(2999, 12, 31))
    if bars.empty:
        return {t.name: 0 for t in _DERIVED}
    first, last = min(bars["session"]), max(bars["session"])
    vwap = intraday_vwap(warehouse, symbols, first, last)
    frames: dict[tables.Table, Callable[[], pd.DataFrame]] = {
        tables.INDICATORS_DAILY: lambda: indicator_rows(bars, compute_daily_technicals(bars), vwap, first, last),
        tables.PATTERNS: lambda: pattern_rows(bars, first, last, since=last)[0],
        tables.SUPPORT_RESISTANCE: lambda: levels_for_sessions(bars, sessions_between(first, last), LOOKBACK_SESSIONS),
        tables.PIVOT_POINTS: lambda: pivot_rows(bars, first, last),
    }

    def write(table: tables.Table, frame: pd.DataFrame) -> int:
        result = warehouse.replace_partition(
            table, frame.assign(run_id=run_id), sessions=(_EPOCH, last), symbols=symbols
        )
        return result.rows_written

    with warehouse.transaction():
        # all four tables move together, or none does: a failed write or computation (or Ctrl-C) leaves the block by
        # raising once the writer has finished the write it is in, with the writes still queued cancelled, and the
        # transaction rolls back
        writer = ThreadPoolExecutor(1, thread_name_prefix="recompute-writer")
        try:
            context = contextvars.copy_context()
            pending = {table: writer.submit(context.run, write, table, make()) for table, make in frames.items()}
            return {table.name: future.result() for table, future in pending.items()}
        finally:
            writer.shutdown(wait=True, cancel_futures=True)


@asset(
    group_name="technicals",
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[
        AssetKey("corporate_actions"),
        AssetKey("technical_indicators"),
        AssetKey("chart_patterns"),
        AssetKey("support_resistance_levels"),
        AssetKey("pivot_levels"),
    ],
    description=(
        "Recomputes indicators, patterns, support/resistance and pivots over the whole history of exactly the "
        "symbols whose adjustment factors changed after their rows were computed (a new split or dividend "
        "re-adjusts every earlier bar). Idempotent: a second run finds nothing stale."
    ),
)
def adjusted_history(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    t0 = time.perf_counter()
    universe = run_universe(context, warehouse)
    stale = queries.stale_symbols(warehouse, universe)
    metadata: dict[str, Any] = {"recomputed_symbols": MetadataValue.json(stale)}
    if stale:
        context.log.info("recomputing the derived history of %s (adjustment factors changed)", ", ".join(stale))
        for name, rows in recompute_history(warehouse, stale, context.run.run_id).items():
            metadata[f"rows:{name}"] = MetadataValue.int(rows)
    metadata["seconds"] = MetadataValue.float(round(time.perf_counter() - t0, 3))
    return MaterializeResult(metadata=metadata)
