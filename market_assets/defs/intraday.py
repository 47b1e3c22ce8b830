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

Indicators restart every session on purpose: a recursion across the overnight gap would mix
two regimes, and per-session values can be recomputed from that session's bars alone.
"""

import json
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from dagster import (
    Config,
    ConfigurableResource,
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
from market_assets.analytics.technicals.indicators import macd, rsi, smas
from market_assets.cache.reader import load_market_data
from market_assets.cache.resource import CacheResource
from market_assets.contracts.bars import coerce_raw_bars, split_bars
from market_assets.defs.bars import active_symbols
from market_assets.domain.sessions import NEW_YORK, is_session, session_of_minute_ts, session_open_close
from market_assets.warehouse import tables
from market_assets.warehouse.resource import WarehouseResource

TRAILING_MINUTES = 15  # Alpaca revises a bar ~30 s after publishing; 15 minutes also covers slow ticks
MAX_WINDOW_MINUTES = 390  # a whole regular session: a sensor that was down all day still catches up
SENSOR_INTERVAL_SECONDS = 30
INTRADAY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("symbol", "text"),
    ("ts", "timestamptz"),
    ("session", "date"),
    ("close", "float8"),
    ("rsi", "float8"),
    ("macd", "float8"),
    ("macd_signal", "float8"),
    ("macd_hist", "float8"),
    ("sma_20", "float8"),
    ("sma_50", "float8"),
    ("run_id", "text"),
)


class MarketClockResource(ConfigurableResource):
    """ "Now" for the sensor. ``now_override`` (ISO time) replays a moment: tests, simulations and
    re-evaluating a past tick; unset (production) it is the wall clock."""

    now_override: str | None = None

    def now(self) -> datetime:
        if self.now_override:
            ts = pd.Timestamp(self.now_override)
            return (ts if ts.tzinfo else ts.tz_localize(UTC)).to_pydatetime()
        return datetime.now(UTC)


@dataclass(frozen=True)
class IntradayWindow:
    """Minutes [start, end) of `session` whose bars are new to the refresh (UTC timestamps)."""

    session: date
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def run_key(self) -> str:
        """Deterministic per window: a re-evaluation of the same window cannot launch a second run."""
        lo, hi = self.start.tz_convert(NEW_YORK), self.end.tz_convert(NEW_YORK)
        return f"intraday:{self.session}:{lo:%H%M}-{hi:%H%M}"

    def cursor(self) -> str:
        return json.dumps({"session": self.session.isoformat(), "window_end": self.end.isoformat()})

    def run_request(self) -> RunRequest:
        return RunRequest(
            run_key=self.run_key,
            run_config={
                "ops": {
                    "refresh_minute_bars": {
                        "config": {
                            "session": self.session.isoformat(),
                            "window_start": self.start.isoformat(),
                            "window_end": self.end.isoformat(),
                        }
                    }
                }
            },
            tags={"market/session": str(self.session), "market/window": self.run_key.split(":", 2)[2]},
        )


def parse_cursor(cursor: str | None) -> tuple[date, pd.Timestamp] | None:
    """(session, window_end) of the last requested window; None for no or an unreadable cursor."""
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
        return date.fromisoformat(data["session"]), pd.Timestamp(data["window_end"]).tz_convert(UTC)
    except (ValueError, KeyError, TypeError):
        return None


def plan_window(
    now: datetime, cursor: str | None, *, max_window_minutes: int = MAX_WINDOW_MINUTES
) -> IntradayWindow | SkipReason:
    """The sensor's decision at `now` given its cursor (pure: the whole behaviour is testable)."""
    now_ts = pd.Timestamp(now).tz_convert(UTC)
    local = now_ts.tz_convert(NEW_YORK)
    day = local.date()
    if not is_session(day):
        return SkipReason(f"{day} ({local:%A}) is not an NYSE session (weekend or holiday)")
    open_, close = session_open_close(day)
    open_local, close_local = open_.tz_convert(NEW_YORK), close.tz_convert(NEW_YORK)
    if now_ts < open_ + timedelta(minutes=1):
        return SkipReason(
            f"{local:%H:%M:%S} is before the first complete minute bar of {day} "
            f"(opens {open_local:%H:%M}, first window at {open_local + timedelta(minutes=1):%H:%M})"
        )
    end = min(now_ts.floor("min"), close)
    last = parse_cursor(cursor)
    start = last[1] if last is not None and last[0] == day else open_
    start = max(start, open_, end - timedelta(minutes=max_window_minutes))
    if start >= end:
        if now_ts >= close:
            return SkipReason(
                f"market closed at {close_local:%H:%M} on {day}; its last window (to {close_local:%H:%M}) "
                "was already requested"
            )
        return SkipReason(f"no new complete minute since {start.tz_convert(NEW_YORK):%H:%M}")
    return IntradayWindow(session=day, start=start, end=end)


