"""Every Prometheus metric family of the platform, named once: batch (the exporter) and live (stream, serve).

Conventions (https://prometheus.io/docs/practices/naming/): ``market_`` prefix, base units in the name
(``_seconds``, ``_bytes``), ``_total`` on counters, timestamps as ``_timestamp_seconds`` (ages are computed in
PromQL with ``time() - x``, so a stalled exporter cannot report a fresh age).

Why two halves: batch work runs in Dagster steps, one process per step; counting there would need
prometheus_client's multiprocess mode (a file per process, piling up). Instead the warehouse and the Dagster
instance already hold what happened, and ``market-data metrics`` (observability.exporter) reads them on each scrape:
``BATCH_FAMILIES`` documents what it exports. The live services are single long-lived processes: they own ordinary
in-process metric objects (``StreamMetrics``, ``ServeMetrics``) and serve ``/metrics`` themselves (``serve_metrics``
or ``asgi_app``). The README's "Operations" table is generated from the same names (tests keep them equal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app, start_http_server


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str


# --- batch: exported by `market-data metrics` from the Dagster instance, the warehouse and Redis ---------------------
BATCH_FAMILIES: tuple[Family, ...] = (
    Family("market_dagster_runs", "gauge", ("job", "status"), "Runs stored in the Dagster instance by job and status."),
    Family(
        "market_asset_last_materialization_timestamp_seconds",
        "gauge",
        ("asset",),
        "Unix time of the asset's latest successful materialization (any partition).",
    ),
    Family(
        "market_asset_last_materialization_age_seconds",
        "gauge",
        ("asset",),
        "Seconds since the asset's latest successful materialization, at the time of the reading.",
    ),
    Family(
        "market_ingestion_rows_fetched_total", "counter", ("asset", "dataset"), "Rows fetched (market.ingestion_log)."
    ),
    Family(
        "market_ingestion_rows_written_total",
        "counter",
        ("asset", "dataset"),
        "Rows written by successful materializations (market.ingestion_log).",
    ),
    Family(
        "market_ingestion_rows_quarantined_total",
        "counter",
        ("asset", "dataset"),
        "Rows rejected into market.quarantine (market.ingestion_log).",
    ),
    Family(
        "market_ingestion_materializations_total",
        "counter",
        ("asset", "status"),
        "Ingestion materializations by outcome (success, failed).",
    ),
    Family("market_alpaca_requests_total", "counter", ("asset",), "HTTP requests sent to Alpaca (including retries)."),
    Family("market_alpaca_retries_total", "counter", ("asset",), "Alpaca requests that were retries."),
    Family(
        "market_alpaca_responses_total",
        "counter",
        ("endpoint", "status"),
        "Alpaca responses by endpoint path and HTTP status (status 0: no response), from the audit trail.",
    ),
    Family(
        "market_cache_requests_total",
        "counter",
        ("kind", "result"),
        "Cache reads by key kind (market, chain, flow) and result (hit, miss), from Redis' own counters.",
    ),
    Family(
        "market_cache_last_warm_timestamp_seconds",
        "gauge",
        (),
        "Unix time of the last cache warm (Redis P:warm:last).",
    ),
    Family(
        "market_table_sessions_behind",
        "gauge",
        ("table",),
        "NYSE sessions completed since the table's latest stored session (0: up to date).",
    ),
    Family(
        "market_table_last_session_timestamp_seconds",
        "gauge",
        ("table",),
        "Midnight New York of the table's latest stored session.",
    ),
    Family("market_session_open", "gauge", (), "1 while an NYSE regular session is open, else 0."),
    Family("market_up", "gauge", ("source",), "1 if the exporter could read the source (dagster, warehouse, redis)."),
    Family("market_exporter_collect_duration_seconds", "gauge", (), "Time the last reading of all sources took."),
)


# --- live: in-process metrics of `market-data stream` and `market-data serve` ----------------------------------------
# Latency buckets: a fan-out on one machine delivers in milliseconds; the upper buckets catch a stalled client queue.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StreamMetrics:
    """`market-data stream` (Alpaca WebSocket -> warehouse/Redis): create once per process, update inline.

    channel: the Alpaca channel (bars, updatedBars, trades, quotes); kind: a short error class name.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.messages_received = Counter(
            "market_stream_messages_received_total", "Messages received from Alpaca.", ["channel"], registry=r
        )
        self.messages_published = Counter(
            "market_stream_messages_published_total",
            "Messages published onward (warehouse upsert, Redis bus).",
            ["channel"],
            registry=r,
        )
        self.reconnects = Counter("market_stream_reconnects_total", "Reconnections to Alpaca.", registry=r)
        self.last_message = Gauge(
            "market_stream_last_message_timestamp_seconds",
            "Unix time of the last message per channel (age: time() - this).",
            ["channel"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "market_stream_queue_depth", "Items waiting per internal queue.", ["queue"], registry=r
        )
        self.connected = Gauge("market_stream_connected", "1 while the Alpaca socket is authenticated.", registry=r)
        self.errors = Counter("market_stream_errors_total", "Errors by kind.", ["kind"], registry=r)

    def received(self, channel: str, count: int = 1, now: float | None = None) -> None:
        self.messages_received.labels(channel).inc(count)
        self.last_message.labels(channel).set(now if now is not None else time.time())


class ServeMetrics:
    """`market-data serve` (WebSocket fan-out to clients): create once per process, update inline."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.clients = Gauge("market_serve_clients_connected", "WebSocket clients connected now.", registry=r)
        self.connections = Counter(
            "market_serve_connections_total", "Client connections accepted (after auth).", registry=r
        )
        self.messages_sent = Counter(
            "market_serve_messages_sent_total", "Messages delivered to clients.", ["channel"], registry=r
        )
        self.messages_in = Counter(
            "market_serve_messages_received_total", "Messages taken from the live bus.", ["channel"], registry=r
        )
        self.slow_client_drops = Counter(
            "market_serve_slow_client_drops_total", "Clients disconnected because their queue was full.", registry=r
        )
        self.auth_failures = Counter(
            "market_serve_auth_failures_total", "Connections refused: missing, unknown or revoked token.", registry=r
        )
        self.queue_depth = Gauge(
            "market_serve_client_queue_depth_max", "Largest per-client send queue right now.", registry=r
        )
        self.delivery_latency = Histogram(
            "market_serve_delivery_latency_seconds",
            "From a batch's publication on the bus to its queueing for the subscribed clients.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("market_serve_errors_total", "Errors by kind.", ["kind"], registry=r)


def live_family_names() -> set[str]:
    """Every live family name as exposed on /metrics (counters with their ``_total``)."""
    names: set[str] = set()
    for metrics in (StreamMetrics(), ServeMetrics()):
        for family in metrics.registry.collect():
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def exported_names() -> set[str]:
    """Every series name a PromQL expression may use (histograms with _bucket/_sum/_count)."""
    names = {f.name for f in BATCH_FAMILIES} | live_family_names()
    names |= {f"market_serve_delivery_latency_seconds_{s}" for s in ("bucket", "sum", "count")}
    return names


def serve_metrics(port: int, registry: CollectorRegistry, host: str = "0.0.0.0") -> Any:
    """Expose `registry` on http://host:port/metrics in a daemon thread (for a service without an HTTP server)."""
    return start_http_server(port, addr=host, registry=registry)


def asgi_app(registry: CollectorRegistry) -> Any:
    """An ASGI app serving `registry`, to mount at /metrics in a service that already runs one."""
    return make_asgi_app(registry=registry)
