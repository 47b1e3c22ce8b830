"""pandera contracts for option chains and option contracts, and the split into kept and quarantined rows.

Why these rules: an option row is only usable if its OCC symbol is well formed, names a real
expiry date and a positive strike, and agrees with the contract's own fields (a symbol filed
under the wrong underlying or with a different strike silently corrupts every aggregate).
A contract already expired on the snapshot date cannot be quoted. Those rows are quarantined
with readable reasons, like bars.

Quotes are different: a crossed quote (bid > ask) or a zero bid is real market data (stale or
one-sided markets), so it is KEPT and FLAGGED (``crossed``, ``zero_bid``), and the mid (``mark``)
is left NULL, so nothing downstream silently prices off it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import Check, Column

from market_assets.contracts.bars import FINITE, FITS_INT8, Split, parse_wire_ts, split_valid
from market_assets.domain.occ import parse_occ_series, validate_occ

_READABLE = {
    "not_nullable": "is missing (null/NaN)",
    "greater_than(0)": "must be > 0",
    "greater_than_or_equal_to(0)": "must be >= 0",
    "field_uniqueness": "duplicate contract symbol with conflicting values",
    "multiple_fields_uniqueness": "duplicate contract symbol with conflicting values",
    "dtype": "has the wrong type",
    "finite": "is not a finite number (inf/NaN)",
    "fits_int8": "does not fit a 64-bit integer",
}

# readable reasons for the OCC validator's codes
_OCC_REASON = {
    "bad_format": "symbol is not an OCC option symbol (ROOT YYMMDD C/P STRIKEx1000, e.g. AAPL240119C00190000)",
    "bad_expiry_date": "symbol's YYMMDD is not a real calendar date",
    "non_positive_strike": "symbol's strike must be > 0",
}

_GREEKS = ("iv", "delta", "gamma", "theta", "vega", "rho")
CHAIN_VALUE_COLUMNS = (
    "bid",
    "ask",
    "bid_size",
    "ask_size",
    "last",
    "last_size",
    "volume",
    "quote_time",
    "trade_time",
    "alpaca_iv",
    "alpaca_delta",
    "alpaca_gamma",
    "alpaca_theta",
    "alpaca_vega",
    "alpaca_rho",
)


def _occ_check(code: str) -> Check:
    """A frame-level check that fails exactly the rows the OCC validator gives `code`."""
    return Check(
        lambda df: df["occ_reason"] != code,  # type: ignore[misc]
        name=f"occ_{code}",
        error=_OCC_REASON[code],
    )


def _not_expired(df: pd.DataFrame) -> pd.Series:
    return ~(df["expiration"] < df["snapshot_date"]).fillna(False).astype(bool)


_NOT_EXPIRED = Check(_not_expired, name="not_expired", error="contract expired before the snapshot date")
_ROOT_MATCHES = Check(
    lambda df: df["root_reason"].isna(),
    name="root_matches",
    error="symbol's root does not match the underlying",
)


def chain_schema() -> pa.DataFrameSchema:
    """The chain contract on typed rows (see `coerce_raw_chain`)."""
    return pa.DataFrameSchema(
        {
            "symbol": Column(str, nullable=False),
            "underlying": Column(str, nullable=False),
            "strike": Column(float, FINITE, nullable=True),
            "bid": Column(float, [FINITE, Check.ge(0)], nullable=True),
            "ask": Column(float, [FINITE, Check.ge(0)], nullable=True),
            "bid_size": Column(float, [FINITE, Check.ge(0), FITS_INT8], nullable=True),
            "ask_size": Column(float, [FINITE, Check.ge(0), FITS_INT8], nullable=True),
            "last": Column(float, [FINITE, Check.gt(0)], nullable=True),
            "last_size": Column(float, [FINITE, Check.ge(0), FITS_INT8], nullable=True),
            "volume": Column(float, [FINITE, Check.ge(0), FITS_INT8], nullable=True),
            "open_interest": Column(float, [FINITE, Check.ge(0), FITS_INT8], nullable=True),
            # Alpaca's own IV and Greeks are stored beside ours: an infinite one is garbage, not a value
            **{f"alpaca_{g}": Column(float, FINITE, nullable=True) for g in _GREEKS},
        },
        checks=[
            *(_occ_check(code) for code in _OCC_REASON),
            _ROOT_MATCHES,
            _NOT_EXPIRED,
        ],
        unique=["symbol"],
        report_duplicates="all",
        strict=False,
        coerce=False,
        name="option_chain",
    )


def _mismatch(df: pd.DataFrame, column: str) -> pd.Series:
    return df[f"{column}_mismatch"].fillna(False).astype(bool)


def contract_schema() -> pa.DataFrameSchema:
    """The contract reference-data rule set on typed rows (see `coerce_raw_contracts`)."""
    return pa.DataFrameSchema(
        {
            "symbol": Column(str, nullable=False),
            "underlying": Column(str, nullable=False),
            "expiration": Column("datetime64[ns]", nullable=False),
            "strike": Column(float, [FINITE, Check.gt(0)], nullable=False),
            "type": Column(str, Check.isin(["call", "put"]), nullable=False),
            "style": Column(str, Check.isin(["american", "european"]), nullable=True),
            "size": Column(float, [FINITE, Check.gt(0), FITS_INT8], nullable=True),
            "open_interest": Column(float, [FINITE, Check.ge(0), FITS_INT8], nullable=True),
            "close_price": Column(float, [FINITE, Check.ge(0)], nullable=True),
        },
        checks=[
            *(_occ_check(code) for code in _OCC_REASON),
            _ROOT_MATCHES,
            Check(
                lambda df: ~_mismatch(df, "expiration"),
                name="expiration_matches",
                error="symbol's expiry disagrees with expiration_date",
            ),
            Check(
                lambda df: ~_mismatch(df, "type"), name="type_matches", error="symbol's call/put disagrees with type"
            ),
            Check(
                lambda df: ~_mismatch(df, "strike"),
                name="strike_matches",
                error="symbol's strike disagrees with strike_price",
            ),
            Check(lambda df: ~_mismatch(df, "status"), name="status_text", error="status is not text (e.g. a list)"),
            _NOT_EXPIRED,
        ],
        unique=["symbol"],
        report_duplicates="all",
        strict=False,
        coerce=False,
        name="option_contracts",
    )


def _num(raw: pd.DataFrame, column: str) -> pd.Series:
    values = raw[column] if column in raw else pd.Series(np.nan, index=raw.index)
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _ts(raw: pd.DataFrame, column: str) -> pd.Series:
    return parse_wire_ts(raw.get(column), raw.index)


def _date(raw: pd.DataFrame, column: str) -> pd.Series:
    """YYYY-MM-DD text -> datetime64[ns]; anything else (Feb 30, garbage) -> NaT for the schema to report."""
    values = raw[column]
    text = values.where(values.map(lambda v: isinstance(v, str)), None)
    parsed = pd.to_datetime(text, errors="coerce", format="%Y-%m-%d")
    return parsed.where((parsed >= pd.Timestamp("1970-01-01")) & (parsed < pd.Timestamp("2262-01-01"))).astype(
        "datetime64[ns]"
    )


def _symbol_fields(out: pd.DataFrame, symbols: pd.Series) -> None:
    parsed = parse_occ_series(symbols.fillna(""))
    out["root"] = parsed["root"].astype(object).where(parsed["root"].notna(), None)
    out["occ_expiration"] = pd.to_datetime(parsed["expiration"], errors="coerce").astype("datetime64[ns]")
    out["occ_type"] = parsed["type"].astype(object)
    out["occ_strike"] = parsed["strike"].astype("float64")
    reason = validate_occ(symbols.fillna(""))
    out["occ_reason"] = reason


def coerce_raw_chain(raw: pd.DataFrame, snapshot_date: object) -> pd.DataFrame:
    """Wire values -> typed chain columns without dropping anything (bad values become NaN/NaT).

    Expiration, type and strike come from the OCC symbol: a snapshot carries no other copy.
    """
    out = pd.DataFrame(index=raw.index)
    out["symbol"] = raw["symbol"].astype("string").astype(object)
    out["underlying"] = raw["underlying"].astype("string").astype(object)
    _symbol_fields(out, out["symbol"])
    out["expiration"] = out.pop("occ_expiration")
    out["type"] = out.pop("occ_type")
    out["strike"] = out.pop("occ_strike")
    root_ok = validate_occ(out["symbol"].fillna(""), underlying=out["underlying"])
    out["root_reason"] = root_ok.where(out["occ_reason"].isna() & root_ok.notna(), None)
    out["snapshot_date"] = pd.Series(pd.Timestamp(str(snapshot_date)), index=out.index).astype("datetime64[ns]")
    for name in ("bid", "ask", "bid_size", "ask_size", "last", "last_size", "volume"):
        out[name] = _num(raw, name)
    out["open_interest"] = _num(raw, "open_interest") if "open_interest" in raw else np.nan
    out["quote_time"] = _ts(raw, "quote_t")
    out["trade_time"] = _ts(raw, "trade_t")
    for g in ("iv", "delta", "gamma", "theta", "vega", "rho"):
        out[f"alpaca_{g}"] = _num(raw, g)
    for ex in ("bid_exchange", "ask_exchange"):
        col = raw[ex] if ex in raw else pd.Series(None, index=raw.index, dtype=object)
        out[ex] = col.where(col.notna() & (col.astype("string") != ""), None).astype(object)
    return out


def coerce_raw_contracts(raw: pd.DataFrame, snapshot_date: object) -> pd.DataFrame:
    """Wire contract records -> typed reference columns (strings to numbers/dates, bad -> NaN/NaT)."""
    out = pd.DataFrame(index=raw.index)
    out["symbol"] = raw["symbol"].astype("string").astype(object)
    out["underlying"] = raw["underlying_symbol"].astype("string").astype(object)
    root_field = raw["root_symbol"].astype("string").astype(object)
    _symbol_fields(out, out["symbol"])
    out["expiration"] = _date(raw, "expiration_date")
    out["type"] = raw["type"].astype("string").str.lower().astype(object)
    out["strike"] = _num(raw, "strike_price")
    out["style"] = raw["style"].astype("string").str.lower().astype(object)
    out["size"] = _num(raw, "size")
    # a non-text status (a hostile list or dict) is unhashable: the duplicate check would crash on it, so it is
    # blanked here and the row rejected by the schema, its payload quarantined as delivered
    status = raw["status"].astype(object)
    odd = ~status.map(lambda v: v is None or isinstance(v, str) or (isinstance(v, float) and np.isnan(v)))
    out["status"] = status.where(~odd, None)
    out["status_mismatch"] = odd.astype(bool)
    out["tradable"] = raw["tradable"].map(lambda v: bool(v) if isinstance(v, bool) else None).astype(object)
    out["open_interest"] = _num(raw, "open_interest")
    out["open_interest_date"] = _date(raw, "open_interest_date")
    out["close_price"] = _num(raw, "close_price")
    out["close_price_date"] = _date(raw, "close_price_date")
    out["id"] = raw["id"].astype(object)
    out["name"] = raw["name"].astype(object)
    out["snapshot_date"] = pd.Series(pd.Timestamp(str(snapshot_date)), index=out.index).astype("datetime64[ns]")
    valid_format = out["occ_reason"].isna()
    # the symbol's root must agree with the underlying AND with the root the record states
    root_vs_underlying = validate_occ(out["symbol"].fillna(""), underlying=out["underlying"].fillna(""))
    root_vs_root = validate_occ(out["symbol"].fillna(""), underlying=root_field.fillna(""))
    out["root_reason"] = pd.Series(None, index=out.index, dtype=object).where(
        ~(valid_format & (root_vs_underlying.notna() | root_vs_root.notna())), "mismatch_root"
    )
    out["expiration_mismatch"] = valid_format & out["expiration"].notna() & (out["expiration"] != out["occ_expiration"])
    out["type_mismatch"] = valid_format & out["type"].notna() & (out["type"] != out["occ_type"])
    out["strike_mismatch"] = (
        valid_format & out["strike"].notna() & ((out["strike"] * 1000).round() != (out["occ_strike"] * 1000).round())
    )
    return out.drop(columns=["occ_expiration", "occ_type", "occ_strike"])


def flag_quotes(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``crossed``, ``zero_bid`` and ``mark`` (mid of a two-sided, uncrossed quote; else NULL)."""
    out = frame.copy()
    bid, ask = out["bid"], out["ask"]
    out["crossed"] = (bid > ask).fillna(False).astype(bool)
    out["zero_bid"] = (bid == 0).fillna(False).astype(bool)
    two_sided = (bid > 0) & (ask > 0) & ~out["crossed"]
    out["mark"] = ((bid + ask) / 2.0).where(two_sided)
    return out


def split_option_chain(frame: pd.DataFrame) -> Split:
    """Validate typed chain rows; kept rows get the quote flags and the mark."""
    split = split_valid(frame, chain_schema(), ["symbol", *(c for c in CHAIN_VALUE_COLUMNS if c in frame)], _READABLE)
    return Split(valid=flag_quotes(split.valid), rejected=split.rejected)


def split_option_contracts(frame: pd.DataFrame) -> Split:
    """Validate typed contract reference rows."""
    values = ["expiration", "strike", "type", "style", "size", "status", "open_interest", "close_price"]
    return split_valid(frame, contract_schema(), ["symbol", *values], _READABLE)
