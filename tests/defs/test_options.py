"""Options end to end: simulator -> alpaca-py -> pandera -> PostgreSQL -> IV/Greeks -> flow, in Dagster.

Why these tests: the options tables are only worth querying if (1) what is stored is exactly what
the source served, through paging, 429s and 5xx; (2) our implied volatilities are right, which
the simulator's known true volatilities let us check to machine precision; (3) malformed rows
end up in the quarantine with a reason instead of in the tables; (4) a re-run changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dagster import AssetCheckSeverity, Failure

import market_assets.defs.options as options_module
from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import FaultConfig, SimulatorServer
from market_assets.alpaca.resource import AlpacaResource
from market_assets.analytics.options import flow as flow
from market_assets.config import SettingsError, load_option_settings
from market_assets.defs.bars import daily_bars, symbols
from market_assets.defs.options import option_chain, option_contracts, option_greeks, options_flow, require_history
from market_assets.defs.resources import OptionParameters
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.pipeline import alpaca_for, check_results, run

PARTITION = "2026-06-29"
SESSION = date(2026, 6, 29)
CLOCK = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
# MSFT's chain (1,232 contracts) spans two 1,000-snapshot pages; NVDA and KO pay dividends, so a
# wrong dividend yield would show up in the recovered volatilities.
UNIVERSE = ["KO", "MSFT", "NVDA"]
OPTION_TABLES = (
    "market.option_contracts, market.open_interest, market.option_chain, market.option_greeks, "
    "market.options_flow_daily, market.options_by_expiry, market.options_by_strike, market.options_unusual_activity"
)
VOLATILE = {"run_id", "ingested_at", "updated_at"}
TABLE_KEYS = {
    "market.option_contracts": "symbol",
    "market.open_interest": "symbol, as_of",
    "market.option_chain": "symbol, snapshot_date",
    "market.option_greeks": "symbol, snapshot_date",
    "market.options_flow_daily": "underlying, snapshot_date",
    "market.options_by_expiry": "underlying, snapshot_date, expiration",
    "market.options_by_strike": "underlying, snapshot_date, strike",
    "market.options_unusual_activity": "symbol, snapshot_date",
}


@pytest.fixture(scope="module")
def model() -> MarketModel:
    return MarketModel(seed=7, quote_precision="exact")


@pytest.fixture(scope="module")
def sim(model: MarketModel) -> Iterator[SimulatorServer]:
    with SimulatorServer(model, clock=CLOCK, enable_ws=False) as server:
        yield server


@pytest.fixture
def wh(warehouse: WarehouseResource) -> WarehouseResource:
    """The empty warehouse of the fixture plugin (every registered table truncated)."""
    return warehouse


def model_rates(model: MarketModel) -> OptionParameters:
    """The simulator's true rate and dividend yields, configured as an operator would configure real ones."""
    return OptionParameters(
        risk_free_rate=model.risk_free_rate, dividend_yields={u: model.dividend_yield(u) for u in UNIVERSE}
    )


def resources(
    sim: SimulatorServer, wh: WarehouseResource, parameters: OptionParameters | None = None
) -> dict[str, Any]:
    return {
        "alpaca": alpaca_for(sim, backoff_max_seconds=0.2),
        "warehouse": wh,
        "option_parameters": parameters or OptionParameters(),
    }


SYMBOLS_CONFIG = {"ops": {"symbols": {"config": {"symbols": UNIVERSE}}}}
ALL_ASSETS = [symbols, daily_bars, option_contracts, option_chain, option_greeks, options_flow]


def table(wh: WarehouseResource, name: str, order: str) -> pd.DataFrame:
    frame = wh.read_frame(f"SELECT * FROM {name} ORDER BY {order}")
    return frame.drop(columns=[c for c in frame.columns if c in VOLATILE])


def truth_chain(model: MarketModel) -> pd.DataFrame:
    return pd.concat([model.option_chain(u, SESSION) for u in UNIVERSE], ignore_index=True).set_index("symbol")


