"""Options assets: contract reference data, chain snapshots, our IV/Greeks, and the flow tables.

Thin by design, like the bar assets: each body reads its inputs (the Alpaca resource or the named
queries of ``warehouse.queries.options``), calls the pure code (the pandera contract,
``analytics.options``), writes through the one writer (``WarehouseResource``: a partition's rows of
the active underlyings and its quarantine records replaced in ONE transaction), then reports row
counts, previews and partition-aware check results. Rate, dividend yields, expiry horizon and feed
come from the ``option_parameters`` resource (``defs.resources.OptionParameters``).

Lineage (the warehouse is the interface between assets):

    symbols -> option_contracts (market.option_contracts, market.open_interest)
            -> option_chain     (market.option_chain; OI from market.open_interest)
    option_chain + daily_bars -> option_greeks (market.option_greeks; spot = the session's close)
    option_chain + option_greeks -> options_flow (flow, by-expiry, by-strike, unusual activity)

A partition is an NYSE session; its snapshot is the chain at that session's close (a range whose days
include no session, possible only through old calendar-day keys, writes nothing and says so). Alpaca serves option
snapshots only as of now, so against the real API only the latest completed session can be
materialized (a server that can serve the past, such as the simulator, says so on the resource).
"""

import bisect
import json
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from market_assets.alpaca.options import (
    CHAIN_SOURCE,
    CONTRACTS_SOURCE,
    RAW_CONTRACT_COLUMNS,
    fetch_option_chain,
    option_contract_pages,
    serves_history,
)
from market_assets.alpaca.resource import AlpacaResource
from market_assets.analytics.adjustments import trailing_dividend_yield
from market_assets.analytics.compact import detach_text, share_repeated
from market_assets.analytics.options.flow import compute_flow
from market_assets.analytics.options.greeks import COLUMNS as GREEK_COLUMNS
from market_assets.analytics.options.greeks import MODEL, compute_greeks
from market_assets.analytics.options.rows import (
    QUARANTINE_COLUMNS,
    attach_open_interest,
    contract_rows,
    open_interest_rows,
    quarantine_frame,
)
from market_assets.contracts.options import (
    coerce_raw_chain,
    coerce_raw_contracts,
    split_option_chain,
    split_option_contracts,
)
from market_assets.defs.checks import none_found_check, quarantine_rate_check, skipped_checks
from market_assets.defs.partition_report import report_partitions
from market_assets.defs.partitions import BACKFILL_POLICY, daily_partitions, partition_dates
from market_assets.defs.resources import OptionParameters
from market_assets.defs.universe import run_universe
from market_assets.domain.sessions import last_completed_session, sessions_between
from market_assets.reporting.charts import smile_chart
from market_assets.warehouse import tables
from market_assets.warehouse.queries import options as queries
from market_assets.warehouse.queries.corporate_actions import cash_dividends
from market_assets.warehouse.resource import WarehouseResource, WriteResult, conform

GROUP = "options"
IV_BOUNDS = (0.01, 5.0)
OI_LOOKBACK_DAYS = 10  # OI older than this is not carried onto a snapshot (a delisted feed, not a fact)
UNUSUAL_HISTORY_SNAPSHOTS = 20  # a contract's earlier volumes its unusual-activity z-score is measured against
FLOW_BATCH_UNDERLYINGS = 100  # underlyings whose chain the flow step reads at once (~60k rows for 100)
# underlyings whose raw chain snapshots are held at once (see `fetch_chain`): ~35k snapshots for 50
CHAIN_BATCH_UNDERLYINGS = 50
# Option quarantine records carry the contract symbol; the underlying they belong to is in the payload
# (``underlying`` on chain snapshots, ``underlying_symbol`` on contract listings).
QUARANTINE_OWNER = ("underlying", "underlying_symbol")
FLOW_TABLES = {
    "daily": tables.OPTIONS_FLOW_DAILY,
    "by_expiry": tables.OPTIONS_BY_EXPIRY,
    "by_strike": tables.OPTIONS_BY_STRIKE,
    "unusual": tables.OPTIONS_UNUSUAL_ACTIVITY,
}


