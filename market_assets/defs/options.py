"""Options assets: contract reference data, chain snapshots, our IV/Greeks, and the flow tables.

Thin by design, like the bar assets: fetch through the Alpaca resource, split with the pandera
contract, write each partition in ONE transaction (DELETE the partition's rows of the active
underlyings, binary COPY the new ones, replace the partition's quarantine records), then report
row counts, quarantine counts, previews and partition-aware check results.

Lineage (the warehouse is the interface between assets):

    symbols -> option_contracts (market.option_contracts, market.open_interest)
            -> option_chain     (market.option_chain; OI from market.open_interest)
    option_chain + daily_bars -> option_greeks (market.option_greeks; spot = the session's close)
    option_chain + option_greeks -> options_flow (flow, by-expiry, by-strike, unusual activity)

A partition is a New York day; its snapshot is the chain at that session's close. Days that are
not NYSE sessions have no snapshot: the assets write nothing and say so. Alpaca serves option
snapshots only as of now, so against the real API only the latest completed session can be
materialized (the simulator serves any past session through its ``as_of`` parameter).
"""

import base64
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from dagster import (
    AssetCheckResult,
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
    fetch_option_chain,
    fetch_option_contracts,
    serves_history,
)
from market_assets.alpaca.resource import AlpacaResource
from market_assets.analytics.options import flow as flow
from market_assets.analytics.options.black_scholes import early_exercise_flags, greeks, time_to_expiry
from market_assets.analytics.options.implied_vol import implied_vol
from market_assets.config import OptionSettings, load_option_settings
from market_assets.contracts.options import (
    coerce_raw_chain,
    coerce_raw_contracts,
    split_option_chain,
    split_option_contracts,
)
from market_assets.defs.bars import BACKFILL_POLICY as BARS_BACKFILL_POLICY
from market_assets.defs.bars import active_symbols, partition_dates
from market_assets.defs.partitions import daily_partitions
from market_assets.domain.sessions import last_completed_session, session_open_close, sessions_between
from market_assets.warehouse.resource import WarehouseResource, copy_frame, dedupe_last

GROUP = "options"
MODEL = "bsm-european-continuous-dividend"
IV_BOUNDS = (0.01, 5.0)
OI_LOOKBACK_DAYS = 10  # OI older than this is not carried onto a snapshot (a delisted feed, not a fact)
UNUSUAL_HISTORY_SNAPSHOTS = 20
# The same policy as the bars, so a job holding both backfills them in the same runs.
BACKFILL_POLICY = BARS_BACKFILL_POLICY

CONTRACT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("symbol", "text"),
    ("contract_id", "text"),
    ("underlying", "text"),
    ("root", "text"),
    ("name", "text"),
    ("expiration", "date"),
    ("strike", "float8"),
    ("type", "text"),
    ("style", "text"),
    ("size", "int8"),
    ("status", "text"),
    ("tradable", "bool"),
    ("open_interest", "int8"),
    ("open_interest_date", "date"),
    ("close_price", "float8"),
    ("close_price_date", "date"),
    ("as_of", "date"),
    ("first_seen", "date"),
    ("run_id", "text"),
)
OPEN_INTEREST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("symbol", "text"),
    ("underlying", "text"),
    ("as_of", "date"),
    ("open_interest", "int8"),
    ("run_id", "text"),
)
CHAIN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("symbol", "text"),
    ("snapshot_date", "date"),
    ("underlying", "text"),
    ("root", "text"),
    ("expiration", "date"),
    ("strike", "float8"),
    ("type", "text"),
    ("bid", "float8"),
    ("ask", "float8"),
    ("bid_size", "int8"),
    ("ask_size", "int8"),
    ("bid_exchange", "text"),
    ("ask_exchange", "text"),
    ("last", "float8"),
    ("last_size", "int8"),
    ("mark", "float8"),
    ("quote_time", "timestamptz"),
    ("trade_time", "timestamptz"),
    ("volume", "int8"),
    ("open_interest", "int8"),
    ("open_interest_date", "date"),
    ("crossed", "bool"),
    ("zero_bid", "bool"),
    ("alpaca_iv", "float8"),
    ("alpaca_delta", "float8"),
    ("alpaca_gamma", "float8"),
    ("alpaca_theta", "float8"),
    ("alpaca_vega", "float8"),
    ("alpaca_rho", "float8"),
    ("run_id", "text"),
)
GREEK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("symbol", "text"),
    ("snapshot_date", "date"),
    ("underlying", "text"),
    ("expiration", "date"),
    ("strike", "float8"),
    ("type", "text"),
    ("underlying_price", "float8"),
    ("price_used", "float8"),
    ("price_source", "text"),
    ("time_to_expiry", "float8"),
    ("rate", "float8"),
    ("dividend_yield", "float8"),
    ("iv", "float8"),
    ("iv_reason", "text"),
    ("delta", "float8"),
    ("gamma", "float8"),
    ("theta", "float8"),
    ("vega", "float8"),
    ("rho", "float8"),
    ("model", "text"),
    ("early_exercise_flag", "bool"),
    ("early_exercise_premium", "float8"),
    ("early_exercise_reason", "text"),
    ("alpaca_iv", "float8"),
    ("alpaca_delta", "float8"),
    ("alpaca_gamma", "float8"),
    ("alpaca_theta", "float8"),
    ("alpaca_vega", "float8"),
    ("alpaca_rho", "float8"),
    ("iv_diff", "float8"),
    ("run_id", "text"),
)
FLOW_DAILY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("underlying", "text"),
    ("snapshot_date", "date"),
    ("underlying_price", "float8"),
    ("contracts", "int4"),
    ("call_volume", "int8"),
    ("put_volume", "int8"),
    ("total_volume", "int8"),
    ("call_oi", "int8"),
    ("put_oi", "int8"),
    ("total_oi", "int8"),
    ("put_call_volume_ratio", "float8"),
    ("put_call_oi_ratio", "float8"),
    ("previous_snapshot_date", "date"),
    ("previous_total_oi", "int8"),
    ("oi_change", "int8"),
    ("new_contracts", "int4"),
    ("front_expiration", "date"),
    ("front_max_pain", "float8"),
    ("front_atm_iv", "float8"),
    ("front_skew_25d", "float8"),
    ("unusual_contracts", "int4"),
    ("run_id", "text"),
)
BY_EXPIRY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("underlying", "text"),
    ("snapshot_date", "date"),
    ("expiration", "date"),
    ("days_to_expiry", "int4"),
    ("call_volume", "int8"),
    ("put_volume", "int8"),
    ("call_oi", "int8"),
    ("put_oi", "int8"),
    ("put_call_oi_ratio", "float8"),
    ("max_pain", "float8"),
    ("atm_iv", "float8"),
    ("put_iv_25d", "float8"),
    ("call_iv_25d", "float8"),
    ("skew_25d", "float8"),
    ("run_id", "text"),
)
BY_STRIKE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("underlying", "text"),
    ("snapshot_date", "date"),
    ("strike", "float8"),
    ("call_volume", "int8"),
    ("put_volume", "int8"),
    ("call_oi", "int8"),
    ("put_oi", "int8"),
    ("run_id", "text"),
)
UNUSUAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("symbol", "text"),
    ("snapshot_date", "date"),
    ("underlying", "text"),
    ("expiration", "date"),
    ("strike", "float8"),
    ("type", "text"),
    ("volume", "int8"),
    ("open_interest", "int8"),
    ("vol_oi_ratio", "float8"),
    ("volume_z", "float8"),
    ("run_id", "text"),
)


