"""The one writer against a real PostgreSQL: types round-trip, partition replace is exact and
atomic, duplicates inside a batch are resolved, migrations are recorded and idempotent."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from market_assets.analytics.options.rows import quarantine_frame
from market_assets.domain.sessions import sessions_between
from market_assets.warehouse import tables
from market_assets.warehouse.queries.bars import missing_daily_bars
from market_assets.warehouse.resource import Pairs, WarehouseResource, conform, copy_frame, dedupe_last
from market_assets.warehouse.tables import BARS_MINUTE, QUARANTINE, TABLES

QUARANTINE_COLUMNS = QUARANTINE.columns


def make_bars(symbols: list[str], sessions: list[str], price: float = 100.0, run_id: str = "r1") -> pd.DataFrame:
    rows = []
    for s in symbols:
        for i, day in enumerate(sessions):
            ts = pd.Timestamp(day, tz="America/New_York").tz_convert("UTC")
            p = price + i
            rows.append(
                {
                    "symbol": s,
                    "ts": ts,
                    "session": pd.Timestamp(day).date(),
                    "open": p,
                    "high": p + 1.25,
                    "low": p - 1.5,
                    "close": p + 0.5,
                    "volume": 1000 + i,
                    "trade_count": 10 + i,
                    "vwap": p + 0.1,
                    "feed": "iex",
                    "run_id": run_id,
                }
            )
    frame = pd.DataFrame(rows)
    frame["trade_count"] = frame["trade_count"].astype("Int64")
    return frame


def stored(warehouse: WarehouseResource, table: str = "market.bars_daily") -> pd.DataFrame:
    return warehouse.read_frame(
        f"SELECT symbol, ts, session, open, high, low, close, volume, trade_count, vwap, feed, run_id "
        f"FROM {table} ORDER BY symbol, ts"
    )


SESSIONS = ["2024-03-04", "2024-03-05", "2024-03-06"]


def write(warehouse: WarehouseResource, frame: pd.DataFrame, symbols: list[str], table: str = "market.bars_daily"):
    return warehouse.replace_partition(
        TABLES[table], frame, sessions=(date(2024, 3, 4), date(2024, 3, 6)), symbols=symbols
    )


def test_binary_copy_round_trips_every_type_and_null(warehouse: WarehouseResource) -> None:
    frame = make_bars(["AAPL", "BRK.B"], SESSIONS)
    frame.loc[1, "vwap"] = np.nan
    frame.loc[2, "trade_count"] = pd.NA
    frame.loc[3, "run_id"] = None
    frame.loc[4, "open"] = 101.456789012345  # full float8 precision survives
    write(warehouse, frame, ["AAPL", "BRK.B"])
    back = stored(warehouse)
    assert len(back) == 6
    assert pd.isna(back.loc[1, "vwap"])
    assert pd.isna(back.loc[2, "trade_count"])
    assert pd.isna(back.loc[3, "run_id"])
    assert back.loc[4, "open"] == 101.456789012345
    assert back["symbol"].tolist() == ["AAPL"] * 3 + ["BRK.B"] * 3
    assert [d.isoformat() for d in back["session"][:3]] == SESSIONS
    assert pd.Timestamp(back.loc[0, "ts"]) == pd.Timestamp("2024-03-04 05:00", tz="UTC")


def test_text_with_unicode_and_varying_lengths(warehouse: WarehouseResource) -> None:
    frame = pd.DataFrame(
        {
            "source": ["a", "ünïcødé ✓", "x" * 300],
            "dataset": "d",
            "partition_key": [None, "k", "k"],
            "symbol": ["A", None, "ABCDE"],
            "ts": pd.to_datetime(["2024-01-01", None, "2024-01-02"], utc=True),
            "payload": ['{"a": 1}', '{"b": "ü"}', "[]"],
            "reason": "r",
            "run_id": None,
            "session": None,
        }
    )
    with warehouse.connect() as conn:
        copy_frame(conn, "market.quarantine", frame, QUARANTINE_COLUMNS)
    back = warehouse.read_frame("SELECT source, symbol, ts, payload FROM market.quarantine ORDER BY id")
    assert back["source"].tolist() == ["a", "ünïcødé ✓", "x" * 300]
    assert back["symbol"].isna().tolist() == [False, True, False]
    assert back["symbol"].dropna().tolist() == ["A", "ABCDE"]
    assert back["payload"].tolist() == [{"a": 1}, {"b": "ü"}, []]
    assert back["ts"].isna().tolist() == [False, True, False]


def test_rewriting_a_partition_is_idempotent(warehouse: WarehouseResource) -> None:
    frame = make_bars(["AAPL", "MSFT"], SESSIONS)
    write(warehouse, frame, ["AAPL", "MSFT"])
    first = stored(warehouse)
    result = write(warehouse, frame, ["AAPL", "MSFT"])
    assert result.rows_deleted == 6 and result.rows_written == 6
    pd.testing.assert_frame_equal(first, stored(warehouse))


def test_replace_touches_only_the_partition_and_the_symbols_written(warehouse: WarehouseResource) -> None:
    write(warehouse, make_bars(["AAPL", "MSFT"], SESSIONS), ["AAPL", "MSFT"])
    outside = make_bars(["AAPL"], ["2024-03-07"])
    warehouse.replace_partition(
        TABLES["market.bars_daily"],
        outside,
        sessions=(date(2024, 3, 7), date(2024, 3, 7)),
        symbols=["AAPL"],
    )
    # new AAPL data for the same sessions replaces AAPL only; MSFT and 03-07 stay
    write(warehouse, make_bars(["AAPL"], SESSIONS, price=200.0, run_id="r2"), ["AAPL"])
    back = stored(warehouse)
    assert len(back) == 7
    aapl = back[(back.symbol == "AAPL") & (back.session < date(2024, 3, 7))]
    assert aapl["open"].tolist() == [200.0, 201.0, 202.0]
    assert back[back.symbol == "MSFT"]["open"].tolist() == [100.0, 101.0, 102.0]
    assert (back.session == date(2024, 3, 7)).sum() == 1


def test_a_failure_in_the_middle_of_a_write_leaves_the_partition_as_it_was(
    warehouse: WarehouseResource,
) -> None:
    write(warehouse, make_bars(["AAPL", "MSFT"], SESSIONS), ["AAPL", "MSFT"])
    before = stored(warehouse)
    bad = make_bars(["AAPL", "MSFT"], SESSIONS, price=300.0)
    bad.loc[4, "volume"] = -1  # the server rejects this row half-way through the COPY
    with pytest.raises(psycopg.errors.CheckViolation):
        write(warehouse, bad, ["AAPL", "MSFT"])
    pd.testing.assert_frame_equal(before, stored(warehouse))


def test_duplicate_keys_in_one_batch_keep_the_last(warehouse: WarehouseResource) -> None:
    frame = make_bars(["AAPL"], SESSIONS)
    revised = frame.iloc[[1]].assign(close=101.75)
    write(warehouse, pd.concat([frame, revised], ignore_index=True), ["AAPL"])
    back = stored(warehouse)
    assert len(back) == 3
    assert back.loc[1, "close"] == 101.75


def test_upsert_updates_revised_rows_and_inserts_new(warehouse: WarehouseResource) -> None:
    frame = make_bars(["AAPL"], SESSIONS)
    warehouse.upsert(BARS_MINUTE, frame.iloc[:2])
    revised = frame.iloc[1:].assign(close=frame["close"].iloc[1:] + 0.25)
    warehouse.upsert(BARS_MINUTE, pd.concat([revised, revised]))
    back = stored(warehouse, "market.bars_minute")
    assert back["close"].tolist() == [100.5, 101.75, 102.75]


def test_minute_bars_land_in_monthly_partitions(warehouse: WarehouseResource) -> None:
    frame = make_bars(["AAPL"], ["2024-02-29", "2024-03-01"])
    warehouse.replace_partition(BARS_MINUTE, frame, sessions=(date(2024, 2, 29), date(2024, 3, 1)), symbols=["AAPL"])
    parts = warehouse.read_frame(
        "SELECT tableoid::regclass::text AS part, count(*) AS n FROM market.bars_minute GROUP BY 1 ORDER BY 1"
    )
    assert parts["part"].tolist() == ["market.bars_minute_202402", "market.bars_minute_202403"]


def test_migrations_are_recorded_once(warehouse: WarehouseResource) -> None:
    assert warehouse.migrate() == []
    versions = warehouse.read_frame("SELECT version FROM market.schema_migrations ORDER BY version")
    assert versions["version"].tolist()[:4] == [
        "001_schema.sql",
        "002_symbols.sql",
        "003_bars.sql",
        "004_quarantine_and_log.sql",
    ]


def test_unreachable_database_gives_a_clear_error() -> None:
    dead = WarehouseResource(database_url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(ConnectionError, match="cannot connect to the warehouse"):
        dead.scalar("SELECT 1")


def quarantine_rows(symbol: str, day: str, reason: str = "high is not a finite number (inf/NaN)") -> pd.DataFrame:
    ts = pd.Timestamp(day, tz="America/New_York").tz_convert("UTC")
    return pd.DataFrame(
        {"source": ["test"], "symbol": [symbol], "ts": [ts], "payload": [{"h": float("inf")}], "reason": [reason],
         "run_id": ["r1"]}
    )  # fmt: skip


def test_a_later_good_write_of_the_symbol_and_session_clears_its_quarantine(warehouse: WarehouseResource) -> None:
    """Issue 13, item 8: quarantine was keyed by the range string, so healing with another window left it."""
    bars = TABLES["market.bars_daily"]
    frame = make_bars(["AAPL", "MSFT"], SESSIONS)
    bad_day = frame[(frame.symbol == "AAPL") & (frame.session == date(2024, 3, 5))].index
    result = warehouse.replace_partition(
        bars, frame.drop(bad_day), sessions=(date(2024, 3, 4), date(2024, 3, 6)), symbols=["AAPL", "MSFT"],
        quarantine=quarantine_rows("AAPL", "2024-03-05"), dataset="bars_daily", partition_key="2024-03-04..2024-03-06",
    )  # fmt: skip
    assert result.rows_quarantined == 1
    # the schedule heals the one day with its own partition key
    warehouse.replace_partition(
        bars, make_bars(["AAPL"], ["2024-03-05"]), sessions=(date(2024, 3, 5), date(2024, 3, 5)), symbols=["AAPL"],
        dataset="bars_daily", partition_key="2024-03-05",
    )  # fmt: skip
    assert warehouse.scalar("SELECT count(*) FROM market.quarantine") == 0
    assert warehouse.scalar("SELECT count(*) FROM market.bars_daily") == 6


def test_quarantine_of_other_symbols_and_sessions_survives_a_write(warehouse: WarehouseResource) -> None:
    bars = TABLES["market.bars_daily"]
    empty = make_bars(["AAPL"], SESSIONS).iloc[0:0]
    for symbol, day in (("AAPL", "2024-03-04"), ("MSFT", "2024-03-05")):
        warehouse.replace_partition(
            bars, empty, sessions=(date(2024, 3, 4), date(2024, 3, 5)), symbols=[symbol],
            quarantine=quarantine_rows(symbol, day), dataset="bars_daily", partition_key=f"{day}", only_delivered=True,
        )  # fmt: skip
    # a re-run that rejects MSFT 03-05 again replaces that record, and leaves AAPL's alone
    warehouse.replace_partition(
        bars, empty, sessions=(date(2024, 3, 4), date(2024, 3, 6)), symbols=["MSFT"],
        quarantine=quarantine_rows("MSFT", "2024-03-05", "again"), dataset="bars_daily", partition_key="x",
        only_delivered=True,
    )  # fmt: skip
    back = warehouse.read_frame("SELECT symbol, session, reason FROM market.quarantine ORDER BY symbol")
    assert back["symbol"].tolist() == ["AAPL", "MSFT"]
    assert back["reason"].tolist()[1] == "again"
    assert [d.isoformat() for d in back["session"]] == ["2024-03-04", "2024-03-05"]


def test_only_delivered_keeps_the_rows_of_a_symbol_the_source_returned_nothing_for(
    warehouse: WarehouseResource,
) -> None:
    """Issue 13, item 1 at the writer: a re-run where MSFT came back empty must not delete MSFT's history."""
    write(warehouse, make_bars(["AAPL", "MSFT"], SESSIONS), ["AAPL", "MSFT"])
    partial = make_bars(["AAPL"], SESSIONS, price=200.0)
    partial = partial[partial.session != date(2024, 3, 6)]  # and AAPL's last day did not come either
    result = warehouse.replace_partition(
        TABLES["market.bars_daily"], partial, sessions=(date(2024, 3, 4), date(2024, 3, 6)),
        symbols=["AAPL", "MSFT"], only_delivered=True,
    )  # fmt: skip
    assert result.rows_deleted == 2 and result.rows_written == 2
    back = stored(warehouse)
    assert back[back.symbol == "MSFT"]["open"].tolist() == [100.0, 101.0, 102.0]
    assert back[back.symbol == "AAPL"]["open"].tolist() == [200.0, 201.0, 102.0]


