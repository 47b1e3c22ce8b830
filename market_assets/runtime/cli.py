"""`market-data`: run the pipeline, open the Dagster UI, manage the embedded services.

Why a CLI around Dagster: on a fresh machine one command must start (or reuse) the embedded
PostgreSQL and Redis, point Dagster's storage at them, materialize the whole graph for a
universe and window, and say plainly what happened, with an exit code a scheduler can trust.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from market_assets.config import (
    Settings,
    SettingsError,
    load_log_format,
    load_metrics_cache_seconds,
    load_option_settings,
    load_settings,
    parse_date,
    parse_symbols,
    redact,
    require_alpaca_keys,
)
from market_assets.errors import MarketDataError
from market_assets.observability.logging import configure

# the tables the run summary counts, from the registry (its partition column gives the "in window" count)
SUMMARY_TABLES = ("market.symbols", "market.bars_daily", "market.bars_minute", "market.corporate_actions",
                  "market.adjustment_factors", "market.indicators_daily", "market.patterns",
                  "market.support_resistance_packed", "market.option_chain", "market.option_greeks",
                  "market.options_flow_daily", "market.quarantine")  # fmt: skip
# Dagster's documented run tags for a single-run partition range (the tag names are public; their constants are not)
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
EPHEMERAL_JOB = "__ephemeral_asset_job__"  # the name dagster.materialize() gives its job (public in the UI)
MAX_INTRADAY_DAYS = 31  # a backfill run's size (BackfillPolicy max_partitions_per_run)
QUIET_LOGGING = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
INTERRUPTED = "DagsterExecutionInterruptedError"  # what a step stopped by SIGINT/SIGTERM fails with
EXIT_STOPPED = 130


@dataclass
class StepOutcome:
    name: str
    success: bool
    seconds: float
    materialized: list[str] = field(default_factory=list)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (asset.check, passed, severity)
    error: str | None = None
    skipped: str | None = None  # why the step did not run (not a failure)
    notes: list[str] = field(default_factory=list)  # what a failed check says (e.g. the symbols without data)
    rows: int = 0  # rows written by the run's daily_bars (the progress display counts them)
    interrupted: bool = False  # stopped by SIGINT/SIGTERM


def options_skip_reason(last: date, serves_history: bool, now: datetime | None = None) -> str | None:
    """Why the option snapshots of a window ending on `last` cannot be had, or None when they can.

    Alpaca serves option snapshots only as of now: a window that ends before the latest completed session
    has no snapshot to fetch. That is normal for a historical run, so the step is skipped with this reason
    (and the run still succeeds) instead of failing the whole run.
    """
    from market_assets.domain.sessions import last_completed_session

    latest = last_completed_session(now or datetime.now().astimezone())
    if serves_history or latest is None or last >= latest:
        return None
    return (
        f"Alpaca serves option snapshots only as of now; the window ends {last}, before the latest completed "
        f"session {latest} (run a window ending {latest} for options)"
    )


log = logging.getLogger("market_assets.cli")


def _print(message: str) -> None:
    """The report for people on stdout; with MARKET_LOG_FORMAT=json, the same lines as JSON log events."""
    if load_log_format() == "json":
        if message.strip():
            log.info(message.strip())
    else:
        print(message, flush=True)


def default_window(settings: Settings, now: datetime | None = None) -> tuple[date, date]:
    from market_assets.domain.sessions import last_completed_session

    now = now or datetime.now().astimezone()
    end = last_completed_session(now) or (now.date() - timedelta(days=1))
    return settings.history_start, end


def _materialize(
    name: str,
    job_name: str,
    *,
    instance: Any,
    run_config: dict[str, Any] | None = None,
    partition_range: tuple[date, date] | None = None,
    universe: Sequence[str] = (),
    history_chunk: bool = False,
) -> StepOutcome:
    """Run the named job (see `runtime.launch`: a run the UI lists under its job and can re-execute).

    `history_chunk`: a backfill chunk that is not the last of its step (no previews, charts or table counts; see
    `defs.partitions.HISTORY_CHUNK_TAG`)."""
    from market_assets.defs.partitions import HISTORY_CHUNK_TAG
    from market_assets.defs.universe import universe_tags
    from market_assets.runtime.launch import launch_job
    from market_assets.runtime.liveness import SOURCE_TAG, cli_run_tags

    tags: dict[str, str] = {SOURCE_TAG: "cli", **cli_run_tags(), **(universe_tags(universe) if universe else {})}
    if partition_range:
        tags[PARTITION_RANGE_START_TAG] = partition_range[0].isoformat()
        tags[PARTITION_RANGE_END_TAG] = partition_range[1].isoformat()
    if history_chunk:
        tags[HISTORY_CHUNK_TAG] = "true"
    t0 = time.perf_counter()
    try:
        result = launch_job(job_name, instance=instance, run_config={**_run_logging(), **(run_config or {})}, tags=tags)
    except Exception as exc:  # definition or config errors: report, do not hide
        return StepOutcome(name, False, time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}")
    outcome = StepOutcome(name, result.success, time.perf_counter() - t0)
    outcome.materialized = sorted(
        {e.asset_key.to_user_string() for e in result.get_asset_materialization_events() if e.asset_key}
    )
    for evaluation in result.get_asset_check_evaluations():
        outcome.checks.append(
            (
                f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}",
                evaluation.passed,
                evaluation.severity.value,
            )
        )
        if not evaluation.passed and evaluation.description:
            outcome.notes.append(f"{evaluation.check_name}: {evaluation.description}")
    # each partition's materialization carries its own rows_written (issue 11): their sum is the run's
    for event in result.get_asset_materialization_events():
        if event.asset_key and event.asset_key.to_user_string() == "daily_bars":
            value = event.materialization.metadata.get("rows_written")
            outcome.rows += int(getattr(value, "value", 0) or 0)
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        if failures:
            data = failures[0].step_failure_data
            outcome.error = root_cause(data.error) if data and data.error else "step failed"
            outcome.interrupted = any(
                f.step_failure_data and f.step_failure_data.error and f.step_failure_data.error.cls_name == INTERRUPTED
                for f in failures
            )
        else:
            outcome.error = "run failed"
    return outcome


def _run_logging() -> dict[str, Any]:
    """Text: Dagster quiet (the CLI prints its own report). JSON: Dagster's whole event stream, for a log shipper."""
    if load_log_format() == "json":
        return {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}
    return QUIET_LOGGING


