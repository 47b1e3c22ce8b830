"""Property tests: random and hostile payloads thrown at every contract (issue 13, item 4).

For any payload: no crash; every row is either kept and valid, or quarantined with a reason (exact duplicates
collapse into the row they repeat); and, through the real writer, nothing else reaches the warehouse.
Before issue 13, ``"h": 1e999`` was kept as +inf, and a ``NaN`` or an int64-overflowing volume aborted the
whole window (the quarantine insert refused NaN; the int64 cast wrapped or failed).
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market_assets.contracts.bars import INT8_LIMIT, coerce_raw_bars, split_bars
from market_assets.contracts.options import (
    coerce_raw_chain,
    coerce_raw_contracts,
    split_option_chain,
    split_option_contracts,
)
from market_assets.domain.sessions import session_of_daily_ts
from market_assets.warehouse.resource import WarehouseResource
from market_assets.warehouse.tables import BARS_DAILY

SESSIONS = ["2024-03-04", "2024-03-05", "2024-03-06"]
GOOD_TS = [
    pd.Timestamp(d, tz="America/New_York").tz_convert("UTC").isoformat().replace("+00:00", "Z") for d in SESSIONS
]

CHAIN_COLUMNS = ["symbol", "underlying", "quote_t", "bid", "bid_size", "bid_exchange", "ask", "ask_size",
                 "ask_exchange", "trade_t", "last", "last_size", "volume", "iv", "delta", "gamma", "theta", "vega",
                 "rho"]  # fmt: skip
CONTRACT_COLUMNS = ["id", "symbol", "name", "status", "tradable", "expiration_date", "root_symbol",
                    "underlying_symbol", "underlying_asset_id", "type", "style", "strike_price", "size",
                    "open_interest", "open_interest_date", "close_price", "close_price_date"]  # fmt: skip
SIZES = ["bid_size", "ask_size", "last_size", "volume"]

hostile_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1e308, 2**63, 2**63 - 1, 9.3e18, "1e999", "NaN", "12.5", ""]),
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
sane_price = st.floats(min_value=1, max_value=1000, allow_nan=False)
price = st.one_of(sane_price, sane_price, hostile_number)  # mostly sane, so some rows survive
symbol = st.one_of(st.sampled_from(["AAPL", "MSFT", "BRK.B"]), st.text(max_size=8), st.none(), st.integers())
timestamp = st.one_of(st.sampled_from(GOOD_TS), st.text(max_size=25), st.integers(), st.none())


@st.composite
def bar_payloads(draw: Any) -> list[dict[str, Any]]:
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        o, c = draw(sane_price), draw(sane_price)
        row = {
            "symbol": draw(symbol),
            "t": draw(timestamp),
            "o": o,
            "h": max(o, c) + 1,
            "l": min(o, c) - 0.5,
            "c": c,
            "v": draw(st.integers(0, 10**6)),
            "n": 5,
            "vw": o,
        }
        for wire in draw(st.sets(st.sampled_from(["o", "h", "l", "c", "v", "n", "vw"]), max_size=3)):
            row[wire] = draw(price if wire != "v" else hostile_number)
        for wire in draw(st.sets(st.sampled_from(["o", "h", "l", "c", "v", "t"]), max_size=1)):
            row.pop(wire)
        rows.append(row)
    return rows


def as_raw(records: list[dict[str, Any]]) -> pd.DataFrame:
    """What AlpacaResource.fetch_bars returns: the wire fields, the symbol and the payload."""
    frame = pd.DataFrame.from_records(records, columns=["symbol", "t", "o", "h", "l", "c", "v", "n", "vw"])
    frame["payload"] = records
    return frame


def assert_kept_rows_are_valid(valid: pd.DataFrame) -> None:
    for name in ("open", "high", "low", "close", "volume"):
        assert np.isfinite(valid[name]).all(), name
    assert (valid[["open", "high", "low", "close"]] > 0).all().all()
    body = valid[["open", "close"]]
    assert ((valid["low"] <= body.min(axis=1)) & (valid["high"] >= body.max(axis=1))).all()
    assert ((valid["volume"] >= 0) & (valid["volume"].abs() < INT8_LIMIT)).all()
    assert session_of_daily_ts(valid["ts"]).notna().all()
    assert valid["symbol"].map(lambda s: isinstance(s, str)).all()


@settings(max_examples=150, deadline=None)
@given(bar_payloads())
def test_bar_contract_keeps_valid_rows_or_quarantines_with_a_reason(records: list[dict[str, Any]]) -> None:
    raw = as_raw(records)
    split = split_bars(coerce_raw_bars(raw), "1Day")
    assert_kept_rows_are_valid(split.valid)
    assert split.rejected["reason"].map(lambda r: isinstance(r, str) and r != "").all()
    assert not set(split.valid.index) & set(split.rejected.index)
    # every row is accounted for: kept, quarantined, or an exact repeat of one of those
    accounted = set(split.valid.index) | set(split.rejected.index)
    assert len(accounted) <= len(raw)
    assert len(raw) == 0 or accounted, "rows vanished without a reason"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bar_payloads())
def test_hostile_bars_through_the_writer_store_only_kept_rows_and_reasons(
    migrated_warehouse: WarehouseResource, records: list[dict[str, Any]]
) -> None:
    warehouse = migrated_warehouse
    with warehouse.connect() as conn:
        conn.execute("TRUNCATE market.bars_daily, market.quarantine")
    raw = as_raw(records)
    split = split_bars(coerce_raw_bars(raw), "1Day")
    kept = split.valid.copy()
    kept["session"] = session_of_daily_ts(kept["ts"]).dt.date
    kept["volume"] = kept["volume"].astype("int64")
    kept["trade_count"] = kept["trade_count"].astype("Int64")
    kept["feed"], kept["run_id"] = "iex", "r"
    rejected = split.rejected
    quarantine = pd.DataFrame(
        {
            "source": "test",
            "symbol": rejected["symbol"],
            "ts": rejected["ts"],
            "payload": raw.loc[rejected.index, "payload"],
            "reason": rejected["reason"],
            "run_id": "r",
        }
    )
    symbols = sorted({s for s in kept["symbol"]} | {"AAPL"})
    result = warehouse.replace_partition(
        BARS_DAILY,
        kept,
        sessions=(date(2024, 3, 4), date(2024, 3, 6)),
        symbols=symbols,
        quarantine=quarantine,
        dataset="bars_daily",
        partition_key="2024-03-04..2024-03-06",
    )
    stored = warehouse.read_frame("SELECT open, high, low, close, volume FROM market.bars_daily")
    assert len(stored) == result.rows_written == len(kept.drop_duplicates(["symbol", "ts"]))
    assert all(math.isfinite(v) for v in stored.to_numpy(dtype="float64").ravel())
    reasons = warehouse.read_frame("SELECT reason FROM market.quarantine")
    assert len(reasons) == result.rows_quarantined == len(rejected)
    assert reasons["reason"].map(bool).all()


chain_field = st.one_of(st.floats(min_value=0, max_value=100), hostile_number)


@st.composite
def chain_payloads(draw: Any) -> list[dict[str, Any]]:
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        sym = draw(st.one_of(st.sampled_from(["AAPL240621C00190000", "AAPL240621P00180000"]), st.text(max_size=21)))
        rows.append(
            {
                "symbol": sym,
                "underlying": "AAPL",
                "quote_t": draw(timestamp),
                **{
                    k: draw(chain_field)
                    for k in (
                        "bid",
                        "ask",
                        "bid_size",
                        "ask_size",
                        "last",
                        "last_size",
                        "volume",
                        "iv",
                        "delta",
                        "gamma",
                        "theta",
                        "vega",
                        "rho",
                    )
                },
            }
        )
    return rows


@settings(max_examples=100, deadline=None)
@given(chain_payloads())
def test_chain_contract_never_keeps_a_non_finite_or_overflowing_value(records: list[dict[str, Any]]) -> None:
    raw = pd.DataFrame.from_records(records, columns=CHAIN_COLUMNS)
    split = split_option_chain(coerce_raw_chain(raw, date(2024, 3, 4)))
    numeric = [
        "bid",
        "ask",
        "bid_size",
        "ask_size",
        "last",
        "last_size",
        "volume",
        *(f"alpaca_{g}" for g in ("iv", "delta", "gamma", "theta", "vega", "rho")),
    ]
    values = split.valid[numeric].to_numpy(dtype="float64")
    assert not np.isinf(values).any()
    sizes = np.abs(split.valid[SIZES].to_numpy(dtype="float64"))
    assert (np.nan_to_num(sizes) < INT8_LIMIT).all()
    assert split.rejected["reason"].map(bool).all()
    assert not set(split.valid.index) & set(split.rejected.index)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "id": st.text(max_size=3),
                "symbol": st.one_of(st.just("AAPL240621C00190000"), st.text(max_size=20)),
                "name": st.none(),
                "status": st.one_of(st.just("active"), hostile_number),
                "tradable": st.one_of(st.booleans(), hostile_number),
                "expiration_date": st.one_of(st.just("2024-06-21"), st.text(max_size=10), st.none()),
                "root_symbol": st.just("AAPL"),
                "underlying_symbol": st.just("AAPL"),
                "underlying_asset_id": st.none(),
                "type": st.one_of(st.just("call"), st.text(max_size=4)),
                "style": st.just("american"),
                "strike_price": st.one_of(st.just("190"), hostile_number),
                "size": st.one_of(st.just("100"), hostile_number),
                "open_interest": hostile_number,
                "open_interest_date": st.none(),
                "close_price": hostile_number,
                "close_price_date": st.none(),
            }
        ),
        max_size=6,
    )
)
def test_contract_reference_data_never_keeps_a_non_finite_or_overflowing_value(records: list[dict[str, Any]]) -> None:
    raw = pd.DataFrame.from_records(records, columns=CONTRACT_COLUMNS)
    split = split_option_contracts(coerce_raw_contracts(raw, date(2024, 3, 4)))
    values = split.valid[["strike", "size", "open_interest", "close_price"]].to_numpy(dtype="float64")
    assert not np.isinf(values).any()
    assert (np.nan_to_num(np.abs(split.valid[["size", "open_interest"]].to_numpy(dtype="float64"))) < INT8_LIMIT).all()
    assert split.rejected["reason"].map(bool).all()


def test_a_contract_whose_status_is_a_list_is_quarantined_with_a_reason_not_a_crash() -> None:
    """A hostile ``status`` (a list, a dict, a number) is unhashable or not text: the duplicate check crashed on it
    (TypeError: unhashable type) and took the whole page with it. Now that row alone is rejected, saying why."""
    good = {"id": "a", "symbol": "AAPL240621C00190000", "name": None, "status": "active", "tradable": True,
            "expiration_date": "2024-06-21", "root_symbol": "AAPL", "underlying_symbol": "AAPL",
            "underlying_asset_id": None, "type": "call", "style": "american", "strike_price": "190", "size": "100",
            "open_interest": "10", "open_interest_date": None, "close_price": "1.5",
            "close_price_date": None}  # fmt: skip
    records = [
        good,
        {**good, "id": "b", "symbol": "AAPL240621P00190000", "type": "put", "status": ["active", "x"]},
        {**good, "id": "c", "symbol": "AAPL240621C00200000", "strike_price": "200", "status": {"s": 1}},
        {**good, "id": "d", "symbol": "AAPL240621C00210000", "strike_price": "210", "status": 7},
    ]
    raw = pd.DataFrame.from_records(records, columns=CONTRACT_COLUMNS)
    split = split_option_contracts(coerce_raw_contracts(raw, date(2024, 3, 4)))
    assert split.valid["symbol"].tolist() == ["AAPL240621C00190000"]
    assert split.valid["status"].tolist() == ["active"]
    assert sorted(split.rejected["symbol"]) == ["AAPL240621C00200000", "AAPL240621C00210000", "AAPL240621P00190000"]
    assert (split.rejected["reason"] == "status is not text (e.g. a list)").all()


def test_the_three_reported_payloads_are_quarantined_one_row_each() -> None:
    """The issue's reproductions, literally: +inf high, a NaN literal, an int64-overflowing volume."""
    import json

    t0, t1, t2 = GOOD_TS
    text = (
        f'[{{"symbol": "AAPL", "t": "{t0}", "o": 10, "h": 1e999, "l": 9, "c": 10, "v": 5}},'
        f' {{"symbol": "AAPL", "t": "{t1}", "o": 10, "h": 11, "l": 9, "c": NaN, "v": 5}},'
        f' {{"symbol": "AAPL", "t": "{t2}", "o": 10, "h": 11, "l": 9, "c": 10, "v": 99999999999999999999}},'
        f' {{"symbol": "MSFT", "t": "{t0}", "o": 10, "h": 11, "l": 9, "c": 10, "v": 5}}]'
    )
    split = split_bars(coerce_raw_bars(as_raw(json.loads(text))), "1Day")
    assert split.valid["symbol"].tolist() == ["MSFT"]
    reasons = split.rejected["reason"].tolist()
    assert "high is not a finite number (inf/NaN)" in reasons[0]
    assert "close is missing (null/NaN)" in reasons[1]
    assert "volume does not fit a 64-bit integer" in reasons[2]