# ----------------------------------------------------------------------------- shared helpers
@dataclass(frozen=True)
class Window:
    """What one materialization covers: the partition's days, its sessions and the universe."""

    first: date
    last: date
    sessions: list[date]
    universe: list[str]
    partition_key: str


def window_of(context: AssetExecutionContext, warehouse: WarehouseResource) -> Window:
    first, last = partition_dates(context)
    key = f"{first}..{last}" if first != last else str(first)
    return Window(first, last, sessions_between(first, last), active_symbols(warehouse), key)


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


def _ints(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").round().astype("Int64")


def _none_if_blank(series: pd.Series) -> pd.Series:
    """Text for COPY: NULL instead of NaN or empty strings (the encoder refuses empty strings)."""
    return series.astype(object).where(series.notna() & (series.astype(str) != ""), None)


def _replace_rows(
    conn: psycopg.Connection,
    table: str,
    frame: pd.DataFrame,
    columns: Sequence[tuple[str, str]],
    window: Window,
    key: Sequence[str],
) -> tuple[int, int]:
    """DELETE the window's rows of the universe from `table` and COPY `frame` in (caller's transaction)."""
    deleted = conn.execute(
        f"DELETE FROM {table} WHERE snapshot_date BETWEEN %s AND %s AND underlying = ANY(%s)",
        (window.first, window.last, window.universe),
    ).rowcount
    written = copy_frame(conn, table, dedupe_last(frame, key), columns)
    return written, deleted


def _replace_quarantine(
    warehouse: WarehouseResource,
    conn: psycopg.Connection,
    dataset: str,
    window: Window,
    rows: pd.DataFrame,
) -> int:
    """Replace the partition's quarantine records of `dataset` for the universe (same transaction)."""
    conn.execute(
        "DELETE FROM market.quarantine WHERE dataset = %s AND partition_key IS NOT DISTINCT FROM %s AND "
        "(coalesce(payload->>'underlying', payload->>'underlying_symbol') IS NULL "
        " OR coalesce(payload->>'underlying', payload->>'underlying_symbol') = ANY(%s))",
        (dataset, window.partition_key, window.universe),
    )
    if rows.empty:
        return 0
    return warehouse.insert_quarantine(conn, rows, dataset, window.partition_key)


def _quarantine_frame(source: str, rejected: pd.DataFrame, payload: pd.Series, run_id: str) -> pd.DataFrame:
    ts = rejected["quote_time"] if "quote_time" in rejected else pd.Series(pd.NaT, index=rejected.index)
    return pd.DataFrame(
        {
            "source": source,
            "symbol": rejected["symbol"],
            "ts": ts,
            "payload": payload.loc[rejected.index],
            "reason": rejected["reason"],
            "run_id": run_id,
        }
    )


def _md_table(frame: pd.DataFrame, rows: int = 10) -> MetadataValue:
    if frame.empty:
        return MetadataValue.md("_no rows_")
    return MetadataValue.md(frame.head(rows).to_markdown(index=False, floatfmt=".6g"))


def _no_session(window: Window) -> MaterializeResult | None:
    """Weekends and holidays have no snapshot: report it, write nothing, fail no check."""
    if window.sessions:
        return None
    return MaterializeResult(
        metadata={"rows_written": MetadataValue.int(0), "note": f"{window.partition_key}: no NYSE session"}
    )


def _skipped_checks(names: Sequence[str], note: str) -> list[AssetCheckResult]:
    return [AssetCheckResult(check_name=n, passed=True, metadata={"note": note}) for n in names]


@dataclass(frozen=True)
class IngestLog:
    """One market.ingestion_log row per ingestion materialization, written on success and on failure."""

    warehouse: WarehouseResource
    context: AssetExecutionContext
    alpaca: AlpacaResource
    window: Window
    dataset: str
    started: datetime
    requests_before: int
    retries_before: int

    @classmethod
    def start(
        cls,
        warehouse: WarehouseResource,
        context: AssetExecutionContext,
        alpaca: AlpacaResource,
        window: Window,
        dataset: str,
    ) -> "IngestLog":
        stats = alpaca.stats
        return cls(warehouse, context, alpaca, window, dataset, datetime.now().astimezone(), stats.requests,
                   stats.retries)  # fmt: skip

    def _write(self, fetched: int, written: int, quarantined: int, error: str | None) -> None:
        stats = self.alpaca.stats
        self.warehouse.log_ingestion(
            run_id=self.context.run.run_id,
            asset=self.context.asset_key.to_user_string(),
            partition_key=self.window.partition_key,
            dataset=self.dataset,
            symbols=len(self.window.universe),
            rows_fetched=fetched,
            rows_written=written,
            rows_quarantined=quarantined,
            http_requests=stats.requests - self.requests_before,
            http_retries=stats.retries - self.retries_before,
            started_at=self.started,
            status="failed" if error is not None else "success",
            error=error,
        )

    def succeeded(self, fetched: int, written: int, quarantined: int) -> None:
        self._write(fetched, written, quarantined, None)

    def failed(self, exc: BaseException) -> None:
        self._write(0, 0, 0, str(exc)[:2000] or type(exc).__name__)


# ----------------------------------------------------------------------------- option_contracts
def _contract_rows(kept: pd.DataFrame, run_id: str) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "symbol": kept["symbol"],
            "contract_id": _none_if_blank(kept["id"]),
            "underlying": kept["underlying"],
            "root": kept["root"],
            "name": _none_if_blank(kept["name"]),
            "expiration": kept["expiration"],
            "strike": kept["strike"],
            "type": kept["type"],
            "style": _none_if_blank(kept["style"]),
            "size": _ints(kept["size"]),
            "status": _none_if_blank(kept["status"]),
            "tradable": kept["tradable"],
            "open_interest": _ints(kept["open_interest"]),
            "open_interest_date": kept["open_interest_date"],
            "close_price": kept["close_price"],
            "close_price_date": kept["close_price_date"],
            "as_of": kept["snapshot_date"],
            "run_id": run_id,
        }
    )
    out["first_seen"] = out.groupby("symbol")["as_of"].transform("min")
    return dedupe_last(out.sort_values(["as_of", "symbol"], kind="stable"), ["symbol"])


