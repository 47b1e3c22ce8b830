"""The one time partitioning of the platform: New York calendar days, and how runs cover them.

Symbols are rows, not a partition dimension (hundreds of symbols x thousands of days would blow
through Dagster's partition limits). The start is fixed, not MARKET_HISTORY_START, so the
partition set does not move when the setting changes; ~4,400 partitions to 2027 stay well
below the 25k per-asset comfort limit.
"""

from datetime import date, timedelta

from dagster import AssetExecutionContext, BackfillPolicy, DailyPartitionsDefinition

PARTITIONS_START = "2015-01-02"

daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="America/New_York")

# A backfill run covers up to a month of days: one request stream per symbol batch instead of one
# per day, while a month of minute bars for 500 symbols (~4M rows) still fits comfortably in memory.
BACKFILL_POLICY = BackfillPolicy.multi_run(max_partitions_per_run=31)


def partition_dates(context: AssetExecutionContext) -> tuple[date, date]:
    """First and last calendar day of the partition (or partition range) being materialized."""
    window = context.partition_time_window
    return window.start.date(), (window.end - timedelta(days=1)).date()
