"""Named reads of the options tables: what the option assets and their checks ask the warehouse.

Why here and not in the assets: the Dagster layer stays free of SQL text, and each question ("the chain
the Greeks are computed from", "stored IVs out of bounds") is asked in exactly one way. Table names come
from the table registry through psycopg's `sql` module; values travel as parameters.

Every function takes the universe (underlyings) and an inclusive date window, like the assets do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date

import pandas as pd
from psycopg import sql

from market_assets.warehouse import tables
from market_assets.warehouse.resource import WarehouseResource

CHAIN = sql.Identifier(*tables.OPTION_CHAIN.name.split("."))
GREEKS = sql.Identifier(*tables.OPTION_GREEKS.name.split("."))
OPEN_INTEREST = sql.Identifier(*tables.OPEN_INTEREST.name.split("."))
FLOW_DAILY = sql.Identifier(*tables.OPTIONS_FLOW_DAILY.name.split("."))
BARS_DAILY = sql.Identifier(*tables.BARS_DAILY.name.split("."))

# A stored chain row the chain contract accepts: the OCC symbol agrees with root, underlying, expiration, type
# and strike, the contract is not expired, and the quote flags match the quote (contracts/options.py in SQL).
_VALID_CHAIN_ROW = sql.SQL(
    "symbol ~ '^[A-Z]{1,5}\\d?\\d{6}[CP]\\d{8}$' AND strike > 0 AND expiration >= snapshot_date"
    " AND left(symbol, length(symbol) - 15) = root"
    " AND (root = underlying OR regexp_replace(root, '\\d$', '') = underlying)"
    " AND to_date(substring(symbol from length(symbol) - 14 for 6), 'YYMMDD') = expiration"
    " AND substring(symbol from length(symbol) - 8 for 1) = CASE type WHEN 'call' THEN 'C' ELSE 'P' END"
    " AND substring(symbol from length(symbol) - 7)::bigint = round(strike * 1000)::bigint"
    " AND crossed = coalesce(bid > ask, false) AND zero_bid = coalesce(bid = 0, false)"
)


def _frame(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """An empty result keeps its columns, so callers need no special case."""
    return frame if not frame.empty else pd.DataFrame(columns=list(columns))


def _count(warehouse: WarehouseResource, query: sql.Composable, params: Sequence[object]) -> int:
    return int(warehouse.scalar(query, params) or 0)


# ----------------------------------------------------------------------------- inputs


def latest_open_interest(
    warehouse: WarehouseResource, underlyings: Sequence[str], since: date, as_of: date
) -> pd.DataFrame:
    """(symbol, open_interest, as_of): each contract's latest open interest dated in [since, as_of]."""
    query = sql.SQL(
        "SELECT DISTINCT ON (symbol) symbol, open_interest, as_of FROM {} "
        "WHERE underlying = ANY(%s) AND as_of BETWEEN %s AND %s ORDER BY symbol, as_of DESC"
    ).format(OPEN_INTEREST)
    frame = warehouse.read_frame(query, (list(underlyings), since, as_of))
    return _frame(frame, ["symbol", "open_interest", "as_of"])


def chain_for_greeks(
    warehouse: WarehouseResource, underlyings: Sequence[str], first: date, last: date, rows: int = 50_000
) -> Iterator[pd.DataFrame]:
    """The stored chain rows our IV/Greeks are computed from, by snapshot then contract, `rows` at a time (a
    session of 500 underlyings is ~300k rows; the Greeks of a row depend on that row alone)."""
    query = sql.SQL(
        "SELECT symbol, snapshot_date, underlying, expiration, strike, type, mark, last, quote_time, trade_time, "
        "alpaca_iv, alpaca_delta, alpaca_gamma, alpaca_theta, alpaca_vega, alpaca_rho FROM {} "
        "WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s ORDER BY snapshot_date, symbol"
    ).format(CHAIN)
    return warehouse.read_frames(query, (list(underlyings), first, last), rows)