# ----------------------------------------------------------------------------- shared helpers
@dataclass(frozen=True)
class Window:
    """What one materialization covers: the partition's days, its sessions and the universe."""

    first: date
    last: date
    sessions: list[date]
    universe: list[str]
    partition_key: str

    @property
    def span(self) -> tuple[list[str], date, date]:
        """(universe, first, last): the arguments every named options query takes."""
        return self.universe, self.first, self.last


def window_of(context: AssetExecutionContext, warehouse: WarehouseResource) -> Window:
    first, last = partition_dates(context)
    key = f"{first}..{last}" if first != last else str(first)
    return Window(first, last, sessions_between(first, last), run_universe(context, warehouse), key)


def require_history(alpaca: AlpacaResource, sessions: list[date], now: datetime | None = None) -> None:
    """Refuse past sessions the source cannot serve, instead of storing today's chain under an old date."""
    if not sessions or serves_history(alpaca):
        return
    latest = last_completed_session(now or datetime.now().astimezone())
    stale = [s for s in sessions if s != latest]
    if stale:
        raise Failure(
            description=(
                f"Alpaca serves option snapshots only as of now (the latest completed session is {latest}); "
                f"cannot materialize {', '.join(map(str, stale[:5]))}{' ...' if len(stale) > 5 else ''}. "
                "Backfill option partitions from the simulator or materialize only the latest session."
            )
        )


def _replace(
    warehouse: WarehouseResource,
    table: tables.Table,
    frame: pd.DataFrame,
    window: Window,
    quarantine: pd.DataFrame | None = None,
    dataset: str | None = None,
) -> WriteResult:
    """Replace the window's rows of the universe in an option table (keyed by ``underlying``).

    Rejected snapshots are filed under the snapshot's session, not their (possibly days old) quote time, so the
    next good snapshot of that underlying and session clears them (issue 13, item 8).
    """
    if quarantine is not None and window.first == window.last:
        quarantine = quarantine.assign(session=window.last)
    return warehouse.replace_partition(
        table,
        conform(table, frame),
        sessions=(window.first, window.last),
        symbols=window.universe,
        symbol_column="underlying",
        partition_key=window.partition_key,
        quarantine=quarantine,
        dataset=dataset,
        quarantine_owner=QUARANTINE_OWNER,
    )


def _md_table(frame: pd.DataFrame, rows: int = 10) -> MetadataValue:
    if frame.empty:
        return MetadataValue.md("_no rows_")
    return MetadataValue.md(frame.head(rows).to_markdown(index=False, floatfmt=".6g"))


def atm_first(frame: pd.DataFrame) -> pd.DataFrame:
    """One contract per underlying, the nearest the money (then the nearest expiry): the rows a preview should show.

    Sorting by strike showed deep-ITM/OTM contracts priced at 0.01; the ATM contract says whether the chain is sane.
    """
    if frame.empty:
        return frame
    if "underlying_price" in frame:
        distance = (frame["strike"] / frame["underlying_price"] - 1.0).abs()
    else:
        distance = (frame["alpaca_delta"].abs() - 0.5).abs()
    # rank on the key columns alone and take the winners' rows: sorting the whole frame copied every column
    keys = pd.DataFrame(
        {
            "underlying": frame["underlying"],
            "_distance": distance.fillna(float("inf")),
            "expiration": frame["expiration"],
            "type": frame["type"],
        }
    )
    winners = keys.sort_values(["_distance", "expiration", "type"]).drop_duplicates("underlying").index
    return frame.loc[winners].sort_values("underlying")


def first_rows(frame: pd.DataFrame, by: list[str], rows: int = 10) -> pd.DataFrame:
    """The first `rows` rows of `frame` in `by` order, sorting the key columns only (a preview of 300k rows)."""
    return frame.loc[frame[by].sort_values(by).index[:rows]]


