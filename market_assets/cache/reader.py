"""The read API of the market-data cache, and the warehouse queries that define what it holds.

Other applications read through ``CacheReader`` (or the module-level ``get_market_data`` /
``get_options_chain`` / ``get_flow_summary`` built from the environment): a hit returns the
validated model straight from Redis; a miss (key absent or expired, Redis down, or a value that
no longer validates) falls back to the warehouse, returns the same model built from the same
queries the ``market_cache`` asset uses, and writes it back (read-through), so the next read
hits. Hits and misses are counted in-process (``reader.local_stats``) and in Redis with INCR on
``<prefix>:stats:<kind>:hits|misses`` so operators can see the hit rate across every reader.

Why the loaders live here: "the cache holds the warehouse's latest rows" is one definition,
used by the warming asset, the intraday refresh and the miss path alike, so the three can never
disagree on what a value means.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import redis
from pydantic import ValidationError

from market_assets.cache.models import FlowSummary, MarketData, OptionQuote, OptionsChain, TechnicalIndicators
from market_assets.cache.resource import CacheResource
from market_assets.domain.symbols import normalize_symbol
from market_assets.warehouse.resource import WarehouseResource

log = logging.getLogger(__name__)

# indicator field -> accepted column names (first present wins), so the daily table's naming
# (rsi or rsi_14, ...) does not have to match the intraday one for the snapshot to be filled
INDICATOR_COLUMNS: dict[str, tuple[str, ...]] = {
    "rsi": ("rsi", "rsi_14"),
    "macd": ("macd",),
    "macd_signal": ("macd_signal",),
    "macd_hist": ("macd_hist",),
    "sma_20": ("sma_20",),
    "sma_50": ("sma_50",),
    "sma_200": ("sma_200",),
}
FLOW_NAMED = ("call_volume", "put_volume", "call_oi", "put_oi", "put_call_volume_ratio", "put_call_oi_ratio")
_FLOW_NOT_METRICS = {
    "underlying",
    "snapshot_date",
    "previous_snapshot_date",
    "front_expiration",
    "run_id",
    "ingested_at",
}


def _none_if_nan(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and value != value) or value is pd.NA else value


def table_columns(warehouse: WarehouseResource, table: str) -> list[str]:
    """Columns of `table` in order, or [] when it does not exist (yet): loaders then skip that part."""
    schema, name = table.split(".")
    frame = warehouse.read_frame(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position",
        (schema, name),
    )
    return frame["column_name"].tolist() if not frame.empty else []


def _indicator_select(columns: list[str]) -> list[str]:
    picked = []
    for field, names in INDICATOR_COLUMNS.items():
        name = next((n for n in names if n in columns), None)
        picked.append(f"i.{name} AS {field}" if name else f"NULL::float8 AS {field}")
    return picked


def _latest_indicators(
    warehouse: WarehouseResource, table: str, symbols: Sequence[str], timeframe: str
) -> dict[str, tuple[date | None, TechnicalIndicators]]:
    """Each symbol's latest indicator row as (its session if the table has one, snapshot)."""
    columns = table_columns(warehouse, table)
    if not columns or not symbols:
        return {}
    session = ", i.session" if "session" in columns else ", NULL::date AS session"
    frame = warehouse.read_frame(
        f"SELECT u.symbol, i.ts{session}, {', '.join(_indicator_select(columns))} "
        "FROM unnest(%s::text[]) AS u(symbol) CROSS JOIN LATERAL ("
        f"  SELECT * FROM {table} x WHERE x.symbol = u.symbol ORDER BY x.ts DESC LIMIT 1) AS i",
        (list(symbols),),
    )
    out: dict[str, tuple[date | None, TechnicalIndicators]] = {}
    for row in frame.to_dict("records"):
        values = {f: _none_if_nan(row[f]) for f in INDICATOR_COLUMNS}
        snapshot = TechnicalIndicators(timeframe=timeframe, ts=row["ts"], **values)  # type: ignore[arg-type]
        out[row["symbol"]] = (row["session"], snapshot)
    return out