def _upsert_contracts(conn: psycopg.Connection, rows: pd.DataFrame) -> int:
    """Latest listing wins: a row is updated only by an equal-or-newer snapshot whose values differ,
    so re-running a partition changes nothing and an old backfill never overwrites new data."""
    if rows.empty:
        return 0
    names = [n for n, _ in CONTRACT_COLUMNS]
    data = [n for n in names if n not in ("symbol", "first_seen", "run_id")]
    conn.execute("CREATE TEMP TABLE contracts_stage (LIKE market.option_contracts INCLUDING DEFAULTS) ON COMMIT DROP")
    copy_frame(conn, "pg_temp.contracts_stage", rows, CONTRACT_COLUMNS)
    newer = "EXCLUDED.as_of >= t.as_of"
    sets = ", ".join(f"{c} = CASE WHEN {newer} THEN EXCLUDED.{c} ELSE t.{c} END" for c in [*data, "run_id"])
    changed = " OR ".join(f"EXCLUDED.{c} IS DISTINCT FROM t.{c}" for c in data if c != "as_of")
    col_list = ", ".join(names)
    return conn.execute(
        f"INSERT INTO market.option_contracts AS t ({col_list}) SELECT {col_list} FROM contracts_stage "
        f"ON CONFLICT (symbol) DO UPDATE SET {sets}, first_seen = LEAST(t.first_seen, EXCLUDED.first_seen), "
        f"updated_at = now(), ingested_at = now() "
        f"WHERE ({newer} AND ({changed} OR EXCLUDED.as_of > t.as_of)) OR EXCLUDED.first_seen < t.first_seen"
    ).rowcount


def _upsert_open_interest(conn: psycopg.Connection, rows: pd.DataFrame) -> int:
    if rows.empty:
        return 0
    conn.execute("CREATE TEMP TABLE oi_stage (LIKE market.open_interest INCLUDING DEFAULTS) ON COMMIT DROP")
    copy_frame(conn, "pg_temp.oi_stage", rows, OPEN_INTEREST_COLUMNS)
    return conn.execute(
        "INSERT INTO market.open_interest AS t (symbol, underlying, as_of, open_interest, run_id) "
        "SELECT symbol, underlying, as_of, open_interest, run_id FROM oi_stage "
        "ON CONFLICT (symbol, as_of) DO UPDATE SET open_interest = EXCLUDED.open_interest, "
        "underlying = EXCLUDED.underlying, run_id = EXCLUDED.run_id, ingested_at = now() "
        "WHERE (t.open_interest, t.underlying) IS DISTINCT FROM (EXCLUDED.open_interest, EXCLUDED.underlying)"
    ).rowcount


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
    context: AssetExecutionContext, alpaca: AlpacaResource, warehouse: WarehouseResource
) -> MaterializeResult:
    t0 = time.perf_counter()
    window = window_of(context, warehouse)
    if (skip := _no_session(window)) is not None:
        return MaterializeResult(
            metadata=skip.metadata,
            check_results=_skipped_checks(["contracts_oi_non_negative", "contracts_quarantine_rate"], "no session"),
        )
    require_history(alpaca, window.sessions)
    settings = load_option_settings()
    run_id = context.run.run_id
    ingest_log = IngestLog.start(warehouse, context, alpaca, window, "option_contracts")
    try:
        kept_parts, quarantine_parts, fetched = [], [], 0
        for session in window.sessions:
            raw = fetch_option_contracts(
                alpaca,
                window.universe,
                as_of=session,
                expiration_date_gte=session,
                expiration_date_lte=session + timedelta(days=settings.expiry_horizon_days),
            )
            fetched += len(raw)
            split = split_option_contracts(coerce_raw_contracts(raw, session))
            kept_parts.append(split.valid)
            quarantine_parts.append(_quarantine_frame(CONTRACTS_SOURCE, split.rejected, raw["payload"], run_id))
        kept = pd.concat(kept_parts, ignore_index=True)
        quarantine = pd.concat(quarantine_parts, ignore_index=True)
        contracts = _contract_rows(kept, run_id)
        oi = kept[kept["open_interest"].notna()]
        oi_rows = pd.DataFrame(
            {
                "symbol": oi["symbol"],
                "underlying": oi["underlying"],
                # the date the figure belongs to as delivered; the snapshot's date when Alpaca omits it
                "as_of": oi["open_interest_date"].fillna(oi["snapshot_date"]),
                "open_interest": _ints(oi["open_interest"]),
                "run_id": run_id,
            }
        )
        oi_rows = dedupe_last(oi_rows, ["symbol", "as_of"])
        with warehouse.connect() as conn:
            changed = _upsert_contracts(conn, contracts)
            oi_changed = _upsert_open_interest(conn, oi_rows)
            quarantined = _replace_quarantine(warehouse, conn, "option_contracts", window, quarantine)
    except Exception as exc:
        ingest_log.failed(exc)
        raise
    ingest_log.succeeded(fetched, len(contracts), quarantined)
    negative = int(
        warehouse.scalar(
            "SELECT count(*) FROM market.open_interest WHERE underlying = ANY(%s) AND as_of BETWEEN %s AND %s "
            "AND open_interest < 0",
            (window.universe, window.first - timedelta(days=OI_LOOKBACK_DAYS), window.last),
        )
    )
    rate = quarantined / fetched if fetched else 0.0
    checks = [
        AssetCheckResult(check_name="contracts_oi_non_negative", passed=negative == 0, metadata={"negative": negative}),
        AssetCheckResult(
            check_name="contracts_quarantine_rate",
            passed=rate <= 0.01,
            severity=AssetCheckSeverity.WARN,
            metadata={"quarantined": quarantined, "rate": MetadataValue.float(round(rate, 6))},
        ),
    ]
    preview = contracts.sort_values(["underlying", "expiration", "strike"]).head(10)
    return MaterializeResult(
        metadata={
            "rows_fetched": MetadataValue.int(fetched),
            "contracts": MetadataValue.int(len(contracts)),
            "contracts_changed": MetadataValue.int(changed),
            "open_interest_rows": MetadataValue.int(len(oi_rows)),
            "open_interest_changed": MetadataValue.int(oi_changed),
            "rows_quarantined": MetadataValue.int(quarantined),
            "underlyings": MetadataValue.int(len(window.universe)),
            "sessions": ", ".join(map(str, window.sessions)),
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
            "preview": _md_table(preview[["symbol", "expiration", "strike", "type", "open_interest", "close_price"]]),
            "quarantine_examples": _md_table(quarantine[["symbol", "reason"]], 5),
        },
        check_results=checks,
    )


