-- Intraday indicators on the session's minute closes, recomputed by the sensor-driven intraday
-- refresh (market_assets/assets/intraday.py). Same monthly range partitioning as bars_minute so
-- old months can be detached together with the bars they were computed from. Rows are upserted
-- (the trailing window is re-fetched because Alpaca revises recent minute bars); the day's rows
-- are final once the T+1 daily run has replaced the day's minute bars and a refresh has run.
CREATE TABLE IF NOT EXISTS market.indicators_intraday (
    symbol      text             NOT NULL,
    ts          timestamptz      NOT NULL,   -- start of the minute bar the values are computed at
    session     date             NOT NULL,
    close       double precision NOT NULL,
    rsi         double precision,            -- Wilder RSI(14) over the session's minute closes
    macd        double precision,            -- MACD(12, 26, 9), TA-Lib seeding
    macd_signal double precision,
    macd_hist   double precision,
    sma_20      double precision,
    sma_50      double precision,
    run_id      text,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS indicators_intraday_session_idx ON market.indicators_intraday (session, symbol);
COMMENT ON TABLE market.indicators_intraday IS
    'Indicators on the session''s minute closes (warm-up restarts each session: no overnight gap in a recursion).';

-- One row per intraday refresh run: which window the sensor asked for and what the run did.
-- The sensor's cursor lives in Dagster; this table is the warehouse-side audit a SQL user can
-- join against bars_minute (e.g. "when was this minute last refreshed, and by which run").
CREATE TABLE IF NOT EXISTS market.intraday_refresh_log (
    id                  bigserial   PRIMARY KEY,
    run_id              text        NOT NULL,
    run_key             text,
    session             date        NOT NULL,
    window_start        timestamptz NOT NULL,   -- first minute new to this run (the cursor)
    window_end          timestamptz NOT NULL,   -- exclusive: bars with ts < window_end were complete
    fetch_start         timestamptz NOT NULL,   -- window_start minus the trailing revision window
    symbols             integer     NOT NULL,
    bars_fetched        bigint      NOT NULL,
    bars_upserted       bigint      NOT NULL,
    bars_quarantined    bigint      NOT NULL,
    indicators_upserted bigint      NOT NULL,
    cache_written       integer,                -- NULL: the cache step did not run
    cache_skipped       integer,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz NOT NULL DEFAULT now(),
    status              text        NOT NULL CHECK (status IN ('success', 'failed')),
    error               text
);
CREATE INDEX IF NOT EXISTS intraday_refresh_log_session_idx ON market.intraday_refresh_log (session, window_end DESC);