def _no_session(window: Window, checks: Sequence[str]) -> MaterializeResult | None:
    """Weekends and holidays have no snapshot: report it, write nothing, fail no check."""
    if window.sessions:
        return None
    return MaterializeResult(
        metadata={"rows_written": MetadataValue.int(0), "note": f"{window.partition_key}: no NYSE session"},
        check_results=skipped_checks(checks, "no session"),
    )


@dataclass
class IngestCounts:
    fetched: int = 0
    written: int = 0
    quarantined: int = 0


@contextmanager
def ingestion_logged(
    context: AssetExecutionContext, alpaca: AlpacaResource, warehouse: WarehouseResource, window: Window, dataset: str
) -> Iterator[IngestCounts]:
    """One market.ingestion_log row per ingestion materialization: the block's counts on success, the error
    (and zero counts) on failure, with the HTTP requests and retries the block made."""
    counts, started = IngestCounts(), datetime.now().astimezone()
    requests, retries = alpaca.stats.requests, alpaca.stats.retries
    endpoints = alpaca.stats.snapshot()

    def log(error: str | None) -> None:
        ok = error is None
        warehouse.log_ingestion(
            run_id=context.run.run_id,
            asset=context.asset_key.to_user_string(),
            partition_key=window.partition_key,
            dataset=dataset,
            symbols=len(window.universe),
            rows_fetched=counts.fetched if ok else 0,
            rows_written=counts.written if ok else 0,
            rows_quarantined=counts.quarantined if ok else 0,
            http_requests=alpaca.stats.requests - requests,
            http_retries=alpaca.stats.retries - retries,
            started_at=started,
            status="success" if ok else "failed",
            error=error,
            api_calls=alpaca.stats.since(endpoints),
        )

    try:
        yield counts
    except Exception as exc:
        log(str(exc)[:2000] or type(exc).__name__)
        raise
    log(None)


def _concat(parts: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))


# ----------------------------------------------------------------------------- option_contracts
# low-cardinality text of typed contract and chain rows, shared per distinct value (see analytics.compact)
CONTRACT_TEXT = ("underlying", "root", "type", "style", "status", "occ_reason", "root_reason")
GREEKS_SHARED = ("snapshot_date", "underlying", "expiration", "type", "price_source", "iv_reason", "model")
CHAIN_TEXT = ("underlying", "root", "type", "occ_reason", "root_reason", "bid_exchange", "ask_exchange")


class PagedPayloads:
    """The raw records of every contracts page, zlib-compressed JSON, looked up by the row's running number.

    Why: a rejected contract is quarantined exactly as delivered, but 300k delivered records kept as dicts were
    the options step's largest allocation; compressed they are ~1/20 of that, and only pages holding a reject
    are ever decompressed. The records are the API's parsed JSON, so the round trip returns equal values.
    """

    def __init__(self) -> None:
        self._pages: list[tuple[int, bytes]] = []  # (first row number, compressed records)

    def add(self, first_row: int, records: list[Any]) -> None:
        self._pages.append((first_row, zlib.compress(json.dumps(records).encode(), 1)))

    def take(self, rows: pd.Index) -> pd.Series:
        """The payloads of these row numbers, as delivered."""
        out: dict[int, Any] = {}
        starts = [first for first, _ in self._pages]
        wanted = sorted(int(r) for r in rows)
        for page in sorted({bisect.bisect_right(starts, r) - 1 for r in wanted}):
            first, blob = self._pages[page]
            records = json.loads(zlib.decompress(blob))
            for r in wanted:
                if first <= r < first + len(records):
                    out[r] = records[r - first]
        return pd.Series([out[int(r)] for r in rows], index=rows, dtype=object)


