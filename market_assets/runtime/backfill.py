"""A long backfill as a sequence of bounded chunks that can stop cleanly and resume where it stopped.

Why chunks of sessions: one Dagster run over ten years holds every bar (and its raw payload) of the
window in memory at once and cannot be stopped until its slowest step returns. A chunk of
`DEFAULT_CHUNK_SESSIONS` sessions is one run over a partition range: it still asks Alpaca for
pages of 10,000 bars of many symbols (13 requests per 252 sessions of 500 symbols, 130 for ten
years against the absolute minimum of 127), and each asset writes the whole chunk in one
transaction, so memory is bounded by the chunk and every partition is fully old or fully new.

Why resume from Dagster's own records: the event log already knows which partitions of which
asset were materialized; a re-run of the same command asks it, and only sessions some selected
asset lacks are fetched and computed again (`--refresh` does everything again).

Stopping: during a run Dagster turns SIGINT and SIGTERM into an interruption of the step under
way (its write is rolled back, so that partition range stays as it was); between runs our own
handler notes the request and the loop stops before the next chunk. Either way the command ends
with the resume instructions and exit code 130.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from types import FrameType
from typing import Any

DEFAULT_CHUNK_SESSIONS = 252  # one year of sessions: ~126k daily bars for 500 symbols per run
INTERRUPTED_ERROR = "DagsterExecutionInterruptedError"


@dataclass(frozen=True)
class Chunk:
    """One run: a contiguous range of sessions and the assets that still lack some of them."""

    sessions: tuple[date, ...]
    assets: tuple[str, ...]

    @property
    def first(self) -> date:
        return self.sessions[0]

    @property
    def last(self) -> date:
        return self.sessions[-1]


def plan_chunks(
    sessions: Sequence[date],
    done: dict[str, set[str]],
    *,
    chunk_sessions: int = DEFAULT_CHUNK_SESSIONS,
    refresh: bool = False,
) -> list[Chunk]:
    """Chunks covering every session some asset lacks (all of them with `refresh`).

    `done` maps each selected asset to the partition keys (YYYY-MM-DD) it has materialized. A chunk
    is at most `chunk_sessions` consecutive sessions of `sessions` that all need work; a complete
    session ends a chunk, so completed ranges are never fetched again.
    """
    if chunk_sessions < 1:
        raise ValueError("chunk_sessions must be >= 1")
    assets = sorted(done)
    chunks: list[Chunk] = []
    run: list[date] = []
    needs: set[str] = set()

    def close() -> None:
        if run:
            chunks.append(Chunk(tuple(run), tuple(sorted(needs))))
        run.clear()
        needs.clear()

    for day in sessions:
        key = day.isoformat()
        lacking = set(assets) if refresh else {a for a in assets if key not in done[a]}
        if not lacking:
            close()
            continue
        run.append(day)
        needs.update(lacking)
        if len(run) >= chunk_sessions:
            close()
    close()
    return chunks


def materialized_keys(
    instance: Any, asset_names: Sequence[str], *, job_name: str, tags: dict[str, str]
) -> dict[str, set[str]]:
    """Partition keys each asset has materialized in runs of `job_name` carrying the same universe tags.

    Why not the assets' materialized partitions: partitions are sessions, not (session, symbol); a run of other symbols
    materializes the same keys, and resuming from them would skip this universe's work (two concurrent runs of KO and
    PEP: the second found the window "complete" and wrote nothing). Runs of any status count: an interrupted run's
    finished partitions are complete (each partition is written in one transaction). A stop that lands after a chunk's
    write committed but before Dagster recorded its materializations leaves that chunk unrecorded: the re-run redoes
    it, which the writer's replace makes idempotent (Dagster's record, not the warehouse, is the truth here).
    """
    from dagster import DagsterEventType, RunsFilter

    wanted = set(asset_names)
    done: dict[str, set[str]] = {name: set() for name in asset_names}
    for run in instance.get_runs(filters=RunsFilter(job_name=job_name, tags=tags)):
        records = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
        for record in records:
            event = record.event_log_entry.dagster_event
            materialization = event.step_materialization_data.materialization if event is not None else None
            if materialization is None or materialization.partition is None:
                continue
            name = materialization.asset_key.to_user_string()
            if name in wanted:
                done[name].add(materialization.partition)
    return done


class StopRequest:
    """SIGINT/SIGTERM received outside a Dagster run: finish nothing new, say how to resume."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handle(self, signo: int, _frame: FrameType | None) -> None:
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signo

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Install the handlers (main thread only); Dagster replaces them during each run and
        restores them after it."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


@dataclass
class ChunkResult:
    """What one chunk's run reported back."""

    success: bool
    rows: int
    interrupted: bool
    outcome: Any


def run_chunks(
    chunks: Sequence[Chunk],
    run_chunk: Callable[[Chunk], ChunkResult],
    stop: StopRequest,
    on_done: Callable[[Chunk, ChunkResult], None],
) -> tuple[list[ChunkResult], bool]:
    """Run the chunks in order; stop at the first failure, interruption or stop request.

    Returns (results, stopped_by_request).
    """
    results: list[ChunkResult] = []
    for chunk in chunks:
        if stop:
            return results, True
        result = run_chunk(chunk)
        results.append(result)
        on_done(chunk, result)
        if result.interrupted:
            return results, True
        if not result.success:
            return results, False
    return results, bool(stop)