def load_market_data(
    warehouse: WarehouseResource, symbols: Sequence[str], now: datetime | None = None
) -> list[MarketData]:
    """Latest market data per symbol from the warehouse (symbols with no bar at all are left out).

    The price is the session's last complete minute bar while that session has no daily bar yet
    (intraday), otherwise the daily bar (the official session OHLCV). The intraday indicator
    snapshot is attached only when it belongs to the same session as the price.
    """
    symbols = list(dict.fromkeys(symbols))
    if not symbols:
        return []
    cached_at = now or datetime.now(UTC)
    daily = warehouse.read_frame(
        "SELECT u.symbol, b.ts, b.session, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.feed "
        "FROM unnest(%s::text[]) AS u(symbol) CROSS JOIN LATERAL ("
        "  SELECT * FROM market.bars_daily d WHERE d.symbol = u.symbol ORDER BY d.ts DESC LIMIT 1) AS b",
        (symbols,),
    )
    # per-symbol laterals bounded by (symbol, ts) ranges: index scans on the primary key whatever
    # the planner's statistics say (a fresh monthly partition has none until autovacuum analyses it)
    minute = warehouse.read_frame(
        "SELECT u.symbol, l.session, a.ts, a.open, a.high, a.low, a.close, a.volume, a.vwap, l.feed"
        " FROM unnest(%s::text[]) AS u(symbol)"
        " CROSS JOIN LATERAL (SELECT m.ts, m.session, m.feed FROM market.bars_minute m WHERE m.symbol = u.symbol"
        "   ORDER BY m.ts DESC LIMIT 1) AS l"
        " CROSS JOIN LATERAL (SELECT max(b.ts) AS ts, (array_agg(b.open ORDER BY b.ts))[1] AS open,"
        "   max(b.high) AS high, min(b.low) AS low, (array_agg(b.close ORDER BY b.ts DESC))[1] AS close,"
        "   sum(b.volume)::int8 AS volume, sum(b.vwap * b.volume) / nullif(sum(b.volume), 0) AS vwap"
        "   FROM market.bars_minute b WHERE b.symbol = u.symbol AND b.ts > l.ts - interval '1 day'"
        "   AND b.ts <= l.ts AND b.session = l.session) AS a",
        (symbols,),
    )
    daily_ind = _latest_indicators(warehouse, "market.indicators_daily", symbols, "1Day")
    intraday_ind = _latest_indicators(warehouse, "market.indicators_intraday", symbols, "1Min")
    by_daily = {r["symbol"]: r for r in daily.to_dict("records")}
    by_minute = {r["symbol"]: r for r in minute.to_dict("records")}
    out: list[MarketData] = []
    for symbol in symbols:
        d, m = by_daily.get(symbol), by_minute.get(symbol)
        if d is None and m is None:
            continue
        if m is not None and (d is None or m["session"] > d["session"]):
            row, source = m, "1Min"
        else:
            row, source = d, "1Day"
        assert row is not None
        intraday_session, intraday = intraday_ind.get(symbol, (None, None))
        daily_snapshot = daily_ind.get(symbol, (None, None))[1]
        out.append(
            MarketData(
                symbol=symbol,
                session=row["session"],
                ts=row["ts"],
                source=source,  # type: ignore[arg-type]
                price=row["close"],
                open=row["open"],
                high=row["high"],
                low=row["low"],
                volume=int(row["volume"]),
                vwap=_none_if_nan(row["vwap"]),
                feed=row.get("feed"),
                daily=daily_snapshot,
                intraday=intraday if intraday_session == row["session"] else None,
                cached_at=cached_at,
            )
        )
    return out


_QUOTE_FIELDS = [f for f in OptionQuote.model_fields]


