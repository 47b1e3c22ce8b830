"""Structured logs: one JSON object per line (``MARKET_LOG_FORMAT=json``) or plain text for people.

Why one formatter for every component: a log shipper (Loki, Elasticsearch, CloudWatch) should parse the CLI, the
Dagster assets, the exporter and the live services the same way, and find the run id and partition in the same
fields. Why masking here as well as at the source: a secret must not leak through an exception message or a URL
someone logged by mistake; the last line of defence is the formatter, which replaces every secret in force
(``config.secret_values``) by ``***`` before a line is written.

Fields: ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``component`` (cli, dagster, exporter, health, stream,
serve), ``logger``, ``event`` (the message), and where known ``run_id``, ``step``, ``partition``, ``asset``;
``exc`` holds a formatted traceback. Extra fields come from ``logger.info(..., extra={"fields": {...}})``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from market_assets.config import load_log_format, secret_values

CONTEXT_FIELDS = ("run_id", "step", "partition", "asset")
MASK = "***"


class SecretMasker:
    """Replaces every known secret string; built once per handler from the environment."""

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        # a 1-2 character "secret" would mangle every line; real keys are long
        self.secrets = tuple(s for s in (secret_values() if secrets is None else secrets) if len(s) >= 4)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record, no newlines inside (tracebacks are a string field)."""

    def __init__(self, component: str, *, masker: SecretMasker | None = None, context: Mapping[str, Any] | None = None):
        super().__init__()
        self.component = component
        self.mask = masker or SecretMasker()
        self.context = dict(context or {})

    def record_fields(self, record: logging.LogRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "component": getattr(record, "component", None) or self.component,
            "logger": record.name,
            "event": self.mask(record.getMessage()),
        }
        out.update({k: v for k, v in self.context.items() if v is not None})
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.mask(self.formatException(record.exc_info))
        return out

    def format(self, record: logging.LogRecord) -> str:
        return self.mask(json.dumps(self.record_fields(record), default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """The human format, masked the same way."""

    def __init__(self, component: str, *, masker: SecretMasker | None = None):
        super().__init__(f"%(asctime)s %(levelname)-7s {component} %(name)s: %(message)s")
        self.mask = masker or SecretMasker()

    def format(self, record: logging.LogRecord) -> str:
        return self.mask(super().format(record))


def formatter(component: str, log_format: str | None = None, **context: Any) -> logging.Formatter:
    """The formatter ``MARKET_LOG_FORMAT`` asks for (or ``log_format``), for `component`."""
    if (log_format or load_log_format()) == "json":
        return JsonFormatter(component, context=context)
    return TextFormatter(component)


def configure(
    component: str, *, level: int | str = logging.INFO, stream: TextIO | None = None, log_format: str | None = None
) -> logging.Handler:
    """Route the root logger to one stderr handler in the chosen format (idempotent: replaces our previous one).

    Called once at the start of each long-lived process (CLI, exporter, stream, serve); Dagster's own run logs go
    through ``observability.dagster_logger`` instead.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_market_handler", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(component, log_format))
    handler._market_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return handler
