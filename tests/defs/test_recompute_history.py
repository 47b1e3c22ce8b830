"""`recompute_history` writes the four derived tables of the recomputed symbols together or not at all, and stops
without waiting for writes it has not started.

Its writes run on a writer thread while the next table is computed, all in one transaction: a computation that
fails after earlier tables were written, and a write the server rejects, must both leave every table exactly as it
was, and say what failed. On real data: AAPL's 2020 bars with its 4:1 split and the 0.82 dividend.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import psycopg
import pytest

from market_assets.defs import corporate_actions as defs
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.real_aapl import REAL, store_aapl_2020

pytestmark = pytest.mark.skipif(not REAL.exists(), reason="real data files not present")
DERIVED = {
    "market.indicators_daily": "symbol, ts",
    "market.patterns": "symbol, ts, pattern",
    "market.support_resistance_packed": "symbol, as_of",
    "market.pivot_points": "symbol, ts",
}


def _derived(warehouse: WarehouseResource) -> dict[str, pd.DataFrame]:
    return {t: warehouse.read_frame(f"SELECT * FROM {t} ORDER BY {k}") for t, k in DERIVED.items()}


def _unchanged(before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame]) -> None:
    for table in DERIVED:
        assert len(after[table]) == len(before[table]) > 0, table
        assert set(after[table]["run_id"]) == {"first"}, table
        pd.testing.assert_frame_equal(after[table], before[table], obj=table)


def test_a_failure_after_earlier_tables_were_written_leaves_all_four_as_they_were(
    warehouse: WarehouseResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_aapl_2020(warehouse)
    written = defs.recompute_history(warehouse, ["AAPL"], "first")  # 43 bars: one indicator row each
    assert written["market.indicators_daily"] == 43 and all(n > 0 for n in written.values()), written
    before = _derived(warehouse)

    # the computation of the third table fails: indicators and patterns were already handed to the writer
    def broken(*_: object, **__: object) -> pd.DataFrame:
        raise RuntimeError("support/resistance failed")

    with monkeypatch.context() as patch:
        patch.setattr(defs, "levels_for_sessions", broken)
        with pytest.raises(RuntimeError, match="support/resistance failed"):
            defs.recompute_history(warehouse, ["AAPL"], "second")
    _unchanged(before, _derived(warehouse))

    # the server rejects the third table's rows (a level must be > 0): the error names it, and pivots, computed
    # and handed over after the failed write, are not written either
    real = defs.levels_for_sessions

    def negative(*args: object, **kwargs: object) -> pd.DataFrame:
        return real(*args, **kwargs).assign(level=-1.0)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(defs, "levels_for_sessions", negative)
        with pytest.raises(psycopg.errors.CheckViolation, match="support_resistance"):
            defs.recompute_history(warehouse, ["AAPL"], "second")
    _unchanged(before, _derived(warehouse))

    # and a good re-run replaces all four
    assert defs.recompute_history(warehouse, ["AAPL"], "third") == written
    for table, frame in _derived(warehouse).items():
        assert set(frame["run_id"]) == {"third"}, table


def test_a_failure_with_writes_still_queued_cancels_them_and_stops_after_the_current_one(
    warehouse: WarehouseResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping (an error, Ctrl-C) does not wait for writes not yet started: a recompute of a whole universe queues
    four writes of millions of rows, and all of them would be rolled back anyway."""
    store_aapl_2020(warehouse)
    defs.recompute_history(warehouse, ["AAPL"], "first")
    before = _derived(warehouse)
    calls: list[str] = []
    replace = WarehouseResource.replace_partition

    def slow_write(self: WarehouseResource, table: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(table.name)  # each write as slow as a large universe's: 2 s
        time.sleep(2.0)
        return replace(self, table, *args, **kwargs)

    def interrupted(*_: object, **__: object) -> pd.DataFrame:
        raise RuntimeError("stopped while computing pivots")

    with monkeypatch.context() as patch:
        patch.setattr(WarehouseResource, "replace_partition", slow_write)  # the resource is frozen: on its class
        patch.setattr(defs, "pivot_rows", interrupted)  # the fourth computation: three writes handed over by then
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="stopped while computing pivots"):
            defs.recompute_history(warehouse, ["AAPL"], "second")
        elapsed = time.monotonic() - started
    assert calls == ["market.indicators_daily"], calls  # the write in progress finished; the two queued never ran
    assert elapsed < 3.5, elapsed  # one write (2 s), not three (6 s)
    _unchanged(before, _derived(warehouse))
