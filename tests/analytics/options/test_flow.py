"""Flow analytics on a small hand-made chain, every expected number worked out by hand here; and the
flow tables (compute_flow) on the simulator model's chains, checked against sums taken directly."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from alpaca_sim.market_model import MarketModel
from market_assets.analytics.options.flow import (
    atm_iv_term_structure,
    compute_flow,
    daily_summary,
    max_pain,
    oi_change,
    skew_25d,
    unusual_activity,
    volume_oi_by_expiry,
    volume_oi_by_strike,
)

D = dt.date(2024, 1, 10)
E1 = dt.date(2024, 1, 19)
E2 = dt.date(2024, 2, 16)
# compute_flow is checked on the simulator model's chains (an independent generator), two days running
MODEL_SESSION = dt.date(2026, 6, 29)
MODEL_UNIVERSE = ["KO", "MSFT", "NVDA"]


def _row(exp, strike, typ, vol, oi, iv, delta, und="XYZ", spot=102.0):  # type: ignore[no-untyped-def]
    sym = f"{und}{exp:%y%m%d}{'C' if typ == 'call' else 'P'}{int(strike * 1000):08d}"
    return {
        "symbol": sym,
        "underlying": und,
        "expiration": exp,
        "strike": strike,
        "type": typ,
        "volume": vol,
        "open_interest": oi,
        "iv": iv,
        "delta": delta,
        "underlying_price": spot,
        "snapshot_date": D,
    }


@pytest.fixture
def chain() -> pd.DataFrame:
    rows = [
        _row(E1, 95, "call", 10, 100, 0.30, 0.80),
        _row(E1, 100, "call", 50, 200, 0.25, 0.60),
        _row(E1, 105, "call", 300, 100, 0.22, 0.30),
        _row(E1, 110, "call", 40, 50, 0.21, 0.20),
        _row(E1, 95, "put", 20, 300, 0.34, -0.15),
        _row(E1, 100, "put", 60, 150, 0.29, -0.35),
        _row(E1, 105, "put", 5, 10, 0.26, -0.70),
        _row(E1, 110, "put", 0, 0, np.nan, np.nan),
        _row(E2, 100, "call", 0, 0, 0.27, 0.55),
        _row(E2, 100, "put", 0, 0, 0.28, -0.45),
        # a second underlying whose calls have no volume or OI at all
        _row(E1, 50, "put", 7, 3, 0.40, -0.40, und="ABC", spot=50.0),
    ]
    return pd.DataFrame(rows)


def test_daily_summary(chain: pd.DataFrame) -> None:
    out = daily_summary(chain).set_index("underlying")
    xyz = out.loc["XYZ"]
    assert xyz["call_volume"] == 10 + 50 + 300 + 40 + 0
    assert xyz["put_volume"] == 20 + 60 + 5 + 0 + 0
    assert xyz["call_oi"] == 450 and xyz["put_oi"] == 460
    assert xyz["put_call_volume_ratio"] == pytest.approx(85 / 400)
    assert xyz["put_call_oi_ratio"] == pytest.approx(460 / 450)
    abc = out.loc["ABC"]
    assert abc["call_volume"] == 0 and abc["put_volume"] == 7
    assert np.isnan(abc["put_call_volume_ratio"]) and np.isnan(abc["put_call_oi_ratio"])
    assert not np.isinf(out.select_dtypes("number").to_numpy(float)).any()


def test_volume_oi_by_expiry_and_strike(chain: pd.DataFrame) -> None:
    e = volume_oi_by_expiry(chain).set_index(["underlying", "expiration"])
    assert e.loc[("XYZ", E1), "call_volume"] == 400
    assert e.loc[("XYZ", E1), "put_oi"] == 460
    assert e.loc[("XYZ", E2), "call_oi"] == 0
    s = volume_oi_by_strike(chain).set_index(["underlying", "strike"])
    assert s.loc[("XYZ", 100), "call_oi"] == 200  # 200 (E1) + 0 (E2)
    assert s.loc[("XYZ", 100), "put_volume"] == 60
    assert s.loc[("ABC", 50), "call_volume"] == 0


def test_max_pain_by_hand(chain: pd.DataFrame) -> None:
    # XYZ, E1: calls OI {95:100, 100:200, 105:100, 110:50}, puts OI {95:300, 100:150, 105:10, 110:0}
    # P=95 : calls 0;                    puts 150*5 + 10*10 = 850              -> 850
    # P=100: calls 100*5 = 500;          puts 10*5 = 50                        -> 550
    # P=105: calls 100*10+200*5 = 2000;  puts 0                                -> 2000
    # P=110: calls 1500+2000+500 = 4000; puts 0                                -> 4000
    out = max_pain(chain).set_index(["underlying", "expiration"])
    assert out.loc[("XYZ", E1), "max_pain_strike"] == 100
    assert out.loc[("XYZ", E1), "holder_payout"] == 550
    assert np.isnan(out.loc[("XYZ", E2), "max_pain_strike"])  # no open interest at all


def test_oi_change(chain: pd.DataFrame) -> None:
    prev = chain[["symbol", "open_interest"]].iloc[:3].copy()
    prev["open_interest"] = [90, 250, 100]
    prev = pd.concat([prev, pd.DataFrame({"symbol": ["XYZ240112C00100000"], "open_interest": [999]})])
    per, tot = oi_change(chain, prev)
    per = per.set_index("symbol")
    assert per.loc["XYZ240119C00095000", "oi_change"] == 10
    assert per.loc["XYZ240119C00100000", "oi_change"] == -50
    assert per.loc["XYZ240119C00105000", "oi_change"] == 0
    # a contract new today counts from zero
    assert per.loc["XYZ240119P00095000", "oi_change"] == 300 and per.loc["XYZ240119P00095000", "is_new"]
    assert "XYZ240112C00100000" not in per.index  # expired contract left out
    t = tot.set_index("underlying").loc["XYZ"]
    # today's XYZ OI 910; matched previous 440; change 470; new contracts: 10 - 3 = 7
    assert t["total_oi"] == 910 and t["previous_total_oi"] == 440 and t["oi_change"] == 470
    assert t["new_contracts"] == 7


def test_unusual_activity(chain: pd.DataFrame) -> None:
    out = unusual_activity(chain, min_volume=5)
    # volume/OI: 105C 300/100 = 3 (yes), ABC 50P 7/3 = 2.33 (yes), 105P 5/10 = 0.5 (no)
    assert sorted(out["symbol"]) == ["ABC240119P00050000", "XYZ240119C00105000"]
    assert out.set_index("symbol").loc["XYZ240119C00105000", "vol_oi_ratio"] == 3
    # with history: 105C traded 100,110,90,100,100 before -> mean 100, std sqrt(50); z = 200/7.07 = 28.3
    hist = pd.DataFrame(
        {
            "symbol": ["XYZ240119C00105000"] * 5 + ["ABC240119P00050000"] * 5,
            "snapshot_date": [D - dt.timedelta(days=i) for i in range(1, 6)] * 2,
            "volume": [100, 110, 90, 100, 100, 6, 8, 6, 8, 7],
        }
    )
    out = unusual_activity(chain, hist, min_volume=5).set_index("symbol")
    # ABC: mean 7, std sqrt(1/2)=0.707 -> z = 0: not unusual
    assert list(out.index) == ["XYZ240119C00105000"]
    assert out.loc["XYZ240119C00105000", "volume_z"] == pytest.approx(200 / np.sqrt(50))
    # a contract with OI 0 and enough volume counts (ratio reported as NaN, never inf)
    c2 = chain.copy()
    c2.loc[7, "volume"] = 500
    out = unusual_activity(c2, min_volume=100).set_index("symbol")
    assert np.isnan(out.loc["XYZ240119P00110000", "vol_oi_ratio"])


def test_atm_iv_term_structure(chain: pd.DataFrame) -> None:
    out = atm_iv_term_structure(chain).set_index(["underlying", "expiration"])
    # spot 102 between 100 (OTM put, 0.29) and 105 (OTM call, 0.22): 0.29 + 0.4*(0.22-0.29) = 0.262
    assert out.loc[("XYZ", E1), "atm_iv"] == pytest.approx(0.262)
    assert out.loc[("XYZ", E1), "days_to_expiry"] == 9
    assert np.isnan(out.loc[("XYZ", E2), "atm_iv"])  # one strike, spot outside: no extrapolation
    assert out.loc[("ABC", E1), "atm_iv"] == pytest.approx(0.40)  # spot exactly on the strike


def test_skew_25d(chain: pd.DataFrame) -> None:
    out = skew_25d(chain).set_index(["underlying", "expiration"])
    # puts by delta: -0.35 -> 0.29, -0.15 -> 0.34: at -0.25 halfway = 0.315
    # calls by delta: 0.20 -> 0.21, 0.30 -> 0.22: at 0.25 halfway = 0.215
    row = out.loc[("XYZ", E1)]
    assert row["put_iv_25d"] == pytest.approx(0.315)
    assert row["call_iv_25d"] == pytest.approx(0.215)
    assert row["skew_25d"] == pytest.approx(0.10)
    assert np.isnan(out.loc[("XYZ", E2), "skew_25d"])


def test_missing_columns_raise() -> None:
    with pytest.raises(ValueError, match="missing"):
        daily_summary(pd.DataFrame({"underlying": ["X"]}))


def test_flow_with_volume_gives_volume_ratios_oi_change_and_unusual_activity() -> None:
    """The volume side of the flow tables on the simulator model's own chains, two days running."""
    model = MarketModel(seed=7, quote_precision="exact")
    previous_session = dt.date(2026, 6, 26)

    def chain_of(day: dt.date) -> pd.DataFrame:
        c = pd.concat([model.option_chain(u, day) for u in MODEL_UNIVERSE], ignore_index=True)
        return c.assign(snapshot_date=day, iv=c["sigma"], delta=c["true_delta"], underlying_price=c["spot"])

    today, before = chain_of(MODEL_SESSION), chain_of(previous_session)
    previous = before[["underlying", "symbol", "open_interest"]].assign(
        snapshot_date=MODEL_SESSION, previous_snapshot_date=previous_session
    )
    history = pd.concat(
        [chain_of(d)[["symbol", "snapshot_date", "volume"]] for d in (dt.date(2026, 6, 22), dt.date(2026, 6, 23))]
    )
    out = compute_flow(today, previous, history)
    daily = out["daily"].set_index("underlying").loc[MODEL_UNIVERSE]
    vol = today.groupby(["underlying", "type"])["volume"].sum().unstack().loc[MODEL_UNIVERSE]
    np.testing.assert_allclose(daily["put_call_volume_ratio"], vol["put"] / vol["call"], rtol=1e-12)
    assert (daily["total_volume"] == vol["put"] + vol["call"]).all()
    prev_oi = before.set_index("symbol")["open_interest"]
    expected_change = today.groupby("underlying").apply(
        lambda g: g["open_interest"].sum() - prev_oi.reindex(g["symbol"]).fillna(0).sum(), include_groups=False
    )
    np.testing.assert_allclose(daily["oi_change"], expected_change.loc[MODEL_UNIVERSE])
    assert (daily["previous_snapshot_date"] == previous_session).all()
    by_strike = out["by_strike"].groupby("underlying")[["call_volume", "put_volume"]].sum().loc[MODEL_UNIVERSE]
    assert (by_strike["call_volume"] == vol["call"]).all() and (by_strike["put_volume"] == vol["put"]).all()
    unusual = out["unusual"]
    assert ((unusual["volume"] >= 100) & ((unusual["open_interest"] == 0) | (unusual["vol_oi_ratio"] >= 2))).all()
    assert daily["unusual_contracts"].sum() == len(unusual)
