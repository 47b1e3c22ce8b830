"""OCC symbol parse/build round trips and vectorised validation reasons."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from market_assets.domain.occ import build_occ, parse_occ, parse_occ_series, validate_occ


def test_parse_and_build_round_trip() -> None:
    assert parse_occ("SPY240119C00470000") == ("SPY", dt.date(2024, 1, 19), "call", 470.0)
    assert parse_occ("AAPL1240119P00152500") == ("AAPL1", dt.date(2024, 1, 19), "put", 152.5)
    assert parse_occ("SPY   240119C00470000") == ("SPY", dt.date(2024, 1, 19), "call", 470.0)
    assert build_occ("SPY", dt.date(2024, 1, 19), "call", 470) == "SPY240119C00470000"
    assert build_occ("aapl1", "2024-01-19", "P", 152.5) == "AAPL1240119P00152500"
    sym = build_occ("SPXW", dt.date(2025, 12, 31), "put", 0.001)
    assert parse_occ(sym) == ("SPXW", dt.date(2025, 12, 31), "put", 0.001)


@pytest.mark.parametrize(
    ("symbol", "reason"),
    [
        ("SPY24011C00470000", "bad_format"),
        ("SPY240230C00470000", "bad_expiry_date"),
        ("SPY240119C00000000", "non_positive_strike"),
    ],
)
def test_parse_rejects(symbol: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_occ(symbol)


def test_build_rejects_unencodable() -> None:
    for args in [
        ("SPY", "2024-01-19", "call", 0),
        ("SPY", "2024-01-19", "call", 1.0005),
        ("TOOLONG", "2024-01-19", "call", 1),
        ("SPY", "2024-01-19", "x", 1),
        ("SPY", "2024-01-19", "call", 100000),
    ]:
        with pytest.raises(ValueError):
            build_occ(*args)


def test_validate_series_reasons() -> None:
    symbols = pd.Series(
        [
            "SPY240119C00470000",  # valid
            "spy240119c00470000",  # lower case is normalised: valid
            "SPY240119X00470000",  # bad format
            None,  # bad format
            "SPY240231C00470000",  # Feb 31st
            "SPY240119P00000000",  # zero strike
            "QQQ240119C00470000",  # wrong underlying
            "SPY240119C00470000",  # wrong expiry given
            "SPY240119C00470000",  # wrong type given
            "SPY240119C00470000",  # wrong strike given
            "SPXW240119C04700000",  # weekly root of SPX: valid
        ]
    )
    und = pd.Series(["SPY"] * 10 + ["SPX"])
    exp = pd.Series([dt.date(2024, 1, 19)] * 7 + [dt.date(2024, 1, 26)] + [dt.date(2024, 1, 19)] * 3)
    typ = pd.Series(["call"] * 5 + ["put"] + ["call"] * 2 + ["put"] + ["call"] * 2)
    strike = pd.Series([470.0] * 5 + [0.0] + [470.0] * 3 + [471.0] + [4700.0])
    out = validate_occ(symbols, und, exp, typ, strike)
    assert list(out) == [
        None,
        None,
        "bad_format",
        "bad_format",
        "bad_expiry_date",
        "non_positive_strike",
        "mismatch_underlying",
        "mismatch_underlying",
        "mismatch_underlying",
        "mismatch_underlying",
        None,
    ]
    # without the extra columns only the symbol itself is checked
    assert validate_occ(symbols).isna().sum() == 7


def test_parse_series() -> None:
    df = parse_occ_series(pd.Series(["SPY240119C00470000", "bad"]))
    assert df.loc[0, "root"] == "SPY" and df.loc[0, "strike"] == 470.0 and df.loc[0, "type"] == "call"
    assert df.loc[0, "expiration"] == dt.date(2024, 1, 19)
    assert pd.isna(df.loc[1, "strike"])
