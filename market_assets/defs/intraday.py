"""Sensor-driven intraday refresh: minute bars -> indicators on minute closes -> cached market data.

How it runs. ``intraday_refresh_sensor`` (a plain ``@sensor``: ``@asset_sensor`` would overwrite
our cursor) ticks every 30 s. During an NYSE session (exchange_calendars: holidays, 13:00 half
days) it requests one run of ``intraday_refresh_job`` for the window of complete minutes since its
cursor, ``[cursor, now floored to the minute)``, closed at the session close; outside a session it
returns a ``SkipReason`` saying why. The job re-fetches that window plus a trailing
``trailing_minutes`` (15) of minute bars, because Alpaca recomputes a bar ~30 s after first
publishing it (late trades), upserts them into ``market.bars_minute``, recomputes RSI(14),
MACD(12,26,9) and SMA(20/50) on the session's minute closes into ``market.indicators_intraday``,
warms each symbol's ``md:v1:{SYM}:market`` key and logs the run in ``market.intraday_refresh_log``.
At T+1 the daily ``intraday_bars`` partition replaces the day's minute bars whole.

Exactly-once windows. The cursor is JSON ``{"session": "2025-11-28", "window_end": "<UTC ISO>"}``:
the end of the last window whose RunRequest the sensor RETURNED; Dagster stores the cursor and
the run requests of one evaluation together, so:

* a crash after computing a request but before it is returned loses nothing: the cursor did not
  move, so the next evaluation's window starts at the same place and covers everything since
  (capped at ``max_window_minutes``, by default a whole session);
* an evaluation whose cursor update was lost (re-evaluated with the old cursor in the same
  minute) produces the same window and therefore the same ``run_key``
  (``intraday:<session>:<HHMM>-<HHMM>`` New York time), which Dagster refuses to launch twice;
  a later re-evaluation covers the old window and more under a new key (upserts are idempotent).

The window planning is pure calendar logic in `market_assets.domain.intraday_windows`; the
indicators are `market_assets.analytics.technicals.intraday` (they restart every session).
"""

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from dagster import (
    Config,
    DefaultSensorStatus,
    In,
    MetadataValue,
    OpExecutionContext,
    Out,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    in_process_executor,
    job,
    op,
    sensor,
)

from market_assets.alpaca.resource import AlpacaResource
from market_assets.analytics.technicals.intraday import intraday_indicator_frame
from market_assets.cache.reader import load_market_data
from market_assets.cache.resource import CacheResource
from market_assets.contracts.bars import coerce_raw_bars, split_bars
from market_assets.defs.resources import MarketClockResource
from market_assets.defs.universe import run_universe, universe_tags
from market_assets.domain.intraday_windows import IntradayWindow, fetch_start, plan_window
from market_assets.domain.sessions import session_of_minute_ts
from market_assets.warehouse import tables
from market_assets.warehouse.queries.bars import active_symbols
from market_assets.warehouse.resource import WarehouseResource, copy_frame

TRAILING_MINUTES = 15  # Alpaca revises a bar ~30 s after publishing; 15 minutes also covers slow ticks
SENSOR_INTERVAL_SECONDS = 30


def run_request(window: IntradayWindow, universe: Sequence[str] = ()) -> RunRequest:
    """The job run of one window: its run_key de-duplicates re-evaluations of the same window.

    `universe`, resolved when the window is requested, travels with the run as its ``market/universe`` tag (as the
    after-close schedule's does): its steps never re-read market.symbols, so a ``universe set`` or a CLI run while
    the refresh runs cannot change which symbols it fetches, derives and caches (issue 13, item 2).
    """
    return RunRequest(
        run_key=window.run_key,
        run_config={
            "ops": {
                "refresh_minute_bars": {
                    "config": {
                        "session": window.session.isoformat(),
                        "window_start": window.start.isoformat(),
                        "window_end": window.end.isoformat(),
                    }
                }
            }
        },
        tags={
            "market/session": str(window.session),
            "market/window": window.run_key.split(":", 2)[2],
            **(universe_tags(universe) if universe else {}),
        },
    )


# --- the job -----------------------------------------------------------------------------------


class IntradayWindowConfig(Config):
    """The window the sensor requested (UTC ISO times) and how far back to re-fetch."""

    session: str
    window_start: str
    window_end: str
    trailing_minutes: int = TRAILING_MINUTES


def log_refresh(warehouse: WarehouseResource, info: dict[str, Any], **fields: Any) -> None:
    """One row of market.intraday_refresh_log, written with the warehouse's binary COPY (columns from the registry)."""
    table = tables.INTRADAY_REFRESH_LOG
    counts = ("symbols", "bars_fetched", "bars_upserted", "bars_quarantined", "indicators_upserted")
    row = {name: info.get(name, 0 if name in counts else None) for name in table.column_names} | fields
    with warehouse.connect() as conn:
        copy_frame(conn, table.name, pd.DataFrame([row]), table.columns)


