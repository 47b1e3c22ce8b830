"""The intraday sensor over simulated trading days, and one refresh run end to end.

The sensor is evaluated with Dagster's ``build_sensor_context`` and a ``MarketClockResource``
pinned to each simulated moment; the cursor is carried from one evaluation to the next exactly
as the daemon would, and "crashes" drop a cursor update on purpose.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
import talib
from dagster import DagsterInstance, RunRequest, SensorResult, SkipReason, build_sensor_context

from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import SimulatorServer
from market_assets.cache.resource import CacheResource
from market_assets.defs.intraday import intraday_refresh_job, intraday_refresh_sensor
from market_assets.defs.resources import MarketClockResource
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.pipeline import alpaca_for, seed_symbols


def ny(text: str) -> datetime:
    return pd.Timestamp(text, tz="America/New_York").to_pydatetime()


def evaluate(
    instance: DagsterInstance, now: datetime, cursor: str | None, warehouse: WarehouseResource
) -> tuple[RunRequest | None, str | None, str]:
    """One tick: (run request or None, the cursor the daemon would store, skip message)."""
    clock = MarketClockResource(now_override=now.isoformat())
    context = build_sensor_context(
        cursor=cursor, instance=instance, resources={"market_clock": clock, "warehouse": warehouse}
    )
    result = intraday_refresh_sensor(context)
    if isinstance(result, SkipReason):
        return None, cursor, result.skip_message or ""
    assert isinstance(result, SensorResult) and len(result.run_requests or []) == 1
    return result.run_requests[0], result.cursor, ""  # type: ignore[index]


def window_of(cursor: str | None) -> str | None:
    return None if cursor is None else pd.Timestamp(json.loads(cursor)["window_end"]).tz_convert(
        "America/New_York").strftime("%Y-%m-%d %H:%M")  # fmt: skip


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


def test_sensor_over_a_half_day_a_holiday_and_a_full_day(
    instance: DagsterInstance, warehouse: WarehouseResource
) -> None:
    ticks = [
        # (New York time, expected run_key or None, expected cursor window end, words in the skip reason)
        ("2025-11-26 08:00:00", None, None, "before"),
        ("2025-11-26 09:30:20", None, None, "before"),
        ("2025-11-26 09:31:05", "intraday:2025-11-26:0930-0931", "2025-11-26 09:31", ""),
        ("2025-11-26 09:31:40", None, "2025-11-26 09:31", "no new complete minute"),
        ("2025-11-26 09:45:10", "intraday:2025-11-26:0931-0945", "2025-11-26 09:45", ""),
        ("2025-11-26 12:00:00", "intraday:2025-11-26:0945-1200", "2025-11-26 12:00", ""),
        ("2025-11-26 16:00:30", "intraday:2025-11-26:1200-1600", "2025-11-26 16:00", ""),  # closing window
        ("2025-11-26 16:05:00", None, "2025-11-26 16:00", "closed at 16:00"),
        ("2025-11-27 11:00:00", None, "2025-11-26 16:00", "not an NYSE session"),  # Thanksgiving
        ("2025-11-28 09:29:00", None, "2025-11-26 16:00", "before"),
        ("2025-11-28 09:40:02", "intraday:2025-11-28:0930-0940", "2025-11-28 09:40", ""),  # new session
        ("2025-11-28 12:58:59", "intraday:2025-11-28:0940-1258", "2025-11-28 12:58", ""),
        ("2025-11-28 13:04:00", "intraday:2025-11-28:1258-1300", "2025-11-28 13:00", ""),  # half-day close
        ("2025-11-28 13:05:00", None, "2025-11-28 13:00", "closed at 13:00"),
        ("2025-11-28 15:00:00", None, "2025-11-28 13:00", "closed at 13:00"),
        ("2025-11-29 11:00:00", None, "2025-11-28 13:00", "not an NYSE session"),  # Saturday
    ]
    cursor: str | None = None
    for when, run_key, cursor_end, reason in ticks:
        request, cursor, skip = evaluate(instance, ny(when), cursor, warehouse)
        assert (request.run_key if request else None) == run_key, when
        assert window_of(cursor) == cursor_end, when
        assert reason in skip, (when, skip)
        if request is not None:
            config = request.run_config["ops"]["refresh_minute_bars"]["config"]
            assert pd.Timestamp(config["window_end"]) == pd.Timestamp(json.loads(cursor)["window_end"])  # type: ignore[arg-type]


def test_crash_before_cursor_save_neither_duplicates_nor_loses_a_window(
    instance: DagsterInstance, warehouse: WarehouseResource
) -> None:
    _, cursor, _ = evaluate(instance, ny("2025-11-26 10:00:10"), None, warehouse)
    assert window_of(cursor) == "2025-11-26 10:00"
    first, _lost_cursor, _ = evaluate(instance, ny("2025-11-26 10:05:10"), cursor, warehouse)
    assert first is not None and first.run_key == "intraday:2025-11-26:1000-1005"
    # the daemon crashes before storing `_lost_cursor`: the same tick is evaluated again
    again, _, _ = evaluate(instance, ny("2025-11-26 10:05:40"), cursor, warehouse)
    assert again is not None and again.run_key == first.run_key  # same key: Dagster will not launch it twice
    assert again.run_config == first.run_config
    # or the next tick comes a few minutes later: its window still starts at the saved cursor
    later, later_cursor, _ = evaluate(instance, ny("2025-11-26 10:08:30"), cursor, warehouse)
    assert later is not None and later.run_key == "intraday:2025-11-26:1000-1008"
    assert later.run_config["ops"]["refresh_minute_bars"]["config"]["window_start"] == pd.Timestamp(
        "2025-11-26 15:00", tz="UTC").isoformat()  # fmt: skip
    assert window_of(later_cursor) == "2025-11-26 10:08"
    # a garbage cursor is treated as "nothing requested yet today": the window restarts at the open
    reset, _, _ = evaluate(instance, ny("2025-11-26 10:08:30"), "not json", warehouse)
    assert reset is not None and reset.run_key == "intraday:2025-11-26:0930-1008"


@pytest.fixture
def cache(redis_url: str) -> Iterator[CacheResource]:
    resource = CacheResource(redis_url=redis_url, key_prefix=f"mdtest:{uuid.uuid4().hex[:10]}")
    yield resource
    client = resource.client()
    keys = list(client.scan_iter(match=f"{resource.key_prefix}:*"))
    if keys:
        client.delete(*keys)
    resource.close()


def test_refresh_runs_upsert_bars_indicators_and_cache(
    warehouse: WarehouseResource, cache: CacheResource, instance: DagsterInstance
) -> None:
    symbols = ["AAPL", "MSFT", "SPY"]
    seed_symbols(symbols, warehouse)
    model = MarketModel(seed=5)
    with SimulatorServer(model, clock=ny("2026-06-30 10:00:20"), enable_ws=False) as sim:
        resources = {"alpaca": alpaca_for(sim), "warehouse": warehouse, "cache": cache}
        cursor = None
        for now in ("2026-06-30 10:00:20", "2026-06-30 10:20:20", "2026-06-30 10:21:05"):
            sim.clock = ny(now)
            request, cursor, _ = evaluate(instance, ny(now), cursor, warehouse)
            assert request is not None
            # the universe is resolved at the tick and travels with the run, as the schedule's does (item 2)
            assert request.tags["market/universe"] == "AAPL,MSFT,SPY"
            result = intraday_refresh_job.execute_in_process(
                run_config=request.run_config, resources=resources, instance=instance,
                tags={**request.tags, "dagster/run_key": request.run_key or ""},
            )  # fmt: skip
            assert result.success

    truth = model.minute_bars(symbols, ny("2026-06-30 09:30"), ny("2026-06-30 10:20"))
    stored = warehouse.read_bars("market.bars_minute", symbols, date(2026, 6, 30), date(2026, 6, 30))
    assert len(stored) == len(truth) and stored["ts"].max() == pd.Timestamp("2026-06-30 14:20", tz="UTC")
    np.testing.assert_array_equal(stored["close"].to_numpy(), truth.sort_values(["symbol", "ts"])["close"].to_numpy())

    ind = warehouse.read_frame(
        "SELECT ts, close, rsi, macd, sma_20 FROM market.indicators_intraday WHERE symbol = 'AAPL' ORDER BY ts"
    )
    closes = stored[stored["symbol"] == "AAPL"]["close"].to_numpy(dtype=float)
    assert len(ind) == len(closes)
    np.testing.assert_allclose(ind["rsi"].to_numpy(float), talib.RSI(closes, 14), atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(ind["macd"].to_numpy(float), talib.MACD(closes)[0], atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(ind["sma_20"].to_numpy(float), talib.SMA(closes, 20), atol=1e-9, equal_nan=True)

    cached = cache.read_market("AAPL")
    assert cached is not None and cached.source == "1Min"
    assert pd.Timestamp(cached.ts) == pd.Timestamp("2026-06-30 14:20", tz="UTC")
    assert cached.price == closes[-1]
    assert cached.intraday is not None and cached.intraday.rsi == pytest.approx(ind["rsi"].iloc[-1], abs=0)
    log = warehouse.read_frame("SELECT run_key, status, bars_upserted, cache_written FROM market.intraday_refresh_log")
    assert list(log["status"]) == ["success"] * 3 and (log["cache_written"] == len(symbols)).all()
    assert log["run_key"].tolist()[-1] == "intraday:2026-06-30:1020-1021"