def fetch_contracts(
    alpaca: AlpacaResource, window: Window, horizon_days: int, run_id: str
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(validated listings, quarantine records, rows fetched) of the window's sessions.

    Each page is typed (strings to numbers and dates) as it arrives and its raw records compressed, so memory
    holds one page of dicts at a time. The schema still validates each session's listings as one frame: a
    contract listed twice with conflicting values on two pages is rejected as it was before.
    """
    kept, quarantine, fetched = [], [], 0
    for session in window.sessions:
        typed, payloads = [], PagedPayloads()
        for page in option_contract_pages(
            alpaca,
            window.universe,
            as_of=session,
            expiration_date_gte=session,
            expiration_date_lte=session + timedelta(days=horizon_days),
        ):
            page.index = pd.RangeIndex(fetched, fetched + len(page))
            payloads.add(fetched, page["payload"].tolist())
            typed.append(
                detach_text(
                    share_repeated(coerce_raw_contracts(page.drop(columns="payload"), session), CONTRACT_TEXT),
                    ("symbol", "id", "name"),
                )
            )
            fetched += len(page)
            del page
        if not typed:  # no underlyings: no page was requested
            typed.append(coerce_raw_contracts(pd.DataFrame(columns=list(RAW_CONTRACT_COLUMNS)), session))
        split = split_option_contracts(pd.concat(typed) if len(typed) > 1 else typed[0])
        del typed
        kept.append(split.valid)
        if len(split.rejected):
            raw = payloads.take(split.rejected.index)
            quarantine.append(quarantine_frame(CONTRACTS_SOURCE, split.rejected, raw, run_id))
    return pd.concat(kept, ignore_index=True), _concat(quarantine, QUARANTINE_COLUMNS), fetched


@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[AssetKey("symbols")],
    check_specs=[
        AssetCheckSpec(
            "contracts_oi_non_negative",
            asset="option_contracts",
            blocking=True,
            description="No stored open-interest figure of the partition is negative.",
        ),
        AssetCheckSpec(
            "contracts_quarantine_rate",
            asset="option_contracts",
            description="Warns when more than 1% of the delivered contracts were rejected.",
        ),
    ],
    description=(
        "Option contract reference data (market.option_contracts, latest listing wins) and the open-interest "
        "history (market.open_interest) for the active underlyings, as listed on the partition's session."
    ),
)
def option_contracts(
    context: AssetExecutionContext,
    alpaca: AlpacaResource,
    warehouse: WarehouseResource,
    option_parameters: OptionParameters,
) -> MaterializeResult:
    t0 = time.perf_counter()
    window = window_of(context, warehouse)
    if (skip := _no_session(window, ["contracts_oi_non_negative", "contracts_quarantine_rate"])) is not None:
        return skip
    require_history(alpaca, window.sessions)
    run_id = context.run.run_id
    with ingestion_logged(context, alpaca, warehouse, window, "option_contracts") as counts:
        kept, quarantine, counts.fetched = fetch_contracts(
            alpaca, window, option_parameters.expiry_horizon_days, run_id
        )
        contracts = conform(tables.OPTION_CONTRACTS, contract_rows(kept).assign(run_id=run_id))
        oi_rows = conform(tables.OPEN_INTEREST, open_interest_rows(kept).assign(run_id=run_id))
        del kept
        with warehouse.transaction():  # contracts, their open interest and their rejects: all or nothing
            # latest listing wins; a re-run (or an older backfill) changes nothing
            changed = warehouse.upsert(
                tables.OPTION_CONTRACTS, contracts, changed_only=True, version_column="as_of",
                keep_earliest=("first_seen",),
            )  # fmt: skip
            oi_changed = warehouse.upsert(tables.OPEN_INTEREST, oi_rows, changed_only=True)
            counts.quarantined = warehouse.replace_quarantine(
                "option_contracts", window.partition_key, window.universe, quarantine, owner=QUARANTINE_OWNER
            )
        counts.written = len(contracts)
    oi_since = window.first - timedelta(days=OI_LOOKBACK_DAYS)
    negative = queries.negative_open_interest(warehouse, window.universe, oi_since, window.last)
    preview = first_rows(contracts, ["underlying", "expiration", "strike"])
    return MaterializeResult(
        metadata={
            "rows_fetched": MetadataValue.int(counts.fetched),
            "contracts": MetadataValue.int(len(contracts)),
            "contracts_changed": MetadataValue.int(changed),
            "open_interest_rows": MetadataValue.int(len(oi_rows)),
            "open_interest_changed": MetadataValue.int(oi_changed),
            "rows_quarantined": MetadataValue.int(counts.quarantined),
            "underlyings": MetadataValue.int(len(window.universe)),
            "sessions": ", ".join(map(str, window.sessions)),
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
            "preview": _md_table(preview[["symbol", "expiration", "strike", "type", "open_interest", "close_price"]]),
            "quarantine_examples": _md_table(quarantine[["symbol", "reason"]], 5),
        },
        check_results=[
            none_found_check("contracts_oi_non_negative", negative, "negative"),
            quarantine_rate_check(counts.quarantined, counts.fetched, "contracts_quarantine_rate"),
        ],
    )


# ----------------------------------------------------------------------------- option_chain
def fetch_chain(
    alpaca: AlpacaResource, warehouse: WarehouseResource, window: Window, parameters: OptionParameters, run_id: str
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(validated, flagged chain rows with open interest attached, quarantine records, rows fetched).

    Streamed by batches of `CHAIN_BATCH_UNDERLYINGS` underlyings: the raw snapshots (with their payloads as
    delivered) of one batch are validated and dropped before the next batch is fetched, so memory holds the
    typed rows of the session plus one batch of raw payloads, not the raw payloads of every underlying (500
    underlyings: ~350k snapshots). A chain's snapshots belong to one underlying, so validating per batch
    rejects exactly what validating the whole session did; requests are the same (one chain per underlying).
    """
    kept, quarantine, fetched = [], [], 0
    for session in window.sessions:
        since = session - timedelta(days=OI_LOOKBACK_DAYS)
        oi: pd.DataFrame | None = None
        for start in range(0, len(window.universe), CHAIN_BATCH_UNDERLYINGS):
            raws = [
                fetch_option_chain(
                    alpaca,
                    u,
                    as_of=session,
                    feed=parameters.feed,
                    expiration_date_gte=session,
                    expiration_date_lte=session + timedelta(days=parameters.expiry_horizon_days),
                )
                for u in window.universe[start : start + CHAIN_BATCH_UNDERLYINGS]
            ]
            raw = pd.concat(raws, ignore_index=True)
            del raws
            if raw.empty:
                continue
            fetched += len(raw)
            if oi is None:  # one read per session, only when the session has any snapshot
                oi = queries.latest_open_interest(warehouse, window.universe, since, session)
            typed = detach_text(share_repeated(coerce_raw_chain(raw, session), CHAIN_TEXT), ("symbol",))
            split = split_option_chain(attach_open_interest(typed, oi))
            kept.append(split.valid.assign(run_id=run_id))
            quarantine.append(quarantine_frame(CHAIN_SOURCE, split.rejected, raw["payload"], run_id))
            del raw, split, typed
    chain = _concat(kept, tables.OPTION_CHAIN.column_names)
    return conform(tables.OPTION_CHAIN, chain), _concat(quarantine, QUARANTINE_COLUMNS), fetched


@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[AssetKey("symbols"), AssetKey("option_contracts")],
    check_specs=[
        AssetCheckSpec(
            "chain_contract_valid",
            asset="option_chain",
            blocking=True,
            description="Every stored contract has a valid OCC symbol agreeing with its underlying, "
            "expiration, type and strike, is not expired, and has consistent quote flags.",
        ),
        AssetCheckSpec(
            "chain_oi_non_negative",
            asset="option_chain",
            blocking=True,
            description="No stored open interest is negative.",
        ),
        AssetCheckSpec(
            "chain_quarantine_rate",
            asset="option_chain",
            description="Warns when more than 1% of the delivered snapshots were rejected.",
        ),
    ],
    description=(
        "Daily option chain snapshots (market.option_chain) of the active underlyings at the partition's "
        "session close: quotes, last trade, Alpaca's IV/Greeks, open interest; crossed/zero-bid quotes flagged."
    ),
)
def option_chain(
    context: AssetExecutionContext,
    alpaca: AlpacaResource,
    warehouse: WarehouseResource,
    option_parameters: OptionParameters,
) -> MaterializeResult:
    t0 = time.perf_counter()
    window = window_of(context, warehouse)
    names = ["chain_contract_valid", "chain_oi_non_negative", "chain_quarantine_rate"]
    if (skip := _no_session(window, names)) is not None:
        return skip
    require_history(alpaca, window.sessions)
    with ingestion_logged(context, alpaca, warehouse, window, "option_chain") as counts:
        kept, quarantine, counts.fetched = fetch_chain(alpaca, warehouse, window, option_parameters, context.run.run_id)
        result = _replace(warehouse, tables.OPTION_CHAIN, kept, window, quarantine, "option_chain")
        counts.written, counts.quarantined = result.rows_written, result.rows_quarantined
    if counts.quarantined:
        context.log.warning(
            "%d option snapshot(s) quarantined, e.g. %s", counts.quarantined, quarantine["reason"].iloc[0]
        )
    span = window.span
    report_partitions(
        context, kept, date_column="snapshot_date", symbol_column="underlying", table=tables.OPTION_CHAIN,
        latest={"preview": _md_table(atm_first(kept)[["symbol", "bid", "ask", "mark", "last", "open_interest",
                                                          "alpaca_iv"]])},
    )  # fmt: skip
    return MaterializeResult(
        metadata={
            "rows_fetched": MetadataValue.int(counts.fetched),
            "run_rows_written": MetadataValue.int(result.rows_written),
            "rows_replaced": MetadataValue.int(result.rows_deleted),
            "run_rows_quarantined": MetadataValue.int(counts.quarantined),
            "crossed_quotes": MetadataValue.int(int(kept["crossed"].sum())),
            "zero_bid_quotes": MetadataValue.int(int(kept["zero_bid"].sum())),
            "without_alpaca_greeks": MetadataValue.int(int(kept["alpaca_delta"].isna().sum())),
            "without_open_interest": MetadataValue.int(int(kept["open_interest"].isna().sum())),
            "underlyings": MetadataValue.int(int(kept["underlying"].nunique())),
            "sessions": ", ".join(map(str, window.sessions)),
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
            "quarantine_examples": _md_table(quarantine[["symbol", "reason"]], 5),
        },
        check_results=[
            none_found_check("chain_contract_valid", queries.chain_contract_violations(warehouse, *span), "violations"),
            none_found_check(
                "chain_oi_non_negative", queries.negative_chain_open_interest(warehouse, *span), "negative"
            ),
            quarantine_rate_check(counts.quarantined, counts.fetched, "chain_quarantine_rate"),
        ],
    )