def load_chains(
    warehouse: WarehouseResource,
    underlyings: Sequence[str],
    generation: str | None = None,
    now: datetime | None = None,
) -> list[OptionsChain]:
    """Each underlying's latest chain snapshot (market.option_chain) with our IV/Greeks (option_greeks)."""
    if not underlyings or not table_columns(warehouse, "market.option_chain"):
        return []
    has_greeks = bool(table_columns(warehouse, "market.option_greeks"))
    greeks = (
        "g.underlying_price, g.iv, g.delta, g.gamma, g.theta, g.vega, g.rho"
        if has_greeks
        else "NULL::float8 AS underlying_price, "
        + ", ".join(f"NULL::float8 AS {g}" for g in ("iv", "delta", "gamma", "theta", "vega", "rho"))
    )
    join = "LEFT JOIN market.option_greeks g USING (symbol, snapshot_date)" if has_greeks else ""
    frame = warehouse.read_frame(
        "WITH latest AS ("
        "  SELECT u.underlying, l.snapshot_date FROM unnest(%s::text[]) AS u(underlying) CROSS JOIN LATERAL ("
        "    SELECT snapshot_date FROM market.option_chain c WHERE c.underlying = u.underlying"
        "    ORDER BY snapshot_date DESC LIMIT 1) AS l)"
        " SELECT c.underlying, c.snapshot_date, c.symbol, c.expiration, c.strike, c.type, c.bid, c.ask, c.last,"
        f" c.volume, c.open_interest, {greeks}"
        f" FROM latest JOIN market.option_chain c USING (underlying, snapshot_date) {join}"
        " ORDER BY c.underlying, c.expiration, c.strike, c.type",
        (list(dict.fromkeys(underlyings)),),
    )
    if frame.empty:
        return []
    cached_at = now or datetime.now(UTC)
    token = generation or uuid.uuid4().hex[:12]
    chains = []
    for (underlying, snapshot_date), group in frame.groupby(["underlying", "snapshot_date"], sort=True):
        records = group[_QUOTE_FIELDS].astype(object).where(group[_QUOTE_FIELDS].notna(), None).to_dict("records")
        prices = group["underlying_price"].dropna()
        chains.append(
            OptionsChain(
                underlying=str(underlying),
                snapshot_date=snapshot_date,
                underlying_price=float(prices.iloc[0]) if len(prices) else None,
                generation=f"{snapshot_date}:{token}",
                quotes=[OptionQuote.model_validate(r) for r in records],
                cached_at=cached_at,
            )
        )
    return chains


def load_flows(
    warehouse: WarehouseResource, underlyings: Sequence[str], now: datetime | None = None
) -> list[FlowSummary]:
    """Each underlying's latest row of market.options_flow_daily."""
    columns = table_columns(warehouse, "market.options_flow_daily")
    if not columns or not underlyings:
        return []
    frame = warehouse.read_frame(
        "SELECT f.* FROM unnest(%s::text[]) AS u(underlying) CROSS JOIN LATERAL ("
        "  SELECT * FROM market.options_flow_daily x WHERE x.underlying = u.underlying"
        "  ORDER BY x.snapshot_date DESC LIMIT 1) AS f",
        (list(dict.fromkeys(underlyings)),),
    )
    cached_at = now or datetime.now(UTC)
    out = []
    for row in frame.to_dict("records"):
        metrics = {
            k: (None if _none_if_nan(v) is None else float(v))
            for k, v in row.items()
            if k not in _FLOW_NOT_METRICS and k not in FLOW_NAMED and isinstance(v, int | float)
        }
        out.append(
            FlowSummary(
                underlying=row["underlying"],
                snapshot_date=row["snapshot_date"],
                metrics=metrics,
                cached_at=cached_at,
                **{k: _none_if_nan(row.get(k)) for k in FLOW_NAMED},
            )
        )
    return out