# ----------------------------------------------------------------------------- option_chain
def chain_rows(kept: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """Validated, flagged chain rows in the table's shape."""
    out = kept.copy()
    for c in ("bid_size", "ask_size", "last_size", "volume", "open_interest"):
        out[c] = _ints(out[c])
    for c in ("bid_exchange", "ask_exchange"):
        out[c] = _none_if_blank(out[c])
    out["run_id"] = run_id
    return out[[n for n, _ in CHAIN_COLUMNS]]


def attach_open_interest(typed: pd.DataFrame, oi: pd.DataFrame) -> pd.DataFrame:
    """Each contract's latest open interest (as of <= the snapshot); NULL when none is known."""
    oi = oi.rename(columns={"as_of": "open_interest_date"})[["symbol", "open_interest", "open_interest_date"]]
    merged = typed.drop(columns=["open_interest"], errors="ignore").merge(oi, on="symbol", how="left")
    merged.index = typed.index
    merged["open_interest"] = pd.to_numeric(merged["open_interest"], errors="coerce").astype("float64")
    merged["open_interest_date"] = pd.to_datetime(merged["open_interest_date"]).astype("datetime64[ns]")
    return merged


def stored_chain_violations(warehouse: WarehouseResource, window: Window) -> int:
    """Stored chain rows of the window that break the chain contract: must be 0."""
    return int(
        warehouse.scalar(
            "SELECT count(*) FROM market.option_chain WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s "
            "AND NOT (symbol ~ '^[A-Z]{1,5}\\d?\\d{6}[CP]\\d{8}$' AND strike > 0 AND expiration >= snapshot_date"
            " AND left(symbol, length(symbol) - 15) = root"
            " AND (root = underlying OR regexp_replace(root, '\\d$', '') = underlying)"
            " AND to_date(substring(symbol from length(symbol) - 14 for 6), 'YYMMDD') = expiration"
            " AND substring(symbol from length(symbol) - 8 for 1) = CASE type WHEN 'call' THEN 'C' ELSE 'P' END"
            " AND substring(symbol from length(symbol) - 7)::bigint = round(strike * 1000)::bigint"
            " AND crossed = coalesce(bid > ask, false) AND zero_bid = coalesce(bid = 0, false))",
            (window.universe, window.first, window.last),
        )
    )


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
    context: AssetExecutionContext, alpaca: AlpacaResource, warehouse: WarehouseResource
) -> MaterializeResult:
    t0 = time.perf_counter()
    window = window_of(context, warehouse)
    names = ["chain_contract_valid", "chain_oi_non_negative", "chain_quarantine_rate"]
    if (skip := _no_session(window)) is not None:
        return MaterializeResult(metadata=skip.metadata, check_results=_skipped_checks(names, "no session"))
    require_history(alpaca, window.sessions)
    settings = load_option_settings()
    run_id = context.run.run_id
    ingest_log = IngestLog.start(warehouse, context, alpaca, window, "option_chain")
    try:
        kept_parts, quarantine_parts, fetched = [], [], 0
        for session in window.sessions:
            raws = [
                fetch_option_chain(
                    alpaca,
                    u,
                    as_of=session,
                    feed=settings.feed,
                    expiration_date_gte=session,
                    expiration_date_lte=session + timedelta(days=settings.expiry_horizon_days),
                )
                for u in window.universe
            ]
            raw = pd.concat(raws, ignore_index=True) if raws else pd.DataFrame()
            if raw.empty:
                continue
            fetched += len(raw)
            oi = warehouse.read_frame(
                "SELECT DISTINCT ON (symbol) symbol, open_interest, as_of FROM market.open_interest "
                "WHERE underlying = ANY(%s) AND as_of BETWEEN %s AND %s ORDER BY symbol, as_of DESC",
                (window.universe, session - timedelta(days=OI_LOOKBACK_DAYS), session),
            )
            if oi.empty:
                oi = pd.DataFrame(columns=["symbol", "open_interest", "as_of"])
            typed = attach_open_interest(coerce_raw_chain(raw, session), oi)
            split = split_option_chain(typed)
            kept_parts.append(chain_rows(split.valid, run_id))
            quarantine_parts.append(_quarantine_frame(CHAIN_SOURCE, split.rejected, raw["payload"], run_id))
        kept = (
            pd.concat(kept_parts, ignore_index=True)
            if kept_parts
            else pd.DataFrame(columns=[n for n, _ in CHAIN_COLUMNS])
        )
        quarantine = (
            pd.concat(quarantine_parts, ignore_index=True)
            if quarantine_parts
            else pd.DataFrame(columns=["source", "symbol", "ts", "payload", "reason", "run_id"])
        )
        with warehouse.connect() as conn:
            written, deleted = _replace_rows(
                conn, "market.option_chain", kept, CHAIN_COLUMNS, window, ["symbol", "snapshot_date"]
            )
            quarantined = _replace_quarantine(warehouse, conn, "option_chain", window, quarantine)
    except Exception as exc:
        ingest_log.failed(exc)
        raise
    ingest_log.succeeded(fetched, written, quarantined)
    if quarantined:
        context.log.warning("%d option snapshot(s) quarantined, e.g. %s", quarantined, quarantine["reason"].iloc[0])
    violations = stored_chain_violations(warehouse, window)
    negative_oi = int(
        warehouse.scalar(
            "SELECT count(*) FROM market.option_chain WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s "
            "AND open_interest < 0",
            (window.universe, window.first, window.last),
        )
    )
    rate = quarantined / fetched if fetched else 0.0
    checks = [
        AssetCheckResult(
            check_name="chain_contract_valid", passed=violations == 0, metadata={"violations": violations}
        ),
        AssetCheckResult(
            check_name="chain_oi_non_negative", passed=negative_oi == 0, metadata={"negative": negative_oi}
        ),
        AssetCheckResult(
            check_name="chain_quarantine_rate",
            passed=rate <= 0.01,
            severity=AssetCheckSeverity.WARN,
            metadata={"quarantined": quarantined, "rate": MetadataValue.float(round(rate, 6))},
        ),
    ]
    preview = kept.sort_values(["underlying", "expiration", "strike", "type"]).head(10)
    return MaterializeResult(
        metadata={
            "rows_fetched": MetadataValue.int(fetched),
            "rows_written": MetadataValue.int(written),
            "rows_replaced": MetadataValue.int(deleted),
            "rows_quarantined": MetadataValue.int(quarantined),
            "crossed_quotes": MetadataValue.int(int(kept["crossed"].sum()) if len(kept) else 0),
            "zero_bid_quotes": MetadataValue.int(int(kept["zero_bid"].sum()) if len(kept) else 0),
            "without_alpaca_greeks": MetadataValue.int(int(kept["alpaca_delta"].isna().sum()) if len(kept) else 0),
            "without_open_interest": MetadataValue.int(int(kept["open_interest"].isna().sum()) if len(kept) else 0),
            "underlyings": MetadataValue.int(int(kept["underlying"].nunique()) if len(kept) else 0),
            "sessions": ", ".join(map(str, window.sessions)),
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
            "preview": _md_table(preview[["symbol", "bid", "ask", "mark", "last", "open_interest", "alpaca_iv"]]),
            "quarantine_examples": _md_table(quarantine[["symbol", "reason"]], 5),
        },
        check_results=checks,
    )


