"""The values stored in the Redis cache: pydantic models, serialised as compact JSON.

Why pydantic: the cache is read by other applications, so its values are a contract. The
writer validates every value it stores and the reader validates every value it returns, so a
value written by an older (or newer, incompatible) version fails loudly at the boundary instead
of deep inside a consumer; the key prefix carries the schema version (``md:v1``) and is bumped
when a model changes incompatibly. Floats that are NaN in the warehouse (e.g. an indicator still
warming up) are stored as ``null``: JSON has no NaN and "not available" is what it means.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

SCHEMA_VERSION = 1


def _finite_or_none(value: Any) -> Any:
    """NaN/inf (pandas' missing value) -> None; everything else unchanged for pydantic to check."""
    if value is None:
        return None
    try:
        return None if isinstance(value, float) and not math.isfinite(value) else value
    except TypeError:
        return value


class _CacheModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="null")

    @field_validator("*", mode="before")
    @classmethod
    def _nan_is_missing(cls, value: Any) -> Any:
        return _finite_or_none(value)

    def to_json(self) -> bytes:
        """Compact JSON bytes, as stored in Redis."""
        return self.__pydantic_serializer__.to_json(self)


class TechnicalIndicators(_CacheModel):
    """An indicator snapshot at one bar: daily (market.indicators_daily) or intraday (minute closes)."""

    timeframe: Literal["1Day", "1Min"]
    ts: datetime
    rsi: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_hist: float | None = None
    sma_20: float | None = None
    sma_50: float | None = None
    sma_200: float | None = None


class MarketData(_CacheModel):
    """Latest market data of one symbol: the last price with the session's OHLCV so far.

    ``source`` says where the price comes from: ``1Min`` while a session is in progress (the last
    complete minute bar), ``1Day`` once the session's daily bar is in the warehouse. ``ts`` is
    the start of that bar (Alpaca's convention).
    """

    symbol: str
    session: date
    ts: datetime
    source: Literal["1Day", "1Min"]
    price: float
    open: float
    high: float
    low: float
    volume: int
    vwap: float | None = None
    feed: str | None = None  # the stored bar's feed: 'simulator' for simulated data, so no consumer mistakes it
    daily: TechnicalIndicators | None = None
    intraday: TechnicalIndicators | None = None
    cached_at: datetime


class OptionQuote(_CacheModel):
    """One contract of a chain with our own IV and Greeks (computed from the quote, not Alpaca's)."""

    symbol: str
    expiration: date
    strike: float
    type: Literal["call", "put"]
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    volume: int | None = None
    open_interest: int | None = None
    iv: float | None = None
    delta: float | None = None
    gamma: float | None = None
    theta: float | None = None
    vega: float | None = None
    rho: float | None = None


class OptionsChain(_CacheModel):
    """The latest option chain of an underlying. ``generation`` identifies one write of it, so a
    reader (or a test) can tell that every quote it got belongs to the same snapshot."""

    underlying: str
    snapshot_date: date
    underlying_price: float | None = None
    generation: str
    quotes: list[OptionQuote]
    cached_at: datetime


class ChainMeta(_CacheModel):
    """The ``meta`` field of a stored chain hash: everything but the quotes."""

    underlying: str
    snapshot_date: date
    underlying_price: float | None = None
    generation: str
    expirations: list[date]
    contracts: int
    cached_at: datetime


class FlowSummary(_CacheModel):
    """Options flow of an underlying on its latest snapshot day (market.options_flow_daily).

    The named fields are the ones every consumer needs; ``metrics`` carries the table's other
    numeric columns under their own names, so a column added to the warehouse reaches readers
    without a schema bump.
    """

    underlying: str
    snapshot_date: date
    call_volume: int | None = None  # counts are integers (a float 1234.0 read as a count raised questions)
    put_volume: int | None = None
    call_oi: int | None = None
    put_oi: int | None = None
    put_call_volume_ratio: float | None = None
    put_call_oi_ratio: float | None = None
    metrics: dict[str, float | None] = {}
    cached_at: datetime

    @field_validator("call_volume", "put_volume", "call_oi", "put_oi", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        if isinstance(value, float):
            return None if not math.isfinite(value) else round(value)
        return value

    @field_validator("metrics", mode="before")
    @classmethod
    def _clean_metrics(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): _finite_or_none(v) for k, v in value.items()}
        return value