class CacheReader:
    """Validated reads from Redis with warehouse fallback, read-through and hit/miss counting."""

    def __init__(
        self, cache: CacheResource, warehouse: WarehouseResource | None = None, *, read_through: bool = True
    ) -> None:
        self.cache = cache
        self.warehouse = warehouse
        self.read_through = read_through
        self.local_stats: Counter[str] = Counter()  # "market:hits", "chain:misses", ...
        self._lock = threading.Lock()

    def _count(self, kind: str, hit: bool) -> None:
        with self._lock:
            self.local_stats[f"{kind}:{'hits' if hit else 'misses'}"] += 1
        try:
            self.cache.count(kind, hit)
        except (redis.RedisError, OSError, RuntimeError) as exc:  # counting must never break a read
            log.debug("cache stats not recorded: %s", exc)

    def _cached(self, kind: str, read: Any) -> Any:
        try:
            return read()
        except (redis.RedisError, OSError, RuntimeError) as exc:
            log.warning("cache unavailable for %s read, using the warehouse: %s", kind, exc)
        except ValidationError as exc:  # written by an incompatible version: treat as absent
            log.warning("cached %s value does not validate, using the warehouse: %s", kind, exc)
        return None

    def get_market_data(self, symbol: str) -> MarketData | None:
        symbol = normalize_symbol(symbol)  # aapl -> AAPL; a non-ticker raises InvalidSymbolsError
        value = self._cached("market", lambda: self.cache.read_market(symbol))
        self._count("market", value is not None)
        if value is not None or self.warehouse is None:
            return value
        loaded = load_market_data(self.warehouse, [symbol])
        if loaded and self.read_through:
            self.cache.write_market(loaded)
        return loaded[0] if loaded else None

    def get_options_chain(self, underlying: str, expirations: Sequence[date] | None = None) -> OptionsChain | None:
        """The latest chain, whole or only `expirations`; always from one consistent stored snapshot."""
        underlying = normalize_symbol(underlying)  # aapl -> AAPL; a non-ticker raises InvalidSymbolsError
        value = self._cached("chain", lambda: self.cache.read_chain(underlying, expirations))
        self._count("chain", value is not None)
        if value is not None or self.warehouse is None:
            return value
        loaded = load_chains(self.warehouse, [underlying])
        if not loaded:
            return None
        if self.read_through:
            self.cache.write_chains(loaded)
        chain = loaded[0]
        if expirations is not None:
            wanted = set(expirations)
            chain = chain.model_copy(update={"quotes": [q for q in chain.quotes if q.expiration in wanted]})
        return chain

    def get_flow_summary(self, underlying: str) -> FlowSummary | None:
        underlying = normalize_symbol(underlying)  # aapl -> AAPL; a non-ticker raises InvalidSymbolsError
        value = self._cached("flow", lambda: self.cache.read_flow(underlying))
        self._count("flow", value is not None)
        if value is not None or self.warehouse is None:
            return value
        loaded = load_flows(self.warehouse, [underlying])
        if loaded and self.read_through:
            self.cache.write_flows(loaded)
        return loaded[0] if loaded else None


_default: CacheReader | None = None
_default_lock = threading.Lock()


def default_reader() -> CacheReader:
    """A process-wide reader on REDIS_URL / DATABASE_URL (embedded servers when unset)."""
    global _default
    with _default_lock:
        if _default is None:
            from market_assets.config import load_settings

            settings = load_settings()
            _default = CacheReader(
                CacheResource(redis_url=settings.redis_url, data_home=str(settings.data_home)),
                WarehouseResource(database_url=settings.database_url, data_home=str(settings.data_home)),
            )
        return _default


def get_market_data(symbol: str) -> MarketData | None:
    return default_reader().get_market_data(symbol)


def get_options_chain(underlying: str, expirations: Sequence[date] | None = None) -> OptionsChain | None:
    return default_reader().get_options_chain(underlying, expirations)


def get_flow_summary(underlying: str) -> FlowSummary | None:
    return default_reader().get_flow_summary(underlying)