# ----------------------------------------------------------------------------- option_greeks
def _divergence(frame: pd.DataFrame) -> dict[str, Any]:
    """How far our IV and delta are from Alpaca's, where both exist."""
    diff = frame["iv_diff"].abs().dropna()
    some = len(diff) > 0
    return {
        "iv_compared": MetadataValue.int(len(diff)),
        "iv_abs_diff_median": MetadataValue.float(float(diff.median()) if some else float("nan")),
        "iv_abs_diff_max": MetadataValue.float(float(diff.max()) if some else float("nan")),
        "delta_abs_diff_median": MetadataValue.float(
            float((frame["delta"] - frame["alpaca_delta"]).abs().median()) if some else float("nan")
        ),
    }


def session_dividend_yields(
    warehouse: WarehouseResource, window: Window, closes: pd.DataFrame, overrides: dict[str, float]
) -> dict[date, dict[str, float]]:
    """Per session: the continuous dividend yield of each underlying from its trailing-12-month cash dividends
    (market.corporate_actions) over that session's close; DIVIDEND_YIELDS overrides an underlying."""
    dividends = cash_dividends(warehouse, window.universe, window.first - timedelta(days=366), window.last)
    out: dict[date, dict[str, float]] = {}
    for day, day_closes in closes.groupby("session", sort=True):
        prices = dict(zip(day_closes["symbol"], day_closes["close"].astype(float), strict=True))
        out[day] = {**trailing_dividend_yield(dividends, prices, day), **overrides}
    return out


