"""Runs whose process died: marked failed, so they never hold a slot of the run queue.

Why: ``market-data run`` executes its runs in its own process (Dagster's ``materialize``), which no run launcher
watches. After a ``kill -9`` (OOM killer, host crash) such a run stayed STARTED forever, and two of them made
the daemon's QueuedRunCoordinator (``max_concurrent_runs: 2``) refuse every queued run indefinitely (issue 13,
item 3). Each CLI run is tagged with its host, pid and the process's start time (so a recycled pid is not
mistaken for it); any later ``market-data run``, and the daemon through ``dead_cli_runs_sensor``, mark runs
whose process is gone as failed. Runs the daemon launches are covered by Dagster's own run monitoring
(``run_monitoring`` in dagster.yaml).
"""

from __future__ import annotations

import os
import socket
from typing import Any

SOURCE_TAG = "market/source"
HOST_TAG = "market/cli_host"
PID_TAG = "market/cli_pid"
PROCESS_START_TAG = "market/cli_process_start"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22); None if it is gone."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()  # noqa: SIM115
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None  # a zombie is dead too


def cli_run_tags() -> dict[str, str]:
    """The tags that let a later process tell whether this process is still alive."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PROCESS_START_TAG: process_start(pid) or ""}


def is_dead(tags: dict[str, str]) -> bool:
    """True when the tagged process is certainly gone (on this host; another host's runs are left alone)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    return process_start(int(tags[PID_TAG])) != tags.get(PROCESS_START_TAG)


def fail_dead_cli_runs(instance: Any) -> list[str]:
    """Mark this host's in-progress CLI runs whose process died as FAILURE; returns their run ids."""
    from dagster import DagsterRunStatus, RunsFilter

    in_progress = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED]
    failed: list[str] = []
    for run in instance.get_runs(filters=RunsFilter(statuses=in_progress, tags={SOURCE_TAG: "cli"})):
        if is_dead(run.tags):
            instance.report_run_failed(
                run,
                message=f"the market-data process (pid {run.tags.get(PID_TAG)} on {run.tags.get(HOST_TAG)}) "
                "that ran this run is gone (killed or crashed): marked failed",
            )
            failed.append(run.run_id)
    return failed
