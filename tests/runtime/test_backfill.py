"""Chunk planning, resume and the stop request of a long backfill (pure parts; the CLI test runs them for real)."""

from __future__ import annotations

import os
import signal
from datetime import date, timedelta

from market_assets.runtime.backfill import Chunk, ChunkResult, StopRequest, plan_chunks, run_chunks

DAYS = [date(2024, 1, 2) + timedelta(days=i) for i in range(10)]


def keys(days: list[date]) -> set[str]:
    return {d.isoformat() for d in days}


def test_fresh_window_in_chunks_of_n_sessions() -> None:
    chunks = plan_chunks(DAYS, {"a": set(), "b": set()}, chunk_sessions=4)
    assert [len(c.sessions) for c in chunks] == [4, 4, 2]
    assert all(c.assets == ("a", "b") for c in chunks)
    assert chunks[0].first == DAYS[0] and chunks[-1].last == DAYS[-1]


def test_resume_skips_complete_sessions_and_assets() -> None:
    done = {"bars": keys(DAYS[:6]), "levels": keys(DAYS[:3])}
    chunks = plan_chunks(DAYS, done, chunk_sessions=100)
    # one run per stretch of incomplete sessions, with every asset any of them lacks
    assert chunks == [Chunk(tuple(DAYS[3:]), ("bars", "levels"))]
    assert plan_chunks(DAYS, {"bars": keys(DAYS), "levels": keys(DAYS[:3])}) == [Chunk(tuple(DAYS[3:]), ("levels",))]


def test_a_complete_session_splits_chunks_and_refresh_redoes_everything() -> None:
    done = {"bars": keys([DAYS[4]])}
    chunks = plan_chunks(DAYS, done, chunk_sessions=100)
    assert [(c.first, c.last) for c in chunks] == [(DAYS[0], DAYS[3]), (DAYS[5], DAYS[9])]
    assert plan_chunks(DAYS, {"bars": keys(DAYS)}) == []
    assert sum(len(c.sessions) for c in plan_chunks(DAYS, {"bars": keys(DAYS)}, refresh=True)) == 10


def test_stop_request_between_chunks() -> None:
    stop = StopRequest()
    ran: list[Chunk] = []
    chunks = plan_chunks(DAYS, {"a": set()}, chunk_sessions=2)

    def run(chunk: Chunk) -> ChunkResult:
        ran.append(chunk)
        if len(ran) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives between chunks: the handler only notes it
        return ChunkResult(True, 0, False, None)

    with stop.installed():
        _, stopped = run_chunks(chunks, run, stop, lambda c, r: None)
    assert stopped and len(ran) == 2 and stop.signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is not stop._handle  # restored


def test_an_interrupted_chunk_stops_the_loop() -> None:
    chunks = plan_chunks(DAYS, {"a": set()}, chunk_sessions=3)
    outcomes = iter([ChunkResult(True, 1, False, None), ChunkResult(False, 0, True, None)])
    results, stopped = run_chunks(chunks, lambda c: next(outcomes), StopRequest(), lambda c, r: None)
    assert stopped and len(results) == 2