def underlying_closes(
    warehouse: WarehouseResource, underlyings: Sequence[str], first: date, last: date
) -> pd.DataFrame:
    """(symbol, session, close) of the underlyings' daily bars: the spot a snapshot is priced against."""
    query = sql.SQL(
        "SELECT symbol, session, close FROM {} WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s"
    ).format(BARS_DAILY)
    return _frame(warehouse.read_frame(query, (list(underlyings), first, last)), ["symbol", "session", "close"])


def chain_with_greeks(
    warehouse: WarehouseResource, underlyings: Sequence[str], first: date, last: date
) -> pd.DataFrame:
    """Chain rows joined with our IV, delta and spot (the flow tables' input); numbers as float64."""
    query = sql.SQL(
        "SELECT c.symbol, c.underlying, c.expiration, c.strike, c.type, c.volume, c.open_interest, "
        "g.iv, g.delta, g.underlying_price, c.snapshot_date FROM {} c LEFT JOIN {} g USING (symbol, snapshot_date) "
        "WHERE c.underlying = ANY(%s) AND c.snapshot_date BETWEEN %s AND %s ORDER BY c.snapshot_date, c.symbol"
    ).format(CHAIN, GREEKS)
    chain = warehouse.read_frame(query, (list(underlyings), first, last))
    for c in ("volume", "open_interest", "iv", "delta", "underlying_price", "strike"):
        if c in chain:
            chain[c] = pd.to_numeric(chain[c], errors="coerce").astype("float64")
    return chain


def previous_snapshot_open_interest(
    warehouse: WarehouseResource, underlyings: Sequence[str], first: date, last: date, lookback_days: int
) -> pd.DataFrame:
    """For each (underlying, snapshot_date) in the window, the open interest of the underlying's previous
    snapshot within `lookback_days` (an older one is a gap in the data, not yesterday)."""
    query = sql.SQL(
        "SELECT d.underlying, d.snapshot_date, p.snapshot_date AS previous_snapshot_date, p.symbol, "
        "p.open_interest FROM (SELECT DISTINCT underlying, snapshot_date FROM {chain} "
        "  WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s) d "
        "CROSS JOIN LATERAL (SELECT max(snapshot_date) AS prev FROM {chain} x "
        "  WHERE x.underlying = d.underlying AND x.snapshot_date < d.snapshot_date "
        "  AND x.snapshot_date >= d.snapshot_date - %s::int) m "
        "JOIN {chain} p ON p.underlying = d.underlying AND p.snapshot_date = m.prev"
    ).format(chain=CHAIN)
    frame = warehouse.read_frame(query, (list(underlyings), first, last, lookback_days))
    return _frame(frame, ["underlying", "snapshot_date", "previous_snapshot_date", "symbol", "open_interest"])


def volume_history(
    warehouse: WarehouseResource, underlyings: Sequence[str], session: date, snapshots: int
) -> pd.DataFrame:
    """(symbol, snapshot_date, volume): for each contract of the underlyings' `session` chain that has a volume,
    its last `snapshots` earlier snapshots with a known volume.

    Why this shape: the unusual-activity z-score needs a contract's recent volumes, not every stored one; each
    contract's history is read through the chain's primary key (symbol, snapshot_date) newest first and stops
    after `snapshots` rows, so the cost follows the session's contracts, not the years stored before it.
    """
    query = sql.SQL(
        "SELECT c.symbol, h.snapshot_date, h.volume FROM {chain} c CROSS JOIN LATERAL ("
        "  SELECT x.snapshot_date, x.volume FROM {chain} x WHERE x.symbol = c.symbol "
        "  AND x.snapshot_date < c.snapshot_date AND x.volume IS NOT NULL "
        "  ORDER BY x.snapshot_date DESC LIMIT %s) h "
        "WHERE c.underlying = ANY(%s) AND c.snapshot_date = %s AND c.volume IS NOT NULL"
    ).format(chain=CHAIN)
    frame = warehouse.read_frame(query, (snapshots, list(underlyings), session))
    return _frame(frame, ["symbol", "snapshot_date", "volume"])


