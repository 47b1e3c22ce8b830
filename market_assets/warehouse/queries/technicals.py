"""Named reads of the technicals assets: their inputs (OBV/A-D anchors, intraday VWAP), their checks, and what
their charts show.

The checks run on what is stored (what SQL users and downstream assets read), not on the frame the
asset wrote, so they also catch a writer or a schema that silently drops or alters rows. Every
function takes the warehouse resource and returns a frame or plain numbers; table and column names
are composed with psycopg's `sql` module from the table registry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import numpy as np
import pandas as pd
from psycopg import sql

from market_assets.domain.sessions import NEW_YORK
from market_assets.warehouse import tables
from market_assets.warehouse.queries.bars import daily_bars
from market_assets.warehouse.resource import WarehouseResource


def _identifier(table: tables.Table) -> sql.Identifier:
    return sql.Identifier(*table.name.split("."))


def obv_ad_anchors(warehouse: WarehouseResource, symbols: Sequence[str], start: date, first: date) -> pd.DataFrame:
    """Latest stored (obv, ad) per symbol in [start, first): where the cumulative series continue.

    One backward primary-key probe per symbol (daily rows are stamped at New York midnight of their session), not a
    read of every row of the lookback (0.4 s per run for 500 symbols).
    """
    frame = warehouse.read_frame(
        "SELECT u.symbol, a.ts, a.obv, a.ad FROM unnest(%(s)s::text[]) AS u(symbol) CROSS JOIN LATERAL ("
        "  SELECT i.ts, i.obv, i.ad FROM market.indicators_daily i WHERE i.symbol = u.symbol"
        "  AND i.ts >= (%(start)s::timestamp AT TIME ZONE %(tz)s) AND i.ts < (%(first)s::timestamp AT TIME ZONE %(tz)s)"
        "  AND i.obv IS NOT NULL AND i.ad IS NOT NULL ORDER BY i.ts DESC LIMIT 1) AS a ORDER BY u.symbol",
        {"s": list(symbols), "start": start, "first": first, "tz": NEW_YORK},
    )
    if frame.empty:
        return pd.DataFrame(columns=["symbol", "ts", "obv", "ad"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def intraday_vwap(warehouse: WarehouseResource, symbols: Sequence[str], first: date, last: date) -> pd.DataFrame:
    """Session VWAP from the stored minute bars: sum(vwap x volume) / sum(volume) per symbol/session.

    Aggregated in PostgreSQL rather than in pandas: a month of minute bars for the universe is
    millions of rows that would cross the wire only to be summed. A minute without a vwap counts
    at its typical price, as `analytics.technicals.volume.daily_vwap` does (a test checks they agree).
    """
    frame = warehouse.read_frame(
        "SELECT symbol, session, "
        "sum(coalesce(vwap, (high + low + close) / 3.0) * volume) / nullif(sum(volume), 0) AS vwap_intraday, "
        "count(*)::int AS minute_bars FROM market.bars_minute "
        "WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s GROUP BY symbol, session",
        (list(symbols), first, last),
    )
    if frame.empty:
        return pd.DataFrame(columns=["symbol", "session", "vwap_intraday", "minute_bars"])
    frame["vwap_intraday"] = frame["vwap_intraday"].astype("float64")
    return frame


def indicator_audit(
    warehouse: WarehouseResource, universe: Sequence[str], first: date, last: date, warmup: Mapping[str, int]
) -> tuple[dict[str, float | int | None], dict[str, int], dict[str, int]]:
    """What the stored indicator rows of the window say about themselves, in one pass over the window's bars and rows.

    Returns (RSI: out-of-range count with NaN counted as out of range, min, max, defined count; per column of
    `warmup`: rows that are NULL although the symbol had enough history; coverage: the window's daily bars, its
    indicator rows, bars without a row and rows without a bar, keyed (symbol, ts)).

    `warmup` maps a column to the bars of history (including the row's own) after which it must be defined. History
    is counted in stored bars: bars before the window (probed through the primary key per symbol, counted up to the
    largest warm-up only) plus the row's rank inside it, so a symbol listed recently is not expected to have
    SMA-200. Why one query: three (RSI, warm-up, coverage with two anti-joins) read the same rows four times,
    1.3-1.5 s of every one-year chunk. `before` is MATERIALIZED: inlined, PostgreSQL put its 500 probes of 253 keys
    inside a nested loop over the window's bars (250,000 probes, 25 s for one session at ten years).
    """
    tests = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE j.row_ts IS NOT NULL AND j.n >= {need} AND j.{col} IS NULL) AS {col}").format(
            need=sql.Literal(int(need)), col=sql.Identifier(name)
        )
        for name, need in warmup.items()
    )
    columns = sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(name)) for name in {"rsi": 0, **warmup})
    query = sql.SQL(
        "WITH before AS MATERIALIZED (SELECT u.symbol, (SELECT count(*) FROM (SELECT 1 FROM market.bars_daily b "
        "                WHERE b.symbol = u.symbol AND b.ts < (%(first)s::timestamp AT TIME ZONE %(tz)s) "
        "                ORDER BY b.ts DESC LIMIT %(cap)s) x) AS n0 FROM unnest(%(u)s::text[]) AS u(symbol)), "
        "inside AS (SELECT symbol, ts, row_number() OVER (PARTITION BY symbol ORDER BY ts) AS k FROM market.bars_daily "
        "           WHERE symbol = ANY(%(u)s) AND session BETWEEN %(first)s AND %(last)s), "
        "j AS (SELECT i.ts AS bar_ts, coalesce(before.n0, 0) + i.k AS n, r.ts AS row_ts, {columns} "
        "      FROM (inside i LEFT JOIN before USING (symbol)) "
        "      FULL JOIN (SELECT * FROM market.indicators_daily WHERE symbol = ANY(%(u)s) "
        "                 AND session BETWEEN %(first)s AND %(last)s) r ON r.symbol = i.symbol AND r.ts = i.ts) "
        "SELECT count(j.bar_ts) AS bars, count(j.row_ts) AS rows, "
        "count(*) FILTER (WHERE j.row_ts IS NULL) AS missing, count(*) FILTER (WHERE j.bar_ts IS NULL) AS orphans, "
        "count(*) FILTER (WHERE j.rsi < 0 OR j.rsi > 100 OR j.rsi = 'NaN'::float8) AS rsi_bad, "
        "min(j.rsi) AS rsi_min, max(j.rsi) AS rsi_max, count(j.rsi) AS rsi_defined, {tests} FROM j"
    ).format(columns=columns, tests=tests)
    cap = max(warmup.values(), default=0)
    row = warehouse.read_frame(
        query, {"u": list(universe), "first": first, "last": last, "tz": NEW_YORK, "cap": cap}
    ).iloc[0]
    rsi = {
        "bad": int(row["rsi_bad"]),
        "defined": int(row["rsi_defined"]),
        "min": None if pd.isna(row["rsi_min"]) else float(row["rsi_min"]),
        "max": None if pd.isna(row["rsi_max"]) else float(row["rsi_max"]),
    }
    coverage = {name: int(row[name]) for name in ("bars", "rows", "missing", "orphans")}
    return rsi, {name: int(row[name]) for name in warmup}, coverage


def pattern_orphans(warehouse: WarehouseResource, universe: Sequence[str], first: date, last: date) -> int:
    """Stored patterns of the window not dated on a stored daily bar of the same symbol."""
    return int(
        warehouse.scalar(
            "SELECT count(*) FROM market.patterns p WHERE p.symbol = ANY(%s) AND p.session BETWEEN %s AND %s "
            "AND NOT EXISTS (SELECT 1 FROM market.bars_daily b WHERE b.symbol = p.symbol AND b.ts = p.ts "
            "AND b.session = p.session)",
            (list(universe), first, last),
        )
    )


def level_violations(warehouse: WarehouseResource, universe: Sequence[str], first: date, last: date) -> int:
    """Stored (symbol, session) tuples of the window with a level on the wrong side of the as-of close or a touch
    after the as-of bar.

    The close is read from the bars the levels were computed from (MARKET_PRICE_ADJUSTMENT): before a split,
    adjusted levels and the raw close are on different scales.
    """
    # The adjusted close is the raw close times the factor of the first ex-date after the session, as in the views,
    # but joined as (previous ex-date, ex-date] intervals by hash rather than probed once per bar (125k probes, 1 s
    # per one-year chunk); both sides are cut to the window by their session BRIN. The levels are matched to the
    # window's bars, so no symbol filter on them (a filter on all 500 symbols made PostgreSQL walk the packed
    # table's primary key over the whole history: O(history)).
    # Sides and the as-of bar are tested on each tuple whole, with array comparisons; only the touch pairs (first <=
    # last, element by element) are unnested: 2.3 s for a one-year chunk at ten years, against 3.0-3.3 s unnesting
    # every column. The levels are stored in ascending order (migration 063), so consistent flags are a block of
    # supports then a block of resistances: from the first resistance `r` on, every flag is true, the close is >=
    # every level before `r` and < every level from `r` on. A tuple whose flags are not so grouped fails too.
    price = {"all": "f.cum_split_factor * f.cum_dividend_factor", "split": "f.cum_split_factor", "raw": "1.0"}[
        warehouse.price_adjustment
    ]
    query = sql.SQL(
        "WITH f AS MATERIALIZED (SELECT f.symbol, coalesce(lag(f.ex_date) OVER w, '-infinity'::date) AS after,"
        "                               f.ex_date AS before, {price} AS price"
        "                        FROM market.adjustment_factors f WHERE f.symbol = ANY(%(u)s) AND f.ex_date > %(f)s"
        "                        WINDOW w AS (PARTITION BY f.symbol ORDER BY f.ex_date)),"
        " b AS MATERIALIZED (SELECT b.symbol, b.session, b.ts, b.close * coalesce(f.price, 1.0) AS close"
        "                    FROM market.bars_daily b LEFT JOIN f ON f.symbol = b.symbol"
        "                         AND b.session >= f.after AND b.session < f.before"
        "                    WHERE b.symbol = ANY(%(u)s) AND b.session BETWEEN %(f)s AND %(l)s) "
        "SELECT count(*) FROM market.support_resistance_packed p "
        "JOIN b ON b.symbol = p.symbol AND b.session = p.as_of "
        "CROSS JOIN LATERAL (SELECT coalesce(array_position(p.resistance, true), cardinality(p.level) + 1) AS r) k "
        "WHERE p.session BETWEEN %(f)s AND %(l)s"
        " AND NOT (true = ALL(p.resistance[k.r:]) AND b.close >= ALL(p.level[:k.r - 1])"
        "          AND b.close < ALL(p.level[k.r:]) AND b.ts >= ALL(p.last_touch)"
        "          AND NOT EXISTS (SELECT FROM unnest(p.first_touch, p.last_touch) AS t(f, l) WHERE t.f > t.l))"
    ).format(price=sql.SQL(price))
    return int(warehouse.scalar(query, {"u": list(universe), "f": first, "l": last}))


def pivot_faults(warehouse: WarehouseResource, universe: Sequence[str], first: date, last: date) -> dict[str, int]:
    """Stored pivots of the window out of order (1e-9 relative slack); daily bars with a previous bar but no pivots.

    "Has a previous bar" is "is not the symbol's first bar" (one probe per symbol, not one per bar: the probe per
    bar cost most of 1.5 s per one-year chunk).
    """
    row = warehouse.read_frame(
        "SELECT "
        "(SELECT count(*) FROM market.pivot_points WHERE symbol = ANY(%(u)s) AND session BETWEEN %(f)s AND %(l)s"
        " AND NOT ("
        " s3 <= s2 + 1e-9 * abs(pivot) AND s2 <= s1 + 1e-9 * abs(pivot) AND s1 <= pivot + 1e-9 * abs(pivot)"
        " AND pivot <= r1 + 1e-9 * abs(pivot) AND r1 <= r2 + 1e-9 * abs(pivot) AND r2 <= r3 + 1e-9 * abs(pivot)"
        ")) AS unordered, "
        "(SELECT count(*) FROM market.bars_daily b"
        " JOIN (SELECT u.symbol, (SELECT min(p.ts) FROM market.bars_daily p WHERE p.symbol = u.symbol) AS first_ts"
        "       FROM unnest(%(u)s::text[]) AS u(symbol)) o ON o.symbol = b.symbol AND b.ts > o.first_ts"
        " WHERE b.session BETWEEN %(f)s AND %(l)s"
        " AND NOT EXISTS (SELECT 1 FROM market.pivot_points v WHERE v.symbol = b.symbol AND v.ts = b.ts)) AS missing",
        {"u": list(universe), "f": first, "l": last},
    ).iloc[0]
    return {"unordered": int(row["unordered"]), "missing": int(row["missing"])}


# --- what the charts show (defs/charts.py): small reads of the stored tables ------------------------------------

CHART_COLUMNS = ("rsi", "macd", "macd_signal", "macd_hist", "sma_20", "sma_50", "sma_200", "bb_upper", "bb_lower",
                 "volume_sma_20")  # fmt: skip


def biggest_movers(warehouse: WarehouseResource, universe: Sequence[str], day: date, n: int) -> list[str]:
    """The `n` symbols of `universe` with the largest |1-day return| on `day` (ties by symbol)."""
    frame = warehouse.read_frame(
        "SELECT symbol FROM market.indicators_daily WHERE symbol = ANY(%s) AND session = %s AND return_1d IS NOT NULL"
        " ORDER BY abs(return_1d) DESC, symbol LIMIT %s",
        (list(universe), day, n),
    )
    return frame["symbol"].tolist() if not frame.empty else []


def busiest_pattern_symbols(
    warehouse: WarehouseResource, universe: Sequence[str], first: date, last: date, n: int
) -> list[str]:
    """The `n` symbols of `universe` with the most stored patterns dated in [first, last] (ties by symbol)."""
    frame = warehouse.read_frame(
        "SELECT symbol FROM market.patterns WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s"
        " GROUP BY symbol ORDER BY count(*) DESC, symbol LIMIT %s",
        (list(universe), first, last, n),
    )
    return frame["symbol"].tolist() if not frame.empty else []


def pattern_markers(warehouse: WarehouseResource, symbols: Sequence[str], start: date, last: date) -> pd.DataFrame:
    """(symbol, session, pattern, direction) of the stored patterns of `symbols` dated in [start, last]."""
    frame = warehouse.read_frame(
        "SELECT symbol, session, pattern, direction FROM market.patterns"
        " WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s ORDER BY symbol, session",
        (list(symbols), start, last),
    )
    return frame if not frame.empty else pd.DataFrame(columns=["symbol", "session", "pattern", "direction"])


def levels_as_of(warehouse: WarehouseResource, universe: Sequence[str], day: date, n: int) -> pd.DataFrame:
    """The stored levels as of `day` of the first `n` symbols (alphabetically) of `universe` that have any."""
    frame = warehouse.read_frame(
        "WITH firsts AS (SELECT symbol FROM market.support_resistance_packed"
        "                WHERE symbol = ANY(%(u)s) AND session = %(d)s ORDER BY symbol LIMIT %(n)s) "
        "SELECT s.symbol, s.as_of, s.kind, s.level, s.touches, s.strength FROM market.support_resistance s"
        " JOIN firsts USING (symbol) WHERE s.session = %(d)s ORDER BY s.symbol, s.level",
        {"u": list(universe), "d": day, "n": n},
    )
    columns = ["symbol", "as_of", "kind", "level", "touches", "strength"]
    return frame if not frame.empty else pd.DataFrame(columns=columns)


def chart_frame(warehouse: WarehouseResource, symbols: Sequence[str], start: date, last: date) -> pd.DataFrame:
    """Daily bars of `symbols` in [start, last] (MARKET_PRICE_ADJUSTMENT) joined with their stored indicators.

    The stored rows, not a recomputation: the picture shows what SQL users read.
    """
    bars = daily_bars(warehouse, symbols, start, last)[["symbol", "ts", "session", "close", "volume"]]
    indicators = warehouse.read_frame(
        sql.SQL(
            "SELECT symbol, ts, {} FROM market.indicators_daily WHERE symbol = ANY(%s) AND session BETWEEN %s AND %s"
        ).format(sql.SQL(", ").join(map(sql.Identifier, CHART_COLUMNS))),
        (list(symbols), start, last),
    )
    if indicators.empty:
        return bars.assign(**{c: np.nan for c in CHART_COLUMNS})
    indicators["ts"] = pd.to_datetime(indicators["ts"], utc=True)
    bars = bars.assign(ts=pd.to_datetime(bars["ts"], utc=True))
    return bars.merge(indicators, on=["symbol", "ts"], how="left")