# --- the job -----------------------------------------------------------------------------------


class IntradayWindowConfig(Config):
    """The window the sensor requested (UTC ISO times) and how far back to re-fetch."""

    session: str
    window_start: str
    window_end: str
    trailing_minutes: int = TRAILING_MINUTES


def _log_refresh(warehouse: WarehouseResource, info: dict[str, Any], **fields: Any) -> None:
    row = {
        "run_id": info["run_id"],
        "run_key": info.get("run_key"),
        "session": info["session"],
        "window_start": info["window_start"],
        "window_end": info["window_end"],
        "fetch_start": info["fetch_start"],
        "symbols": info.get("symbols", 0),
        "bars_fetched": info.get("bars_fetched", 0),
        "bars_upserted": info.get("bars_upserted", 0),
        "bars_quarantined": info.get("bars_quarantined", 0),
        "indicators_upserted": info.get("indicators_upserted", 0),
        "started_at": info["started_at"],
        **fields,
    }
    columns = ", ".join(row)
    with warehouse.connect() as conn:
        conn.execute(
            f"INSERT INTO market.intraday_refresh_log ({columns}) VALUES ({', '.join(['%s'] * len(row))})",
            tuple(row.values()),
        )


@op(
    out=Out(dict),
    description="Re-fetch the window plus the trailing revision minutes and upsert into market.bars_minute.",
)
def refresh_minute_bars(
    context: OpExecutionContext, config: IntradayWindowConfig, alpaca: AlpacaResource, warehouse: WarehouseResource
) -> dict[str, Any]:
    session = date.fromisoformat(config.session)
    start, end = pd.Timestamp(config.window_start), pd.Timestamp(config.window_end)
    open_, _ = session_open_close(session)
    fetch_start = max(open_, start - timedelta(minutes=config.trailing_minutes))
    info: dict[str, Any] = {
        "run_id": context.run.run_id,
        "run_key": context.run.tags.get("dagster/run_key"),
        "session": session,
        "window_start": start.to_pydatetime(),
        "window_end": end.to_pydatetime(),
        "fetch_start": fetch_start.to_pydatetime(),
        "started_at": datetime.now(UTC),
    }
    try:
        universe = active_symbols(warehouse)
        info["symbols"] = len(universe)
        # end is inclusive for the API: stop just before the first incomplete minute
        last = (end - timedelta(seconds=1)).to_pydatetime()
        raw = alpaca.fetch_bars(universe, "1Min", fetch_start.to_pydatetime(), last) if universe else pd.DataFrame()
        if raw.empty:
            raw = pd.DataFrame(columns=["symbol", "t", "o", "h", "l", "c", "v", "n", "vw"])
        split = split_bars(coerce_raw_bars(raw), "1Min")
        kept = split.valid.copy()
        kept = kept[kept["ts"] < end]
        kept["session"] = session_of_minute_ts(kept["ts"])
        kept["volume"] = kept["volume"].astype("int64")
        kept["trade_count"] = kept["trade_count"].astype("Int64")
        kept["feed"] = alpaca.feed
        kept["run_id"] = context.run.run_id
        upserted = warehouse.upsert(tables.BARS_MINUTE, kept)
    except Exception as exc:
        _log_refresh(warehouse, info, status="failed", error=str(exc)[:2000])
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
            "fetch_window": f"{fetch_start} .. {end} (exclusive)",
        }
    )
    return info


