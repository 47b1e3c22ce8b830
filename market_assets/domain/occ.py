"""OCC option symbols (the compact form Alpaca uses): parse, build and validate.

Format: ``ROOT`` (1-5 letters, plus an optional digit for adjusted contracts such as ``AAPL1``),
expiry ``YYMMDD``, ``C``/``P``, strike x 1000 as 8 digits: ``SPY240119C00470000``. The padded
21-character OSI form (``'SPY   240119C00470000'``) is accepted on input: the padding spaces are
removed before anything else, because some feeds deliver it.

Validation is vectorised over a Series and returns a reason per row (``None`` when valid), so a
whole day's chain is checked in one pass and bad rows can be quarantined with their cause.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

OCC_PATTERN = r"^[A-Z]{1,5}\d?\d{6}[CP]\d{8}$"
_OCC_RE = re.compile(OCC_PATTERN)
#: Largest strike the 8-digit field can carry (99999.999).
MAX_STRIKE = 99_999.999

#: Option roots that differ from their underlying's ticker (weeklies / PM-settled index series).
DEFAULT_ROOT_ALIASES: Mapping[str, str] = {
    "SPXW": "SPX",
    "NDXP": "NDX",
    "RUTW": "RUT",
    "VIXW": "VIX",
    "XSPW": "XSP",
    "DJXW": "DJX",
}

REASONS = ("bad_format", "bad_expiry_date", "non_positive_strike", "mismatch_underlying")


def option_root(underlying: str) -> str:
    """The OCC option root of an equity symbol: share-class dots are dropped (``BRK.B`` -> ``BRKB``).

    OCC roots are letters only (plus an adjustment digit), so a class share's options can never carry the dot;
    without this mapping every BRK.B contract fails the format check and is quarantined.

    >>> option_root("BRK.B"), option_root("aapl")
    ('BRKB', 'AAPL')
    """
    return underlying.strip().upper().replace(".", "")


def _clean(symbol: str) -> str:
    return symbol.replace(" ", "").strip().upper()


def parse_occ(symbol: str) -> tuple[str, dt.date, str, float]:
    """Split an OCC symbol into ``(root, expiration date, 'call'|'put', strike)``.

    Raises ``ValueError`` with the reason code for symbols that do not validate.
    """
    s = _clean(symbol)
    if not _OCC_RE.match(s):
        raise ValueError(f"bad_format: {symbol!r}")
    root, ymd, cp, strike_raw = s[:-15], s[-15:-9], s[-9], s[-8:]
    try:
        expiry = dt.datetime.strptime(ymd, "%y%m%d").date()
    except ValueError as exc:
        raise ValueError(f"bad_expiry_date: {symbol!r}") from exc
    strike = int(strike_raw) / 1000.0
    if strike <= 0:
        raise ValueError(f"non_positive_strike: {symbol!r}")
    return root, expiry, "call" if cp == "C" else "put", strike


def build_occ(root: str, expiration: dt.date | str, option_type: str, strike: float) -> str:
    """Compose the compact OCC symbol; raises ``ValueError`` for anything it cannot encode exactly.

    ``option_type`` is ``'call'``/``'put'`` or ``'C'``/``'P'`` (any case). The strike must be a
    positive multiple of 0.001 below 100000, because that is all the 8-digit field can carry.
    """
    root = root.strip().upper()
    if not re.fullmatch(r"[A-Z]{1,5}\d?", root):
        raise ValueError(f"bad root {root!r}")
    exp = pd.Timestamp(expiration).date()
    t = option_type.strip().lower()
    if t in ("c", "call"):
        cp = "C"
    elif t in ("p", "put"):
        cp = "P"
    else:
        raise ValueError(f"option_type must be call/put, got {option_type!r}")
    milli = round(float(strike) * 1000)
    if not (strike > 0) or milli <= 0 or abs(milli - float(strike) * 1000) > 1e-6 or strike > MAX_STRIKE:
        raise ValueError(f"strike {strike!r} not encodable in an OCC symbol")
    if not 2000 <= exp.year <= 2099:
        raise ValueError(f"expiration {exp} outside the two-digit-year range")
    return f"{root}{exp:%y%m%d}{cp}{milli:08d}"


def _root_matches(root: pd.Series, underlying: pd.Series, aliases: Mapping[str, str]) -> pd.Series:
    """A root matches its underlying directly, via an alias (SPXW->SPX) or minus an adjustment digit; the
    underlying is compared as its OCC root (BRK.B -> BRKB)."""
    u = underlying.astype("string").str.upper().str.strip().str.replace(".", "", regex=False)  # BRK.B -> BRKB
    r = root.astype("string")
    r_base = r.str.replace(r"\d$", "", regex=True)
    r_alias = r.map(lambda v: aliases.get(v, v) if isinstance(v, str) else v).astype("string")
    return ((r == u) | (r_base == u) | (r_alias == u)).fillna(False).astype(bool)


def validate_occ(
    symbols: pd.Series,
    underlying: pd.Series | None = None,
    expiration: pd.Series | None = None,
    option_type: pd.Series | None = None,
    strike: pd.Series | None = None,
    root_aliases: Mapping[str, str] | None = None,
) -> pd.Series:
    """Vectorised check of OCC symbols; returns a reason per row, ``None`` where valid.

    Reasons, first failing check wins: ``'bad_format'`` (regex, also non-strings),
    ``'bad_expiry_date'`` (``YYMMDD`` is not a calendar date), ``'non_positive_strike'``,
    ``'mismatch_underlying'`` (any of the given ``underlying``/``expiration``/``option_type``/
    ``strike`` columns disagrees with what the symbol encodes; the name follows the contract's
    usual cause, a symbol filed under the wrong underlying).
    """
    aliases = DEFAULT_ROOT_ALIASES if root_aliases is None else root_aliases
    raw = symbols.astype("string")
    s = raw.str.replace(" ", "", regex=False).str.upper()
    reason = pd.Series(np.full(len(s), None, dtype=object), index=symbols.index, dtype=object)
    fmt_ok = s.str.fullmatch(OCC_PATTERN).fillna(False).astype(bool)
    reason[~fmt_ok] = "bad_format"
    root = s.str.slice(0, -15)
    ymd = s.str.slice(-15, -9)
    cp = s.str.slice(-9, -8)
    milli = pd.to_numeric(s.str.slice(-8).where(fmt_ok), errors="coerce")
    exp = pd.to_datetime(ymd.where(fmt_ok), format="%y%m%d", errors="coerce")
    bad_date = fmt_ok & exp.isna()
    reason[bad_date] = "bad_expiry_date"
    ok = fmt_ok & ~bad_date
    bad_strike = ok & ~(milli > 0).fillna(False).astype(bool)
    reason[bad_strike] = "non_positive_strike"
    ok &= ~bad_strike
    mismatch = pd.Series(False, index=s.index)
    if underlying is not None:
        mismatch |= ~_root_matches(root, pd.Series(underlying, index=s.index), aliases)
    if expiration is not None:
        given = pd.to_datetime(pd.Series(expiration, index=s.index), errors="coerce").dt.normalize()
        mismatch |= ~(given == exp.dt.normalize()).fillna(False).astype(bool)
    if option_type is not None:
        t = pd.Series(option_type, index=s.index).astype("string").str.strip().str.lower()
        t = t.replace({"c": "call", "p": "put"})
        enc = cp.map({"C": "call", "P": "put"})
        mismatch |= ~(t == enc).fillna(False).astype(bool)
    if strike is not None:
        given_milli = (pd.to_numeric(pd.Series(strike, index=s.index), errors="coerce") * 1000).round()
        mismatch |= ~(given_milli == milli).fillna(False).astype(bool)
    reason[ok & mismatch] = "mismatch_underlying"
    return reason


def parse_occ_series(symbols: pd.Series) -> pd.DataFrame:
    """Vectorised parse into columns ``root, expiration, type, strike`` (NaN/NaT where invalid)."""
    s = symbols.astype("string").str.replace(" ", "", regex=False).str.upper()
    ok = s.str.fullmatch(OCC_PATTERN).fillna(False).astype(bool)
    out: dict[str, Any] = {
        "root": s.str.slice(0, -15).where(ok),
        "expiration": pd.to_datetime(s.str.slice(-15, -9).where(ok), format="%y%m%d", errors="coerce").dt.date,
        "type": s.str.slice(-9, -8).map({"C": "call", "P": "put"}).where(ok),
        "strike": pd.to_numeric(s.str.slice(-8).where(ok), errors="coerce") / 1000.0,
    }
    return pd.DataFrame(out, index=symbols.index)