@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[AssetKey("option_chain"), AssetKey("daily_bars")],
    check_specs=[
        AssetCheckSpec(
            "iv_plausible",
            asset="option_greeks",
            description=f"Every stored IV lies in [{IV_BOUNDS[0]}, {IV_BOUNDS[1]}].",
        ),
        AssetCheckSpec(
            "greeks_cover_chain",
            asset="option_greeks",
            blocking=True,
            description="Every stored chain row of the partition has a Greeks row.",
        ),
    ],
    description=(
        "Our implied volatility and BSM Greeks (market.option_greeks) per contract, from the chain's mid (or "
        "same-day last trade) and the session's close in market.bars_daily, next to Alpaca's own values."
    ),
)
def option_greeks(
    context: AssetExecutionContext, warehouse: WarehouseResource, option_parameters: OptionParameters
) -> MaterializeResult:
    t0 = time.perf_counter()
    window = window_of(context, warehouse)
    if (skip := _no_session(window, ["iv_plausible", "greeks_cover_chain"])) is not None:
        return skip
    span = window.span
    closes = queries.underlying_closes(warehouse, *span)
    yields = session_dividend_yields(warehouse, window, closes, option_parameters.dividend_yields)
    rate = option_parameters.risk_free_rate
    parts = [  # the chain is read in chunks and each chunk's Greeks kept compact: memory holds one raw chunk
        detach_text(
            share_repeated(
                compute_greeks(day_chain, closes, rate=rate, dividend_yields=yields.get(day, {})), GREEKS_SHARED
            ),
            ("symbol",),  # not the strings of the chunk's rows, which would pin the chunk's memory
        )
        for chunk in queries.chain_for_greeks(warehouse, *span)
        for day, day_chain in chunk.groupby("snapshot_date", sort=True)
    ]
    frame = (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(GREEK_COLUMNS))).assign(
        run_id=context.run.run_id
    )
    del parts
    result = _replace(warehouse, tables.OPTION_GREEKS, frame, window)
    no_spot = sorted(frame.loc[frame["iv_reason"] == "no_underlying_price", "underlying"].unique())
    if no_spot:
        context.log.warning("no daily close for %s: materialize daily_bars for this partition", ", ".join(no_spot))
    out_of_bounds = queries.implied_vols_outside(warehouse, *span, IV_BOUNDS)
    reasons = frame["iv_reason"].dropna().value_counts()
    columns = ["symbol", "underlying_price", "price_used", "iv", "alpaca_iv", "delta", "alpaca_delta"]
    ranked = ["underlying", "strike", "expiration", "type"]  # what atm_first ranks by; the preview's columns only
    preview = atm_first(frame.loc[frame["iv"].notna(), columns + ranked])
    report_partitions(
        context, frame, date_column="snapshot_date", symbol_column="underlying", table=tables.OPTION_GREEKS,
        latest={"preview": _md_table(preview[columns]), "iv_smile": MetadataValue.md(smile_chart(frame))},
    )  # fmt: skip
    return MaterializeResult(
        metadata={
            "run_rows_written": MetadataValue.int(result.rows_written),
            "rows_replaced": MetadataValue.int(result.rows_deleted),
            "with_iv": MetadataValue.int(int(frame["iv"].notna().sum())),
            "iv_reasons": MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
            "early_exercise_flagged": MetadataValue.int(int(frame["early_exercise_flag"].fillna(False).sum())),
            **_divergence(frame),
            "rate": MetadataValue.float(option_parameters.risk_free_rate),
            "dividend_yields": MetadataValue.json(
                {u: round(q, 6) for u, q in (yields[max(yields)] if yields else {}).items()}
            ),
            "dividend_yield_overrides": MetadataValue.json(sorted(option_parameters.dividend_yields)),
            "model": MODEL,
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
        },
        check_results=[
            none_found_check("iv_plausible", out_of_bounds, "out_of_bounds", AssetCheckSeverity.WARN),
            none_found_check("greeks_cover_chain", queries.chain_rows_without_greeks(warehouse, *span), "uncovered"),
        ],
    )