def intraday_indicator_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """RSI(14), MACD(12,26,9), SMA(20/50) on each symbol's minute closes of one session.

    Symbols have different numbers of bars (no trades, no bar), so each row of the 2-D block is
    right-aligned and left-padded with NaN, which the analytics treat as "the series starts
    later": exactly TA-Lib applied to that symbol's own bars.
    """
    if bars.empty:
        return pd.DataFrame(columns=[name for name, _ in INTRADAY_COLUMNS if name != "run_id"])
    bars = bars.sort_values(["symbol", "ts"])
    groups = [g for _, g in bars.groupby("symbol", sort=True)]
    width = max(len(g) for g in groups)
    block = np.full((len(groups), width), np.nan)
    for i, g in enumerate(groups):
        block[i, width - len(g) :] = g["close"].to_numpy(dtype=np.float64)
    rsi_v = rsi(block, 14)
    macd_v, signal_v, hist_v = macd(block, 12, 26, 9)
    sma_v = smas(block, (20, 50))
    parts = []
    for i, g in enumerate(groups):
        cols = slice(width - len(g), width)
        parts.append(
            pd.DataFrame(
                {
                    "symbol": g["symbol"].to_numpy(),
                    "ts": g["ts"].to_numpy(),
                    "session": g["session"].to_numpy(),
                    "close": g["close"].to_numpy(),
                    "rsi": rsi_v[i, cols],
                    "macd": macd_v[i, cols],
                    "macd_signal": signal_v[i, cols],
                    "macd_hist": hist_v[i, cols],
                    "sma_20": sma_v[20][i, cols],
                    "sma_50": sma_v[50][i, cols],
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


@op(ins={"info": In(dict)}, out=Out(dict), description="Recompute indicators on the session's minute closes.")
def compute_intraday_indicators(
    context: OpExecutionContext, info: dict[str, Any], warehouse: WarehouseResource
) -> dict[str, Any]:
    try:
        universe = active_symbols(warehouse)
        bars = warehouse.read_bars("market.bars_minute", universe, info["session"], info["session"])
        frame = intraday_indicator_frame(bars)
        # only rows whose inputs may have changed: everything before fetch_start was final already
        changed = frame[frame["ts"] >= pd.Timestamp(info["fetch_start"])].copy()
        changed["run_id"] = context.run.run_id
        written = warehouse.upsert(tables.INDICATORS_INTRADAY, changed)
    except Exception as exc:
        _log_refresh(warehouse, info, status="failed", error=str(exc)[:2000])
        raise
    context.add_output_metadata(
        {"bars_read": MetadataValue.int(len(bars)), "indicators_upserted": MetadataValue.int(written)}
    )
    return {**info, "indicators_upserted": written}


@op(ins={"info": In(dict)}, description="Write each symbol's latest market data to Redis (warning if down).")
def warm_intraday_cache(
    context: OpExecutionContext, info: dict[str, Any], cache: CacheResource, warehouse: WarehouseResource
) -> None:
    universe = active_symbols(warehouse)
    report = cache.write_market(load_market_data(warehouse, universe))
    if not report.ok:
        context.log.warning(
            "intraday cache warm skipped %s (%s); the warehouse is up to date and the next refresh rewrites",
            dict(report.skipped),
            "; ".join(report.errors),
        )
    _log_refresh(
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
    context: SensorEvaluationContext, market_clock: MarketClockResource
) -> SensorResult | SkipReason:
    started = time.perf_counter()
    decision = plan_window(market_clock.now(), context.cursor)
    if isinstance(decision, SkipReason):
        return decision
    context.log.info("requesting %s (%.1f ms to plan)", decision.run_key, (time.perf_counter() - started) * 1000)
    return SensorResult(run_requests=[decision.run_request()], cursor=decision.cursor())
