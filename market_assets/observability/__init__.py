"""Metrics, structured logs, the audit trail and health checks (README: "Operations").

``metrics``, ``logging`` and ``audit`` are the low layer every component may import (no Dagster, no warehouse
resource); ``exporter`` and ``health`` read the whole platform and sit on top, beside the CLI.
"""
