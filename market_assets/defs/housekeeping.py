"""Housekeeping sensors the daemon runs: runs whose process died are marked failed.

Why a sensor: the daemon is the one long-lived process of a deployment; a sensor gives it the same check
``market-data run`` does at start-up (`market_assets.runtime.liveness`), so two killed CLI runs cannot hold the
QueuedRunCoordinator's slots while nobody runs the CLI again.
"""

from __future__ import annotations

from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from market_assets.runtime.liveness import fail_dead_cli_runs

DEAD_RUN_CHECK_SECONDS = 60


@sensor(
    minimum_interval_seconds=DEAD_RUN_CHECK_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Marks CLI runs whose market-data process died (kill -9, OOM) as failed, freeing queue slots.",
)
def dead_cli_runs_sensor(context: SensorEvaluationContext) -> SkipReason:
    failed = fail_dead_cli_runs(context.instance)
    return SkipReason(f"marked {len(failed)} dead run(s) failed: {', '.join(failed)}" if failed else "none dead")
