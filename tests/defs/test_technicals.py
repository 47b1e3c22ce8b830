"""Technicals end to end: simulator -> daily_bars -> technicals assets -> warehouse, in Dagster.

Everything runs through the real assets and a real PostgreSQL: three years of bars are ingested,
2025 is materialized as one partition range (the "full" run), and the tests then check that

* what is stored equals TA-Lib computed on the stored bars,
* partitions materialized one at a time after wiping the tables equal the full run to 1e-9
  (the lookback and the OBV/A-D anchoring are what make this hold),
* the asset checks pass, and fail on the faults they exist for,
* re-running is idempotent, and the intraday VWAP agrees with the minute bars.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib
from dagster import DagsterInstance, ExecuteInProcessResult

from alpaca_sim.server import SimulatorServer
from market_assets.analytics.technicals.frame import LOOKBACK_SESSIONS, TECHNICAL_COLUMNS
from market_assets.analytics.technicals.volume import daily_vwap
from market_assets.defs.bars import daily_bars, intraday_bars
from market_assets.defs.charts import technicals_charts
from market_assets.defs.partitions import daily_partitions
from market_assets.defs.technicals import (
    chart_patterns,
    history_start,
    indicator_checks,
    pivot_levels,
    support_resistance_levels,
    technical_indicators,
)
from market_assets.domain.sessions import sessions_between
from market_assets.reporting import charts as charts_module
from market_assets.reporting.technicals import CHART_SYMBOLS
from market_assets.warehouse.queries import technicals as technicals_queries
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.databases import truncate_all
from tests.fixtures.pipeline import alpaca_for, check_results, run, seed_symbols

CLOCK = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
UNIVERSE = ["AAPL", "MSFT", "NVDA", "XOM"]
LATE_LISTING = ("XOM", date(2025, 6, 2))  # its older bars are deleted: a young series in the same run
# starts before the lookback of the last days (2023-10-05 for 2025-12-24): the windowed path is exercised
BARS_WINDOW = ("2023-09-01", "2025-12-31")
FULL_WINDOW = ("2025-01-02", "2025-12-31")
LAST = date(2025, 12, 31)
# one by one, across Christmas and a weekend (which are not partitions: partitions are NYSE sessions),
# skipping sessions (12-26, 12-30) so that the OBV/A-D anchor is not always the previous bar
INCREMENTAL_DAYS = ["2025-12-23", "2025-12-24", "2025-12-29", "2025-12-31"]
NOT_PARTITIONS = ["2025-12-25", "2025-12-27", "2025-12-28"]
TECHNICALS = [technical_indicators, chart_patterns, support_resistance_levels, pivot_levels]
DERIVED_TABLES = "market.indicators_daily, market.patterns, market.support_resistance, market.pivot_points"
# cumulative volume series are ~1e9..1e11: compare them relative, prices absolute
VOLUME_SCALE = {"obv", "ad", "volume_sma_20"}


@dataclass
class Pipeline:
    warehouse: WarehouseResource
    resources: dict[str, Any]
    full_run: ExecuteInProcessResult
    snapshot: dict[str, pd.DataFrame]

    def materialize(self, assets: list[Any], **kwargs: Any) -> ExecuteInProcessResult:
        return run(assets, self.resources, instance=DagsterInstance.ephemeral(), **kwargs)


def read_table(warehouse: WarehouseResource, table: str) -> pd.DataFrame:
    """A derived table without its bookkeeping columns, in key order, with comparable dtypes."""
    keys = {
        "market.indicators_daily": "symbol, ts",
        "market.patterns": "symbol, ts, pattern",
        "market.support_resistance": "symbol, as_of, kind, level",
        "market.pivot_points": "symbol, ts",
    }[table]
    frame = warehouse.read_frame(f"SELECT * FROM {table} ORDER BY {keys}").drop(columns=["run_id", "computed_at"])
    for name in ("ts", "first_touch", "last_touch"):
        if name in frame:
            frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame.reset_index(drop=True)


def snapshot_all(warehouse: WarehouseResource) -> dict[str, pd.DataFrame]:
    return {t.strip(): read_table(warehouse, t.strip()) for t in DERIVED_TABLES.split(",")}


def wipe_derived(warehouse: WarehouseResource) -> None:
    with warehouse.connect() as conn:
        conn.execute(f"TRUNCATE {DERIVED_TABLES.replace('support_resistance', 'support_resistance_packed')}")


@pytest.fixture(scope="module")
def pipeline(migrated_warehouse: WarehouseResource) -> Iterator[Pipeline]:
    warehouse = migrated_warehouse
    truncate_all(warehouse)
    with SimulatorServer(clock=CLOCK, enable_ws=False) as sim:
        resources = {"warehouse": warehouse, "alpaca": alpaca_for(sim)}
        seed_symbols(UNIVERSE, warehouse)
        assert run([daily_bars], resources, window=BARS_WINDOW).success
        symbol, listed = LATE_LISTING
        with warehouse.connect() as conn:
            conn.execute("DELETE FROM market.bars_daily WHERE symbol = %s AND session < %s", (symbol, listed))
        full_run = run(TECHNICALS, resources, window=FULL_WINDOW)
        assert full_run.success
        yield Pipeline(warehouse, resources, full_run, snapshot_all(warehouse))
    wipe_derived(warehouse)  # the session's database is shared: leave no derived rows to later modules


def stored_bars(warehouse: WarehouseResource) -> pd.DataFrame:
    bars = warehouse.read_bars("market.bars_daily", UNIVERSE, date(2000, 1, 1), date(2030, 1, 1))
    bars["session"] = pd.to_datetime(bars["session"]).dt.date
    return bars


def talib_reference(bars: pd.DataFrame) -> pd.DataFrame:
    """TA-Lib on each symbol's whole stored history: the reference the table must reproduce."""
    frames = []
    for symbol, g in bars.groupby("symbol"):
        o, h, lo, c = (g[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
        v = g["volume"].to_numpy(dtype=float)
        ref = pd.DataFrame({"symbol": symbol, "ts": g["ts"].to_numpy()})
        ref["rsi"] = talib.RSI(c, 14)
        ref["macd"], ref["macd_signal"], ref["macd_hist"] = talib.MACD(c, 12, 26, 9)
        for n in (20, 50, 200):
            ref[f"sma_{n}"] = talib.SMA(c, n)
        ref["ema_12"], ref["ema_26"] = talib.EMA(c, 12), talib.EMA(c, 26)
        ref["bb_upper"], ref["bb_middle"], ref["bb_lower"] = talib.BBANDS(c, 20, 2.0, 2.0, 0)
        ref["atr_14"] = talib.ATR(h, lo, c, 14)
        ref["stoch_k"], ref["stoch_d"] = talib.STOCH(h, lo, c, 5, 3, 0, 3, 0)
        ref["true_range"] = talib.TRANGE(h, lo, c)
        ref["volume_sma_20"] = talib.SMA(v, 20)
        ref["obv"] = talib.OBV(c, v)
        ref["ad"] = talib.AD(h, lo, c, v)
        ref["return_1d"] = talib.ROCP(c, 1)
        ref["return_20d"] = talib.ROCP(c, 20)
        ref["return_252d"] = talib.ROCP(c, 252)
        ref["log_return_1d"] = np.log(c / np.r_[np.nan, c[:-1]])
        ref["dist_52w_high"] = c / talib.MAX(h, 252) - 1.0
        ref["dist_52w_low"] = c / talib.MIN(lo, 252) - 1.0
        ref["gap_pct"] = o / np.r_[np.nan, c[:-1]] - 1.0
        frames.append(ref)
    out = pd.concat(frames, ignore_index=True)
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    return out


def assert_frames_close(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str], what: str) -> None:
    """Same keys, same NULLs, and values equal to 1e-9 (relative for volume-scale columns)."""
    assert len(actual) == len(expected), f"{what}: {len(actual)} rows vs {len(expected)}"
    a = actual.sort_values(keys).reset_index(drop=True)
    e = expected.sort_values(keys).reset_index(drop=True)
    for key in keys:
        assert (a[key] == e[key]).all(), f"{what}: keys differ in {key}"
    for name in a.columns:
        if name in keys:
            continue
        left, right = a[name], e[name]
        if left.dtype.kind in "fiu" or right.dtype.kind in "fiu":
            x = pd.to_numeric(left, errors="coerce").to_numpy(dtype=float)
            y = pd.to_numeric(right, errors="coerce").to_numpy(dtype=float)
            assert (np.isnan(x) == np.isnan(y)).all(), f"{what}.{name}: NULLs differ"
            ok = ~np.isnan(x)
            rtol, atol = (1e-9, 0.0) if name in VOLUME_SCALE else (0.0, 1e-9)
            np.testing.assert_allclose(x[ok], y[ok], rtol=rtol, atol=atol, err_msg=f"{what}.{name}")
        else:
            assert (left.isna() == right.isna()).all(), f"{what}.{name}: NULLs differ"
            assert left.dropna().tolist() == right.dropna().tolist(), f"{what}.{name}: values differ"


def materialization(result: ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """Metadata of the run's last partition: the run-wide entries (`run_*`) plus that partition's own counts."""
    events = result.asset_materializations_for_node(asset)
    run_wide = {k for k in events[0].metadata if k.startswith("run_")}
    assert events and all({k: e.metadata[k] for k in run_wide} == {k: events[0].metadata[k] for k in run_wide}
                          for e in events)  # fmt: skip
    return events[-1].metadata


def partition_rows(result: ExecuteInProcessResult, asset: str) -> dict[str, int]:
    """Each partition's own `dagster/partition_row_count` (equal to its `rows_written`)."""
    events = result.asset_materializations_for_node(asset)
    counts = {e.partition: e.metadata["dagster/partition_row_count"].value for e in events}
    assert all(e.metadata["rows_written"].value == counts[e.partition] for e in events)
    return counts


def inline_png(markdown: str) -> bytes:
    encoded = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert encoded, "not an inline PNG"
    return base64.b64decode(encoded.group(1))


def test_full_run_checks_pass_and_metadata_has_its_own_counts(pipeline: Pipeline) -> None:
    checks = check_results(pipeline.full_run)
    expected = {
        "technical_indicators.rsi_in_range",
        "technical_indicators.no_nulls_after_warmup",
        "technical_indicators.rows_match_bars",
        "chart_patterns.patterns_on_bars",
        "support_resistance_levels.levels_consistent",
        "pivot_levels.pivots_ordered",
        "pivot_levels.pivots_cover_bars",
    }
    assert set(checks) == expected
    assert all(checks.values()), checks

    meta = materialization(pipeline.full_run, "technical_indicators")
    days = pipeline.full_run.asset_materializations_for_node("technical_indicators")
    # one materialization per partition, and partitions are exactly the NYSE sessions (issue 10)
    assert [e.partition for e in days] == [
        d.isoformat() for d in sessions_between(date(2025, 1, 2), date(2025, 12, 31))
    ]
    sessions_2025 = len(sessions_between(date(2025, 1, 2), date(2025, 12, 31)))
    expected_rows = sessions_2025 * 3 + len(pipeline.snapshot["market.indicators_daily"].query("symbol == 'XOM'"))
    assert meta["run_rows_written"].value == expected_rows
    # per-partition truth: each day carries its own rows (0 on a weekend), summing to the run's
    per_day = partition_rows(pipeline.full_run, "technical_indicators")
    assert sum(per_day.values()) == expected_rows and "2025-12-27" not in per_day  # a Saturday: not a partition
    assert per_day["2025-12-31"] == meta["rows_written"].value == meta["symbols_with_rows"].value == 4
    # no table-wide count(*) per run: at ten years it cost seconds per asset and grew with the history
    assert "dagster/row_count" not in meta and "dagster/partition_row_count" in meta
    assert "rsi" in {c.name for c in meta["dagster/column_schema"].value.columns}
    assert meta["lookback_sessions"].value == LOOKBACK_SESSIONS
    # a range run stores its preview once, on the last partition's materialization (the latest), not once per session
    days = {e.partition: e.metadata for e in pipeline.full_run.asset_materializations_for_node("technical_indicators")}
    assert "preview" not in days["2025-12-30"] and "preview" in days["2025-12-31"]
    # so does the table's schema: one copy per run, not one per session's stored event
    assert "dagster/column_schema" not in days["2025-12-30"] and "dagster/column_schema" in days["2025-12-31"]
    levels = {
        e.partition: e.metadata for e in pipeline.full_run.asset_materializations_for_node("support_resistance_levels")
    }
    assert "levels_per_symbol_latest" not in levels["2025-12-30"] and "levels_per_symbol_latest" in levels["2025-12-31"]
    assert not pipeline.full_run.asset_observations_for_node("technical_indicators")
    for asset in ("technical_indicators", "chart_patterns", "support_resistance_levels"):  # drawn by technicals_charts
        assert "chart" not in materialization(pipeline.full_run, asset)

    stored = pipeline.snapshot["market.indicators_daily"]
    assert stored["session"].min() == date(2025, 1, 2) and stored["session"].max() == date(2025, 12, 31)
    young = stored[stored["symbol"] == LATE_LISTING[0]]
    assert young["sma_200"].isna().all() and young["rsi"].notna().sum() > 100  # warm-up, not a failure
    assert stored.loc[stored["symbol"] != LATE_LISTING[0], "sma_200"].notna().all()
    assert len(pipeline.snapshot["market.patterns"]) > 50
    assert len(pipeline.snapshot["market.support_resistance"]) > 500
    assert len(pipeline.snapshot["market.pivot_points"]) == len(stored) - 1  # XOM's first bar has no previous


def test_charts_draw_the_stored_rows_of_the_runs_last_session(pipeline: Pipeline) -> None:
    """technicals_charts (its own asset, off the data path): the pictures of the run's last session, once."""
    result = pipeline.materialize([technicals_charts], window=("2025-12-01", "2025-12-31"))
    assert result.success
    events = result.asset_materializations_for_node("technicals_charts")
    assert [e.partition for e in events] == [d.isoformat() for d in sessions_between(date(2025, 12, 1), LAST)]
    assert not {"movers", "patterns", "levels"} & set(events[0].metadata)  # stored once, on the last partition
    meta = events[-1].metadata
    dpi = charts_module._DPI_STEPS[0]
    for name in ("movers", "patterns", "levels"):
        png = inline_png(meta[name].value)
        width, height = struct.unpack(">II", png[16:24])
        assert (width, height) == (round(6.0 * CHART_SYMBOLS * dpi), round(8.6 * dpi)) and len(png) < 150_000, name

    # the symbols drawn, computed independently from the stored bars and tables
    bars = stored_bars(pipeline.warehouse)
    bars["move"] = (bars["close"] / bars.groupby("symbol")["close"].shift(1) - 1.0).abs()
    on_last = bars[bars["session"] == LAST].sort_values(["move", "symbol"], ascending=[False, True])
    movers = on_last["symbol"].tolist()[:CHART_SYMBOLS]
    assert f"Biggest movers on {LAST}: {', '.join(movers)}" in meta["movers"].value
    patterns = pipeline.snapshot["market.patterns"]
    december = patterns[patterns["session"] >= date(2025, 12, 1)].groupby("symbol").size().reset_index(name="n")
    busiest = december.sort_values(["n", "symbol"], ascending=[False, True])["symbol"].tolist()[:CHART_SYMBOLS]
    assert f"2025-12-01 .. {LAST}: {', '.join(busiest)} " in meta["patterns"].value
    assert meta["charted_symbols"].value == sorted({*movers, *busiest, *UNIVERSE[:CHART_SYMBOLS]})

    # what is drawn is what is stored: bars joined with their indicator rows on (symbol, ts)
    frame = technicals_queries.chart_frame(pipeline.warehouse, ["AAPL"], date(2025, 7, 1), LAST)
    stored = pipeline.snapshot["market.indicators_daily"].query("symbol == 'AAPL' and session >= @date(2025, 7, 1)")
    assert len(frame) == len(stored) > 100
    np.testing.assert_array_equal(frame["rsi"].to_numpy(dtype=float), stored["rsi"].to_numpy(dtype=float))


@pytest.mark.parametrize("symbol", UNIVERSE)
def test_stored_indicators_equal_talib_on_stored_bars(pipeline: Pipeline, symbol: str) -> None:
    stored = pipeline.snapshot["market.indicators_daily"].query("symbol == @symbol")
    reference = talib_reference(stored_bars(pipeline.warehouse).query("symbol == @symbol"))
    merged = stored.merge(reference, on=["symbol", "ts"], suffixes=("", "_talib"), validate="1:1")
    assert len(merged) == len(stored) > 100
    compared = [c for c in reference.columns if c not in ("symbol", "ts")]
    assert {"rsi", "macd", "macd_signal", "macd_hist", "sma_20", "sma_50", "sma_200"} <= set(compared)
    for name in compared:
        ours = merged[name].to_numpy(dtype=float)
        ref = merged[f"{name}_talib"].to_numpy(dtype=float)
        assert (np.isnan(ours) == np.isnan(ref)).all(), f"{name}: NULL pattern differs from TA-Lib"
        ok = ~np.isnan(ref)
        rtol, atol = (1e-9, 0.0) if name in VOLUME_SCALE else (0.0, 1e-9)
        np.testing.assert_allclose(ours[ok], ref[ok], rtol=rtol, atol=atol, err_msg=name)
    assert stored["rsi"].dropna().between(0, 100).all()


def test_views_answer_analyst_questions(pipeline: Pipeline) -> None:
    warehouse = pipeline.warehouse
    snap = warehouse.read_frame("SELECT * FROM market.v_technical_snapshot ORDER BY symbol")
    assert snap["symbol"].tolist() == sorted(UNIVERSE)
    assert (snap["session"] == date(2025, 12, 31)).all()
    assert snap.loc[snap["symbol"] != LATE_LISTING[0], ["close", "rsi", "macd", "sma_200"]].notna().all().all()
    recent = warehouse.read_frame("SELECT * FROM market.v_signals_recent")
    assert len(recent) and recent["session"].min() >= date(2025, 11, 17)
    levels = warehouse.read_frame("SELECT * FROM market.v_levels_latest")
    assert set(levels["symbol"]) == set(UNIVERSE) and (levels["as_of"] == date(2025, 12, 31)).all()
    events = warehouse.read_frame("SELECT event, count(*) AS n FROM market.v_indicator_events GROUP BY event")
    assert {"macd_cross_up", "macd_cross_down"} <= set(events["event"])
    # readable: rounded in the views (the tables keep full precision), dates that are dates
    for column, digits in (("rsi", 2), ("sma_20", 4), ("macd", 4), ("return_1d", 6), ("relative_volume", 3)):
        values = snap[column].dropna().astype(float)
        assert len(values) and (values == values.round(digits)).all(), column
    assert str(snap["rsi"].dtype) == "float64"
    touches = levels[["first_touch", "last_touch"]].stack()
    assert len(touches) and all(type(v) is date for v in touches)
    stored = warehouse.read_frame("SELECT symbol, session, rsi FROM market.indicators_daily")
    latest = stored.loc[stored.groupby("symbol")["session"].idxmax()].set_index("symbol")["rsi"]
    np.testing.assert_allclose(snap.set_index("symbol")["rsi"], latest.loc[snap["symbol"]], atol=0.005)


def test_partitions_one_by_one_equal_the_full_run(pipeline: Pipeline) -> None:
    """Wipe every derived table, then materialize the last days alone, one partition per run."""
    wipe_derived(pipeline.warehouse)
    partition_keys = daily_partitions.get_partition_keys(current_time=CLOCK)
    assert all(d in partition_keys for d in INCREMENTAL_DAYS) and not any(d in partition_keys for d in NOT_PARTITIONS)
    for i, day in enumerate(INCREMENTAL_DAYS):
        result = pipeline.materialize(TECHNICALS, partition=day)
        assert result.success, day
        assert all(check_results(result).values()), (day, check_results(result))
        meta = materialization(result, "technical_indicators")
        if i == 0:  # nothing stored before: OBV/A-D are read from each symbol's first bar
            assert meta["full_history_symbols"].value == len(UNIVERSE) - 1  # XOM's history is short anyway
        else:
            assert meta["obv_ad_anchored_symbols"].value == len(UNIVERSE)  # continues the stored series
            assert meta["full_history_symbols"].value == 0
            assert meta["history_start"].value == str(history_start(date.fromisoformat(day), LOOKBACK_SESSIONS))
    incremental = snapshot_all(pipeline.warehouse)
    days = {date.fromisoformat(d) for d in INCREMENTAL_DAYS}
    keys = {
        "market.indicators_daily": ["symbol", "ts"],
        "market.patterns": ["symbol", "ts", "pattern"],
        "market.support_resistance": ["symbol", "as_of", "kind", "level"],
        "market.pivot_points": ["symbol", "ts"],
    }
    for table, frame in incremental.items():
        full = pipeline.snapshot[table]
        expected = full[full["session"].isin(days)]
        assert set(frame["session"]) <= days
        if table == "market.support_resistance":
            # float level is part of the key: compare on the rank within (symbol, as_of, kind)
            expected = expected.assign(rank=expected.groupby(["symbol", "as_of", "kind"]).cumcount())
            frame = frame.assign(rank=frame.groupby(["symbol", "as_of", "kind"]).cumcount())
            assert_frames_close(frame, expected, ["symbol", "as_of", "kind", "rank"], table)
        else:
            assert_frames_close(frame, expected, keys[table], table)
    assert len(incremental["market.indicators_daily"]) == len(INCREMENTAL_DAYS) * len(UNIVERSE)  # all sessions


def test_rerun_is_idempotent(pipeline: Pipeline) -> None:
    december = ("2025-12-15", "2025-12-31")
    first = pipeline.materialize(TECHNICALS, window=december)
    assert first.success and all(check_results(first).values())
    after_first = snapshot_all(pipeline.warehouse)
    second = pipeline.materialize(TECHNICALS, window=december)
    assert second.success and all(check_results(second).values())
    after_second = snapshot_all(pipeline.warehouse)
    for table, frame in after_second.items():
        pd.testing.assert_frame_equal(frame, after_first[table], check_exact=True, obj=table)
        full = pipeline.snapshot[table]
        in_window = full[full["session"].between(date(2025, 12, 15), date(2025, 12, 31))]
        assert len(frame[frame["session"].between(date(2025, 12, 15), date(2025, 12, 31))]) == len(in_window)
    meta = materialization(second, "technical_indicators")
    sessions = len(sessions_between(date(2025, 12, 15), date(2025, 12, 31)))
    assert meta["rows_replaced"].value == meta["run_rows_written"].value == sessions * len(UNIVERSE)
    assert sum(partition_rows(second, "technical_indicators").values()) == sessions * len(UNIVERSE)


def test_intraday_vwap_comes_from_minute_bars(pipeline: Pipeline) -> None:
    with SimulatorServer(clock=CLOCK, enable_ws=False) as sim:
        resources = {**pipeline.resources, "alpaca": alpaca_for(sim)}
        assert run([intraday_bars], resources, window=("2025-12-30", "2025-12-31")).success
        result = run([technical_indicators], resources, window=("2025-12-29", "2025-12-31"))
    assert result.success and all(check_results(result).values())
    stored = pipeline.warehouse.read_frame(
        "SELECT symbol, session, vwap_intraday, minute_bars FROM market.indicators_daily "
        "WHERE session BETWEEN '2025-12-29' AND '2025-12-31' ORDER BY symbol, session"
    )
    minutes = pipeline.warehouse.read_frame(
        "SELECT symbol, ts, high, low, close, volume, vwap FROM market.bars_minute ORDER BY symbol, ts"
    )
    expected = daily_vwap(minutes)
    expected["session"] = pd.to_datetime(expected["session"]).dt.date
    merged = stored.merge(expected, on=["symbol", "session"], how="left")
    without = merged[merged["session"] == date(2025, 12, 29)]
    assert without["vwap_intraday"].isna().all() and without["minute_bars"].isna().all()
    with_minutes = merged[merged["session"] > date(2025, 12, 29)]
    assert len(with_minutes) == 2 * len(UNIVERSE)
    np.testing.assert_allclose(with_minutes["vwap_intraday"], with_minutes["vwap"], rtol=1e-12)
    counts = minutes.assign(session=pd.to_datetime(minutes["ts"], utc=True).dt.tz_convert("America/New_York").dt.date)
    per_day = counts.groupby(["symbol", "session"]).size().rename("n").reset_index()
    checked = with_minutes.merge(per_day, on=["symbol", "session"])
    assert (checked["minute_bars"] == checked["n"]).all()
    view = pipeline.warehouse.read_frame(
        "SELECT symbol, session, vwap_intraday FROM market.vwap_daily WHERE session BETWEEN '2025-12-29' AND "
        "'2025-12-31' ORDER BY symbol, session"
    )
    np.testing.assert_allclose(
        view["vwap_intraday"].to_numpy(dtype=float), stored["vwap_intraday"].to_numpy(dtype=float), rtol=1e-12
    )


def test_checks_fail_on_the_faults_they_guard(pipeline: Pipeline) -> None:
    """A check that cannot fail proves nothing: corrupt stored rows and watch each one trip."""
    day = date(2025, 12, 31)
    warehouse = pipeline.warehouse
    result = pipeline.materialize([technical_indicators], partition=str(day))
    assert result.success
    assert all(c.passed for c in indicator_checks(warehouse, UNIVERSE, day, day))
    with warehouse.connect() as conn:
        conn.execute("UPDATE market.indicators_daily SET rsi = 100.5 WHERE symbol = 'AAPL' AND session = %s", (day,))
        conn.execute("UPDATE market.indicators_daily SET sma_200 = NULL WHERE symbol = 'MSFT' AND session = %s", (day,))
        conn.execute("UPDATE market.indicators_daily SET sma_200 = NULL WHERE symbol = 'XOM' AND session = %s", (day,))
        conn.execute("DELETE FROM market.indicators_daily WHERE symbol = 'NVDA' AND session = %s", (day,))
        # a row whose bar does not exist: AAPL's row copied an hour later
        conn.execute(
            "CREATE TEMP TABLE stray ON COMMIT DROP AS SELECT * FROM market.indicators_daily"
            " WHERE symbol = 'AAPL' AND session = %s",
            (day,),
        )
        conn.execute("UPDATE stray SET ts = ts + interval '1 hour'")
        conn.execute("INSERT INTO market.indicators_daily SELECT * FROM stray")
    checks = {c.check_name: c for c in indicator_checks(warehouse, UNIVERSE, day, day)}
    assert not checks["rsi_in_range"].passed
    assert checks["rsi_in_range"].metadata["out_of_range"].value == 2  # AAPL's row and its stray copy
    assert not checks["rows_match_bars"].passed
    coverage = {k: v.value for k, v in checks["rows_match_bars"].metadata.items()}
    assert coverage == {"bars": len(UNIVERSE), "rows": len(UNIVERSE), "missing": 1, "orphans": 1}
    nulls = checks["no_nulls_after_warmup"]
    assert not nulls.passed
    assert nulls.metadata["null_cells"].value == 1  # MSFT only: XOM has < 200 sessions, NVDA's row is gone
    restored = pipeline.materialize([technical_indicators], partition=str(day))
    assert restored.success and all(check_results(restored).values())


def test_level_and_pivot_checks_fail_on_the_faults_they_guard(pipeline: Pipeline) -> None:
    """The same for the level and pivot checks: a flag or a level on the wrong side of the close, a touch after the
    as-of bar, a first touch after its last, pivots out of order and a missing pivot row are each counted; a
    re-materialization clears them."""
    day = date(2025, 12, 31)
    warehouse = pipeline.warehouse
    result = pipeline.materialize([support_resistance_levels, pivot_levels], partition=str(day))
    assert result.success and all(check_results(result).values())
    assert technicals_queries.level_violations(warehouse, UNIVERSE, day, day) == 0
    assert technicals_queries.pivot_faults(warehouse, UNIVERSE, day, day) == {"unordered": 0, "missing": 0}
    with warehouse.connect() as conn:
        # AAPL: its first level's side flipped; MSFT: its last level touched a day after the as-of bar
        conn.execute("UPDATE market.support_resistance_packed SET resistance[1] = NOT resistance[1]"
                     " WHERE symbol = 'AAPL' AND session = %s", (day,))  # fmt: skip
        conn.execute("UPDATE market.support_resistance_packed SET last_touch[cardinality(last_touch)] ="
                     " last_touch[cardinality(last_touch)] + interval '400 days'"
                     " WHERE symbol = 'MSFT' AND session = %s", (day,))  # fmt: skip
        # NVDA: its first level's first touch after its last
        conn.execute("UPDATE market.support_resistance_packed SET first_touch[1] = last_touch[1] + interval '1 second'"
                     " WHERE symbol = 'NVDA' AND session = %s", (day,))  # fmt: skip
        # XOM: its lowest level (a support) moved above its highest, flags untouched
        conn.execute("UPDATE market.support_resistance_packed SET level[1] = level[cardinality(level)] + 1"
                     " WHERE symbol = 'XOM' AND session = %s AND NOT resistance[1]", (day,))  # fmt: skip
        conn.execute("UPDATE market.pivot_points SET r1 = s3 - 1 WHERE symbol = 'AAPL' AND session = %s", (day,))
        conn.execute("DELETE FROM market.pivot_points WHERE symbol = 'MSFT' AND session = %s", (day,))
    assert technicals_queries.level_violations(warehouse, UNIVERSE, day, day) == 4
    assert technicals_queries.pivot_faults(warehouse, UNIVERSE, day, day) == {"unordered": 1, "missing": 1}
    restored = pipeline.materialize([support_resistance_levels, pivot_levels], partition=str(day))
    assert restored.success and all(check_results(restored).values())
    assert technicals_queries.level_violations(warehouse, UNIVERSE, day, day) == 0


def test_every_computed_column_is_stored_with_values(pipeline: Pipeline) -> None:
    """One test, not one per column name (the registry test already proves the columns exist): every computed
    column reached the warehouse with values, not only as an empty column."""
    stored = pipeline.snapshot["market.indicators_daily"]
    assert [c for c in TECHNICAL_COLUMNS if c not in stored.columns] == []
    assert [c for c in TECHNICAL_COLUMNS if stored[c].isna().all()] == []
