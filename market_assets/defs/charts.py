"""The technicals charts: one reporting asset that draws the stored indicators, patterns and levels.

Why an asset of its own, after the technicals: rendering three matplotlib figures costs about 2 s (more on a busy
machine), which used to sit inside the steps that write the derived tables, so every new session's data waited
for its pictures. Drawn here, from what is stored (the rows SQL users read, not the frames a step held), the data
path is bars -> technicals, and the pictures follow in the schedule's job (`daily_market_job`). The technicals
job and the CLI's history chunks, which only load history, do not draw them at all.

A run over a range of sessions charts its last session; the pictures go on that partition's materialization
only, so a range run stores them once.
"""

import time
from collections.abc import Callable

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from market_assets.defs.partition_report import partition_keys
from market_assets.defs.partitions import BACKFILL_POLICY, daily_partitions, partition_dates
from market_assets.defs.universe import run_universe
from market_assets.domain.sessions import session_before
from market_assets.reporting import technicals as report
from market_assets.warehouse.queries import technicals as queries
from market_assets.warehouse.resource import WarehouseResource

GROUP = "reporting"


def _render(context: AssetExecutionContext, name: str, draw: Callable[[], str]) -> MetadataValue:
    """Render one chart; a chart never fails the run (the data it shows is already written and checked)."""
    try:
        return MetadataValue.md(draw())
    except Exception as exc:  # cosmetic output: report, do not fail
        context.log.warning("%s chart rendering failed: %r", name, exc)
        return MetadataValue.md(f"_chart rendering failed: {exc!r}_")


@asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[AssetKey("technical_indicators"), AssetKey("chart_patterns"), AssetKey("support_resistance_levels")],
    description=(
        "Charts of the stored technicals as of the run's last session: the biggest movers with their indicators, "
        "the symbols with the most patterns (recent patterns as markers), and the latest support/resistance levels. "
        "Pictures only (metadata of the last partition); no table."
    ),
)
def technicals_charts(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    t0 = time.perf_counter()
    first, last = partition_dates(context)
    universe = run_universe(context, warehouse)
    start = session_before(last, report.CHART_SESSIONS)
    n = report.CHART_SYMBOLS

    movers = queries.biggest_movers(warehouse, universe, last, n)
    busiest = queries.busiest_pattern_symbols(warehouse, universe, first, last, n)
    levels = queries.levels_as_of(warehouse, universe, last, n)
    charted = sorted({*movers, *busiest, *levels["symbol"]})
    frame = queries.chart_frame(warehouse, charted, start, last)  # one read for the three pictures
    markers = queries.pattern_markers(warehouse, busiest, start, last)

    charts = {
        "movers": _render(context, "movers", lambda: report.movers_chart(frame, movers, last)),
        "patterns": _render(context, "patterns", lambda: report.patterns_chart(frame, busiest, markers, first, last)),
        "levels": _render(context, "levels", lambda: report.levels_chart(frame, levels)),
    }
    keys = partition_keys(context)
    if keys:
        context.add_asset_metadata(charts, partition_key=keys[-1])
    return MaterializeResult(
        metadata={
            "as_of": str(last),
            "charted_symbols": MetadataValue.json(charted),
            "sessions_drawn": report.CHART_SESSIONS,
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
        }
    )
