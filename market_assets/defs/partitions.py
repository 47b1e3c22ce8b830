"""The one time partitioning of the platform: NYSE sessions, and how runs cover them.

Partitions are the New York calendar days on which NYSE trades: weekends are excluded by a cron
rule and exchange holidays (from exchange_calendars, about a year ahead) by date, with Dagster's
`exclusions`. Keys stay `YYYY-MM-DD`, so materializations made when partitions were calendar days
keep their keys; the weekend and holiday partitions that used to "materialize" with zero rows are
simply no longer part of the set (2,994 partitions from 2015 to late 2026 instead of 4,350).

Symbols are rows, not a partition dimension (hundreds of symbols x thousands of days would blow
through Dagster's partition limits). The start is fixed, not MARKET_HISTORY_START, so the
partition set does not move when the setting changes.

`end_offset=1`: the session under way is already a partition, so the after-close schedule can
request it the same evening (its window, midnight to midnight, ends only at the next midnight).
"""

from datetime import date, datetime, time, timedelta

from dagster import AssetExecutionContext, BackfillPolicy, DailyPartitionsDefinition

from market_assets.domain.sessions import NEW_YORK, weekday_holidays

PARTITIONS_START = "2015-01-02"
WEEKENDS = "0 0 * * 6,0"  # midnight starting a Saturday or a Sunday, in the partitions' time zone

# end_offset=1: today's partition exists from midnight, not only once the day is over, because the
# after-close schedule requests the session's partition at 16:30 the same day (with the default 0
# every tick failed with DagsterUnknownPartitionError; found by tests/deploy/test_topology.py).
daily_partitions = DailyPartitionsDefinition(
    start_date=PARTITIONS_START,
    timezone=NEW_YORK,
    end_offset=1,
    exclusions=[
        WEEKENDS,
        *(datetime.combine(day, time()) for day in weekday_holidays(date.fromisoformat(PARTITIONS_START))),
    ],
)

# A backfill run covers up to 31 sessions: one request stream per symbol batch instead of one per
# day, while 31 sessions of minute bars for 500 symbols (~6M rows) still fit in memory. The CLI
# backfills daily bars and technicals in larger chunks of its own (see runtime/backfill.py).
BACKFILL_POLICY = BackfillPolicy.multi_run(max_partitions_per_run=31)


def partition_dates(context: AssetExecutionContext) -> tuple[date, date]:
    """First and last day of the partition (or partition range) being materialized: a session's
    window is its own calendar day, so a range's last day is its last session."""
    window = context.partition_time_window
    return window.start.date(), (window.end - timedelta(days=1)).date()


# A run the CLI starts for a backfill chunk that is not the last of its step. Its partitions get their own counts
# as always, but no preview, chart or table-wide row count: those describe "the latest" materialization, and a
# ten-year backfill used to render 2 s of charts and count a multi-million-row table in every one of its chunks
# (the final chunk and every scheduled or UI run still carry them).
HISTORY_CHUNK_TAG = "market/history_chunk"


def is_history_chunk(context: AssetExecutionContext) -> bool:
    """True in a CLI backfill chunk that is not the last of its step (see HISTORY_CHUNK_TAG)."""
    return context.run.tags.get(HISTORY_CHUNK_TAG) == "true"