def root_cause(error: Any) -> str:
    """The innermost cause of a Dagster error, in one line: Dagster wraps what an op raised in "Error occurred
    while executing op ..." and the CLI used to print only that wrapper (issue 13, item 7)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    lines = [line for line in (error.message or "").strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else error.cls_name or "error"


def _merge(name: str, parts: list[StepOutcome], seconds: float) -> StepOutcome:
    """One outcome for a step run as several chunks."""
    merged = StepOutcome(name, all(p.success for p in parts), seconds)
    merged.materialized = sorted({a for p in parts for a in p.materialized})
    merged.checks = [c for p in parts for c in p.checks]
    merged.notes = [n for p in parts for n in p.notes]
    merged.rows = sum(p.rows for p in parts)
    merged.interrupted = any(p.interrupted for p in parts)
    merged.error = next((p.error for p in parts if p.error), None)
    return merged


def _run_step_in_chunks(
    label: str,
    job_name: str,
    window: tuple[date, date],
    *,
    instance: Any,
    stop: Any,
    refresh: bool,
    chunk_sessions: int,
    run_config: dict[str, Any] | None = None,
    universe: Sequence[str] = (),
) -> StepOutcome:
    """A partitioned job as bounded runs of sessions, skipping what is complete, with a progress bar.

    A chunk runs the whole job over its sessions (the job's assets are written together), so resuming redoes
    the other assets of a partly complete chunk; sessions complete for every asset are not run again.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from market_assets.definitions import defs
    from market_assets.domain.sessions import sessions_between
    from market_assets.runtime.backfill import ChunkResult, materialized_keys, plan_chunks, run_chunks

    t0 = time.perf_counter()
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    # the job's partitioned assets: their materialized partitions say which sessions are complete
    names = sorted(
        k.to_user_string()
        for k in repo.get_job(job_name).asset_layer.executable_asset_keys
        if graph.get(k).partitions_def is not None
    )
    sessions = sessions_between(*window)
    from market_assets.defs.universe import universe_tags

    done = materialized_keys(instance, names, job_name=job_name, tags=universe_tags(universe))
    chunks = plan_chunks(sessions, done, chunk_sessions=chunk_sessions, refresh=refresh)
    pending = sum(len(c.sessions) for c in chunks)
    if not chunks:
        _print(f"      already complete: {len(sessions)} session(s) of {', '.join(names)} (use --refresh to redo)")
        return StepOutcome(label, True, 0.0)
    window_keys = {d.isoformat() for d in sessions}
    complete = sum(len(done[name] & window_keys) for name in names)
    if complete and not refresh:
        _print(
            f"      resuming: {complete} of {len(names) * len(sessions)} asset partitions already complete;"
            f" {pending} session(s) to run"
        )
    parts: list[StepOutcome] = []
    with Progress(
        TextColumn("      {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("sessions  {task.fields[rows]:,} bars  {task.fields[rate]}"),
        TimeRemainingColumn(),
        transient=False,
        console=None if sys.stdout.isatty() else Console(width=140),  # a log file gets the whole line
        disable=load_log_format() == "json",  # JSON mode: stdout stays empty, the report goes through the log
    ) as progress:
        task = progress.add_task("sessions", total=pending, rows=0, rate="")

        def run_chunk(chunk: Any) -> ChunkResult:
            progress.update(task, description=f"{chunk.first} .. {chunk.last}")
            outcome = _materialize(
                label,
                job_name,
                instance=instance,
                run_config=run_config,
                partition_range=(chunk.first, chunk.last),
                universe=universe,
                history_chunk=chunk is not chunks[-1],
            )
            parts.append(outcome)
            return ChunkResult(outcome.success, outcome.rows, outcome.interrupted, outcome)

        def on_done(chunk: Any, result: ChunkResult) -> None:
            rows = sum(p.rows for p in parts)
            elapsed = max(time.perf_counter() - t0, 1e-9)
            advance = len(chunk.sessions) if result.success else 0
            progress.update(task, advance=advance, rows=rows, rate=f"{rows / elapsed:,.0f} bars/s")

        run_chunks(chunks, run_chunk, stop, on_done)
    merged = _merge(label, parts, time.perf_counter() - t0)
    merged.interrupted = merged.interrupted or bool(stop)
    return merged


def _selects_something(selection: Any) -> bool:
    from market_assets.definitions import defs

    return bool(selection.resolve(defs.get_repository_def().asset_graph))


def _report_step(outcome: StepOutcome) -> None:
    status = "ok" if outcome.success else "FAILED"
    _print(f"      {status} in {outcome.seconds:.1f}s: {', '.join(outcome.materialized) or 'nothing materialized'}")
    failed = [c for c in outcome.checks if not c[1]]
    for check, _, severity in failed:
        _print(f"      check failed ({severity}): {check}")
    for note in dict.fromkeys(outcome.notes):
        _print(f"        {note}")
    if outcome.error:
        _print(f"      error: {redact(outcome.error.splitlines()[0])[:500]}")


def _table_counts(start: date, end: date) -> list[tuple[str, int, int | str]]:
    from market_assets.warehouse.resource import WarehouseResource
    from market_assets.warehouse.tables import table

    warehouse = WarehouseResource(database_url=os.environ["DATABASE_URL"])
    rows: list[tuple[str, int, int | str]] = []
    for name in SUMMARY_TABLES:
        total, in_window = warehouse.count_rows(table(name), (start, end))
        rows.append((name, total, "-" if in_window is None else in_window))
    return rows


def cmd_run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    settings = load_settings()
    require_alpaca_keys(settings)
    load_option_settings()  # a bad RISK_FREE_RATE / DIVIDEND_YIELDS fails here, not mid-run
    # an explicit --symbols '' is a mistake, never "the default universe"
    universe = parse_symbols(args.symbols, "--symbols") if args.symbols is not None else settings.symbols
    default_start, default_end = default_window(settings)
    start = parse_date(args.start, "--start") if args.start is not None else default_start
    end = parse_date(args.end, "--end") if args.end is not None else default_end
    if start > end:
        raise SettingsError(f"--start {start} is after --end {end}")
    if start < date(2015, 1, 2):
        raise SettingsError(f"--start {start} is before 2015-01-02, the first partition")
    if end > default_end:
        raise SettingsError(
            f"--end {end} is after the last completed NYSE session ({default_end}): there are no bars to fetch yet"
        )
    if not 0 <= args.intraday_days <= MAX_INTRADAY_DAYS:
        raise SettingsError(f"--intraday-days {args.intraday_days} is outside [0, {MAX_INTRADAY_DAYS}]")

    from market_assets.domain.sessions import sessions_between
    from market_assets.runtime.services import export_environment, resolve_endpoints

    if not sessions_between(start, end):
        raise SettingsError(f"--start {start} .. --end {end} contains no NYSE session: nothing to ingest")

    _print("market-data run")
    for key, value in settings.describe().items():
        if key != "symbols":
            _print(f"  {key:<14} {value}")
    _print(
        f"  {'universe':<14} {len(universe)} symbols: {', '.join(universe[:12])}{' ...' if len(universe) > 12 else ''}"
    )
    _print(f"  {'window':<14} {start} .. {end}")
    endpoints = resolve_endpoints(settings)
    export_environment(settings, endpoints)
    audit_settings(settings, endpoints.database_url, "market-data run")

    from market_assets.runtime.launch import cli_instance
    from market_assets.runtime.liveness import fail_dead_cli_runs

    instance = cli_instance()
    for run_id in fail_dead_cli_runs(instance):
        _print(f"  {'recovered':<14} run {run_id} of a market-data process that died: marked failed")
    sessions = sessions_between(start, end)
    intraday = sessions[-args.intraday_days :] if args.intraday_days > 0 and sessions else []

    last = sessions[-1] if sessions else None
    skips: dict[str, str] = {}
    options_reason = None
    if last:
        from market_assets.definitions import defs

        alpaca = (defs.resources or {}).get("alpaca")
        options_reason = options_skip_reason(last, bool(getattr(alpaca, "serves_option_history", False)))
    # the schedule's job needs option snapshots of the last session; when the source cannot serve them (real keys,
    # a past window) the history jobs cover the last session too and only the options step is skipped
    before = [s for s in sessions if s != last or options_reason]
    # (label, job, partition window, run config): named jobs, so the runs show under them in the UI. The history
    # before the last session first (minute bars before the technicals that read them), then the last session
    # through the schedule's own job (bars, minute bars, technicals, options, cache).
    plan: list[tuple[str, str, tuple[date, date] | None, dict[str, Any] | None]] = [
        # seeds an empty universe (a first run); never changes an existing one: `market-data universe set` does
        ("symbols: seed the universe", "symbols_job", None,
         {"ops": {"symbols": {"config": {"symbols": list(universe), "seed_only": True}}}}),
    ]  # fmt: skip
    if before:
        # the whole window in one range run (daily_market_job re-fetches the last session's bars, idempotently)
        plan.append((f"daily bars {start} .. {end}", "daily_bars_job", (start, end), None))
        minute_days = [d for d in intraday if d in before]
        if minute_days:
            label = f"minute bars of {len(minute_days)} session(s): {minute_days[0]} .. {minute_days[-1]}"
            plan.append((label, "intraday_bars_job", (minute_days[0], minute_days[-1]), None))
        plan.append((f"technicals {start} .. {before[-1]}", "technicals_job", (start, before[-1]), None))
    if last and options_reason:
        label = f"options for the last session {last}"
        skips[label] = options_reason
        plan.append((label, "daily_market_job", (last, last), None))
        plan.append((f"cache warmed for {last}", "cache_job", (last, last), None))
    elif last:
        window = (before[-1] + timedelta(days=1) if before else start, end)  # the last session's partition days
        plan.append((f"the last session {last}: daily_market_job (bars, technicals, options, cache)",
                     "daily_market_job", window, None))  # fmt: skip

    from market_assets.runtime.backfill import StopRequest

    steps: list[StepOutcome] = []
    stop = StopRequest()
    with stop.installed():
        for number, (label, job_name, window, run_config) in enumerate(plan, start=1):
            if stop:
                break
            _print(f"[{number}/{len(plan)}] {label}")
            if label in skips:
                steps.append(StepOutcome(label, True, 0.0, skipped=skips[label]))
                _print(f"      skipped: {skips[label]}")
                continue
            if window is None:
                outcome = _materialize(label, job_name, instance=instance, run_config=run_config, universe=universe)
            else:
                outcome = _run_step_in_chunks(
                    label,
                    job_name,
                    window,
                    instance=instance,
                    stop=stop,
                    refresh=args.refresh,
                    chunk_sessions=args.chunk_sessions,
                    run_config=run_config,
                    universe=universe,
                )
            steps.append(outcome)
            _report_step(outcome)
            if outcome.interrupted:
                break
            if not outcome.success:
                skipped = len(plan) - number
                if skipped:
                    _print(f"      stopping: {skipped} later step(s) depend on this one")
                break
    if stop or any(s.interrupted for s in steps):
        _print("")
        _print("Stopped on request: every partition is fully old or fully new (an interrupted write is rolled back).")
        _print("Run the same command again to continue where it stopped; complete partitions are not fetched again.")
        return EXIT_STOPPED

    _print("")
    _print("Summary")
    try:
        counts = _table_counts(start, end)
        _print(f"  {'table':<28} {'rows':>10} {'in window':>10}")
        for table, total, window in counts:
            _print(f"  {table:<28} {total:>10} {window!s:>10}")
    except Exception as exc:
        _print(f"  (could not count rows: {exc})")
    checks = [c for s in steps for c in s.checks]
    passed = sum(1 for c in checks if c[1])
    errors = [c for c in checks if not c[1] and c[2] == "ERROR"]
    warnings = [c for c in checks if not c[1] and c[2] != "ERROR"]
    _print(f"  checks: {passed} passed, {len(errors)} failed, {len(warnings)} warned")
    for check, _, _ in warnings:
        _print(f"    warned: {check}")
    for step in steps:
        if step.skipped:
            _print(f"  skipped: {step.name}: {step.skipped}")
    if settings.uses_simulator:
        _print("  data: SIMULATED by the offline simulator (stored with feed = 'simulator'), not market data")
    ok = all(s.success for s in steps) and not errors
    _print(f"  time: {time.perf_counter() - started:.1f}s")
    _print(f"  result: {'SUCCESS' if ok else 'FAILED'}")
    if not ok:
        _print("  see the Dagster UI for details: market-data dev")
    return 0 if ok else 1


def settings_in_force(settings: Settings) -> dict[str, str]:
    """What a start-up audit row records: the resolved settings, URLs masked, keys only as set / not set."""
    options = load_option_settings()
    return {
        **settings.describe(),
        "alpaca_keys": "set" if settings.alpaca_api_key else "not set",
        "rate_limit_per_minute": str(settings.rate_limit_per_minute),
        "http_timeout_seconds": str(settings.http_timeout_seconds),
        "risk_free_rate": str(options.risk_free_rate),
        "options_feed": options.feed,
        "log_format": load_log_format(),
    }


def audit_settings(settings: Settings, database_url: str, command: str) -> None:
    """Apply migrations (they audit themselves), then record the settings this process starts with."""
    from market_assets.warehouse.resource import WarehouseResource

    warehouse = WarehouseResource(database_url=database_url)
    warehouse.migrate()
    warehouse.audit("settings", "start", actor="cli", subject=command, details=settings_in_force(settings))


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the package's migrations, once, and exit: the deployment's one-shot step before anything else.

    The URL comes from an environment variable (``--url-env``, default ``MIGRATE_DATABASE_URL``: the owner's
    login, which may run DDL) so the password never appears in a process list; unset, the warehouse of
    ``DATABASE_URL`` (or the embedded server) as every other command resolves it."""
    from market_assets.config import redact
    from market_assets.warehouse.resource import WarehouseResource

    url = os.environ.get(args.url_env)
    if not url:
        from market_assets.runtime.services import resolve_endpoints

        url = resolve_endpoints(load_settings()).database_url
    import psycopg

    target = redact(url)
    try:
        applied = WarehouseResource(database_url=url).migrate()
    except psycopg.Error as exc:  # one line naming the server (password masked), not a traceback
        print(f"market-data migrate: {target}: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    if applied:
        _print(f"migrations applied to {target}: {', '.join(applied)}")
    else:
        _print(f"migrations: {target} is up to date")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from market_assets.observability.health import run_checks

    checks = run_checks(load_settings())
    for check in checks:
        if load_log_format() == "json":
            (log.info if check.ok else log.error)(check.line(), extra={"fields": {"check": check.name, "ok": check.ok}})
        else:
            print(check.line(), flush=True)
    return 0 if all(c.ok for c in checks) else 1


def cmd_metrics(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from market_assets.cache.resource import CacheResource
    from market_assets.definitions import defs
    from market_assets.observability.exporter import BatchCollector, build_registry
    from market_assets.observability.metrics import serve_metrics
    from market_assets.runtime.services import export_environment, resolve_endpoints
    from market_assets.warehouse.resource import WarehouseResource

    settings = load_settings()
    env = export_environment(settings, resolve_endpoints(settings))
    configure("exporter", level=logging.INFO)
    audit_settings(settings, env["DATABASE_URL"], "market-data metrics")
    repo = defs.get_repository_def()
    instance = DagsterInstance.get()
    collector = BatchCollector(
        instance=lambda: instance,
        warehouse=WarehouseResource(database_url=env["DATABASE_URL"]),
        cache=CacheResource(redis_url=env["REDIS_URL"]),
        asset_keys=sorted(repo.asset_graph.get_all_asset_keys(), key=lambda k: k.to_user_string()),
        jobs=sorted({j.name for j in repo.get_all_jobs()} | {EPHEMERAL_JOB}),
        ttl=load_metrics_cache_seconds(),
    )
    server, thread = serve_metrics(args.port, build_registry(collector), host=args.host)
    _print(f"metrics on http://{args.host}:{args.port}/metrics (readings cached {collector.ttl:g}s)")
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Per table: last session, rows, quarantined, last run and result; schedules and sensors on or off."""
    from dagster import DagsterInstance

    from market_assets.runtime.services import export_environment, resolve_endpoints
    from market_assets.runtime.status import print_status
    from market_assets.warehouse.resource import WarehouseResource

    settings = load_settings()
    export_environment(settings, resolve_endpoints(settings))
    _print(f"market-data status ({'SIMULATED data: offline simulator' if settings.uses_simulator else 'Alpaca'})")
    print_status(WarehouseResource(database_url=os.environ["DATABASE_URL"]), DagsterInstance.get(), _print)
    return 0


def cmd_universe(args: argparse.Namespace) -> int:
    """Show or change the active universe (what the schedule ingests): its own command, audited in
    market.audit_log, never a side effect of `run --symbols`."""
    from market_assets.runtime.services import export_environment, resolve_endpoints
    from market_assets.warehouse.queries.bars import active_symbols
    from market_assets.warehouse.resource import WarehouseResource

    settings = load_settings()
    wanted = parse_symbols(args.symbols or "", "universe set") if args.action == "set" else ()
    export_environment(settings, resolve_endpoints(settings))
    warehouse = WarehouseResource(database_url=os.environ["DATABASE_URL"])
    warehouse.migrate()
    if args.action == "set":
        change = warehouse.set_universe(list(wanted), actor="cli:universe set")
        _print(
            f"active universe: {', '.join(sorted(wanted))} (added {', '.join(change['added']) or 'none'}, "
            f"deactivated {', '.join(change['deactivated']) or 'none'})"
        )
    else:
        _print(", ".join(active_symbols(warehouse)) or "(no active symbol)")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from market_assets.runtime.services import export_environment, resolve_endpoints

    settings = load_settings()
    env = export_environment(settings, resolve_endpoints(settings))
    _print(f"Dagster UI on http://{args.host}:{args.port} (storage: {env['DAGSTER_HOME']})")
    command = ["dagster", "dev", "-m", "market_assets.definitions", "-h", args.host, "-p", str(args.port)]
    if load_log_format() == "json":  # Dagster's own processes (webserver, daemon, code server) too
        command += ["--log-format", "json"]
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    # from DAGSTER_HOME: `dagster dev` warns that a dagster.yaml in the current folder "will not be used" whenever
    # the folder is not DAGSTER_HOME, although DAGSTER_HOME holds the file in use (every path here is absolute)
    os.chdir(env["DAGSTER_HOME"])
    os.execvpe(dagster if os.path.exists(dagster) else "dagster", command, os.environ.copy())
    return 0  # not reached


def cmd_services(args: argparse.Namespace) -> int:
    from market_assets.runtime.embedded import stop_postgres, stop_redis
    from market_assets.runtime.services import resolve_endpoints

    settings = load_settings()
    if args.action == "start":
        endpoints = resolve_endpoints(settings)
        _print(f"warehouse: {redact(endpoints.database_url)}\nredis:     {redact(endpoints.redis_url)}")
    elif args.action == "stop":
        _print(f"postgres: {'stopped' if stop_postgres(settings.data_home) else 'not running'}")
        _print(f"redis:    {'stopped' if stop_redis(settings.data_home) else 'not running'}")
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    from alpaca_sim.server import main as simulator_main

    return int(simulator_main(["--port", str(args.port), "--seed", str(args.seed)]) or 0)


def _live_setup(settings: Settings, command: str | None = None) -> tuple[Any, Any]:
    """(warehouse, cache) on the resolved endpoints, migrated: the live services share them with the batch.
    A long-running `command` records the settings it starts with in the audit trail."""
    from market_assets.cache.resource import CacheResource
    from market_assets.runtime.services import export_environment, resolve_endpoints
    from market_assets.warehouse.resource import WarehouseResource

    endpoints = resolve_endpoints(settings)
    export_environment(settings, endpoints)
    warehouse = WarehouseResource(database_url=endpoints.database_url)
    warehouse.migrate()
    if command is not None:
        warehouse.audit("settings", "start", actor=command.split()[-1], subject=command,
                        details=settings_in_force(settings))  # fmt: skip
    return warehouse, CacheResource(redis_url=endpoints.redis_url)


def _run_until_signal(service: Any) -> None:
    """Run an asyncio service; SIGINT/SIGTERM stop it cleanly (final flush, sockets closed)."""
    import asyncio
    import signal

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        await service.run()

    asyncio.run(main())


def cmd_stream(args: argparse.Namespace) -> int:
    import logging

    from market_assets.alpaca.resource import AlpacaResource
    from market_assets.live.ingest import IngestService, option_url

    configure("stream", level=logging.INFO)  # MARKET_LOG_FORMAT decides text or JSON
    settings = load_settings()
    symbols = list(parse_symbols(args.symbols, "--symbols")) if args.symbols else None
    if args.speed <= 0:
        raise SettingsError(f"--speed {args.speed} must be positive")
    simulated = settings.uses_simulator and not settings.alpaca_stream_url
    if not simulated and not settings.alpaca_api_key:
        raise SettingsError(
            "ALPACA_API_KEY is not set: the stream needs keys when ALPACA_DATA_URL or ALPACA_STREAM_URL is set"
        )
    warehouse, cache = _live_setup(settings, "market-data stream")
    if symbols is None:
        active = warehouse.read_frame("SELECT symbol FROM market.symbols WHERE active ORDER BY symbol")
        symbols = active["symbol"].tolist() if not active.empty else list(settings.symbols)
    replay = None
    if simulated:  # the composition root's choice: the simulator's stream, driven as a live market
        from alpaca_sim.replay import Replay
        from alpaca_sim.server import SimulatorServer

        sim = SimulatorServer(enable_ws=True).start()
        sim.stream.universe = list(symbols)
        replay = Replay.live_or_latest(sim, speed=args.speed)
        key, secret, data_url, url, clock = sim.api_key, sim.secret_key, sim.base_url, sim.ws_url, replay.now
        _print(f"no Alpaca keys: simulator market from {replay.start_ts} at {replay.speed:g}x real time")
    else:
        key, secret, data_url, url, clock = (settings.alpaca_api_key, settings.alpaca_secret_key,
                                             settings.alpaca_data_url, settings.stream_url(), None)  # fmt: skip
    alpaca = AlpacaResource(api_key=key, secret_key=secret, feed=settings.alpaca_feed, data_url=data_url,
                            rate_limit_per_minute=settings.rate_limit_per_minute,
                            timeout_seconds=settings.http_timeout_seconds)  # fmt: skip
    options = load_option_settings()
    service = IngestService(symbols=symbols, stream_url=url, api_key=key or "", secret_key=secret or "",
                            feed=settings.alpaca_feed, warehouse=warehouse, cache=cache, alpaca=alpaca, clock=clock,
                            health_host=args.health_host, health_port=args.health_port,
                            option_contracts=args.option_contracts, option_stream_url=option_url(url, options.feed),
                            risk_free_rate=options.risk_free_rate, dividend_yields=options.dividend_yields)  # fmt: skip
    _print(f"market-data stream: {len(symbols)} symbols from {url}")
    if replay is not None:
        replay.start()
    try:
        _run_until_signal(service)
    finally:
        if replay is not None:
            replay.stop()
            replay.sim.stop()
    _print(f"stopped: {service.received} messages, {service.bars_written} bar rows written ({service.backfilled} REST)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from market_assets.live.serve import FanoutServer

    configure("serve", level=logging.INFO)  # MARKET_LOG_FORMAT decides text or JSON
    warehouse, cache = _live_setup(load_settings(), "market-data serve")
    server = FanoutServer(warehouse=warehouse, cache=cache, host=args.host, port=args.port,
                          lease_seconds=args.connection_lease)  # fmt: skip
    _print(f"market-data serve: ws://{args.host}:{args.port}/v2/iex (any feed name), live page and /healthz on http")
    _run_until_signal(server)
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    import json

    from market_assets.live import tokens

    warehouse, _ = _live_setup(load_settings())
    if args.action == "create":
        if not args.name:
            raise SettingsError("tokens create needs a NAME")
        key, secret = tokens.create(warehouse, args.name, max_connections=args.max_connections,
                                    max_symbols=args.max_symbols)  # fmt: skip
        # the command's result, on stdout in every log format: a token secret must never become a log event
        if args.json:
            print(json.dumps({"key": key, "secret": secret}), flush=True)
        else:
            print(f"key:    {key}\nsecret: {secret}\n(the secret is shown once; only its hash is stored)", flush=True)
    elif args.action == "list":
        rows = tokens.list_tokens(warehouse)
        if args.json:
            _print(json.dumps([t.__dict__ for t in rows], default=str))
        else:
            _print(f"{'key':<22} {'name':<20} {'conns':>5} {'symbols':>7}  created / revoked")
            for t in rows:
                state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "live"
                _print(f"{t.key:<22} {t.name:<20} {t.max_connections:>5} {t.max_symbols:>7}  "
                       f"{t.created_at:%Y-%m-%d %H:%M} {state}")  # fmt: skip
    else:
        if not args.name:
            raise SettingsError("tokens revoke needs a KEY or NAME")
        if not tokens.revoke(warehouse, args.name):
            _print(f"no live token with key or name {args.name!r}")
            return 1
        _print(f"revoked {args.name}")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from market_assets.live.reconcile import reconcile_session

    settings = load_settings()
    if not settings.alpaca_api_key:
        raise SettingsError("reconcile compares with Alpaca's REST bars: set ALPACA_API_KEY and ALPACA_SECRET_KEY")
    session = parse_date(args.session, "--session")
    warehouse, _ = _live_setup(settings)
    symbols = list(parse_symbols(args.symbols, "--symbols")) if args.symbols else list(settings.symbols)
    from market_assets.alpaca.resource import AlpacaResource

    alpaca = AlpacaResource(api_key=settings.alpaca_api_key, secret_key=settings.alpaca_secret_key,
                            feed=settings.alpaca_feed, data_url=settings.alpaca_data_url)  # fmt: skip
    report = reconcile_session(warehouse, alpaca, session, symbols)
    _print(report.summary())
    for line in report.examples:
        _print(f"  {line}")
    return 0 if report.clean else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="market-data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the whole asset graph for a universe and window")
    run.add_argument(
        "--symbols",
        help="comma-separated symbols of this run (default: MARKET_SYMBOLS or the built-in 20); the active universe "
        "the schedule ingests is changed only by `market-data universe set`",
    )
    run.add_argument("--start", help="first day, YYYY-MM-DD (default: MARKET_HISTORY_START, ~310 sessions ago)")
    run.add_argument("--end", help="last day, YYYY-MM-DD (default: the last completed NYSE session)")
    run.add_argument("--intraday-days", type=int, default=5, help="minute bars for the last N sessions (default 5)")
    run.add_argument(
        "--refresh", action="store_true", help="fetch and compute again partitions that are already complete"
    )
    run.add_argument(
        "--chunk-sessions",
        type=int,
        default=252,
        help="sessions per run of a long backfill (bounds memory; default 252, one year)",
    )
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="per table: last session, rows, quarantined, last run; automation state")
    status.set_defaults(func=cmd_status)
    universe = sub.add_parser("universe", help="show or set the active universe (what the schedule ingests)")
    universe.add_argument("action", choices=["show", "set"])
    universe.add_argument("symbols", nargs="?", help="for set: comma-separated symbols, e.g. AAPL,MSFT")
    universe.set_defaults(func=cmd_universe)
    dev = sub.add_parser("dev", help="open the Dagster UI (and daemon) on the same storage and data")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=cmd_dev)
    services = sub.add_parser("services", help="start or stop the embedded PostgreSQL and Redis")
    services.add_argument("action", choices=["start", "stop"])
    services.set_defaults(func=cmd_services)
    mig = sub.add_parser("migrate", help="apply the warehouse migrations and exit (the deployment's one-shot step)")
    mig.add_argument("--url-env", default="MIGRATE_DATABASE_URL", metavar="VAR",
                     help="the environment variable holding the owner's database URL (default MIGRATE_DATABASE_URL; "
                     "unset: DATABASE_URL or the embedded server)")  # fmt: skip
    mig.set_defaults(func=cmd_migrate)
    health = sub.add_parser("health", help="check warehouse, migrations, Redis and Alpaca; exit 0 only if all pass")
    health.set_defaults(func=cmd_health)
    metrics = sub.add_parser("metrics", help="serve Prometheus metrics of the batch platform on /metrics")
    metrics.add_argument("--port", type=int, default=9464)
    metrics.add_argument("--host", default="127.0.0.1")
    metrics.set_defaults(func=cmd_metrics)
    sim = sub.add_parser("simulator", help="run the offline Alpaca-compatible simulator in the foreground")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--seed", type=int, default=7)
    sim.set_defaults(func=cmd_simulator)
    stream = sub.add_parser("stream", help="ingest Alpaca's live stream into Redis, the bus and the warehouse")
    stream.add_argument("--symbols", help="comma-separated symbols (default: the active universe)")
    stream.add_argument("--health-host", default="127.0.0.1")
    stream.add_argument("--health-port", type=int, default=8081, help="/healthz port (default 8081; 0 = any free)")
    stream.add_argument("--speed", type=float, default=1.0, help="simulator only: replay speed outside market hours")
    stream.add_argument("--option-contracts", type=int, default=0, metavar="N",
                        help="also stream the option quotes/trades of up to N contracts of the cached chains, nearest "
                        "expiries first, updating the chains' IV and Greeks (default 0: off)")  # fmt: skip
    stream.set_defaults(func=cmd_stream)
    fanout = sub.add_parser("serve", help="serve the live stream to WebSocket clients (Alpaca's protocol)")
    fanout.add_argument("--host", default="127.0.0.1")
    fanout.add_argument("--port", type=int, default=8080)
    fanout.add_argument("--connection-lease", type=float, default=30.0, metavar="SECONDS",
                        help="per-token connection slots are leases in Redis shared by every serve process; a "
                        "crashed process's slots come back after this long (default 30)")  # fmt: skip
    fanout.set_defaults(func=cmd_serve)
    tok = sub.add_parser("tokens", help="create, list or revoke API tokens of `serve`")
    tok.add_argument("action", choices=["create", "list", "revoke"])
    tok.add_argument("name", nargs="?", help="token name (create), key or name (revoke)")
    tok.add_argument("--json", action="store_true", help='machine-readable: create prints {"key": ..., "secret": ...}')
    tok.add_argument("--max-connections", type=int, default=10, help="concurrent connections per serve process")
    tok.add_argument("--max-symbols", type=int, default=1000, help="symbols one connection may subscribe to")
    tok.set_defaults(func=cmd_tokens)
    rec = sub.add_parser("reconcile", help="compare the streamed minute bars of a session with Alpaca's REST bars")
    rec.add_argument("--session", required=True, help="YYYY-MM-DD (run before the T+1 replace)")
    rec.add_argument("--symbols", help="comma-separated (default: MARKET_SYMBOLS)")
    rec.set_defaults(func=cmd_reconcile)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        configure("cli", level=logging.INFO if load_log_format() == "json" else logging.WARNING)
        return int(args.func(args))
    except SettingsError as exc:
        print(f"market-data: configuration error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except MarketDataError as exc:
        print(f"market-data: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