@pytest.mark.parametrize(
    ("delivered", "grid"),
    [
        # A and B on every session (the grid), C on two, D on one, a repeated pair
        ([("A", 4), ("A", 5), ("A", 6), ("B", 6), ("B", 5), ("B", 4), ("C", 4), ("C", 6), ("D", 5), ("A", 5)], "AB"),
        ([("A", 4), ("B", 5), ("C", 6)], ""),  # no symbol on every session: all pairs
        ([("A", 4), ("A", 5), ("B", 4), ("B", 5)], "AB"),  # all in the grid
        ([], ""),
    ],
)
def test_pairs_predicate_matches_exactly_the_pairs(
    warehouse: WarehouseResource, delivered: list[tuple[str, int]], grid: str
) -> None:
    """The grid-plus-rest form of "(symbol, session) in pairs" selects exactly the pairs, nothing else."""
    pairs = ([o for o, _ in delivered], [date(2024, 3, d) for _, d in delivered])
    predicate, params = Pairs.of(*pairs).predicate(sql.Identifier("o"), sql.Identifier("s"))
    every = [(o, date(2024, 3, d)) for o in "ABCDE" for d in (3, 4, 5, 6, 7)]
    query = sql.SQL("SELECT o, s FROM unnest(%s::text[], %s::date[]) AS c(o, s) WHERE {} ORDER BY o, s").format(
        predicate
    )
    with warehouse.connect() as conn:
        got = conn.execute(query, [[o for o, _ in every], [d for _, d in every], *params]).fetchall()
    assert got == sorted(set(zip(*pairs, strict=True)))
    assert sorted(params[0]) == list(grid)  # sent as two short arrays, not as their pairs
    assert not set(params[2]) & set(grid)


