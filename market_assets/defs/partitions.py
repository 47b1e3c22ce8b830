"""The one time partitioning of the platform: New York calendar days, and how runs cover them.

Symbols are rows, not a partition dimension (hundreds of symbols x thousands of days would blow
through Dagster's partition limits). The start is fixed, not MARKET_HISTORY_START, so the
partition set does not move when the setting changes; ~4,400 partitions to 2027 stay well
below the 25k per-asset comfort limit.
"""

from datetime import date, timedelta

from dagster import AssetExecutionContext, BackfillPolicy, DailyPartitionsDefinition

PARTITIONS_START = "2015-01-02"

# end_offset=1: today's partition exists from midnight, not only once the day is over, because the
# after-close schedule requests the session's partition at 16:30 the same day (with the default 0
# every tick failed with DagsterUnknownPartitionError; found by tests/deploy/test_topology.py).
daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="America/New_York", end_offset=1)

# A backfill run covers up to a month of days: one request stream per symbol batch instead of one
# per day, while a month of minute bars for 500 symbols (~4M rows) still fits comfortably in memory.
BACKFILL_POLICY = BackfillPolicy.multi_run(max_partitions_per_run=31)


def partition_dates(context: AssetExecutionContext) -> tuple[date, date]:
    """First and last calendar day of the partition (or partition range) being materialized."""
    window = context.partition_time_window
    return window.start.date(), (window.end - timedelta(days=1)).date()
