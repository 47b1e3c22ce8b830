"""pandera data contracts at the ingestion boundary, and the split into kept and quarantined rows.

Why lazy validation and a split rather than a raise: one bad bar must not cost the other
thousands of good ones, and must not silently vanish either. Every failing row goes to
`market.quarantine` with the readable reason of every rule it broke.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import Check, Column

from market_assets.domain.sessions import minute_in_session, session_of_daily_ts
from market_assets.domain.symbols import SYMBOL_PATTERN

BAR_VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "trade_count", "vwap")
# JSON parses "1e999" as +inf and "NaN" as nan, and `> 0` is true of +inf: without these rules an infinite price
# passed pandera and the database CHECKs (issue 13, item 4). Counts are stored as int8: a volume at or beyond
# 2**63 would wrap (or abort the cast of the whole window) instead of being rejected as the one bad row it is.
INT8_LIMIT = 2.0**63
FINITE = Check(lambda s: pd.Series(np.isfinite(s.to_numpy(dtype="float64")), index=s.index), name="finite")
FITS_INT8 = Check(lambda s: s.abs() < INT8_LIMIT, name="fits_int8")

_READABLE = {
    "not_nullable": "is missing (null/NaN)",
    "greater_than(0)": "must be > 0",
    "greater_than_or_equal_to(0)": "must be >= 0",
    "multiple_fields_uniqueness": "duplicate (symbol, ts) with conflicting values",
    "dtype": "has the wrong type",
    "finite": "is not a finite number (inf/NaN)",
    "fits_int8": "does not fit a 64-bit integer",
}


def _ohlc_consistent(df: pd.DataFrame) -> pd.Series:
    return (
        (df["low"] <= df["open"])
        & (df["low"] <= df["close"])
        & (df["open"] <= df["high"])
        & (df["close"] <= df["high"])
    )


def bar_schema(timeframe: str) -> pa.DataFrameSchema:
    """The bar contract; `timeframe` decides what "on a trading session" means for `ts`."""
    if timeframe == "1Day":
        on_session = Check(
            lambda ts: session_of_daily_ts(ts).notna(),
            name="on_session",
            error="ts is not midnight New York time of an NYSE session",
        )
    else:
        on_session = Check(minute_in_session, name="on_session", error="ts is outside the NYSE regular session")
    return pa.DataFrameSchema(
        {
            "symbol": Column(str, Check.str_matches(SYMBOL_PATTERN.pattern), nullable=False),
            "ts": Column(pd.DatetimeTZDtype("ns", "UTC"), on_session, nullable=False),
            "open": Column(float, [FINITE, Check.gt(0)]),
            "high": Column(float, [FINITE, Check.gt(0)]),
            "low": Column(float, [FINITE, Check.gt(0)]),
            "close": Column(float, [FINITE, Check.gt(0)]),
            "volume": Column(float, [FINITE, Check.ge(0), FITS_INT8]),
            "trade_count": Column(float, [FINITE, Check.ge(0), FITS_INT8], nullable=True),
            "vwap": Column(float, [FINITE, Check.gt(0)], nullable=True),
        },
        checks=[Check(_ohlc_consistent, name="ohlc", error="OHLC inconsistent: need low <= open, close <= high")],
        unique=["symbol", "ts"],
        report_duplicates="all",
        strict=False,
        coerce=False,
        name=f"bars_{timeframe}",
    )


@dataclass(frozen=True)
class Split:
    valid: pd.DataFrame
    rejected: pd.DataFrame  # the rows, plus a `reason` column


_TS_LOW, _TS_HIGH = pd.Timestamp("1970-01-01", tz="UTC"), pd.Timestamp("2262-01-01", tz="UTC")


def parse_wire_ts(values: pd.Series | None, index: pd.Index) -> pd.Series:
    """RFC 3339 text -> UTC nanosecond timestamps; anything else (numbers, garbage, year 1 or 9999) -> NaT.

    A hostile ``"t": -1`` or ``"0001-01-01"`` once crashed the whole window on the nanosecond cast
    (found by the property test); such a row must fail the schema, alone.
    """
    if values is None:
        return pd.Series(pd.NaT, index=index, dtype="datetime64[ns, UTC]")
    text = values.where(values.map(lambda v: isinstance(v, str)), None)
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    parsed = parsed.where((parsed >= _TS_LOW) & (parsed < _TS_HIGH))
    return parsed.astype("datetime64[ns, UTC]")


def coerce_raw_bars(raw: pd.DataFrame) -> pd.DataFrame:
    """Wire names and text -> typed columns without dropping anything: bad values become NaN/NaT
    so that the schema, not a parser exception, reports them."""
    out = pd.DataFrame(index=raw.index)
    out["symbol"] = raw["symbol"].astype("string").astype(object)
    out["ts"] = parse_wire_ts(raw.get("t"), raw.index)
    for wire, name in (
        ("o", "open"),
        ("h", "high"),
        ("l", "low"),
        ("c", "close"),
        ("v", "volume"),
        ("n", "trade_count"),
        ("vw", "vwap"),
    ):
        column = raw[wire] if wire in raw else pd.Series(np.nan, index=raw.index)
        out[name] = pd.to_numeric(column, errors="coerce").astype("float64")
    return out


def split_valid(
    frame: pd.DataFrame, schema: pa.DataFrameSchema, dedupe_subset: list[str], readable: dict[str, str]
) -> Split:
    """Lazy validation -> the rows that pass, and the rows that fail with every reason, readable.

    Exact duplicates over `dedupe_subset` (a row delivered twice, identical) are collapsed
    first: they are harmless. Duplicates that disagree fail the schema's uniqueness rule and are
    all rejected: there is no way to tell which one is right. Column rules read "<column> <rule>";
    frame-level rules (e.g. OHLC consistency, uniqueness) read as the rule alone.
    """
    frame = frame.loc[~frame.duplicated(subset=dedupe_subset, keep="first")]
    try:
        schema.validate(frame, lazy=True)
        return Split(valid=frame, rejected=frame.iloc[0:0].assign(reason=pd.Series(dtype=str)))
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    cases = cases[cases["index"].notna()]
    frame_checks = {str(check.error) for check in schema.checks} | {check.name for check in schema.checks}
    reasons: dict[object, set[str]] = {}
    for column, check, idx in zip(cases["column"], cases["check"], cases["index"], strict=True):
        check_name = str(check)
        text = readable.get(check_name, check_name)
        frame_level = check_name in frame_checks or "uniqueness" in check_name
        reasons.setdefault(idx, set()).add(text if frame_level else f"{column} {text}")
    bad = frame.index.isin(pd.Index(list(reasons)))
    rejected = frame.loc[bad].copy()
    rejected["reason"] = ["; ".join(sorted(reasons[i])) for i in rejected.index]
    return Split(valid=frame.loc[~bad], rejected=rejected)


def split_bars(frame: pd.DataFrame, timeframe: str) -> Split:
    """Validate typed bars; return the rows that pass and the rows that fail with their reasons."""
    return split_valid(frame, bar_schema(timeframe), ["symbol", "ts", *BAR_VALUE_COLUMNS], _READABLE)