# ----------------------------------------------------------------------------- options_flow
def flow_frames(warehouse: WarehouseResource, window: Window) -> tuple[dict[str, pd.DataFrame], bool]:
    """The four flow tables of the window's chain (empty frames when there is no chain), and whether any
    snapshot delivered a volume.

    Every flow figure groups by underlying and session, so the chain is read and reduced one session and one
    batch of underlyings at a time (memory holds one batch's chain, not the window's), and the unusual-activity
    history is each contract's last `UNUSUAL_HISTORY_SNAPSHOTS` volumes before that session (index-backed; not
    every stored snapshot since a date, which grew with the window and the history).
    """
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in FLOW_TABLES}
    volume_known = False
    for session in window.sessions:
        for start in range(0, len(window.universe), FLOW_BATCH_UNDERLYINGS):
            batch = window.universe[start : start + FLOW_BATCH_UNDERLYINGS]
            chain = queries.chain_with_greeks(warehouse, batch, session, session)
            if chain.empty:
                continue
            volume_known = volume_known or bool(chain["volume"].notna().any())
            frames = compute_flow(
                chain,
                queries.previous_snapshot_open_interest(warehouse, batch, session, session, OI_LOOKBACK_DAYS),
                queries.volume_history(warehouse, batch, session, UNUSUAL_HISTORY_SNAPSHOTS),
            )
            for name, frame in frames.items():
                parts[name].append(frame)
    return {
        name: pd.concat(parts[name], ignore_index=True) if parts[name] else pd.DataFrame(columns=list(t.column_names))
        for name, t in FLOW_TABLES.items()
    }, volume_known