def test_a_second_writer_of_the_partition_waits_then_fails_clearly(warehouse: WarehouseResource) -> None:
    """Issue 13, item 7: two writers collided with a raw UniqueViolation; now the second waits, bounded."""
    import time

    from market_assets.errors import WriteConflictError

    holder = psycopg.connect(warehouse.conninfo())
    try:
        month = 2024 * 12 + 2  # March 2024
        holder.execute("SELECT pg_advisory_xact_lock(hashtext('market.bars_daily'), %s)", (month,))
        started = time.monotonic()
        with pytest.raises(WriteConflictError, match=r"market.bars_daily 2024-03 \(backend pid \d+"):
            warehouse.replace_partition(
                TABLES["market.bars_daily"], make_bars(["AAPL"], SESSIONS),
                sessions=(date(2024, 3, 4), date(2024, 3, 6)),
                symbols=["AAPL"], lock_wait_seconds=0.5,
            )  # fmt: skip
        assert 0.5 <= time.monotonic() - started < 3
        assert warehouse.scalar("SELECT count(*) FROM market.bars_daily") == 0
    finally:
        holder.rollback()
        holder.close()


def test_concurrent_writers_of_one_partition_serialise(warehouse: WarehouseResource) -> None:
    """Writers racing on the same partition: every write succeeds, the table ends with one copy of the last."""
    from concurrent.futures import ThreadPoolExecutor

    def writer(n: int) -> int:
        frame = make_bars(["AAPL", "MSFT"], SESSIONS, price=100.0 + n, run_id=f"w{n}")
        return write(warehouse, frame, ["AAPL", "MSFT"]).rows_written

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(writer, range(16))) == [6] * 16
    back = stored(warehouse)
    assert len(back) == 6 and back["run_id"].nunique() == 1