# ----------------------------------------------------------------------------- option_greeks
def compute_greeks(chain: pd.DataFrame, closes: pd.DataFrame, settings: OptionSettings) -> pd.DataFrame:
    """Our IV and BSM Greeks for chain rows (the pure core of the `option_greeks` asset).

    `chain`: rows of market.option_chain; `closes`: (symbol, session, close) of market.bars_daily.
    Price: the mid when the quote is two-sided and uncrossed, else the last trade if it printed on
    the snapshot's session (an older print says nothing about today's volatility), else none.
    Time to expiry runs from the quote time (the session close when unknown) to 16:00 New York on
    expiration, in years of 365 days.
    """
    out = chain[["symbol", "snapshot_date", "underlying", "expiration", "strike", "type"]].copy()
    n = len(out)
    if n == 0:
        return pd.DataFrame(columns=[c for c, _ in GREEK_COLUMNS])
    snap = pd.to_datetime(out["snapshot_date"])
    spot = closes.assign(session=pd.to_datetime(closes["session"])).rename(
        columns={"symbol": "underlying", "session": "snap", "close": "underlying_price"}
    )
    merged = pd.DataFrame({"underlying": out["underlying"], "snap": snap}).merge(
        spot[["underlying", "snap", "underlying_price"]], on=["underlying", "snap"], how="left"
    )
    out["underlying_price"] = pd.to_numeric(merged["underlying_price"], errors="coerce").to_numpy(float)
    mark = pd.to_numeric(chain["mark"], errors="coerce")
    last = pd.to_numeric(chain["last"], errors="coerce")
    trade_time = pd.to_datetime(chain["trade_time"], utc=True)
    traded_today = trade_time.dt.tz_convert("America/New_York").dt.normalize().dt.tz_localize(None) == snap
    use_last = mark.isna() & (last > 0) & traded_today.fillna(False)
    out["price_used"] = mark.where(mark.notna(), last.where(use_last))
    out["price_source"] = np.where(mark.notna(), "mid", np.where(use_last, "last", None))
    closes_utc = {d: session_open_close(d.date())[1] for d in snap.unique()}
    quote_time = pd.to_datetime(chain["quote_time"], utc=True)
    quote_time = quote_time.fillna(snap.map(closes_utc))
    out["time_to_expiry"] = np.asarray(time_to_expiry(quote_time, pd.to_datetime(out["expiration"])), dtype=float)
    out["rate"] = settings.risk_free_rate
    out["dividend_yield"] = out["underlying"].map(settings.dividend_yield).astype(float)
    S = out["underlying_price"].to_numpy(float)
    K = out["strike"].to_numpy(float)
    T = out["time_to_expiry"].to_numpy(float)
    r = out["rate"].to_numpy(float)
    q = out["dividend_yield"].to_numpy(float)
    is_call = (out["type"] == "call").to_numpy()
    price = out["price_used"].to_numpy(float)
    iv, reason = implied_vol(price, S, K, T, r, q, is_call)
    reason = np.asarray(reason, dtype=object)
    reason[np.isnan(price)] = "no_price"
    reason[~np.isnan(price) & np.isnan(S)] = "no_underlying_price"
    iv = np.where(pd.isna(reason), iv, np.nan)
    out["iv"] = iv
    out["iv_reason"] = reason
    g = greeks(is_call, S, K, T, r, q, np.where(np.isnan(iv), 1.0, iv))  # placeholder sigma, masked below
    has_iv = ~np.isnan(iv)
    for name in ("delta", "gamma", "theta", "vega", "rho"):
        out[name] = np.where(has_iv, np.asarray(getattr(g, name), dtype=float), np.nan)
    out["model"] = MODEL
    out["early_exercise_flag"] = pd.Series(pd.NA, index=out.index, dtype="boolean")
    out["early_exercise_premium"] = np.nan
    out["early_exercise_reason"] = None
    idx = np.flatnonzero(has_iv)
    if idx.size:
        ee = early_exercise_flags(is_call[idx], S[idx], K[idx], T[idx], r[idx], q[idx], iv[idx])
        flagged = ee["early_exercise_flag"].to_numpy(bool)
        out.iloc[idx, out.columns.get_loc("early_exercise_flag")] = flagged
        out.iloc[idx, out.columns.get_loc("early_exercise_premium")] = ee["early_exercise_premium"].to_numpy(float)
        why = np.where(
            is_call[idx],
            "call on a dividend payer: early exercise before the dividend is worth",
            "deep ITM put: early exercise earns the strike's interest, worth",
        )
        text = [
            f"{w} {p:.4f} ({p / e:.1%} of the European price)" if f and e > 0 else (f"{w} {p:.4f}" if f else None)
            for w, p, e, f in zip(why, ee["early_exercise_premium"], ee["european_price"], flagged, strict=True)
        ]
        out.iloc[idx, out.columns.get_loc("early_exercise_reason")] = np.array(text, dtype=object)
    for gname in ("iv", "delta", "gamma", "theta", "vega", "rho"):
        out[f"alpaca_{gname}"] = pd.to_numeric(chain[f"alpaca_{gname}"], errors="coerce").to_numpy(float)
    out["iv_diff"] = out["iv"] - out["alpaca_iv"]
    return out


