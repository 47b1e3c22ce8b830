"""The daily job's reconciliation: before the T+1 replace, the streamed minute bars against the batch."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd

from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import SimulatorServer
from market_assets.defs.bars import intraday_bars
from market_assets.domain.reconcile import compare_minute_bars
from market_assets.warehouse import tables
from market_assets.warehouse.queries.bars import STREAM_RUN_ID
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.pipeline import alpaca_for, check_results, run, seed_symbols

SESSION = date(2025, 11, 28)  # a half day: 14:30 .. 18:00 UTC
OPEN = datetime(2025, 11, 28, 14, 30, tzinfo=UTC)


def _streamed(model: MarketModel) -> tuple[pd.DataFrame, int]:
    """What the stream would have written: the truth, one minute revised, one lost, one extra."""
    bars = model.minute_bars(["AAPL", "KO"], OPEN, OPEN + timedelta(hours=3, minutes=30)).reset_index(drop=True)
    frame = pd.DataFrame({"symbol": bars["symbol"], "ts": pd.to_datetime(bars["ts"], utc=True), "session": SESSION,
                          "open": bars["open"], "high": bars["high"], "low": bars["low"], "close": bars["close"],
                          "volume": bars["volume"].astype("int64"), "trade_count": bars["trade_count"].astype("Int64"),
                          "vwap": bars["vwap"], "feed": "iex", "run_id": STREAM_RUN_ID})  # fmt: skip
    frame.loc[3, "volume"] += 7  # a late trade the stream never heard of
    extra = frame.iloc[[0]].assign(ts=pd.Timestamp("2025-11-28 18:30", tz=UTC))  # after the half day's close
    return pd.concat([frame.drop(index=10), extra], ignore_index=True), len(bars)


def test_intraday_bars_reports_the_streamed_day_against_the_batch_before_replacing_it(
    warehouse: WarehouseResource,
) -> None:
    model = MarketModel(seed=7)
    with SimulatorServer(model, clock=datetime(2026, 7, 1, 1, 0, tzinfo=UTC), enable_ws=False) as sim:
        seed_symbols(["AAPL", "KO"], warehouse)
        streamed, truth_rows = _streamed(model)
        warehouse.upsert(tables.BARS_MINUTE, streamed)
        first = run([intraday_bars], {"alpaca": alpaca_for(sim), "warehouse": warehouse}, partition=str(SESSION))
        # the streamed rows are gone now (the batch is the final word): a second run has nothing to compare
        second = run([intraday_bars], {"alpaca": alpaca_for(sim), "warehouse": warehouse}, partition=str(SESSION))
    assert first.success and second.success
    (evaluation,) = [e for e in first.get_asset_check_evaluations() if e.check_name == "stream_reconciliation"]
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert evaluation.passed is False and evaluation.severity.value == "WARN"
    assert (meta["streamed_rows"], meta["batch_rows"]) == (truth_rows, truth_rows)  # one lost, one extra
    assert (meta["missing"], meta["extra"], meta["mismatched"]) == (1, 1, 1)
    assert "extra AAPL 18:30" in meta["examples"]
    assert check_results(second)["intraday_bars.stream_reconciliation"] is True
    assert warehouse.scalar("SELECT count(*) FROM market.bars_minute WHERE run_id = %s", (STREAM_RUN_ID,)) == 0


def test_compare_of_identical_days_is_clean_and_of_empty_sides_counts_rows() -> None:
    ts = pd.Timestamp("2025-11-28 14:30", tz=UTC)
    row = {"symbol": "AAPL", "ts": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10, "vwap": None}
    same = pd.DataFrame([row])
    assert compare_minute_bars(same, same.copy(), SESSION).clean
    report = compare_minute_bars(pd.DataFrame(), same, SESSION)
    assert (report.streamed_rows, report.batch_rows, report.missing, report.extra) == (0, 1, 1, 0)
