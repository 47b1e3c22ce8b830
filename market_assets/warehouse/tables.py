"""The table registry: every warehouse table's written columns, key and partition column, declared once.

Why one registry: the writers (COPY layout), the CLI summary, the truncate-all test fixture and the schema test all
need the same facts; declared in five places they drifted. ``tests/warehouse/test_tables.py`` asserts that this
registry equals ``information_schema`` after the migrations, so a migration and its registry entry change together.

``columns`` are the columns the pipeline writes, in COPY order, as (name, PostgreSQL type); ``server_columns`` are
filled by the server (defaults, serials) and never written. ``partition_column`` is the date column a partition
replace and the "in window" counts use (None: the table is not partitioned by date).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from market_assets.analytics.technicals.frame import TECHNICAL_COLUMNS
from market_assets.analytics.technicals.rows import PIVOT_LEVELS

Columns = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Table:
    name: str
    columns: Columns
    key: tuple[str, ...]
    partition_column: str | None = None
    server_columns: tuple[str, ...] = field(default=())
    monthly: bool = False  # range-partitioned by month on ts (partitions created on demand by the writer)
    session_brin: bool = False  # a BRIN index on session, whose new ranges the writer summarizes (migration 064)

    @property
    def nested(self) -> bool:
        """Array columns (``float8[]``...): the writer stores the frame's consecutive rows that share `key` as one
        tuple whose arrays hold their values in order. A view of the old name unnests them for SQL users."""
        return any(pg_type.endswith("[]") for _, pg_type in self.columns)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


BAR_COLUMNS: Columns = (
    ("symbol", "text"),
    ("ts", "timestamptz"),
    ("session", "date"),
    ("open", "float8"),
    ("high", "float8"),
    ("low", "float8"),
    ("close", "float8"),
    ("volume", "int8"),
    ("trade_count", "int8"),
    ("vwap", "float8"),
    ("feed", "text"),
    ("run_id", "text"),
)

SYMBOLS = Table(
    "market.symbols",
    (("symbol", "text"),),
    key=("symbol",),
    server_columns=("asset_class", "active", "added_at", "updated_at"),
)
BARS_DAILY = Table("market.bars_daily", BAR_COLUMNS, ("symbol", "ts"), "session", ("ingested_at",), session_brin=True)
BARS_MINUTE = Table("market.bars_minute", BAR_COLUMNS, ("symbol", "ts"), "session", ("ingested_at",), monthly=True)
QUARANTINE = Table(
    "market.quarantine",
    (
        ("source", "text"),
        ("dataset", "text"),
        ("partition_key", "text"),
        ("symbol", "text"),
        ("ts", "timestamptz"),
        ("payload", "jsonb"),
        ("reason", "text"),
        ("run_id", "text"),
        ("session", "date"),  # 030: with dataset and symbol, what a later good write clears
    ),
    key=("id",),
    server_columns=("id", "quarantined_at"),
)
INGESTION_LOG = Table(
    "market.ingestion_log",
    (
        ("run_id", "text"),
        ("asset", "text"),
        ("partition_key", "text"),
        ("dataset", "text"),
        ("symbols", "int4"),
        ("rows_fetched", "int8"),
        ("rows_written", "int8"),
        ("rows_quarantined", "int8"),
        ("http_requests", "int4"),
        ("http_retries", "int4"),
        ("started_at", "timestamptz"),
        ("status", "text"),
        ("error", "text"),
    ),
    key=("id",),
    server_columns=("id", "finished_at"),
)
INDICATORS_DAILY = Table(
    "market.indicators_daily",
    (
        ("symbol", "text"),
        ("ts", "timestamptz"),
        ("session", "date"),
        *((name, "bool" if name == "volume_spike" else "float8") for name in TECHNICAL_COLUMNS),
        ("vwap_intraday", "float8"),
        ("minute_bars", "int4"),
        ("run_id", "text"),
    ),
    ("symbol", "ts"),
    "session",
    ("computed_at",),
    session_brin=True,
)
PATTERNS = Table(
    "market.patterns",
    (
        ("symbol", "text"),
        ("ts", "timestamptz"),
        ("session", "date"),
        ("pattern", "text"),
        ("direction", "text"),
        ("strength", "float8"),
        ("details", "jsonb"),
        ("run_id", "text"),
    ),
    ("symbol", "ts", "pattern"),
    "session",
    ("computed_at",),
    session_brin=True,
)
# One tuple per symbol and session holding all its levels (migration 063): a twelfth of the tuples and index
# entries of one row per level; analysts read the view market.support_resistance, one row per level.
SUPPORT_RESISTANCE = Table(
    "market.support_resistance_packed",
    (
        ("symbol", "text"),
        ("as_of", "date"),
        ("session", "date"),
        ("resistance", "bool[]"),
        ("level", "float8[]"),
        ("touches", "int4[]"),
        ("first_touch", "timestamptz[]"),
        ("last_touch", "timestamptz[]"),
        ("strength", "float8[]"),
        ("run_id", "text"),
    ),
    ("symbol", "as_of"),
    "session",
    ("computed_at",),
    session_brin=True,
)
PIVOT_POINTS = Table(
    "market.pivot_points",
    (
        ("symbol", "text"),
        ("ts", "timestamptz"),
        ("session", "date"),
        *((name, "float8") for name in PIVOT_LEVELS),
        ("run_id", "text"),
    ),
    ("symbol", "ts"),
    "session",
    ("computed_at",),
    session_brin=True,
)
INDICATORS_INTRADAY = Table(
    "market.indicators_intraday",
    (
        ("symbol", "text"),
        ("ts", "timestamptz"),
        ("session", "date"),
        ("close", "float8"),
        ("rsi", "float8"),
        ("macd", "float8"),
        ("macd_signal", "float8"),
        ("macd_hist", "float8"),
        ("sma_20", "float8"),
        ("sma_50", "float8"),
        ("run_id", "text"),
    ),
    ("symbol", "ts"),
    "session",
    ("ingested_at",),
    monthly=True,
)
INTRADAY_REFRESH_LOG = Table(
    "market.intraday_refresh_log",
    (
        ("run_id", "text"),
        ("run_key", "text"),
        ("session", "date"),
        ("window_start", "timestamptz"),
        ("window_end", "timestamptz"),
        ("fetch_start", "timestamptz"),
        ("symbols", "int4"),
        ("bars_fetched", "int8"),
        ("bars_upserted", "int8"),
        ("bars_quarantined", "int8"),
        ("indicators_upserted", "int8"),
        ("cache_written", "int4"),
        ("cache_skipped", "int4"),
        ("started_at", "timestamptz"),
        ("status", "text"),
        ("error", "text"),
    ),
    key=("id",),
    partition_column="session",
    server_columns=("id", "finished_at"),
)
OPTION_CONTRACTS = Table(
    "market.option_contracts",
    (
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
    ),
    ("symbol",),
    server_columns=("ingested_at", "updated_at"),
)
OPEN_INTEREST = Table(
    "market.open_interest",
    (
        ("symbol", "text"),
        ("underlying", "text"),
        ("as_of", "date"),
        ("open_interest", "int8"),
        ("run_id", "text"),
    ),
    ("symbol", "as_of"),
    "as_of",
    ("ingested_at",),
)
_ALPACA_GREEKS: Columns = (
    ("alpaca_iv", "float8"),
    ("alpaca_delta", "float8"),
    ("alpaca_gamma", "float8"),
    ("alpaca_theta", "float8"),
    ("alpaca_vega", "float8"),
    ("alpaca_rho", "float8"),
)
OPTION_CHAIN = Table(
    "market.option_chain",
    (
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
        *_ALPACA_GREEKS,
        ("run_id", "text"),
    ),
    ("symbol", "snapshot_date"),
    "snapshot_date",
    ("ingested_at",),
)
OPTION_GREEKS = Table(
    "market.option_greeks",
    (
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
        *_ALPACA_GREEKS,
        ("iv_diff", "float8"),
        ("run_id", "text"),
    ),
    ("symbol", "snapshot_date"),
    "snapshot_date",
    ("ingested_at",),
)
OPTIONS_FLOW_DAILY = Table(
    "market.options_flow_daily",
    (
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
    ),
    ("underlying", "snapshot_date"),
    "snapshot_date",
    ("ingested_at",),
)
OPTIONS_BY_EXPIRY = Table(
    "market.options_by_expiry",
    (
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
    ),
    ("underlying", "snapshot_date", "expiration"),
    "snapshot_date",
    ("ingested_at",),
)
OPTIONS_BY_STRIKE = Table(
    "market.options_by_strike",
    (
        ("underlying", "text"),
        ("snapshot_date", "date"),
        ("strike", "float8"),
        ("call_volume", "int8"),
        ("put_volume", "int8"),
        ("call_oi", "int8"),
        ("put_oi", "int8"),
        ("run_id", "text"),
    ),
    ("underlying", "snapshot_date", "strike"),
    "snapshot_date",
    ("ingested_at",),
)
OPTIONS_UNUSUAL_ACTIVITY = Table(
    "market.options_unusual_activity",
    (
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
    ),
    ("symbol", "snapshot_date"),
    "snapshot_date",
    ("ingested_at",),
)
CORPORATE_ACTIONS = Table(
    "market.corporate_actions",
    (
        ("id", "text"),
        ("type", "text"),
        ("symbol", "text"),
        ("new_symbol", "text"),
        ("cusip", "text"),
        ("new_cusip", "text"),
        ("ex_date", "date"),
        ("record_date", "date"),
        ("payable_date", "date"),
        ("process_date", "date"),
        ("new_rate", "float8"),
        ("old_rate", "float8"),
        ("cash_amount", "float8"),
        ("is_special", "bool"),
        ("is_foreign", "bool"),
        ("payload", "jsonb"),
        ("run_id", "text"),
    ),
    ("id",),
    server_columns=("ingested_at",),
)
ADJUSTMENT_FACTORS = Table(
    "market.adjustment_factors",
    (
        ("symbol", "text"),
        ("ex_date", "date"),
        ("split_factor", "float8"),
        ("volume_factor", "float8"),
        ("dividend_factor", "float8"),
        ("cum_split_factor", "float8"),
        ("cum_volume_factor", "float8"),
        ("cum_dividend_factor", "float8"),
        ("prev_session", "date"),
        ("prev_close", "float8"),
        ("actions", "int4"),
        ("reason", "text"),
        ("run_id", "text"),
    ),
    ("symbol", "ex_date"),
    "ex_date",  # replacing a symbol's factors = replace_partition over all dates for that symbol
    ("computed_at",),
)

API_TOKENS = Table(
    "market.api_tokens",
    (
        ("key", "text"),
        ("name", "text"),
        ("secret_hash", "text"),
        ("max_connections", "int4"),
        ("max_symbols", "int4"),
    ),
    key=("key",),
    server_columns=("created_at", "revoked_at"),
)

# append-only (migration 040): written through observability.audit, never by the partition writer
AUDIT_LOG = Table(
    "market.audit_log",
    (
        ("kind", "text"),
        ("action", "text"),
        ("actor", "text"),
        ("subject", "text"),
        ("run_id", "text"),
        ("partition_key", "text"),
        ("details", "jsonb"),
    ),
    key=("id", "ts"),
    server_columns=("id", "ts"),
    monthly=True,
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        SYMBOLS,
        BARS_DAILY,
        BARS_MINUTE,
        QUARANTINE,
        INGESTION_LOG,
        INDICATORS_DAILY,
        PATTERNS,
        SUPPORT_RESISTANCE,
        PIVOT_POINTS,
        INDICATORS_INTRADAY,
        INTRADAY_REFRESH_LOG,
        OPTION_CONTRACTS,
        OPEN_INTEREST,
        OPTION_CHAIN,
        OPTION_GREEKS,
        OPTIONS_FLOW_DAILY,
        OPTIONS_BY_EXPIRY,
        OPTIONS_BY_STRIKE,
        OPTIONS_UNUSUAL_ACTIVITY,
        API_TOKENS,
        AUDIT_LOG,
        CORPORATE_ACTIONS,
        ADJUSTMENT_FACTORS,
    )
}


def table(name: str) -> Table:
    """The registry entry of ``name``; an unknown table is a programming error named at once."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the table registry (market_assets.warehouse.tables)") from None


def fact_tables() -> Iterator[Table]:
    """Tables a test may truncate between tests (all of them: the registry is the whole warehouse)."""
    return iter(TABLES.values())