def test_pipeline_equals_ground_truth_recovers_true_vol_and_reruns_unchanged(
    sim: SimulatorServer, model: MarketModel, wh: WarehouseResource
) -> None:
    sim.faults = FaultConfig(seed=5, rate_limit_every=4, error_rate=0.15)
    sim.stats.reset()
    parameters = model_rates(model)
    result = run(ALL_ASSETS, resources(sim, wh, parameters), partition=PARTITION, run_config=SYMBOLS_CONFIG)
    assert result.success
    checks = check_results(result)
    assert all(checks.values()), checks
    assert {
        "option_chain.chain_contract_valid",
        "option_greeks.iv_plausible",
        "options_flow.put_call_ratios_finite",
        "option_contracts.contracts_oi_non_negative",
    } <= set(checks)
    stats = sim.stats.snapshot()
    assert stats["faults"].get("rate_limit", 0) > 0 and sum(v for k, v in stats["faults"].items() if "http_" in k) > 0
    # MSFT needs two chain pages; the contracts (2,222) need three pages of 1,000
    assert stats["requests"]["/v1beta1/options/snapshots/{underlying}"] >= len(UNIVERSE) + 1
    sim.faults = FaultConfig()

    truth = truth_chain(model)
    chain = wh.read_frame("SELECT * FROM market.option_chain ORDER BY symbol").set_index("symbol")
    assert set(chain.index) == set(truth.index)
    t = truth.loc[chain.index]
    for ours, theirs in (
        ("bid", "bid"),
        ("ask", "ask"),
        ("bid_size", "bid_size"),
        ("ask_size", "ask_size"),
        ("last", "last_price"),
        ("last_size", "last_size"),
        ("strike", "strike"),
        ("open_interest", "open_interest"),
    ):
        assert (chain[ours].to_numpy(float) == t[theirs].to_numpy(float)).all(), ours
    assert (chain["expiration"] == t["expiration"]).all() and (chain["type"] == t["type"]).all()
    assert (pd.to_datetime(chain["quote_time"], utc=True) == t["quote_ts"]).all()
    assert (pd.to_datetime(chain["trade_time"], utc=True) == t["last_ts"]).all()
    for g in ("iv", "delta", "gamma", "theta", "vega", "rho"):
        np.testing.assert_array_equal(chain[f"alpaca_{g}"].to_numpy(float), t[g].to_numpy(float))
    assert not chain["crossed"].any() and not chain["zero_bid"].any()
    np.testing.assert_array_equal(chain["mark"].to_numpy(float), ((t["bid"] + t["ask"]) / 2).to_numpy())
    # volume comes from the snapshot's dailyBar; a contract that did not trade has none: NULL, never 0
    traded = (t["volume"] > 0).to_numpy()
    assert (chain["volume"].to_numpy(float)[traded] == t["volume"].to_numpy(float)[traded]).all()
    assert chain["volume"].isna().to_numpy()[~traded].all()

    contracts = wh.read_frame("SELECT * FROM market.option_contracts").set_index("symbol")
    assert set(contracts.index) == set(truth.index)
    assert (contracts["open_interest"].to_numpy(float) == truth.loc[contracts.index, "open_interest"]).all()
    assert (contracts["as_of"] == SESSION).all() and (contracts["style"] == "american").all()
    assert wh.scalar("SELECT count(*) FROM market.open_interest WHERE as_of = %s", (SESSION,)) == len(truth)

    greeks = wh.read_frame("SELECT * FROM market.option_greeks").set_index("symbol")
    t = truth.loc[greeks.index]
    assert (greeks["underlying_price"].to_numpy(float) == t["spot"].to_numpy()).all()  # the session's close
    np.testing.assert_allclose(greeks["time_to_expiry"].to_numpy(float), t["time_to_expiry"], rtol=0, atol=1e-15)
    assert (greeks["price_source"] == "mid").all()
    w = np.where(t["type"] == "call", 1.0, -1.0)
    disc_intrinsic = np.maximum(
        w
        * (
            t["spot"] * np.exp(-t["dividend_yield"] * t["time_to_expiry"])
            - t["strike"] * np.exp(-t["rate"] * t["time_to_expiry"])
        ),
        0.0,
    )
    time_value = t["theo"] - disc_intrinsic
    sure = (time_value >= 0.005).to_numpy()
    assert sure.sum() > 0.8 * len(greeks)
    err = np.abs(greeks["iv"].to_numpy(float) - t["sigma"].to_numpy())[sure]
    assert np.nanmax(err) < 1e-10 and not np.isnan(err).any()
    delta_err = np.abs(greeks["delta"].to_numpy(float) - t["true_delta"].to_numpy())[sure]
    assert delta_err.max() < 1e-8
    assert greeks["iv"].isna().eq(greeks["iv_reason"].notna()).all()
    view = wh.read_frame("SELECT iv, iv_reason FROM market.v_latest_option_chain")
    assert len(view) == len(greeks) and view["iv"].isna().eq(view["iv_reason"].notna()).all()
    assert view["iv_reason"].notna().sum() == greeks["iv_reason"].notna().sum()
    # an ITM American put with rates at 4.5 % carries an early-exercise premium somewhere in the chain
    assert greeks["early_exercise_flag"].fillna(False).astype(bool).any()

    daily = wh.read_frame("SELECT * FROM market.options_flow_daily ORDER BY underlying")
    assert daily["underlying"].tolist() == UNIVERSE
    oi = truth.groupby(["underlying", "type"])["open_interest"].sum().unstack()
    np.testing.assert_allclose(daily["put_call_oi_ratio"], (oi["put"] / oi["call"]).loc[UNIVERSE], rtol=1e-12)
    vol = truth.groupby(["underlying", "type"])["volume"].sum().unstack()
    np.testing.assert_allclose(daily["put_call_volume_ratio"], (vol["put"] / vol["call"]).loc[UNIVERSE], rtol=1e-12)
    assert (daily["total_volume"].to_numpy(float) == (vol["put"] + vol["call"]).loc[UNIVERSE].to_numpy()).all()
    front = truth.reset_index().assign(snapshot_date=SESSION)
    pain = flow.max_pain(front).sort_values("expiration").drop_duplicates("underlying").set_index("underlying")
    np.testing.assert_allclose(daily["front_max_pain"], pain.loc[UNIVERSE, "max_pain_strike"])
    by_expiry = wh.read_frame("SELECT * FROM market.options_by_expiry")
    assert len(by_expiry) == truth.groupby(["underlying", "expiration"]).ngroups
    assert by_expiry["atm_iv"].between(0.01, 5).all()

    meta = result.asset_materializations_for_node("option_greeks")[0].metadata
    # Alpaca's (simulated) IV is the true vol rounded to 4 dp; ours is exact wherever time value is not tiny
    assert meta["iv_compared"].value > 0 and meta["iv_abs_diff_median"].value <= 5e-5 + 1e-12
    smile = meta["iv_smile"].value
    assert smile.count("](data:image/png;base64,") == 2  # the smiles and the term structures
    assert f"all {len(UNIVERSE)} underlyings" in smile
    assert meta["dagster/partition_row_count"].value == meta["rows_written"].value == len(greeks)

    before = {name: table(wh, name, order) for name, order in TABLE_KEYS.items()}
    quarantined = wh.scalar("SELECT count(*) FROM market.quarantine")
    contracts_touched = wh.scalar("SELECT max(updated_at) FROM market.option_contracts")
    again = run(ALL_ASSETS, resources(sim, wh, parameters), partition=PARTITION, run_config=SYMBOLS_CONFIG)
    assert again.success and all(check_results(again).values())
    for name, order in TABLE_KEYS.items():
        pd.testing.assert_frame_equal(before[name], table(wh, name, order), check_exact=True, obj=name)
    assert wh.scalar("SELECT count(*) FROM market.quarantine") == quarantined
    assert wh.scalar("SELECT max(updated_at) FROM market.option_contracts") == contracts_touched  # no-op upsert