def contract_rejects(contract: str, sessions: list[str]) -> pd.DataFrame:
    """Rejected contract listings as the option_contracts asset files them (no timestamp of their own)."""
    rejected = pd.DataFrame(
        {"symbol": contract, "snapshot_date": pd.to_datetime(sessions), "reason": "open_interest must be >= 0"}
    )
    payload = pd.Series([{"symbol": contract, "underlying_symbol": "KO"}] * len(sessions), index=rejected.index)
    return quarantine_frame("option_contracts", rejected, payload, "r1")


def test_option_contract_rejects_are_keyed_by_contract_and_session(warehouse: WarehouseResource) -> None:
    """Issue 13, item 8 for option contracts: their rejects had no session, so they stayed keyed by the range
    string and a later good write of the contract on a single day never cleared them."""
    owner = ("underlying", "underlying_symbol")
    contract = "KO240315C00060000"
    filed = warehouse.replace_quarantine(
        "option_contracts", "2024-03-04..2024-03-06", ["KO"], contract_rejects(contract, ["2024-03-04", "2024-03-05"]),
        owner=owner,
    )  # fmt: skip
    assert filed == 2
    # the schedule's single day 03-05 lists the contract cleanly: its 03-05 reject goes, 03-04's stays
    warehouse.replace_quarantine("option_contracts", "2024-03-05", ["KO"], None, owner=owner)
    back = warehouse.read_frame("SELECT symbol, session FROM market.quarantine WHERE dataset = 'option_contracts'")
    assert back["symbol"].tolist() == [contract]
    assert [d.isoformat() for d in back["session"]] == ["2024-03-04"]
    # rejected again on 03-04 by another window: replaced, not duplicated
    warehouse.replace_quarantine(
        "option_contracts", "2024-03-01..2024-03-04", ["KO"], contract_rejects(contract, ["2024-03-04"]), owner=owner
    )
    assert warehouse.scalar("SELECT count(*) FROM market.quarantine WHERE dataset = 'option_contracts'") == 1


