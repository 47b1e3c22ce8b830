"""The dead-run check the daemon runs (dead_cli_runs_sensor) and every `market-data run` runs at start-up."""

from __future__ import annotations

import os
import subprocess
import sys

from dagster import DagsterInstance, DagsterRunStatus, build_sensor_context

from market_assets.defs.housekeeping import dead_cli_runs_sensor
from market_assets.runtime.liveness import PID_TAG, PROCESS_START_TAG, SOURCE_TAG, cli_run_tags, is_dead


def started_run(instance: DagsterInstance, tags: dict[str, str]) -> str:
    """A STARTED run as an in-process CLI run leaves it (a bare record: no job needs to execute)."""
    from dagster import DagsterRun

    record = DagsterRun(job_name="__ephemeral_asset_job__", status=DagsterRunStatus.STARTED, tags=tags)
    instance.add_run(record)
    return record.run_id


def dead_process_tags() -> dict[str, str]:
    """Tags of a process that has exited (its pid no longer runs the same process)."""
    child = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE)
    tags = {**cli_run_tags(), PID_TAG: child.communicate()[0].decode().strip()}
    tags[PROCESS_START_TAG] = "1"  # whatever now holds that pid started at another time
    return tags


def test_a_live_process_is_not_dead_and_a_recycled_pid_is() -> None:
    assert not is_dead(cli_run_tags())
    assert is_dead({**cli_run_tags(), PROCESS_START_TAG: "1"})  # same pid, different process start
    assert not is_dead({**cli_run_tags(), "market/cli_host": "another-host"})  # never judged from elsewhere


def test_the_daemon_sensor_fails_dead_cli_runs_and_leaves_live_ones() -> None:
    instance = DagsterInstance.ephemeral()
    dead = [started_run(instance, {SOURCE_TAG: "cli", **dead_process_tags()}) for _ in range(2)]
    alive = started_run(instance, {SOURCE_TAG: "cli", **cli_run_tags()})
    result = dead_cli_runs_sensor(build_sensor_context(instance=instance))
    assert "marked 2 dead run(s) failed" in str(result.skip_message)
    assert [instance.get_run_by_id(r).status for r in dead] == [DagsterRunStatus.FAILURE] * 2
    assert instance.get_run_by_id(alive).status == DagsterRunStatus.STARTED
    assert os.getpid() == int(instance.get_run_by_id(alive).tags[PID_TAG])
