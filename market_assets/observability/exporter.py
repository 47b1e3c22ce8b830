"""`market-data metrics`: one small process that turns what the batch platform recorded into Prometheus metrics.

Why read instead of count: Dagster runs each step in its own process, so in-step counters would need
prometheus_client's multiprocess mode (files per process, never cleaned up by Dagster). Everything worth exporting is
already recorded durably: runs and materializations in the Dagster instance, rows and HTTP requests in
market.ingestion_log, HTTP statuses per endpoint in market.audit_log, cache hits and misses in Redis' own counters.
The exporter reads them on a scrape and keeps the reading for ``ttl`` seconds (``MARKET_METRICS_CACHE_SECONDS``), so
several Prometheus servers or a dashboard refresh cost one set of queries. A source that cannot be read is reported
as ``market_up{source=...} 0`` and its families are left out (absent, not zero: a zero would look like "no rows").
Families and labels: ``observability.metrics.BATCH_FAMILIES``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg import sql

from market_assets.cache.resource import CacheResource
from market_assets.domain.sessions import NEW_YORK, last_completed_session, session_open_close, sessions_between
from market_assets.observability.metrics import BATCH_FAMILIES
from market_assets.warehouse.resource import WarehouseResource
from market_assets.warehouse.tables import TABLES

log = logging.getLogger(__name__)
_FAMILIES = {f.name: f for f in BATCH_FAMILIES}
_NEW_YORK = ZoneInfo(NEW_YORK)

INGESTION_SQL = (
    "SELECT asset, dataset, status, count(*), sum(rows_fetched), sum(rows_written), sum(rows_quarantined),"
    " sum(coalesce(http_requests, 0)), sum(coalesce(http_retries, 0))"
    " FROM market.ingestion_log GROUP BY asset, dataset, status"
)
# per endpoint and status, summed over every audited materialization
RESPONSES_SQL = (
    "SELECT e.key, s.key, sum(s.value::bigint) FROM market.audit_log a,"
    " jsonb_each(a.details -> 'endpoints') e, jsonb_each_text(e.value -> 'statuses') s"
    " WHERE a.kind = 'api_calls' GROUP BY 1, 2"
)


def _family(name: str) -> Metric:
    spec = _FAMILIES[name]
    base = name.removesuffix("_total")
    if spec.kind == "counter":
        return CounterMetricFamily(base, spec.help, labels=list(spec.labels))
    return GaugeMetricFamily(name, spec.help, labels=list(spec.labels))


def session_is_open(now: datetime) -> bool:
    day = now.astimezone(_NEW_YORK).date()
    if not sessions_between(day, day):
        return False
    open_, close = session_open_close(day)
    return open_.to_pydatetime() <= now < close.to_pydatetime()


def sessions_behind(latest: date, now: datetime) -> int:
    """Completed NYSE sessions after `latest` (0 when `latest` is the last completed one or later)."""
    last = last_completed_session(now)
    if last is None or latest >= last:
        return 0
    return len(sessions_between(latest + timedelta(days=1), last))


# Freshness probes look back this many days first: bars tables have only a BRIN index on session, so an unbounded
# max() reads the whole table (bars_minute: ~500M rows for 500 symbols over 10 years), while a recent range is a few
# BRIN blocks (and, on monthly tables, a few partitions). Wider windows only when the table is that far behind.
FRESHNESS_WINDOWS_DAYS: tuple[int | None, ...] = (14, 400, None)


def latest_partition(conn: Any, table: Any) -> date | None:
    """The table's latest partition-column value, probing recent windows first."""
    column = sql.Identifier(table.partition_column)
    name = sql.Identifier(*table.name.split("."))
    for days in FRESHNESS_WINDOWS_DAYS:
        query = sql.SQL("SELECT max({c}) FROM {t}").format(c=column, t=name)
        params: list[Any] = []
        if days is not None:
            query += sql.SQL(" WHERE {c} >= current_date - %s").format(c=column)
            params.append(days)
            if table.monthly:  # partition pruning on ts
                query += sql.SQL(" AND ts >= now() - make_interval(days => %s)")
                params.append(days + 1)
        latest = conn.execute(query, params).fetchone()[0]
        if latest is not None:
            return latest
    return None