def test_read_frames_yields_the_whole_result_in_chunks_of_the_asked_size(warehouse: WarehouseResource) -> None:
    """The chunked reader (a server-side cursor) returns every row once, in order, at most `rows` a chunk."""
    query = "SELECT g AS n, g * 0.5 AS half, 'x' || g AS label FROM generate_series(1, 2503) AS g ORDER BY g"
    chunks = list(warehouse.read_frames(query, rows=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 503]
    whole = pd.concat(chunks, ignore_index=True)
    assert whole["n"].tolist() == list(range(1, 2504))
    assert whole["half"].tolist() == [n * 0.5 for n in range(1, 2504)]
    assert whole["label"].iloc[-1] == "x2503"
    exact = list(warehouse.read_frames("SELECT 1 AS n FROM generate_series(1, 4)", rows=2))
    assert [len(c) for c in exact] == [2, 2]
    empty = list(warehouse.read_frames("SELECT 1 AS n WHERE false"))
    assert len(empty) == 1 and empty[0].empty and list(empty[0].columns) == ["n"]


def test_conform_shapes_the_columns_and_leaves_the_callers_frame_untouched() -> None:
    """Without copying the whole frame: the caller's frame keeps its values, the result has the table's shape."""
    columns = (("symbol", "text"), ("n", "int8"), ("x", "float8"), ("note", "text"))
    table = tables.Table("market.t", columns, ("symbol",))
    frame = pd.DataFrame({"x": [1, 2.5, None], "symbol": ["A", "", None], "n": [1.4, None, 2.6], "extra": [1, 2, 3]})
    before = frame.copy()
    out = conform(table, frame)
    assert list(out.columns) == ["symbol", "n", "x", "note"]
    assert out["symbol"].tolist() == ["A", None, None]
    assert out["n"].tolist() == [1, pd.NA, 3] and str(out["n"].dtype) == "Int64"
    assert out["x"].iloc[:2].tolist() == [1.0, 2.5] and pd.isna(out["x"].iloc[2]) and out["x"].dtype == "float64"
    assert out["note"].tolist() == [None, None, None]
    pd.testing.assert_frame_equal(frame, before)
    out.loc[0, "x"] = 99.0
    pd.testing.assert_frame_equal(frame, before)  # copy-on-write: writing the result leaves the input alone


def test_dedupe_last_keeps_the_last_of_a_repeated_key_and_returns_a_clean_batch_as_is() -> None:
    frame = pd.DataFrame({"k": ["a", "b", "a"], "v": [1, 2, 3]})
    assert dedupe_last(frame, ["k"]).to_dict("records") == [{"k": "b", "v": 2}, {"k": "a", "v": 3}]
    clean = frame.iloc[:2]
    assert dedupe_last(clean, ["k"]) is clean


LEVELS = tables.SUPPORT_RESISTANCE


def level_rows(symbols: list[str], days: list[str], seed: int = 0) -> pd.DataFrame:
    """Flat level rows (one per level), 1..13 levels per (symbol, session), grouped by session then symbol."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in days:
        for s in symbols:
            for k in range(int(rng.integers(1, 14))):
                touch = pd.Timestamp(day, tz="America/New_York") - pd.Timedelta(days=int(rng.integers(0, 300)))
                rows.append({"symbol": s, "as_of": date.fromisoformat(day), "session": date.fromisoformat(day),
                             "resistance": bool(rng.integers(0, 2)), "level": 10.0 + k + rng.random(),
                             "touches": int(rng.integers(1, 9)), "first_touch": touch - pd.Timedelta(days=3),
                             "last_touch": touch, "strength": float(rng.random()), "run_id": "r"})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_nested_table_stores_one_tuple_per_key_and_its_view_gives_the_rows_back(
    warehouse: WarehouseResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("market_assets.warehouse.resource._ROWS_PER_SLICE", 7)  # slices cut inside keys' rows
    frame = level_rows(["AAPL", "BRK.B", "MSFT"], ["2024-01-02", "2024-01-03", "2024-01-04"])
    result = warehouse.replace_partition(LEVELS, frame, sessions=(date(2024, 1, 2), date(2024, 1, 4)),
                                         symbols=["AAPL", "BRK.B", "MSFT"])  # fmt: skip
    assert result.rows_written == len(frame)
    packed = warehouse.read_frame(
        "SELECT symbol, as_of, cardinality(level) AS n FROM market.support_resistance_packed ORDER BY 2, 1"
    )
    expected = frame.groupby(["as_of", "symbol"], sort=True).size().reset_index(name="n")
    assert packed[["symbol", "as_of", "n"]].values.tolist() == expected[["symbol", "as_of", "n"]].values.tolist()
    back = warehouse.read_frame(
        "SELECT symbol, as_of, session, kind, level, touches, first_touch, last_touch, strength, run_id"
        " FROM market.support_resistance ORDER BY session, symbol, level"
    )
    want = frame.sort_values(["session", "symbol", "level"]).reset_index(drop=True)
    assert back["kind"].tolist() == np.where(want["resistance"], "resistance", "support").tolist()
    for name in ("symbol", "as_of", "session", "touches", "run_id"):
        assert back[name].tolist() == want[name].tolist(), name
    for name in ("level", "strength"):
        assert np.array_equal(back[name].to_numpy(float), want[name].to_numpy(float)), name  # bit for bit
    for name in ("first_touch", "last_touch"):
        assert pd.to_datetime(back[name], utc=True).tolist() == want[name].tolist(), name

    # replacing one session of one symbol leaves every other tuple alone
    again = level_rows(["MSFT"], ["2024-01-03"], seed=9)
    warehouse.replace_partition(LEVELS, again, sessions=(date(2024, 1, 3), date(2024, 1, 3)), symbols=["MSFT"])
    msft = warehouse.read_frame(
        "SELECT level FROM market.support_resistance WHERE symbol = 'MSFT' AND session = '2024-01-03' ORDER BY level"
    )
    assert msft["level"].tolist() == sorted(again["level"].tolist())
    total = warehouse.scalar("SELECT count(*) FROM market.support_resistance")
    replaced = int(((frame["symbol"] == "MSFT") & (frame["session"] == date(2024, 1, 3))).sum())
    assert total == len(frame) - replaced + len(again)


def test_a_write_leaves_no_block_range_unsummarized(
    warehouse: WarehouseResource, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer summarizes the session BRIN ranges its COPY appended (migration 064), so the next window's DELETE
    and checks skip every earlier range instead of reading all pages no summary covers yet."""

    def unsummarized() -> int:  # summarizes what it finds: each call leaves nothing behind
        index = "market.support_resistance_packed_session_brin"
        return int(warehouse.scalar("SELECT brin_summarize_new_values(%s::regclass)", (index,)))

    symbols = [f"S{i:03d}" for i in range(60)]
    january = [str(d.date()) for d in pd.bdate_range("2024-01-02", periods=20)]
    with warehouse.transaction():  # inside a transaction the writer leaves it to a later write: the control
        warehouse.replace_partition(LEVELS, level_rows(symbols, january), symbols=symbols,
                                    sessions=(date(2024, 1, 2), date(2024, 1, 29)))  # fmt: skip
    assert unsummarized() > 0
    february = [str(d.date()) for d in pd.bdate_range("2024-02-01", periods=20)]
    warehouse.replace_partition(LEVELS, level_rows(symbols, february, seed=3), symbols=symbols,
                                sessions=(date(2024, 2, 1), date(2024, 2, 28)))  # fmt: skip
    assert unsummarized() == 0
    assert warehouse.summarize_new_ranges("market.support_resistance_packed") == 0  # through the definer function
    # the registry names exactly the tables with a BRIN index of their own (not the monthly partitions')
    brin = warehouse.read_frame(
        "SELECT DISTINCT t.oid::regclass::text AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_am a ON a.oid = c.relam JOIN pg_class t ON t.oid = i.indrelid"
        " WHERE a.amname = 'brin' AND t.relkind = 'r' AND NOT t.relispartition"
    )
    assert sorted(brin["name"]) == sorted(t.name for t in TABLES.values() if t.session_brin)
    # best effort after a committed write: a refusal is logged, not raised
    assert warehouse.summarize_new_ranges("market.no_such_table") == 0
    assert "market.no_such_table" in caplog.text and "not summarized" in caplog.text


def test_a_nested_write_refuses_keys_out_of_order_and_null_elements(warehouse: WarehouseResource) -> None:
    frame = level_rows(["AAPL", "MSFT"], ["2024-01-02"])
    shuffled = pd.concat([frame, frame.iloc[:1]], ignore_index=True)  # AAPL's rows come back after MSFT's
    with pytest.raises(ValueError, match="not consecutive"):
        warehouse.replace_partition(LEVELS, shuffled, sessions=(date(2024, 1, 2), date(2024, 1, 2)),
                                    symbols=["AAPL", "MSFT"])  # fmt: skip
    holed = frame.assign(level=frame["level"].where(frame.index != 1))
    with pytest.raises(ValueError, match="NULL elements"):
        warehouse.replace_partition(LEVELS, holed, sessions=(date(2024, 1, 2), date(2024, 1, 2)),
                                    symbols=["AAPL", "MSFT"])  # fmt: skip
    assert warehouse.scalar("SELECT count(*) FROM market.support_resistance_packed") == 0  # nothing half-written


def test_missing_daily_bars_names_exactly_the_absent_pairs(warehouse: WarehouseResource) -> None:
    """`missing_daily_bars` names exactly the absent (symbol, session) pairs, by session then symbol, for a
    month of sessions and for a few of them."""
    sessions = sessions_between(date(2024, 3, 1), date(2024, 3, 28))
    days = [d.isoformat() for d in sessions]
    frame = pd.concat(
        [
            make_bars(["AAPL"], days),  # complete
            make_bars(["MSFT"], [d for i, d in enumerate(days) if i % 3]),  # every third session missing
            make_bars(["NVDA"], days[:2]),  # stops early
        ],
        ignore_index=True,
    )
    write(warehouse, frame, ["AAPL", "MSFT", "NVDA"])
    universe = ["AAPL", "MSFT", "NVDA", "XOM"]  # XOM: nothing stored
    present = set(zip(frame["symbol"], frame["session"], strict=True))
    expected = sorted(((s, d) for d in sessions for s in universe if (s, d) not in present), key=lambda p: (p[1], p[0]))
    ranged = missing_daily_bars(warehouse, universe, sessions)
    assert list(zip(ranged["symbol"], ranged["session"], strict=True)) == expected
    few = sessions[3:8]
    probed = missing_daily_bars(warehouse, universe, few)
    assert list(zip(probed["symbol"], probed["session"], strict=True)) == [p for p in expected if p[1] in few]
