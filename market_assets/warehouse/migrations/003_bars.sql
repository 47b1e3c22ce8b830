-- Raw (unadjusted) bars exactly as Alpaca delivered them. `session` is the NYSE session date the
-- bar belongs to: the daily partition key, so replacing a partition is one indexed DELETE.
CREATE TABLE IF NOT EXISTS market.bars_daily (
    symbol      text             NOT NULL,
    ts          timestamptz      NOT NULL,
    session     date             NOT NULL,
    open        double precision NOT NULL CHECK (open > 0),
    high        double precision NOT NULL,
    low         double precision NOT NULL CHECK (low > 0),
    close       double precision NOT NULL CHECK (close > 0),
    volume      bigint           NOT NULL CHECK (volume >= 0),
    trade_count bigint,
    vwap        double precision,
    feed        text             NOT NULL,
    run_id      text,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts),
    CHECK (low <= open AND low <= close AND open <= high AND close <= high)
);
-- BRIN, not B-tree: rows arrive in session order, so a tiny BRIN finds a day's rows for partition
-- replacement and analysts' "all symbols on a day" queries, while a B-tree on (session, symbol)
-- halved bulk-load throughput (measured with bench/load.py).
CREATE INDEX IF NOT EXISTS bars_daily_session_brin ON market.bars_daily USING brin (session);
COMMENT ON TABLE market.bars_daily IS 'Daily bars as delivered (raw prices), one row per symbol and session; ts is Alpaca''s bar time.';

-- Minute bars: native range partitioning by month on ts (created on demand by the writer),
-- so old months can be detached/archived and queries on a day touch one partition.
CREATE TABLE IF NOT EXISTS market.bars_minute (
    symbol      text             NOT NULL,
    ts          timestamptz      NOT NULL,
    session     date             NOT NULL,
    open        double precision NOT NULL CHECK (open > 0),
    high        double precision NOT NULL,
    low         double precision NOT NULL CHECK (low > 0),
    close       double precision NOT NULL CHECK (close > 0),
    volume      bigint           NOT NULL CHECK (volume >= 0),
    trade_count bigint,
    vwap        double precision,
    feed        text             NOT NULL,
    run_id      text,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts),
    CHECK (low <= open AND low <= close AND open <= high AND close <= high)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS bars_minute_session_brin ON market.bars_minute USING brin (session);
COMMENT ON TABLE market.bars_minute IS 'Minute bars as delivered (raw prices), regular session; a missing minute means no trades.';
