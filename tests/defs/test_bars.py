"""Daily and minute bars end to end: simulator -> alpaca-py -> pandera -> warehouse, in Dagster."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import FaultConfig, SimulatorServer
from market_assets.config import DEFAULT_SYMBOLS
from market_assets.defs.bars import daily_bars, intraday_bars
from market_assets.domain.sessions import sessions_between
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.pipeline import (
    VALUE_COLUMNS,
    alpaca_for,
    check_results,
    run,
    seed_symbols,
    stored_bars,
)

CLOCK = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)
# the default universe with SPY swapped for a class-suffixed ticker, to cover BRK.B-style symbols
UNIVERSE = [*(s for s in DEFAULT_SYMBOLS if s != "SPY"), "BRK.B"]
QUARTERS = [
    ("2025-07-01", "2025-09-30"),
    ("2025-10-01", "2025-12-31"),
    ("2026-01-01", "2026-03-31"),
    ("2026-04-01", "2026-06-30"),
]


@pytest.fixture(scope="module")
def model() -> MarketModel:
    return MarketModel(seed=7)


@pytest.fixture
def sim(model: MarketModel):
    with SimulatorServer(model, clock=CLOCK, enable_ws=False) as server:
        yield server


def test_year_backfill_through_faults_equals_ground_truth(
    sim: SimulatorServer, model: MarketModel, warehouse: WarehouseResource
) -> None:
    sim.faults = FaultConfig(
        seed=3, rate_limit_every=4, error_rate=0.12, slow_every=23, slow_seconds=1.5, drop_every=29
    )
    # timeout below the slow responses so they exercise the timeout path; one symbol per request
    # so a year is ~80 requests and the faults hit every stage of paging
    alpaca = alpaca_for(sim, symbols_per_request=1, timeout_seconds=0.75, max_attempts=8)
    seed_symbols(UNIVERSE, warehouse)
    for first, last in QUARTERS:
        result = run([daily_bars], {"alpaca": alpaca, "warehouse": warehouse}, window=(first, last))
        assert result.success
        assert all(check_results(result).values()), check_results(result)

    served = sim.stats.snapshot()
    faults = sum(served["faults"].values())
    assert faults * 5 >= served["total"], served  # at least 1 request in 5 was a fault
    assert served["faults"].get("rate_limit", 0) > 0, served
    assert sum(n for kind, n in served["faults"].items() if kind.startswith("http_5")) > 0, served
    truth = model.daily_bars(UNIVERSE, date(2025, 7, 1), date(2026, 6, 30)).reset_index(drop=True)
    stored = stored_bars(warehouse)
    assert len(stored) == 20 * len(sessions_between(date(2025, 7, 1), date(2026, 6, 30)))
    pd.testing.assert_frame_equal(stored[VALUE_COLUMNS], truth[VALUE_COLUMNS], check_exact=True)
    dupes = warehouse.scalar("SELECT count(*) - count(DISTINCT (symbol, ts)) FROM market.bars_daily")
    assert dupes == 0
    log = warehouse.read_frame("SELECT status, http_retries FROM market.ingestion_log")
    assert (log["status"] == "success").all() and log["http_retries"].sum() > 0


def test_rerunning_a_partition_changes_nothing(sim: SimulatorServer, warehouse: WarehouseResource) -> None:
    alpaca = alpaca_for(sim)
    seed_symbols(["AAPL", "MSFT", "SPY"], warehouse)
    resources = {"alpaca": alpaca, "warehouse": warehouse}
    assert run([daily_bars], resources, window=("2026-06-01", "2026-06-30")).success
    before = stored_bars(warehouse)
    assert run([daily_bars], resources, partition="2026-06-15").success
    assert run([daily_bars], resources, window=("2026-06-01", "2026-06-30")).success
    pd.testing.assert_frame_equal(before, stored_bars(warehouse))


def test_malformed_rows_are_quarantined_never_stored(
    sim: SimulatorServer, model: MarketModel, warehouse: WarehouseResource
) -> None:
    sim.faults = FaultConfig(seed=11, malformed=0.03)
    symbols = ["AAPL", "MSFT", "SPY", "KO"]
    seed_symbols(symbols, warehouse)
    result = run([daily_bars], {"alpaca": alpaca_for(sim), "warehouse": warehouse}, window=("2026-01-01", "2026-06-30"))
    # the good rows are written; the holes fail the no_missing_sessions check (ERROR), which names the symbols.
    # Since issue 13 (item 9) that check no longer blocks: one symbol's hole must not stop the others downstream.
    assert result.success
    corrupted = [c for c in sim.stats.snapshot()["corrupted"] if c[0] == "1Day"]
    holes = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_missing_sessions" and not e.passed
    )
    assert holes.severity.value == "ERROR"
    named = set(holes.description.removeprefix("no valid bar delivered for ").split(", "))
    must = {sym for _, sym, _, kind in corrupted if kind not in ("invalid_symbol", "duplicate_ts")}
    assert must <= named <= set(symbols), named
    kinds = {c[3] for c in corrupted}
    assert {"null_price", "nonpositive_price", "high_below_low"} <= kinds, kinds

    stored = stored_bars(warehouse)
    truth = model.daily_bars(symbols, date(2026, 1, 1), date(2026, 6, 30))
    bad_keys = {(sym, pd.Timestamp(t)) for _, sym, t, kind in corrupted if kind != "invalid_symbol"}
    # every stored row is a true row, untouched
    merged = stored.merge(truth, on=["symbol", "ts"], suffixes=("", "_true"), validate="one_to_one")
    assert len(merged) == len(stored)
    for col in ["open", "high", "low", "close", "volume", "vwap"]:
        assert (merged[col] == merged[f"{col}_true"]).all(), col
    # nothing corrupted got in, except exact duplicates collapsed back into their true row
    quarantine = warehouse.read_frame("SELECT symbol, ts, reason, payload, source FROM market.quarantine")
    assert len(quarantine) > 0
    assert quarantine["reason"].str.len().min() > 5
    assert (quarantine["source"] == "alpaca:/v2/stocks/bars").all()
    for sym, ts in bad_keys:
        key_rows = stored[(stored.symbol == sym) & (stored.ts == ts)]
        kind = next(k for _, s, t, k in corrupted if s == sym and pd.Timestamp(t) == ts)
        if kind == "duplicate_ts":
            continue  # see test below: conflicting duplicates go to quarantine, identical ones collapse
        assert key_rows.empty, (sym, ts, kind)
        q = quarantine[(quarantine.symbol == sym) & (pd.to_datetime(quarantine.ts, utc=True) == ts)]
        assert len(q) >= 1, (sym, ts, kind)
    reasons = " | ".join(quarantine["reason"])
    assert "must be > 0" in reasons and "OHLC inconsistent" in reasons and "missing" in reasons
    if "invalid_symbol" in kinds:
        assert "symbol" in reasons
    checks = check_results(result)
    assert checks["daily_bars.no_missing_sessions"] is False
    assert checks["daily_bars.bars_contract"] is True


def test_minute_bars_of_a_half_day_equal_the_truth(
    sim: SimulatorServer, model: MarketModel, warehouse: WarehouseResource
) -> None:
    seed_symbols(["AAPL", "KO"], warehouse)
    result = run([intraday_bars], {"alpaca": alpaca_for(sim), "warehouse": warehouse}, partition="2025-11-28")
    assert result.success and all(check_results(result).values())
    stored = stored_bars(warehouse, "market.bars_minute")
    truth = model.minute_bars(
        ["AAPL", "KO"], datetime(2025, 11, 28, 14, 30, tzinfo=UTC), datetime(2025, 11, 28, 18, 0, tzinfo=UTC)
    ).reset_index(drop=True)
    pd.testing.assert_frame_equal(stored[VALUE_COLUMNS], truth[VALUE_COLUMNS], check_exact=True)
    last = stored["ts"].max().tz_convert("America/New_York")
    assert (last.hour, last.minute) == (12, 59)  # half day: the last bar starts at 12:59


def test_wrong_keys_fail_fast_without_a_retry_storm(sim: SimulatorServer, warehouse: WarehouseResource) -> None:
    seed_symbols(["AAPL"], warehouse)
    alpaca = alpaca_for(sim, api_key="PKWRONG", secret_key="wrong")
    result = run([daily_bars], {"alpaca": alpaca, "warehouse": warehouse}, partition="2026-06-15")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause else ""
    text = failure.step_failure_data.error.message + message
    assert "refused the credentials (HTTP 401)" in text and "ALPACA_API_KEY" in text
    assert "PKWRONG" not in text and "wrong" not in text.replace("went wrong", "")
    assert sim.stats.snapshot()["statuses"] == {401: 1}
    assert warehouse.scalar("SELECT count(*) FROM market.bars_daily") == 0
    log = warehouse.read_frame("SELECT status, error FROM market.ingestion_log")
    assert log["status"].tolist() == ["failed"]


def test_bad_symbols_are_refused_before_any_request(sim: SimulatorServer) -> None:
    from market_assets.errors import InvalidSymbolsError

    alpaca = alpaca_for(sim)
    with pytest.raises(InvalidSymbolsError, match="'aapl'"):
        alpaca.fetch_bars(["AAPL", "aapl", "TOOLONG"], "1Day", CLOCK, CLOCK)
    assert sim.stats.snapshot()["total"] == 0