def _divergence(frame: pd.DataFrame) -> dict[str, Any]:
    diff = frame["iv_diff"].abs().dropna()
    return {
        "iv_compared": MetadataValue.int(len(diff)),
        "iv_abs_diff_median": MetadataValue.float(float(diff.median()) if len(diff) else float("nan")),
        "iv_abs_diff_max": MetadataValue.float(float(diff.max()) if len(diff) else float("nan")),
        "delta_abs_diff_median": MetadataValue.float(
            float((frame["delta"] - frame["alpaca_delta"]).abs().median()) if len(diff) else float("nan")
        ),
    }


def smile_chart(frame: pd.DataFrame, max_underlyings: int = 3, max_expiries: int = 3) -> str:
    """Markdown with a small PNG: IV smiles of the front expiries and the ATM term structure.

    Rendered with matplotlib's object API on the Agg canvas (no pyplot global state: runs in
    threads and headless workers alike), embedded as a data URI so the UI shows it inline.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = frame[frame["iv"].notna()]
    underlyings = sorted(data["underlying"].unique())[:max_underlyings]
    if not underlyings:
        return "_no implied volatilities to chart_"
    fig = Figure(figsize=(6.4, 2.0 * len(underlyings)), dpi=60)
    FigureCanvasAgg(fig)
    snapshot = data["snapshot_date"].max()
    for row, u in enumerate(underlyings):
        g = data[(data["underlying"] == u) & (data["snapshot_date"] == snapshot)]
        ax_smile = fig.add_subplot(len(underlyings), 2, 2 * row + 1)
        ax_term = fig.add_subplot(len(underlyings), 2, 2 * row + 2)
        spot = float(g["underlying_price"].median())
        for exp in sorted(g["expiration"].unique())[:max_expiries]:
            e = g[g["expiration"] == exp]
            # OTM side only: the liquid quotes, free of the ITM early-exercise premium
            otm = e[((e["type"] == "call") & (e["strike"] >= spot)) | ((e["type"] == "put") & (e["strike"] < spot))]
            otm = otm.sort_values("strike")
            ax_smile.plot(otm["strike"], otm["iv"], marker=".", markersize=3, linewidth=1, label=str(exp))
        ax_smile.axvline(spot, color="grey", linewidth=0.6, linestyle=":")
        ax_smile.set_title(f"{u} IV smile {snapshot}", fontsize=8)
        ax_smile.tick_params(labelsize=6)
        ax_smile.legend(fontsize=5)
        term = flow.atm_iv_term_structure(g)
        ax_term.plot(term["days_to_expiry"], term["atm_iv"], marker="o", markersize=3, linewidth=1)
        ax_term.set_title(f"{u} ATM IV term structure", fontsize=8)
        ax_term.set_xlabel("days to expiry", fontsize=6)
        ax_term.tick_params(labelsize=6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![smile](data:image/png;base64,{encoded})"


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
def option_greeks(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    t0 = time.perf_counter()
    window = window_of(context, warehouse)
    names = ["iv_plausible", "greeks_cover_chain"]
    if (skip := _no_session(window)) is not None:
        return MaterializeResult(metadata=skip.metadata, check_results=_skipped_checks(names, "no session"))
    settings = load_option_settings()
    chain = warehouse.read_frame(
        "SELECT symbol, snapshot_date, underlying, expiration, strike, type, mark, last, quote_time, trade_time, "
        "alpaca_iv, alpaca_delta, alpaca_gamma, alpaca_theta, alpaca_vega, alpaca_rho FROM market.option_chain "
        "WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s ORDER BY snapshot_date, symbol",
        (window.universe, window.first, window.last),
    )
    closes = warehouse.read_frame(
        "SELECT symbol, session, close FROM market.bars_daily WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s",
        (window.universe, window.first, window.last),
    )
    if closes.empty:
        closes = pd.DataFrame(columns=["symbol", "session", "close"])
    frame = compute_greeks(chain, closes, settings)
    frame["run_id"] = context.run.run_id
    with warehouse.connect() as conn:
        written, deleted = _replace_rows(
            conn, "market.option_greeks", frame, GREEK_COLUMNS, window, ["symbol", "snapshot_date"]
        )
    out_of_bounds = int(
        warehouse.scalar(
            "SELECT count(*) FROM market.option_greeks WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s "
            "AND iv IS NOT NULL AND NOT (iv BETWEEN %s AND %s)",
            (window.universe, window.first, window.last, *IV_BOUNDS),
        )
    )
    uncovered = int(
        warehouse.scalar(
            "SELECT count(*) FROM market.option_chain c WHERE c.underlying = ANY(%s) AND c.snapshot_date "
            "BETWEEN %s AND %s AND NOT EXISTS (SELECT 1 FROM market.option_greeks g "
            "WHERE g.symbol = c.symbol AND g.snapshot_date = c.snapshot_date)",
            (window.universe, window.first, window.last),
        )
    )
    reasons = frame["iv_reason"].dropna().value_counts()
    checks = [
        AssetCheckResult(
            check_name="iv_plausible",
            passed=out_of_bounds == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={"out_of_bounds": out_of_bounds, "bounds": str(IV_BOUNDS)},
        ),
        AssetCheckResult(check_name="greeks_cover_chain", passed=uncovered == 0, metadata={"uncovered": uncovered}),
    ]
    no_spot = sorted(frame.loc[frame["iv_reason"] == "no_underlying_price", "underlying"].unique())
    if no_spot:
        context.log.warning("no daily close for %s: materialize daily_bars for this partition", ", ".join(no_spot))
    preview = frame[frame["iv"].notna()].sort_values(["underlying", "expiration", "strike"]).head(10)
    return MaterializeResult(
        metadata={
            "rows_written": MetadataValue.int(written),
            "rows_replaced": MetadataValue.int(deleted),
            "with_iv": MetadataValue.int(int(frame["iv"].notna().sum())),
            "iv_reasons": MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
            "early_exercise_flagged": MetadataValue.int(int(frame["early_exercise_flag"].fillna(False).sum())),
            **_divergence(frame),
            "rate": MetadataValue.float(settings.risk_free_rate),
            "model": MODEL,
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
            "preview": _md_table(
                preview[["symbol", "underlying_price", "price_used", "iv", "alpaca_iv", "delta", "alpaca_delta"]]
            ),
            "iv_smile": MetadataValue.md(smile_chart(frame)),
        },
        check_results=checks,
    )


# ----------------------------------------------------------------------------- options_flow
def _volume_known(chain: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Groups whose chain delivered any volume: elsewhere volume figures are unknown, not zero."""
    return chain.assign(_known=chain["volume"].notna()).groupby(keys, as_index=False)["_known"].any()


