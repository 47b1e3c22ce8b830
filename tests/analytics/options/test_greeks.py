"""Our chain-level IV/Greeks (analytics.options.greeks) against the simulator's known true volatilities.

The simulator (alpaca_sim) prices with its own BSM code, independent of ours: an oracle, not a copy.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from alpaca_sim.market_model import MarketModel, bsm_price_greeks
from market_assets.analytics.options.greeks import compute_greeks
from market_assets.contracts.options import flag_quotes

SESSION = date(2026, 6, 29)
UNIVERSE = ["KO", "MSFT", "NVDA"]  # NVDA and KO pay dividends: a wrong yield would show in the vols


def test_cents_quotes_recover_vol_within_the_rounding_bound() -> None:
    """With quotes rounded to cents each of bid and ask is off by <= 0.005, so the mid is within
    0.005 of the true price; by the mean value theorem the IV error is then at most
    0.005 / (smallest vega between the true and the implied vol). That is the tolerance, per contract."""
    model = MarketModel(seed=7)
    session = SESSION
    truth = pd.concat([model.option_chain(u, session) for u in UNIVERSE], ignore_index=True)
    chain = flag_quotes(truth.rename(columns={"last_price": "last"}))
    chain = chain.assign(
        snapshot_date=session,
        quote_time=truth["quote_ts"],
        trade_time=truth["last_ts"],
        **{f"alpaca_{g}": truth[g] for g in ("iv", "delta", "gamma", "theta", "vega", "rho")},
    )
    closes = pd.DataFrame(
        {"symbol": UNIVERSE, "session": session, "close": [truth[truth.underlying == u].spot.iloc[0] for u in UNIVERSE]}
    )
    ours = compute_greeks(
        chain, closes, rate=model.risk_free_rate, dividend_yields={u: model.dividend_yield(u) for u in UNIVERSE}
    )
    mid = (ours["price_source"] == "mid").to_numpy()
    w = np.where(truth["type"] == "call", 1.0, -1.0)
    t, s, k = truth["time_to_expiry"], truth["spot"], truth["strike"]
    intrinsic = np.maximum(w * (s * np.exp(-truth["dividend_yield"] * t) - k * np.exp(-truth["rate"] * t)), 0)
    sure = mid & ((truth["theo"] - intrinsic) >= 0.005).to_numpy() & ours["iv"].notna().to_numpy()
    assert sure.sum() > 0.7 * len(truth)
    price_err = np.abs(ours["price_used"].to_numpy(float) - truth["theo"].to_numpy())[sure]
    assert price_err.max() <= 0.005 + 1e-12  # the rounding premise
    iv, sigma = ours["iv"].to_numpy(float)[sure], truth["sigma"].to_numpy()[sure]
    is_call = (truth["type"] == "call").to_numpy()[sure]
    q = truth["dividend_yield"].to_numpy()[sure]
    min_vega = np.full(sure.sum(), np.inf)
    for f in np.linspace(0, 1, 6):
        sig = sigma + f * (iv - sigma)
        for qq in np.unique(q):
            m = q == qq
            v = (
                bsm_price_greeks(
                    is_call[m],
                    s.to_numpy()[sure][m],
                    k.to_numpy()[sure][m],
                    t.to_numpy()[sure][m],
                    model.risk_free_rate,
                    qq,
                    sig[m],
                )[1]["vega"]
                * 100
            )
            min_vega[m] = np.minimum(min_vega[m], v)
    bound = 0.005 / min_vega
    assert (np.abs(iv - sigma) <= bound * 1.01 + 1e-12).all()
    assert np.median(np.abs(iv - sigma)) < 2e-3