# ----------------------------------------------------------------------------- checks (each must count 0)


def negative_open_interest(warehouse: WarehouseResource, underlyings: Sequence[str], since: date, last: date) -> int:
    """Stored open-interest history figures dated in [since, last] that are negative."""
    query = sql.SQL(
        "SELECT count(*) FROM {} WHERE underlying = ANY(%s) AND as_of BETWEEN %s AND %s AND open_interest < 0"
    ).format(OPEN_INTEREST)
    return _count(warehouse, query, (list(underlyings), since, last))


def negative_chain_open_interest(
    warehouse: WarehouseResource, underlyings: Sequence[str], first: date, last: date
) -> int:
    """Stored chain rows of the window with a negative open interest."""
    query = sql.SQL(
        "SELECT count(*) FROM {} WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s AND open_interest < 0"
    ).format(CHAIN)
    return _count(warehouse, query, (list(underlyings), first, last))


def chain_contract_violations(warehouse: WarehouseResource, underlyings: Sequence[str], first: date, last: date) -> int:
    """Stored chain rows of the window that break the chain contract."""
    query = sql.SQL(
        "SELECT count(*) FROM {} WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s AND NOT ({})"
    ).format(CHAIN, _VALID_CHAIN_ROW)
    return _count(warehouse, query, (list(underlyings), first, last))


def implied_vols_outside(
    warehouse: WarehouseResource, underlyings: Sequence[str], first: date, last: date, bounds: tuple[float, float]
) -> int:
    """Stored IVs of the window outside `bounds` (inclusive)."""
    query = sql.SQL(
        "SELECT count(*) FROM {} WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s "
        "AND iv IS NOT NULL AND NOT (iv BETWEEN %s AND %s)"
    ).format(GREEKS)
    return _count(warehouse, query, (list(underlyings), first, last, *bounds))


def chain_rows_without_greeks(warehouse: WarehouseResource, underlyings: Sequence[str], first: date, last: date) -> int:
    """Stored chain rows of the window with no Greeks row."""
    query = sql.SQL(
        "SELECT count(*) FROM {} c WHERE c.underlying = ANY(%s) AND c.snapshot_date BETWEEN %s AND %s "
        "AND NOT EXISTS (SELECT 1 FROM {} g WHERE g.symbol = c.symbol AND g.snapshot_date = c.snapshot_date)"
    ).format(CHAIN, GREEKS)
    return _count(warehouse, query, (list(underlyings), first, last))


def bad_put_call_ratios(warehouse: WarehouseResource, underlyings: Sequence[str], first: date, last: date) -> int:
    """Stored daily flow rows of the window whose put/call ratios are infinite, NaN or negative."""
    query = sql.SQL(
        "SELECT count(*) FROM {} WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s AND ("
        " put_call_volume_ratio IN ('Infinity'::float8, '-Infinity'::float8, 'NaN'::float8)"
        " OR put_call_oi_ratio IN ('Infinity'::float8, '-Infinity'::float8, 'NaN'::float8)"
        " OR put_call_volume_ratio < 0 OR put_call_oi_ratio < 0)"
    ).format(FLOW_DAILY)
    return _count(warehouse, query, (list(underlyings), first, last))


def chain_days_without_flow(warehouse: WarehouseResource, underlyings: Sequence[str], first: date, last: date) -> int:
    """(underlying, snapshot_date) pairs of the window with a chain but no daily flow row."""
    query = sql.SQL(
        "SELECT count(*) FROM (SELECT DISTINCT underlying, snapshot_date FROM {} "
        "WHERE underlying = ANY(%s) AND snapshot_date BETWEEN %s AND %s) c WHERE NOT EXISTS ("
        "SELECT 1 FROM {} f WHERE f.underlying = c.underlying AND f.snapshot_date = c.snapshot_date)"
    ).format(CHAIN, FLOW_DAILY)
    return _count(warehouse, query, (list(underlyings), first, last))