def _null_unknown_volume(frame: pd.DataFrame, known: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    merged = frame.merge(known, on=keys, how="left")
    mask = ~merged["_known"].fillna(False).astype(bool)
    for c in columns:
        if c in merged:
            merged[c] = merged[c].astype("float64").where(~mask)
    return merged.drop(columns="_known")


def compute_flow(chain: pd.DataFrame, previous: pd.DataFrame, history: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Flow tables for chain rows joined with our IV/delta (pure core of the `options_flow` asset).

    `previous`: (underlying, snapshot_date, previous_snapshot_date, symbol, open_interest) of each
    underlying's previous snapshot; `history`: (symbol, snapshot_date, volume) of earlier snapshots.
    """
    day_keys, exp_keys = flow.DAY_KEYS, flow.EXPIRY_KEYS
    daily = flow.daily_summary(chain)
    daily = _null_unknown_volume(
        daily,
        _volume_known(chain, day_keys),
        day_keys,
        ["call_volume", "put_volume", "total_volume", "put_call_volume_ratio"],
    )
    counts = chain.groupby(day_keys, as_index=False).agg(
        contracts=("symbol", "size"), underlying_price=("underlying_price", "median")
    )
    daily = daily.merge(counts, on=day_keys, how="left")
    changes = []
    for (u, d), today in chain.groupby(day_keys, sort=True):
        prev = previous[(previous["underlying"] == u) & (previous["snapshot_date"] == d)]
        if prev.empty:
            continue
        _, total = flow.oi_change(today, prev)
        total["previous_snapshot_date"] = prev["previous_snapshot_date"].iloc[0]
        changes.append(total.drop(columns=["total_oi"]))
    if changes:
        daily = daily.merge(pd.concat(changes, ignore_index=True), on=day_keys, how="left")
    else:
        daily = daily.assign(
            previous_total_oi=np.nan, oi_change=np.nan, new_contracts=np.nan, previous_snapshot_date=None
        )
    by_expiry = flow.volume_oi_by_expiry(chain)
    by_expiry = _null_unknown_volume(by_expiry, _volume_known(chain, exp_keys), exp_keys, ["call_volume", "put_volume"])
    call_oi = by_expiry["call_oi"].astype(float)
    by_expiry["put_call_oi_ratio"] = by_expiry["put_oi"].astype(float) / call_oi.where(call_oi != 0)  # 0 -> NULL
    pain = flow.max_pain(chain)[[*exp_keys, "max_pain_strike"]].rename(columns={"max_pain_strike": "max_pain"})
    term = flow.atm_iv_term_structure(chain)[[*exp_keys, "atm_iv", "days_to_expiry"]]
    skew = flow.skew_25d(chain)
    by_expiry = by_expiry.merge(pain, on=exp_keys, how="left").merge(term, on=exp_keys, how="left")
    by_expiry = by_expiry.merge(skew, on=exp_keys, how="left")
    front = by_expiry.sort_values(exp_keys).drop_duplicates(day_keys, keep="first")
    front = front[[*day_keys, "expiration", "max_pain", "atm_iv", "skew_25d"]].rename(
        columns={
            "expiration": "front_expiration",
            "max_pain": "front_max_pain",
            "atm_iv": "front_atm_iv",
            "skew_25d": "front_skew_25d",
        }
    )
    daily = daily.merge(front, on=day_keys, how="left")
    by_strike = flow.volume_oi_by_strike(chain)
    by_strike = _null_unknown_volume(by_strike, _volume_known(chain, day_keys), day_keys, ["call_volume", "put_volume"])
    with_volume = chain[chain["volume"].notna()]
    unusual = flow.unusual_activity(with_volume, history if len(history) else None)
    unusual_counts = unusual.groupby(day_keys).size().rename("unusual_contracts").reset_index()
    daily = daily.merge(unusual_counts, on=day_keys, how="left")
    daily["unusual_contracts"] = daily["unusual_contracts"].fillna(0)
    return {"daily": daily, "by_expiry": by_expiry, "by_strike": by_strike, "unusual": unusual}


def _shape(frame: pd.DataFrame, columns: Sequence[tuple[str, str]], run_id: str) -> pd.DataFrame:
    out = frame.copy()
    out["run_id"] = run_id
    for name, pg_type in columns:
        if name not in out:
            out[name] = None
        if pg_type in ("int8", "int4"):
            out[name] = _ints(out[name])
        elif pg_type == "float8":
            out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    return out[[n for n, _ in columns]]


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
    names = ["put_call_ratios_finite", "flow_covers_chain"]
    if (skip := _no_session(window)) is not None:
        return MaterializeResult(metadata=skip.metadata, check_results=_skipped_checks(names, "no session"))
    run_id = context.run.run_id
    chain = warehouse.read_frame(
        "SELECT c.symbol, c.underlying, c.expiration, c.strike, c.type, c.volume, c.open_interest, "
        "g.iv, g.delta, g.underlying_price, c.snapshot_date FROM market.option_chain c "
        "LEFT JOIN market.option_greeks g USING (symbol, snapshot_date) "
        "WHERE c.underlying = ANY(%s) AND c.snapshot_date BETWEEN %s AND %s ORDER BY c.snapshot_date, c.symbol",
        (window.universe, window.first, window.last),
    )
    tables = {
        "market.options_flow_daily": (FLOW_DAILY_COLUMNS, ["underlying", "snapshot_date"]),
        "market.options_by_expiry": (BY_EXPIRY_COLUMNS, ["underlying", "snapshot_date", "expiration"]),
        "market.options_by_strike": (BY_STRIKE_COLUMNS, ["underlying", "snapshot_date", "strike"]),
        "market.options_unusual_activity": (UNUSUAL_COLUMNS, ["symbol", "snapshot_date"]),
    }
    if chain.empty:
        frames = {t: pd.DataFrame(columns=[n for n, _ in cols]) for t, (cols, _) in tables.items()}
    else:
        for c in ("volume", "open_interest", "iv", "delta", "underlying_price", "strike"):
            chain[c] = pd.to_numeric(chain[c], errors="coerce").astype("float64")
        previous = warehouse.read_frame(
            "SELECT d.underlying, d.snapshot_date, p.snapshot_date AS previous_snapshot_date, p.symbol, "
            "p.open_interest FROM (SELECT DISTINCT underlying, snapshot_date FROM market.option_chain "
            "  WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s) d "
            "CROSS JOIN LATERAL (SELECT max(snapshot_date) AS prev FROM market.option_chain x "
            "  WHERE x.underlying = d.underlying AND x.snapshot_date < d.snapshot_date "
            "  AND x.snapshot_date >= d.snapshot_date - 10) m "
            "JOIN market.option_chain p ON p.underlying = d.underlying AND p.snapshot_date = m.prev",
            (window.universe, window.first, window.last),
        )
        history = warehouse.read_frame(
            "SELECT symbol, snapshot_date, volume FROM market.option_chain WHERE underlying = ANY(%s) "
            "AND volume IS NOT NULL AND snapshot_date < %s AND snapshot_date >= %s",
            (window.universe, window.last, window.first - timedelta(days=UNUSUAL_HISTORY_SNAPSHOTS * 7 // 5 + 7)),
        )
        if history.empty:
            history = pd.DataFrame(columns=["symbol", "snapshot_date", "volume"])
        if previous.empty:
            previous = pd.DataFrame(
                columns=["underlying", "snapshot_date", "previous_snapshot_date", "symbol", "open_interest"]
            )
        result = compute_flow(chain, previous, history)
        frames = dict(
            zip(tables, (result["daily"], result["by_expiry"], result["by_strike"], result["unusual"]), strict=True)
        )
    written: dict[str, int] = {}
    with warehouse.connect() as conn:
        for table, (columns, key) in tables.items():
            written[table], _ = _replace_rows(conn, table, _shape(frames[table], columns, run_id), columns, window, key)
    bad_ratios = int(
        warehouse.scalar(
            "SELECT count(*) FROM market.options_flow_daily WHERE underlying = ANY(%s) AND snapshot_date "
            "BETWEEN %s AND %s AND ("
            " put_call_volume_ratio IN ('Infinity'::float8, '-Infinity'::float8, 'NaN'::float8)"
            " OR put_call_oi_ratio IN ('Infinity'::float8, '-Infinity'::float8, 'NaN'::float8)"
            " OR put_call_volume_ratio < 0 OR put_call_oi_ratio < 0)",
            (window.universe, window.first, window.last),
        )
    )
    missing = int(
        warehouse.scalar(
            "SELECT count(*) FROM (SELECT DISTINCT underlying, snapshot_date FROM market.option_chain "
            "WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s) c WHERE NOT EXISTS ("
            "SELECT 1 FROM market.options_flow_daily f WHERE f.underlying = c.underlying "
            "AND f.snapshot_date = c.snapshot_date)",
            (window.universe, window.first, window.last),
        )
    )
    checks = [
        AssetCheckResult(check_name="put_call_ratios_finite", passed=bad_ratios == 0, metadata={"bad": bad_ratios}),
        AssetCheckResult(check_name="flow_covers_chain", passed=missing == 0, metadata={"missing": missing}),
    ]
    daily = frames["market.options_flow_daily"]
    preview_cols = [
        "underlying",
        "snapshot_date",
        "put_call_volume_ratio",
        "put_call_oi_ratio",
        "oi_change",
        "front_max_pain",
        "front_atm_iv",
        "front_skew_25d",
    ]
    return MaterializeResult(
        metadata={
            **{f"rows_{t.split('.')[1]}": MetadataValue.int(n) for t, n in written.items()},
            "underlyings": MetadataValue.int(int(daily["underlying"].nunique()) if len(daily) else 0),
            "volume_known": MetadataValue.bool(bool(chain["volume"].notna().any()) if len(chain) else False),
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
            "preview": _md_table(daily[[c for c in preview_cols if c in daily]]),
        },
        check_results=checks,
    )
