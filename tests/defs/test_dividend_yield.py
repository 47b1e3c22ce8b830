"""Option dividend yields from trailing-12-month cash dividends in market.corporate_actions, with DIVIDEND_YIELDS
overriding an underlying: per session, against that session's close."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from market_assets.defs.options import Window, session_dividend_yields
from market_assets.warehouse.resource import WarehouseResource
from market_assets.warehouse.tables import CORPORATE_ACTIONS


def test_trailing_yield_per_session_with_overrides(warehouse: WarehouseResource) -> None:
    rows = []
    for symbol, ex, amount, special in [
        ("KO", "2023-12-01", 0.46, False),  # out of the window for 2024-12-31
        ("KO", "2024-03-14", 0.485, False),
        ("KO", "2024-06-14", 0.485, False),
        ("KO", "2024-09-13", 0.485, False),
        ("KO", "2024-11-29", 0.485, False),
        ("KO", "2024-12-02", 5.0, True),  # special: a one-off, not a yield
        ("AAPL", "2024-11-08", 0.25, False),
    ]:
        rows.append({c: None for c in CORPORATE_ACTIONS.column_names} | {
            "id": f"{symbol}{ex}", "type": "cash_dividend", "symbol": symbol, "ex_date": date.fromisoformat(ex),
            "process_date": date.fromisoformat(ex), "cash_amount": amount, "is_special": special,
            "payload": json.dumps({}), "run_id": "t"})  # fmt: skip
    warehouse.upsert(CORPORATE_ACTIONS, pd.DataFrame(rows))
    closes = pd.DataFrame(
        {"symbol": ["KO", "AAPL", "MSFT"], "session": [date(2024, 12, 31)] * 3, "close": [62.26, 250.42, 421.5]}
    )
    window = Window(date(2024, 12, 31), date(2024, 12, 31), [date(2024, 12, 31)], ["AAPL", "KO", "MSFT"], "k")
    yields = session_dividend_yields(warehouse, window, closes, {"AAPL": 0.0044})
    q = yields[date(2024, 12, 31)]
    assert q["KO"] == pytest.approx(-np.log(1 - 4 * 0.485 / 62.26), rel=1e-12)
    assert q["AAPL"] == 0.0044  # the override wins
    assert q["MSFT"] == 0.0  # no dividends stored
