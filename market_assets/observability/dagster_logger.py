"""The Dagster logger for asset runs: the same JSON (or text) lines as every other component.

Why our own ``@logger`` and not ``dagster.json_console_logger``: Dagster's JSON logger dumps the raw LogRecord with
the packed event (dozens of fields, a different shape from our other components, and every metadata value of the
event); this one is built the same way (a ``@logger`` with the same ``log_level``/``name`` config, so existing run
config keeps working) but writes our fields, taking ``run_id``, ``step`` and ``partition`` from Dagster's record
metadata (``dagster_meta``: the run id, the step key and the run's tags), plus ``dagster_event`` (the event type).
``market_loggers()`` binds it as ``console`` only when ``MARKET_LOG_FORMAT=json``, so text stays Dagster's own.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from dagster import Field, InitLoggerContext, LoggerDefinition, logger

from market_assets.config import load_log_format
from market_assets.observability.logging import JsonFormatter

PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


class DagsterJsonFormatter(JsonFormatter):
    def record_fields(self, record: logging.LogRecord) -> dict[str, Any]:
        out = super().record_fields(record)
        meta = getattr(record, "dagster_meta", None)
        if not isinstance(meta, dict):
            return out
        out["event"] = self.mask(str(meta.get("orig_message") or out["event"]))
        if meta.get("run_id"):
            out["run_id"] = meta["run_id"]
        if meta.get("step_key"):
            out["step"] = meta["step_key"]
        if meta.get("job_name"):
            out["job"] = meta["job_name"]
        tags = meta.get("job_tags") or {}
        if tags.get(PARTITION_TAG):
            out["partition"] = tags[PARTITION_TAG]
        elif all(tags.get(t) for t in RANGE_TAGS):
            out["partition"] = f"{tags[RANGE_TAGS[0]]}..{tags[RANGE_TAGS[1]]}"
        event = meta.get("dagster_event")
        if event is not None:
            out["dagster_event"] = getattr(event, "event_type_value", None)
        return out


@logger(
    {
        "log_level": Field(str, is_required=False, default_value="INFO"),
        "name": Field(str, is_required=False, default_value="dagster"),
    },
    description="One JSON object per line (time, level, component, run_id, step, partition, event).",
)
def market_json_logger(init_context: InitLoggerContext) -> logging.Logger:
    config = init_context.logger_config
    logger_ = logging.Logger(config["name"], level=config["log_level"].upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(DagsterJsonFormatter("dagster"))
    logger_.addHandler(handler)
    return logger_


def market_loggers(log_format: str | None = None) -> dict[str, LoggerDefinition]:
    """The loggers for Definitions: ours as ``console`` in JSON mode; none (Dagster's default) in text mode."""
    return {"console": market_json_logger} if (log_format or load_log_format()) == "json" else {}
