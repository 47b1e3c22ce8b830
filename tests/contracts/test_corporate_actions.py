"""Every corporate-action type in Alpaca's documented format parses; malformed ones are quarantined with a reason.

The payloads are those of alpaca-py's own test (alpacahq/alpaca-py tests/data/test_corporate_actions.py): older
records without ``id``/``cusip``, which alpaca-py's strict models reject and our parsing must not.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from market_assets.alpaca.corporate_actions import GROUPS, flatten_actions, request_window
from market_assets.contracts.corporate_actions import coerce_actions, split_actions

ALPACA_PY_FIXTURE = {
    "reverse_splits": [{"ex_date": "2023-08-24", "new_rate": 1, "old_rate": 50, "process_date": "2023-08-24",
                        "record_date": "2023-08-24", "symbol": "MNTS"}],
    "forward_splits": [{"due_bill_redemption_date": "2023-08-23", "ex_date": "2023-08-22", "new_rate": 2,
                        "old_rate": 1, "payable_date": "2023-08-21", "process_date": "2023-08-22",
                        "record_date": "2023-08-14", "symbol": "SRE"}],
    "unit_splits": [{"alternate_rate": 0.3333, "alternate_symbol": "LVROW", "effective_date": "2023-03-01",
                     "new_rate": 1, "new_symbol": "LVRO", "old_rate": 1, "old_symbol": "TPBAU",
                     "process_date": "2023-03-01"}],
    "stock_dividends": [{"ex_date": "2023-05-19", "payable_date": "2023-05-05", "process_date": "2023-05-19",
                         "rate": 0.05, "record_date": "2023-05-22", "symbol": "MSBC"}],
    "cash_dividends": [
        {"ex_date": "2023-05-04", "foreign": False, "payable_date": "2023-05-19", "process_date": "2023-05-19",
         "rate": 0.125, "record_date": "2023-05-05", "special": False, "symbol": "FCF"},
        {"ex_date": "2024-08-07", "foreign": True, "payable_date": "2024-08-26", "process_date": "2024-08-26",
         "rate": 0.086928, "record_date": "2024-08-07", "special": False, "symbol": "ZMTBY"},
    ],
    "spin_offs": [{"ex_date": "2023-08-15", "new_rate": 1, "new_symbol": "SRM", "process_date": "2023-08-15",
                   "record_date": "2023-08-15", "source_rate": 19.35, "source_symbol": "JUPW"}],
    "cash_mergers": [{"acquiree_symbol": "GLOP", "effective_date": "2023-07-17", "payable_date": "2023-07-17",
                      "process_date": "2023-07-17", "rate": 5.37}],
    "stock_mergers": [{"acquiree_rate": 1, "acquiree_symbol": "LSI", "acquirer_rate": 0.895, "acquirer_symbol": "EXR",
                       "effective_date": "2023-07-20", "payable_date": "2023-07-20", "process_date": "2023-07-20"}],
    "stock_and_cash_mergers": [{"acquiree_rate": 1, "acquiree_symbol": "MLVF", "acquirer_rate": 0.7733,
                                "acquirer_symbol": "FRBA", "cash_rate": 7.8, "effective_date": "2023-07-18",
                                "payable_date": "2023-07-18", "process_date": "2023-07-18"}],
    "redemptions": [{"payable_date": "2023-06-13", "process_date": "2023-06-13", "rate": 0.141134, "symbol": "ORPHY"}],
    "name_changes": [{"new_symbol": "VFS", "old_symbol": "BSAQ", "process_date": "2023-08-15"}],
    "worthless_removals": [{"symbol": "ATNXQ", "process_date": "2023-10-11"}],
    "rights_distributions": [{"source_symbol": "IFN", "new_symbol": "IFN.RTWI", "rate": 1, "ex_date": "2024-04-17",
                              "record_date": "2024-04-18", "payable_date": "2024-04-19", "process_date": "2024-04-19",
                              "expiration_date": "2024-05-14"}],
}  # fmt: skip


def test_every_documented_type_parses_and_passes() -> None:
    split = split_actions(coerce_actions(flatten_actions(ALPACA_PY_FIXTURE)))
    assert split.rejected.empty, split.rejected[["type", "reason"]]
    assert set(split.valid["type"]) == set(GROUPS.values())
    v = split.valid.set_index("type")
    assert (v.loc["reverse_split", ["symbol", "new_rate", "old_rate"]] == ["MNTS", 1.0, 50.0]).all()
    assert v.loc["reverse_split", "ex_date"] == date(2023, 8, 24)
    assert v.loc["unit_split", "symbol"] == "TPBAU" and v.loc["unit_split", "ex_date"] == date(2023, 3, 1)
    assert v.loc["stock_dividend", "new_rate"] == 0.05
    assert v.loc["spin_off", "symbol"] == "JUPW" and v.loc["spin_off", "old_rate"] == 19.35
    assert v.loc["stock_and_cash_merger", "cash_amount"] == 7.8
    assert v.loc["stock_merger", "new_symbol"] == "EXR" and v.loc["stock_merger", "symbol"] == "LSI"
    assert v.loc["name_change", "symbol"] == "BSAQ" and v.loc["name_change", "new_symbol"] == "VFS"
    assert v.loc["name_change", "ex_date"] == date(2023, 8, 15)
    cash = split.valid.loc[split.valid["type"] == "cash_dividend"].set_index("symbol")
    assert cash.loc["FCF", "cash_amount"] == 0.125 and cash.loc["FCF", "is_special"] is False
    assert cash.loc["ZMTBY", "is_foreign"] is True  # the flags are kept
    assert cash.loc["FCF", "process_date"] == date(2023, 5, 19) and cash.loc["FCF", "ex_date"] == date(2023, 5, 4)
    # no id in these older payloads: a stable one from the payload, the same on every run
    again = coerce_actions(flatten_actions(ALPACA_PY_FIXTURE))
    assert split.valid["id"].str.startswith("h:").all() and set(again["id"]) == set(split.valid["id"])
    assert split.valid["id"].is_unique


def test_malformed_actions_are_quarantined_with_reasons() -> None:
    bad = {
        "forward_splits": [
            {
                "id": "a",
                "symbol": "X",
                "new_rate": 0,
                "old_rate": 1,
                "ex_date": "2024-01-02",
                "process_date": "2024-01-02",
            },
            {"id": "b", "symbol": "Y", "new_rate": 2, "old_rate": 1, "process_date": "2024-01-02"},  # no ex_date
        ],
        "cash_dividends": [
            {"id": "c", "symbol": "Z", "rate": None, "ex_date": "2024-01-02", "process_date": "2024-02-01"},
            {"id": "d", "symbol": "not a symbol", "rate": 0.5, "ex_date": "2024-01-02", "process_date": "2024-02-01"},
            {"id": "e", "symbol": "Q", "rate": 0.5, "ex_date": "2024-13-40", "process_date": "2024-02-01"},
            {"id": "f", "symbol": "OK", "rate": 0.5, "ex_date": "2024-01-02", "process_date": "2024-02-01"},
            {
                "id": "f",
                "symbol": "OK",
                "rate": 0.5,
                "ex_date": "2024-01-02",
                "process_date": "2024-02-01",
            },  # exact dup
            {"id": "g", "symbol": "OK", "rate": 0.5, "ex_date": "2024-04-02", "process_date": "2024-05-01"},
            {"id": "g", "symbol": "OK", "rate": 0.7, "ex_date": "2024-04-02", "process_date": "2024-05-01"},  # conflict
        ],
        "name_changes": [{"id": "h", "old_symbol": "OLD", "process_date": "2024-01-02"}],
        "teleportations": [{"id": "i", "symbol": "T", "process_date": "2024-01-02", "ex_date": "2024-01-02"}],
    }
    split = split_actions(coerce_actions(flatten_actions(bad)))
    assert split.valid["id"].tolist() == ["f"]
    reasons = dict(zip(split.rejected["id"], split.rejected["reason"], strict=True))
    assert "split without a positive new_rate" in reasons["a"]
    assert "ex_date is missing" in reasons["b"]
    assert "cash dividend without a positive rate" in reasons["c"]
    assert "symbol is not a ticker symbol" in reasons["d"]
    assert "ex_date is missing" in reasons["e"]
    assert "duplicate action id" in reasons["g"]
    assert "name change without new_symbol" in reasons["h"]
    assert "type is not a known corporate action type" in reasons["i"]
    assert isinstance(split.rejected["payload"].iloc[0], dict)  # as delivered, for market.quarantine


def test_request_window_reaches_past_the_payable_dates() -> None:
    start, end = request_window(date(2019, 1, 2), date(2021, 3, 31))
    assert start == date(2019, 1, 2) and end >= date(2021, 3, 31) + pd.Timedelta(days=90)
