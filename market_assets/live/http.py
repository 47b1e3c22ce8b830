"""Plain HTTP answers (``/healthz``, the live page) from a websockets server's ``process_request`` hook.

Why in the WebSocket server and not beside it: one port per service is one port to expose, probe and
firewall; websockets lets a handshake be answered with an ordinary HTTP response instead of an upgrade.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response


def respond(connection: ServerConnection, status: HTTPStatus, body: bytes | str, content_type: str) -> Response:
    """An HTTP response with ``body`` (websockets' ``respond`` only builds text/plain)."""
    data = body.encode() if isinstance(body, str) else body
    response = connection.respond(status, "")
    for name in ("Content-Type", "Content-Length"):
        del response.headers[name]
    response.headers["Content-Type"] = content_type
    response.headers["Content-Length"] = str(len(data))
    response.headers["Cache-Control"] = "no-store"
    response.body = data
    return response


def respond_json(connection: ServerConnection, payload: dict[str, Any], *, ok: bool = True) -> Response:
    """``/healthz``: 200 when healthy, 503 otherwise, so a load balancer or Kubernetes probe can act on it."""
    status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
    return respond(connection, status, json.dumps(payload, default=str), "application/json")


def is_upgrade(request: Any) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


def respond_metrics(connection: ServerConnection, registry: CollectorRegistry) -> Response:
    """``/metrics``: the service's own Prometheus metrics (observability.metrics), on the same port as /healthz."""
    return respond(connection, HTTPStatus.OK, generate_latest(registry), CONTENT_TYPE_LATEST)
