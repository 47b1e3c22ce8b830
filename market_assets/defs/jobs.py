"""Named jobs the CLI launches, so its runs show under a job in the UI (not `__ephemeral_asset_job__`), count on
the Overview page and can be re-executed from there.

The latest session runs through `daily_market_job`, the schedule's own job; the history before it is loaded by
the narrower jobs below, in the order the assets need it (minute bars before the technicals that read them).
"""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from market_assets.defs.freshness import freshness_checks
from market_assets.defs.partitions import daily_partitions

# freshness compares with today's session: it belongs to freshness_job, not to a run loading some window
_NO_FRESHNESS = AssetSelection.checks(*freshness_checks)

symbols_job = define_asset_job(
    "symbols_job", selection=AssetSelection.assets("symbols") - _NO_FRESHNESS, description="Seed the symbol universe."
)
daily_bars_job = define_asset_job(
    "daily_bars_job",
    selection=AssetSelection.groups("ingestion") - AssetSelection.assets("symbols", "intraday_bars") - _NO_FRESHNESS,
    partitions_def=daily_partitions,
    description="Daily bars (and the corporate actions that follow them) for a range of days: the CLI's history.",
)
intraday_bars_job = define_asset_job(
    "intraday_bars_job",
    selection=AssetSelection.assets("intraday_bars") - _NO_FRESHNESS,
    partitions_def=daily_partitions,
    description="Minute bars for a range of days.",
)
technicals_job = define_asset_job(
    "technicals_job",
    selection=AssetSelection.groups("technicals") - _NO_FRESHNESS,
    partitions_def=daily_partitions,
    description="Technical indicators, patterns and levels for a range of days (after the bars are loaded).",
)

cache_job = define_asset_job(
    "cache_job",
    selection=AssetSelection.groups("cache") - _NO_FRESHNESS,
    partitions_def=daily_partitions,
    description="Warm Redis from the warehouse (when the CLI cannot run the whole daily_market_job).",
)

CLI_JOBS = [symbols_job, daily_bars_job, intraday_bars_job, technicals_job, cache_job]
