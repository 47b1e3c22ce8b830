"""A contract adjusted by a corporate action (OCC root with an adjustment digit, e.g. AAPL1 after a merger or
special dividend) delivers something other than 100 shares: flagged, never priced as a standard contract."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from market_assets.analytics.options.greeks import compute_greeks


def test_adjusted_contract_is_flagged_not_priced() -> None:
    day = date(2024, 6, 3)
    chain = pd.DataFrame(
        {
            "symbol": ["AAPL240621C00190000", "AAPL1240621C00190000"],
            "snapshot_date": [day, day],
            "underlying": ["AAPL", "AAPL"],
            "expiration": [date(2024, 6, 21)] * 2,
            "strike": [190.0, 190.0],
            "type": ["call", "call"],
            "mark": [4.0, 4.0],
            "last": [4.0, 4.0],
            "quote_time": [pd.Timestamp("2024-06-03T20:00:00Z")] * 2,
            "trade_time": [pd.Timestamp("2024-06-03T19:59:00Z")] * 2,
            **{f"alpaca_{g}": [np.nan, np.nan] for g in ("iv", "delta", "gamma", "theta", "vega", "rho")},
        }
    )
    closes = pd.DataFrame({"symbol": ["AAPL"], "session": [day], "close": [192.0]})
    out = compute_greeks(chain, closes, rate=0.045, dividend_yields={})
    assert out["iv"].notna().tolist() == [True, False]
    assert out["iv_reason"].tolist()[1] == "non_standard_deliverable" and out["delta"].isna().tolist()[1]
