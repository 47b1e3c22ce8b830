"""Scale-out of batch work on Celery workers (dagster-celery), through the Redis the platform already has.

Why Celery and not more run processes: one run's steps (bars, intraday bars, technicals, options,
cache) are independent enough to run side by side, and a backfill is many runs; with the Celery
executor every step becomes a task on a queue, and any number of workers on any number of machines
take them. The broker is Redis (``CELERY_BROKER_URL``, e.g. ``redis://:password@redis:6379/1``: a
database of its own beside the cache's); RabbitMQ (``pyamqp://user:password@rabbitmq//``) is the
documented alternative for larger fleets. Workers start with::

    dagster-celery worker start -A dagster_celery.app -y deploy/celery/celery.yaml -q dagster

and need the same image, DAGSTER_HOME (the PostgreSQL instance) and DATABASE_URL/REDIS_URL as the code
server: a worker loads the code location itself to run a step.

``worker_prefetch_multiplier`` 1 with late acks: a step is minutes of work, so a worker must not
reserve more than it runs (an idle worker would wait while another holds the queue), and a worker
that dies mid-step hands the task back instead of losing it (steps are idempotent partition
replaces, so running one twice is harmless).
"""

from __future__ import annotations

from dagster import define_asset_job
from dagster_celery import celery_executor

from market_assets.defs.partitions import daily_partitions
from market_assets.defs.schedules import daily_market_job

CELERY_BROKER_ENV = "CELERY_BROKER_URL"
CELERY_QUEUE = "dagster"


def celery_execution_config(queue: str = CELERY_QUEUE) -> dict[str, object]:
    """The executor's run config: broker and result backend from CELERY_BROKER_URL, one queue."""
    return {
        "broker": {"env": CELERY_BROKER_ENV},
        "backend": {"env": CELERY_BROKER_ENV},
        "config_source": {
            "task_default_queue": queue,
            "worker_prefetch_multiplier": 1,
            "task_acks_late": True,
            "broker_connection_retry_on_startup": True,
        },
    }


daily_market_celery_job = define_asset_job(
    "daily_market_celery_job",
    selection=daily_market_job.selection,  # the same assets, only the executor differs
    partitions_def=daily_partitions,
    executor_def=celery_executor,
    config={"execution": {"config": celery_execution_config()}},
    description="daily_market_job with every step on a Celery worker (for backfills across machines).",
)
