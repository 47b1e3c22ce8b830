"""Named reads (and the one universe update) on the symbol universe and the bar tables.

Why here and not in the assets: the Dagster layer stays free of SQL text, and the same question
("which symbols are active?", "which sessions have no bar?") is asked in exactly one way by every
asset, check and loader. Identifiers come from the table registry through psycopg's `sql` module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pandas as pd
from psycopg import sql

from market_assets.analytics.adjustments import adjust_bars
from market_assets.domain.sessions import NEW_YORK
from market_assets.warehouse import tables
from market_assets.warehouse.resource import WarehouseResource

BAR_FRAME_COLUMNS = ["symbol", "ts", "session", "open", "high", "low", "close", "volume"]
#: MARKET_PRICE_ADJUSTMENT -> the relation the analytics read (migration 020 defines the views)
ADJUSTED_RELATIONS = {
    "all": "market.bars_daily_adjusted",
    "split": "market.bars_daily_split_adjusted",
    "raw": tables.BARS_DAILY.name,
}


def _identifier(table: tables.Table) -> sql.Identifier:
    return sql.Identifier(*table.name.split("."))


def active_symbols(warehouse: WarehouseResource) -> list[str]:
    """The active universe, sorted."""
    frame = warehouse.read_frame("SELECT symbol FROM market.symbols WHERE active ORDER BY symbol")
    return frame["symbol"].tolist() if not frame.empty else []


def seed_universe(warehouse: WarehouseResource, symbols: Sequence[str], run_id: str | None = None) -> bool:
    """Set the active universe to `symbols` only if none is active (a first run); True if it did.

    Otherwise nothing active changes (symbols not yet known are registered inactive): a run of other symbols never
    changes what the schedule ingests; `market-data universe set` does (issue 13, item 2). One transaction under a
    table lock, so two first runs cannot interleave their seeds.
    """
    wanted = sorted(dict.fromkeys(symbols))
    with warehouse.transaction(), warehouse.connect() as conn:
        conn.execute("LOCK TABLE market.symbols IN SHARE ROW EXCLUSIVE MODE")
        if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM market.symbols WHERE active)").fetchone()[0]:
            warehouse.set_universe(wanted, run_id=run_id, actor="seed")
            return True
        conn.execute(
            "INSERT INTO market.symbols (symbol, active) SELECT unnest(%s::text[]), false ON CONFLICT DO NOTHING",
            (wanted,),
        )
        return False


def daily_bars(
    warehouse: WarehouseResource, symbols: Sequence[str], start: date, last: date, adjustment: str | None = None
) -> pd.DataFrame:
    """Daily bars of `symbols` with session in [start, last]; `session` as datetime.date values.

    `adjustment` (default: the warehouse's ``price_adjustment``, MARKET_PRICE_ADJUSTMENT) picks raw bars or
    adjusted ones, as of the latest known action: what every derived table is computed from. Adjusted bars are
    the raw bars times the stored factors (``analytics.adjustments.adjust_bars``, the twin of the adjusted views
    that a test holds equal to them), computed here rather than read through the views.
    """
    if not symbols:
        return pd.DataFrame(columns=BAR_FRAME_COLUMNS)
    mode = adjustment or warehouse.price_adjustment
    if mode not in ADJUSTED_RELATIONS:
        raise ValueError(f"price adjustment must be one of {sorted(ADJUSTED_RELATIONS)}, got {mode!r}")
    bars = warehouse.read_bars(tables.BARS_DAILY.name, list(symbols), start, last)
    if bars.empty:
        return pd.DataFrame(columns=BAR_FRAME_COLUMNS)
    if mode != "raw":
        # the view's arithmetic in numpy: its per-bar factor probe cost 1.4 s of a one-session run at ten years
        factors = warehouse.read_frame(
            "SELECT symbol, ex_date, cum_split_factor, cum_volume_factor, cum_dividend_factor"
            " FROM market.adjustment_factors WHERE symbol = ANY(%s) AND ex_date > %s",
            (list(symbols), start),
        )
        bars = adjust_bars(bars, factors, mode)
    return bars.reset_index(drop=True)


def symbols_with_daily_bars_before(warehouse: WarehouseResource, symbols: Sequence[str], day: date) -> list[str]:
    """Which of `symbols` have a stored daily bar before `day`, sorted."""
    # one primary-key probe per symbol (a daily bar is stamped at New York midnight of its session), not a scan of
    # every symbol's history
    frame = warehouse.read_frame(
        "SELECT u.symbol FROM unnest(%s::text[]) AS u(symbol) WHERE EXISTS (SELECT 1 FROM market.bars_daily b"
        " WHERE b.symbol = u.symbol AND b.ts < (%s::timestamp AT TIME ZONE %s))",
        (list(symbols), day, NEW_YORK),
    )
    return sorted(frame["symbol"]) if not frame.empty else []


def latest_daily_session(warehouse: WarehouseResource) -> date | None:
    """The latest session with a stored daily bar (None on an empty table)."""
    return warehouse.scalar("SELECT max(session) FROM market.bars_daily")


def missing_daily_bars(warehouse: WarehouseResource, universe: Sequence[str], sessions: Sequence[date]) -> pd.DataFrame:
    """(symbol, session) pairs of `universe` x `sessions` with no stored daily bar, by session then symbol.

    One read of the window's bars through the session BRIN, anti-joined by the server. Measured at ten years of
    500 symbols: a one-year chunk 0.25-0.4 s where a primary-key probe per pair (126 k) cost 0.55-0.9 s; one
    session 17-50 ms against 18-22 ms for 500 probes.
    """
    if not sessions or not universe:
        return pd.DataFrame(columns=["symbol", "session"])
    return warehouse.read_frame(
        "SELECT u.symbol, s.session FROM unnest(%s::text[]) AS u(symbol) CROSS JOIN unnest(%s::date[]) AS s(session)"
        " LEFT JOIN (SELECT symbol, session FROM market.bars_daily"
        "            WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s) b"
        "   ON b.symbol = u.symbol AND b.session = s.session"
        " WHERE b.symbol IS NULL ORDER BY s.session, u.symbol",
        (list(universe), list(sessions), list(universe), min(sessions), max(sessions)),
    )


def contract_violations(
    warehouse: WarehouseResource, table: tables.Table, universe: Sequence[str], first: date, last: date
) -> int:
    """Stored rows of `table` in [first, last] breaking the bar contract: must be 0 (only valid rows are written)."""
    query = sql.SQL(
        "SELECT count(*) FROM {} WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s AND NOT ("
        "open > 0 AND high > 0 AND low > 0 AND close > 0 AND volume >= 0 AND low <= least(open, close)"
        " AND greatest(open, close) <= high AND symbol ~ '^[A-Z]{{1,5}}(\\.[A-Z]{{1,2}})?$')"
    ).format(_identifier(table))
    return int(warehouse.scalar(query, (list(universe), first, last)))


# the run_id of the rows `market-data stream` writes (live and REST-backfilled minutes alike)
STREAM_RUN_ID = "stream"


def streamed_minute_bars(warehouse: WarehouseResource, symbols: Sequence[str], first: date, last: date) -> pd.DataFrame:
    """Minute bars the stream wrote for `symbols` in sessions [first, last]: read before the T+1 replace erases them."""
    if not symbols:
        return pd.DataFrame(columns=["symbol", "ts", "open", "high", "low", "close", "volume", "vwap"])
    return warehouse.read_frame(
        "SELECT symbol, ts, open, high, low, close, volume, vwap FROM market.bars_minute "
        "WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s AND run_id = %s ORDER BY symbol, ts",
        (list(symbols), first, last, STREAM_RUN_ID),
    )