class BatchCollector(Collector):
    """Reads the sources on ``collect()``; a reading is reused for ``ttl`` seconds."""

    def __init__(
        self,
        *,
        instance: Callable[[], Any] | None,
        warehouse: WarehouseResource | None,
        cache: CacheResource | None,
        asset_keys: Sequence[Any] = (),
        jobs: Sequence[str] = (),
        ttl: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instance = instance
        self.warehouse = warehouse
        self.cache = cache
        self.asset_keys = list(asset_keys)
        self.jobs = list(jobs)
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._reading: list[Metric] = []
        self._read_at = float("-inf")
        self.readings = 0  # how many times the sources were actually read (tests check the cache)

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on what the sources hold; no eager collect at registration

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if self.clock() - self._read_at >= self.ttl:
                self._reading = self.read()
                self._read_at = self.clock()
                self.readings += 1
            return list(self._reading)

    # --- sources -----------------------------------------------------------------------------------------------------
    def read(self) -> list[Metric]:
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        up = _family("market_up")
        out: list[Metric] = []
        for source, reader in (("dagster", self._dagster), ("warehouse", self._warehouse), ("redis", self._redis)):
            if (source == "dagster" and self.instance is None) or (source == "warehouse" and self.warehouse is None):
                continue
            if source == "redis" and self.cache is None:
                continue
            try:
                out.extend(reader(now))
                up.add_metric([source], 1)
            except Exception as exc:  # a source down must not take the others' metrics with it
                log.warning("metrics: cannot read %s: %s", source, exc)
                up.add_metric([source], 0)
        session = _family("market_session_open")
        session.add_metric([], 1 if session_is_open(now) else 0)
        took = _family("market_exporter_collect_duration_seconds")
        took.add_metric([], time.perf_counter() - t0)
        return [*out, up, session, took]

    def _dagster(self, now: datetime) -> list[Metric]:
        from dagster import DagsterRunStatus, RunsFilter

        instance = self.instance()  # type: ignore[misc]
        runs = _family("market_dagster_runs")
        for job in self.jobs:
            if not instance.get_runs_count(RunsFilter(job_name=job)):
                continue
            for status in DagsterRunStatus:
                count = instance.get_runs_count(RunsFilter(job_name=job, statuses=[status]))
                runs.add_metric([job, status.value], count)
        stamp = _family("market_asset_last_materialization_timestamp_seconds")
        age = _family("market_asset_last_materialization_age_seconds")
        for record in instance.get_asset_records(self.asset_keys):
            last = record.asset_entry.last_materialization
            if last is None:
                continue
            name = record.asset_entry.asset_key.to_user_string()
            stamp.add_metric([name], last.timestamp)
            age.add_metric([name], max(now.timestamp() - last.timestamp, 0.0))
        return [runs, stamp, age]

    def _warehouse(self, now: datetime) -> list[Metric]:
        assert self.warehouse is not None
        names = ("fetched", "written", "quarantined")
        rows = {n: _family(f"market_ingestion_rows_{n}_total") for n in names}
        runs = _family("market_ingestion_materializations_total")
        requests, retries = _family("market_alpaca_requests_total"), _family("market_alpaca_retries_total")
        by_asset: dict[str, list[float]] = {}
        by_status: dict[tuple[str, str], float] = {}
        by_dataset: dict[tuple[str, str], list[float]] = {}
        responses = _family("market_alpaca_responses_total")
        behind, last_session = (
            _family("market_table_sessions_behind"),
            _family("market_table_last_session_timestamp_seconds"),
        )
        with self.warehouse.connect() as conn:
            for asset, dataset, status, n, fetched, written, quarantined, req, ret in conn.execute(INGESTION_SQL):
                totals = by_dataset.setdefault((asset, dataset), [0.0, 0.0, 0.0])
                for i, v in enumerate((fetched, written, quarantined)):
                    totals[i] += float(v or 0)
                by_status[(asset, status)] = by_status.get((asset, status), 0) + n
                pair = by_asset.setdefault(asset, [0.0, 0.0])
                pair[0] += float(req or 0)
                pair[1] += float(ret or 0)
            for endpoint, status, count in conn.execute(RESPONSES_SQL):
                responses.add_metric([endpoint, status], float(count))
            for table in TABLES.values():
                if table.partition_column is None:
                    continue
                latest = latest_partition(conn, table)
                if latest is None:
                    continue
                behind.add_metric([table.name], sessions_behind(latest, now))
                midnight = datetime.combine(latest, datetime.min.time(), _NEW_YORK)
                last_session.add_metric([table.name], midnight.timestamp())
        for (asset, dataset), values in sorted(by_dataset.items()):
            for n, v in zip(names, values, strict=True):
                rows[n].add_metric([asset, dataset], v)
        for (asset, status), n in sorted(by_status.items()):
            runs.add_metric([asset, status], n)
        for asset, (req, ret) in sorted(by_asset.items()):
            requests.add_metric([asset], req)
            retries.add_metric([asset], ret)
        return [*rows.values(), runs, requests, retries, responses, behind, last_session]

    def _redis(self, now: datetime) -> list[Metric]:
        assert self.cache is not None
        hits = _family("market_cache_requests_total")
        for kind, counts in sorted(self.cache.stats().items()):
            hits.add_metric([kind, "hit"], counts["hits"])
            hits.add_metric([kind, "miss"], counts["misses"])
        out: list[Metric] = [hits]
        at = self.cache.client().hget(f"{self.cache.key_prefix}:warm:last", "at")
        if at is not None:
            warm = _family("market_cache_last_warm_timestamp_seconds")
            warm.add_metric([], float(at))
            out.append(warm)
        return out


def build_registry(collector: BatchCollector) -> CollectorRegistry:
    """A registry holding only the batch collector (no process/platform collectors of the exporter itself)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