@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[AssetKey("option_chain"), AssetKey("option_greeks")],
    check_specs=[
        AssetCheckSpec(
            "put_call_ratios_finite",
            asset="options_flow",
            blocking=True,
            description="Stored put/call ratios are NULL or finite and non-negative (never inf/NaN).",
        ),
        AssetCheckSpec(
            "flow_covers_chain",
            asset="options_flow",
            description="Every underlying with a chain snapshot has a daily flow row.",
        ),
    ],
    description=(
        "Options flow per underlying and day (market.options_flow_daily), by expiry (max pain, ATM IV, "
        "25-delta skew), by strike, and unusual activity; from the chain and our IVs."
    ),
)
def options_flow(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    t0 = time.perf_counter()
    window = window_of(context, warehouse)
    if (skip := _no_session(window, ["put_call_ratios_finite", "flow_covers_chain"])) is not None:
        return skip
    span = window.span
    frames, volume_known = flow_frames(warehouse, window)
    written = {
        table.name: _replace(warehouse, table, frames[name].assign(run_id=context.run.run_id), window).rows_written
        for name, table in FLOW_TABLES.items()
    }
    daily = frames["daily"]
    report_partitions(
        context, daily, date_column="snapshot_date", symbol_column="underlying", table=tables.OPTIONS_FLOW_DAILY,
    )  # fmt: skip
    preview_cols = ["underlying", "snapshot_date", "put_call_volume_ratio", "put_call_oi_ratio", "oi_change",
                    "front_max_pain", "front_atm_iv", "front_skew_25d"]  # fmt: skip
    return MaterializeResult(
        metadata={
            **{f"run_rows_{name.split('.')[1]}": MetadataValue.int(n) for name, n in written.items()},
            "underlyings": MetadataValue.int(int(daily["underlying"].nunique()) if len(daily) else 0),
            "volume_known": MetadataValue.bool(volume_known),
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
            "preview": _md_table(daily[[c for c in preview_cols if c in daily]]),
        },
        check_results=[
            none_found_check("put_call_ratios_finite", queries.bad_put_call_ratios(warehouse, *span), "bad"),
            none_found_check("flow_covers_chain", queries.chain_days_without_flow(warehouse, *span), "missing"),
        ],
    )