def _corrupt_chain(frame: pd.DataFrame) -> pd.DataFrame:
    """Malformed snapshots the way a feed delivers them: bad symbols, a crossed and a zero-bid quote."""
    if frame.empty or frame["underlying"].iloc[0] != "KO":
        return frame
    frame = frame.copy()
    frame.loc[0, "symbol"] = "KO2607X"  # not OCC
    frame.loc[1, "symbol"] = "KO260231C00015000"  # 31 February
    frame.loc[2, "symbol"] = "PEP" + frame.loc[2, "symbol"][2:]  # filed under the wrong underlying
    frame.loc[3, "symbol"] = frame.loc[3, "symbol"][:-8] + "00000000"  # strike 0
    frame.loc[4, "symbol"] = "KO260612C00015000"  # expired before the snapshot
    frame.loc[5, ["bid", "ask"]] = [0.9, 0.8]  # crossed: kept, flagged
    frame.loc[6, "bid"] = 0.0  # zero bid: kept, flagged
    return frame


def _corrupt_contracts(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    ko = frame.index[frame["underlying_symbol"] == "KO"]
    frame.loc[ko[0], "strike_price"] = "999"  # disagrees with the symbol
    frame.loc[ko[1], "type"] = "put" if frame.loc[ko[1], "type"] == "call" else "call"
    frame.loc[ko[2], "open_interest"] = "-4"
    return frame


def test_malformed_contracts_are_quarantined_and_odd_quotes_flagged(
    sim: SimulatorServer, wh: WarehouseResource, model: MarketModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_chain, real_pages = options_module.fetch_option_chain, options_module.option_contract_pages
    monkeypatch.setattr(options_module, "fetch_option_chain", lambda *a, **k: _corrupt_chain(real_chain(*a, **k)))
    monkeypatch.setattr(
        options_module, "option_contract_pages", lambda *a, **k: map(_corrupt_contracts, real_pages(*a, **k))
    )
    sim.faults = FaultConfig()
    result = run(
        [symbols, option_contracts, option_chain], resources(sim, wh), partition=PARTITION, run_config=SYMBOLS_CONFIG
    )
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["chain_contract_valid"].passed
    # 3 of 2,222 contracts and 5 of 2,222 snapshots rejected: below the 1 % warning level
    assert evaluations["contracts_quarantine_rate"].passed and evaluations["chain_quarantine_rate"].passed
    assert evaluations["contracts_quarantine_rate"].severity == AssetCheckSeverity.WARN

    q = wh.read_frame("SELECT dataset, symbol, reason, payload, partition_key FROM market.quarantine ORDER BY id")
    chain_q = q[q["dataset"] == "option_chain"].set_index("symbol")["reason"]
    assert "is not an OCC option symbol" in chain_q["KO2607X"]
    assert "not a real calendar date" in chain_q["KO260231C00015000"]
    assert chain_q.str.contains("root does not match the underlying").sum() == 1
    assert chain_q.str.contains("strike must be > 0").sum() == 1
    assert "expired before the snapshot date" in chain_q["KO260612C00015000"]
    assert len(chain_q) == 5 and (q["partition_key"] == PARTITION).all()
    payload = q[q["symbol"] == "KO2607X"]["payload"].iloc[0]
    assert payload["underlying"] == "KO" and "latestQuote" in payload["snapshot"]  # kept as received
    contracts_q = q[q["dataset"] == "option_contracts"]["reason"].tolist()
    assert any("strike disagrees with strike_price" in r for r in contracts_q)
    assert any("call/put disagrees with type" in r for r in contracts_q)
    assert any("open_interest must be >= 0" in r for r in contracts_q)
    assert len(contracts_q) == 3
    rejected = q[q["dataset"] == "option_contracts"]
    # each reject carries the record the server sent (the corruption above is applied after the wire)
    assert [p["symbol"] for p in rejected["payload"]] == rejected["symbol"].tolist()
    assert all(p["underlying_symbol"] == "KO" and "strike_price" in p for p in rejected["payload"])

    chain = wh.read_frame("SELECT symbol, bid, ask, mark, crossed, zero_bid FROM market.option_chain")
    assert not chain["symbol"].isin(q["symbol"]).any()
    assert chain["crossed"].sum() == 1 and chain.loc[chain["crossed"], "mark"].isna().all()
    assert chain["zero_bid"].sum() == 1 and chain.loc[chain["zero_bid"], "mark"].isna().all()
    truth = truth_chain(model)
    assert len(chain) == len(truth) - 5


def test_backfill_window_skips_the_weekend_and_links_oi_change_to_the_previous_snapshot(
    sim: SimulatorServer, model: MarketModel, wh: WarehouseResource
) -> None:
    sim.faults = FaultConfig()
    config = {"ops": {"symbols": {"config": {"symbols": ["KO", "NVDA"]}}}}
    result = run(ALL_ASSETS, resources(sim, wh), window=("2026-06-26", "2026-06-29"), run_config=config)
    assert result.success and all(check_results(result).values()), check_results(result)
    dates = wh.read_frame("SELECT DISTINCT snapshot_date FROM market.option_chain ORDER BY 1")["snapshot_date"]
    assert dates.tolist() == [date(2026, 6, 26), SESSION]  # Friday and Monday: no weekend snapshots
    flow_rows = wh.read_frame(
        "SELECT underlying, previous_snapshot_date, oi_change FROM market.options_flow_daily "
        "WHERE snapshot_date = %s ORDER BY underlying",
        (SESSION,),
    )
    assert (flow_rows["previous_snapshot_date"] == date(2026, 6, 26)).all()
    for row in flow_rows.itertuples():
        today = model.option_chain(row.underlying, SESSION)
        before = model.option_chain(row.underlying, date(2026, 6, 26)).set_index("symbol")["open_interest"]
        expected = today["open_interest"].sum() - before.reindex(today["symbol"]).fillna(0).sum()
        assert row.oi_change == expected
    # a contract listed on both days carries Monday's values; one listed only on Friday keeps Friday's
    listed_monday = sum(len(model.option_chain(u, SESSION)) for u in ("KO", "NVDA"))
    assert wh.scalar("SELECT count(*) FROM market.option_contracts WHERE as_of = %s", (SESSION,)) == listed_monday
    assert wh.scalar("SELECT min(first_seen) FROM market.option_contracts") == date(2026, 6, 26)


def test_rejected_keys_fail_the_partition_fast_and_are_logged(sim: SimulatorServer, wh: WarehouseResource) -> None:
    sim.faults = FaultConfig(forbidden=True)
    try:
        result = run([symbols, option_contracts], resources(sim, wh), partition=PARTITION, run_config=SYMBOLS_CONFIG)
    finally:
        sim.faults = FaultConfig()
    assert not result.success
    log = wh.read_frame("SELECT dataset, status, error, http_retries FROM market.ingestion_log")
    row = log[log["dataset"] == "option_contracts"].iloc[0]
    assert row["status"] == "failed" and "refused the credentials" in row["error"] and row["http_retries"] == 0
    assert wh.scalar("SELECT count(*) FROM market.option_contracts") == 0


def test_real_api_refuses_past_snapshots_and_settings_name_the_variable() -> None:
    real = AlpacaResource(api_key="AKREALKEY000", secret_key="secret", data_url="http://127.0.0.1:9")
    with pytest.raises(Failure, match="only as of now"):
        require_history(real, [date(2026, 6, 29)], now=datetime(2026, 11, 24, 12, tzinfo=UTC))
    require_history(real, [date(2026, 11, 23)], now=datetime(2026, 11, 24, 12, tzinfo=UTC))  # the latest: fine
    assert load_option_settings({}).risk_free_rate == 0.045
    parsed = load_option_settings({"DIVIDEND_YIELDS": "aapl=0.005, MSFT=0.007", "RISK_FREE_RATE": "0.05"})
    assert parsed.dividend_yield("AAPL") == 0.005 and parsed.dividend_yield("KO") == 0.0
    for env, variable in (
        ({"RISK_FREE_RATE": "4.5"}, "RISK_FREE_RATE"),
        ({"DIVIDEND_YIELDS": "AAPL:0.005"}, "DIVIDEND_YIELDS"),
        ({"DIVIDEND_YIELDS": "AAPL=abc"}, "DIVIDEND_YIELDS"),
        ({"OPTIONS_FEED": "sip"}, "OPTIONS_FEED"),
    ):
        with pytest.raises(SettingsError, match=variable):
            load_option_settings(env)


def test_option_parameters_resource_carries_the_validated_settings() -> None:
    """The resource the composition root binds is the environment's settings, validated the same way."""
    parameters = OptionParameters.from_environment(
        {"DIVIDEND_YIELDS": "ko=0.03", "RISK_FREE_RATE": "0.05", "OPTION_EXPIRY_HORIZON_DAYS": "40"}
    )
    assert parameters == OptionParameters(risk_free_rate=0.05, dividend_yields={"KO": 0.03}, expiry_horizon_days=40)
    assert OptionParameters.from_environment({}) == OptionParameters()
    with pytest.raises(SettingsError, match="OPTIONS_FEED"):
        OptionParameters.from_environment({"OPTIONS_FEED": "sip"})


def test_contracts_typed_page_by_page_match_one_page_and_reject_a_conflicting_repeat_across_pages(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typing each page as it arrives changes nothing: the same listings as one large page, and a contract that
    two pages list with different values is rejected (both copies), its payloads quarantined as delivered."""
    sim.faults = FaultConfig()
    alpaca = alpaca_for(sim)
    window = options_module.Window(SESSION, SESSION, [SESSION], UNIVERSE, PARTITION)
    one_page, _, fetched = options_module.fetch_contracts(alpaca, window, 60, "run")
    assert fetched > 1000
    real = options_module.option_contract_pages

    def small_pages(*args: Any, **kwargs: Any) -> Iterator[pd.DataFrame]:
        for i, page in enumerate(real(*args, **{**kwargs, "page_size": 500})):
            if i == 2:  # the first listing of this page again, at another strike: a conflicting repeat
                repeat = page.iloc[[0]].assign(strike_price="123.5")
                repeat["payload"] = [{**page["payload"].iloc[0], "strike_price": "123.5"}]
                page = pd.concat([page, repeat], ignore_index=True)
            yield page

    monkeypatch.setattr(options_module, "option_contract_pages", small_pages)
    paged, quarantine, fetched_paged = options_module.fetch_contracts(alpaca, window, 60, "run")
    assert fetched_paged == fetched + 1
    repeated = quarantine["symbol"].iloc[0]
    assert quarantine["symbol"].tolist() == [repeated, repeated]
    payloads = quarantine["payload"].tolist()
    assert {p["symbol"] for p in payloads} == {repeated} and all("underlying_symbol" in p for p in payloads)
    assert sorted(p["strike_price"] == "123.5" for p in payloads) == [False, True]  # both copies, as delivered
    assert (quarantine["reason"].str.contains("duplicate contract symbol")).all()
    expected = one_page[one_page["symbol"] != repeated].reset_index(drop=True)
    pd.testing.assert_frame_equal(paged.reset_index(drop=True), expected, check_exact=True)


def test_volume_history_reads_each_contracts_last_snapshots_before_the_session(wh: WarehouseResource) -> None:
    """The unusual-activity history: per contract of the session (with a volume), its last N earlier snapshots
    with a known volume; not every stored snapshot, not other underlyings, nothing on or after the session."""
    from market_assets.domain.sessions import sessions_between
    from market_assets.warehouse import tables
    from market_assets.warehouse.queries.options import volume_history
    from market_assets.warehouse.resource import conform

    days = sessions_between(date(2026, 5, 1), date(2026, 7, 2))
    at = days.index(SESSION)
    contracts = {"KO260918C00060000": "KO", "KO260918P00060000": "KO", "MSFT260918C00400000": "MSFT"}
    rows = []
    for i, day in enumerate(days):
        for symbol, underlying in contracts.items():
            volume = None if (symbol.endswith("P00060000") and day == SESSION) or i % 7 == 3 else 100 + i
            rows.append({"symbol": symbol, "snapshot_date": day, "underlying": underlying, "root": underlying,
                         "expiration": date(2026, 9, 18), "strike": 60.0, "type": "call", "volume": volume,
                         "crossed": False, "zero_bid": False})  # fmt: skip
    wh.upsert(tables.OPTION_CHAIN, conform(tables.OPTION_CHAIN, pd.DataFrame(rows)))
    history = volume_history(wh, ["KO"], SESSION, 5)
    known_before = [i for i in range(at) if i % 7 != 3][-5:]
    assert sorted(history["symbol"].unique()) == ["KO260918C00060000"]  # the put has no volume that session
    assert sorted(history["snapshot_date"]) == [days[i] for i in known_before]
    assert sorted(history["volume"]) == [100 + i for i in known_before]


def test_previews_pick_the_rows_a_full_sort_would() -> None:
    """atm_first: per underlying the contract nearest the money, then the nearest expiry, calls first;
    first_rows: the first rows in key order. Both rank key columns only, so the winners are checked by hand."""
    july, august = date(2026, 7, 17), date(2026, 8, 21)
    frame = pd.DataFrame(
        {
            "underlying": ["B", "A", "A", "A", "B", "A"],
            "strike": [50.0, 100.0, 105.0, 100.0, 55.0, 100.0],
            "underlying_price": [52.0, 101.0, 101.0, 101.0, 52.0, 101.0],
            "expiration": [july, august, july, july, july, july],
            "type": ["call", "call", "call", "put", "put", "call"],
            "payload": ["b50c", "a100c-aug", "a105c", "a100p", "b55p", "a100c-jul"],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    atm = options_module.atm_first(frame)
    assert atm["payload"].tolist() == ["a100c-jul", "b50c"] and atm.index.tolist() == [15, 10]
    assert list(atm.columns) == list(frame.columns)
    first = options_module.first_rows(frame, ["underlying", "expiration", "strike"], rows=3)
    assert first["payload"].tolist() == ["a100p", "a100c-jul", "a105c"]  # ties keep their order