@op(
    out=Out(dict),
    description="Re-fetch the window plus the trailing revision minutes and upsert into market.bars_minute.",
)
def refresh_minute_bars(
    context: OpExecutionContext, config: IntradayWindowConfig, alpaca: AlpacaResource, warehouse: WarehouseResource
) -> dict[str, Any]:
    session = date.fromisoformat(config.session)
    start, end = pd.Timestamp(config.window_start), pd.Timestamp(config.window_end)
    fetch_from = fetch_start(session, start, config.trailing_minutes)
    info: dict[str, Any] = {
        "run_id": context.run.run_id,
        "run_key": context.run.tags.get("dagster/run_key"),
        "session": session,
        "window_start": start.to_pydatetime(),
        "window_end": end.to_pydatetime(),
        "fetch_start": fetch_from.to_pydatetime(),
        "started_at": datetime.now(UTC),
    }
    try:
        universe = run_universe(context, warehouse)
        info["symbols"] = len(universe)
        # end is inclusive for the API: stop just before the first incomplete minute
        last = (end - pd.Timedelta(seconds=1)).to_pydatetime()
        raw = alpaca.fetch_bars(universe, "1Min", fetch_from.to_pydatetime(), last) if universe else pd.DataFrame()
        if raw.empty:
            raw = pd.DataFrame(columns=["symbol", "t", "o", "h", "l", "c", "v", "n", "vw"])
        split = split_bars(coerce_raw_bars(raw), "1Min")
        kept = split.valid.copy()
        kept = kept[kept["ts"] < end]
        kept["session"] = session_of_minute_ts(kept["ts"])
        kept["volume"] = kept["volume"].astype("int64")
        kept["trade_count"] = kept["trade_count"].astype("Int64")
        kept["feed"] = alpaca.stored_feed
        kept["run_id"] = context.run.run_id
        upserted = warehouse.upsert(tables.BARS_MINUTE, kept)
    except Exception as exc:
        log_refresh(warehouse, info, status="failed", error=str(exc)[:2000])
        raise
    info.update(bars_fetched=len(raw), bars_upserted=upserted, bars_quarantined=len(split.rejected))
    if len(split.rejected):
        # not quarantined here: the T+1 replace of the day re-validates and quarantines what is still bad
        context.log.warning("%d minute bar(s) rejected, e.g. %s", len(split.rejected), split.rejected["reason"].iloc[0])
    context.add_output_metadata(
        {
            "bars_fetched": MetadataValue.int(len(raw)),
            "bars_upserted": MetadataValue.int(upserted),
            "bars_rejected": MetadataValue.int(len(split.rejected)),
            "fetch_window": f"{fetch_from} .. {end} (exclusive)",
        }
    )
    return info


@op(ins={"info": In(dict)}, out=Out(dict), description="Recompute indicators on the session's minute closes.")
def compute_intraday_indicators(
    context: OpExecutionContext, info: dict[str, Any], warehouse: WarehouseResource
) -> dict[str, Any]:
    try:
        universe = run_universe(context, warehouse)
        bars = warehouse.read_bars(tables.BARS_MINUTE.name, universe, info["session"], info["session"])
        frame = intraday_indicator_frame(bars)
        # only rows whose inputs may have changed: everything before fetch_start was final already
        changed = frame[frame["ts"] >= pd.Timestamp(info["fetch_start"])].copy()
        changed["run_id"] = context.run.run_id
        written = warehouse.upsert(tables.INDICATORS_INTRADAY, changed)
    except Exception as exc:
        log_refresh(warehouse, info, status="failed", error=str(exc)[:2000])
        raise
    context.add_output_metadata(
        {"bars_read": MetadataValue.int(len(bars)), "indicators_upserted": MetadataValue.int(written)}
    )
    return {**info, "indicators_upserted": written}


@op(ins={"info": In(dict)}, description="Write each symbol's latest market data to Redis (warning if down).")
def warm_intraday_cache(
    context: OpExecutionContext, info: dict[str, Any], cache: CacheResource, warehouse: WarehouseResource
) -> None:
    universe = run_universe(context, warehouse)
    report = cache.write_market(load_market_data(warehouse, universe))
    if not report.ok:
        context.log.warning(
            "intraday cache warm skipped %s (%s); the warehouse is up to date and the next refresh rewrites",
            dict(report.skipped),
            "; ".join(report.errors),
        )
    log_refresh(
        warehouse,
        info,
        cache_written=sum(report.written.values()),
        cache_skipped=sum(report.skipped.values()),
        status="success",
        error="; ".join(report.errors) or None,
    )
    context.add_output_metadata(
        {
            "keys_written": MetadataValue.int(sum(report.written.values())),
            "keys_skipped": MetadataValue.int(sum(report.skipped.values())),
            "redis_errors": "; ".join(report.errors) or "none",
            "lag_seconds": MetadataValue.float(
                round((datetime.now(UTC) - info["window_end"]).total_seconds(), 3)
                if isinstance(info["window_end"], datetime)
                else 0.0
            ),
        }
    )


@job(
    executor_def=in_process_executor,
    description=(
        "Intraday refresh of one window of minutes (requested by intraday_refresh_sensor): re-fetch and upsert "
        "minute bars, recompute intraday indicators, warm the cache's latest market data."
    ),
    tags={"market/kind": "intraday"},
)
def intraday_refresh_job() -> None:
    warm_intraday_cache(compute_intraday_indicators(refresh_minute_bars()))


@sensor(
    job=intraday_refresh_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.STOPPED,
    description="During NYSE sessions: one intraday_refresh_job run per window of new complete minutes.",
)
def intraday_refresh_sensor(
    context: SensorEvaluationContext, market_clock: MarketClockResource, warehouse: WarehouseResource
) -> SensorResult | SkipReason:
    started = time.perf_counter()
    decision = plan_window(market_clock.now(), context.cursor)
    if isinstance(decision, str):
        return SkipReason(decision)
    universe = active_symbols(warehouse)  # only when a window is due: a skip never touches the warehouse
    context.log.info("requesting %s (%.1f ms to plan)", decision.run_key, (time.perf_counter() - started) * 1000)
    return SensorResult(run_requests=[run_request(decision, universe)], cursor=decision.cursor())
