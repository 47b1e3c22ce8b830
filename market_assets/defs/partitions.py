"""The one time partitioning of the platform: New York calendar days.

Symbols are rows, not a partition dimension (hundreds of symbols x thousands of days would blow
through Dagster's partition limits). The start is fixed, not MARKET_HISTORY_START, so the
partition set does not move when the setting changes; ~4,400 partitions to 2027 stay well
below the 25k per-asset comfort limit.
"""

from dagster import DailyPartitionsDefinition

PARTITIONS_START = "2015-01-02"

daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="America/New_York")
