-- Issue 10: support/resistance levels stored one tuple per (symbol, session), the levels as arrays.
--
-- Why: a symbol carries about twelve levels every session, so one row per level made this table 15.4 M of the
-- 19.9 M derived rows of ten years of 500 symbols; writing a year of them cost 8-9.5 s of COPY, most of it
-- primary-key maintenance on (symbol, as_of, kind, level). Packed, a session is 500 tuples and 500 key entries.
-- SQL users keep the relation they had: market.support_resistance is now a view with one row per level and the
-- same columns; a filter on symbol or session goes to the packed table's primary key or BRIN before unnesting.
-- The arrays of one tuple are parallel (element i of each describes level i) and ordered by level.

CREATE TABLE IF NOT EXISTS market.support_resistance_packed (
    symbol      text               NOT NULL,
    as_of       date               NOT NULL,
    session     date               NOT NULL CHECK (session = as_of),
    resistance  boolean[]          NOT NULL,
    level       double precision[] NOT NULL CHECK (0 < ALL (level)),
    touches     integer[]          NOT NULL CHECK (1 <= ALL (touches)),
    first_touch timestamptz[]      NOT NULL,
    last_touch  timestamptz[]      NOT NULL,
    strength    double precision[] NOT NULL CHECK (0 <= ALL (strength) AND 1 >= ALL (strength)),
    run_id      text,
    computed_at timestamptz        NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, as_of),
    CHECK (array_ndims(level) = 1 AND cardinality(level) >= 1
           AND cardinality(resistance) = cardinality(level) AND cardinality(touches) = cardinality(level)
           AND cardinality(first_touch) = cardinality(level) AND cardinality(last_touch) = cardinality(level)
           AND cardinality(strength) = cardinality(level))
);
CREATE INDEX IF NOT EXISTS support_resistance_packed_session_brin ON market.support_resistance_packed
    USING brin (session) WITH (pages_per_range = 32, autosummarize = off);
COMMENT ON TABLE market.support_resistance_packed IS
    'Storage of market.support_resistance: one tuple per symbol and as_of session, its levels as parallel arrays '
    'ordered by level. Query the view market.support_resistance (one row per level) unless you need the packing.';

-- the rows already stored move over, in the order they were written (the BRIN on session stays useful)
DO $$
BEGIN
    IF to_regclass('market.support_resistance') IS NOT NULL
       AND (SELECT relkind FROM pg_class WHERE oid = 'market.support_resistance'::regclass) = 'r' THEN
        INSERT INTO market.support_resistance_packed
            (symbol, as_of, session, resistance, level, touches, first_touch, last_touch, strength, run_id,
             computed_at)
        SELECT symbol, as_of, min(session),
               array_agg(kind = 'resistance' ORDER BY level), array_agg(level ORDER BY level),
               array_agg(touches ORDER BY level), array_agg(first_touch ORDER BY level),
               array_agg(last_touch ORDER BY level), array_agg(strength ORDER BY level),
               min(run_id), max(computed_at)
        FROM market.support_resistance
        GROUP BY symbol, as_of
        ORDER BY min(session), symbol;
        DROP VIEW IF EXISTS market.v_levels_latest;
        DROP TABLE market.support_resistance;
    END IF;
END
$$;

CREATE OR REPLACE VIEW market.support_resistance AS
SELECT p.symbol,
       p.as_of,
       p.session,
       CASE WHEN u.resistance THEN 'resistance' ELSE 'support' END AS kind,
       u.level,
       u.touches,
       u.first_touch,
       u.last_touch,
       u.strength,
       p.run_id,
       p.computed_at
FROM market.support_resistance_packed p
CROSS JOIN LATERAL unnest(p.resistance, p.level, p.touches, p.first_touch, p.last_touch, p.strength)
    AS u(resistance, level, touches, first_touch, last_touch, strength);
COMMENT ON VIEW market.support_resistance IS
    'Support/resistance levels per symbol as known at the close of session as_of, one row per level: confirmed '
    'swing highs/lows of the last 252 sessions clustered within 0.5 x ATR-14. Support is at or below that close, '
    'resistance above. Stored packed in market.support_resistance_packed; filter on symbol and/or session.';
COMMENT ON COLUMN market.support_resistance.session IS 'Equal to as_of: the partition key column.';
COMMENT ON COLUMN market.support_resistance.level IS 'Mean price of the clustered swing points.';
COMMENT ON COLUMN market.support_resistance.touches IS 'Swing points in the cluster.';
COMMENT ON COLUMN market.support_resistance.first_touch IS 'Bar time (ts) of the earliest swing in the cluster.';
COMMENT ON COLUMN market.support_resistance.last_touch IS 'Bar time (ts) of the latest swing in the cluster.';
COMMENT ON COLUMN market.support_resistance.strength IS
    '0..1: 60% touches (saturating at 5), 40% recency of the last touch.';

-- the latest as_of per symbol from the packed table (a twelfth of the tuples the old GROUP BY read)
CREATE OR REPLACE VIEW market.v_levels_latest AS
WITH latest AS (
    SELECT symbol, max(as_of) AS as_of FROM market.support_resistance_packed GROUP BY symbol
)
SELECT s.symbol,
       s.as_of,
       s.kind,
       market.round_to(s.level, 4) AS level,
       s.touches,
       market.round_to(s.strength, 4) AS strength,
       (s.first_touch AT TIME ZONE 'America/New_York')::date AS first_touch,
       (s.last_touch AT TIME ZONE 'America/New_York')::date AS last_touch,
       b.close,
       market.round_to(s.level / b.close - 1, 6) AS distance_pct
FROM market.support_resistance s
JOIN latest l USING (symbol, as_of)
LEFT JOIN market.bars_daily b ON b.symbol = s.symbol AND b.session = s.as_of
ORDER BY s.symbol, abs(s.level / b.close - 1);
COMMENT ON VIEW market.v_levels_latest IS
    'Support/resistance levels of each symbol''s latest as_of, nearest to the close first (distance_pct = '
    'level/close - 1); touches as New York session dates.';
