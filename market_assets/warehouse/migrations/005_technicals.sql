-- Derived technicals (issue #3): indicators, patterns, support/resistance and pivot levels,
-- written by the "technicals" Dagster assets from market.bars_daily / market.bars_minute.
-- Every table carries `session` (the NYSE session date) because the daily partition of an asset
-- is replaced by one DELETE on (session, symbol) plus one COPY, exactly like the bars tables.

CREATE TABLE IF NOT EXISTS market.indicators_daily (
    symbol           text             NOT NULL,
    ts               timestamptz      NOT NULL,
    session          date             NOT NULL,
    rsi              double precision,
    macd             double precision,
    macd_signal      double precision,
    macd_hist        double precision,
    sma_20           double precision,
    sma_50           double precision,
    sma_200          double precision,
    ema_12           double precision,
    ema_26           double precision,
    bb_upper         double precision,
    bb_middle        double precision,
    bb_lower         double precision,
    atr_14           double precision,
    stoch_k          double precision,
    stoch_d          double precision,
    volume_sma_20    double precision,
    relative_volume  double precision,
    volume_zscore    double precision,
    volume_spike     boolean,
    obv              double precision,
    ad               double precision,
    return_1d        double precision,
    return_5d        double precision,
    return_20d       double precision,
    return_60d       double precision,
    return_252d      double precision,
    log_return_1d    double precision,
    log_return_5d    double precision,
    log_return_20d   double precision,
    log_return_60d   double precision,
    log_return_252d  double precision,
    gap_pct          double precision,
    true_range       double precision,
    realized_vol_20  double precision,
    dist_52w_high    double precision,
    dist_52w_low     double precision,
    drawdown         double precision,
    vwap_intraday    double precision,
    minute_bars      integer,
    run_id           text,
    computed_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts)
);
CREATE INDEX IF NOT EXISTS indicators_daily_session_idx ON market.indicators_daily (session, symbol);
COMMENT ON TABLE market.indicators_daily IS
    'Daily technical indicators, one row per daily bar (same symbol, ts as market.bars_daily). Computed on raw '
    'prices with TA-Lib''s definitions from the partition plus LOOKBACK_SESSIONS sessions of history, so a '
    'partition computed alone equals a full-history computation to 1e-9. NULL where an indicator is not yet '
    'defined (warm-up: e.g. sma_200 needs 200 bars).';
COMMENT ON COLUMN market.indicators_daily.ts IS 'Bar time, identical to market.bars_daily.ts (join on symbol, ts).';
COMMENT ON COLUMN market.indicators_daily.session IS 'NYSE session date of the bar: the Dagster daily partition key.';
COMMENT ON COLUMN market.indicators_daily.rsi IS 'RSI-14, Wilder smoothing (talib.RSI); 0..100.';
COMMENT ON COLUMN market.indicators_daily.macd IS 'MACD line 12/26: EMA12 - EMA26, both SMA-seeded on bar 25 (talib.MACD).';
COMMENT ON COLUMN market.indicators_daily.macd_signal IS 'MACD signal: EMA-9 of the MACD line (talib.MACD).';
COMMENT ON COLUMN market.indicators_daily.macd_hist IS 'MACD histogram: macd - macd_signal.';
COMMENT ON COLUMN market.indicators_daily.sma_20 IS 'Simple moving average of close, 20 bars.';
COMMENT ON COLUMN market.indicators_daily.sma_50 IS 'Simple moving average of close, 50 bars.';
COMMENT ON COLUMN market.indicators_daily.sma_200 IS 'Simple moving average of close, 200 bars.';
COMMENT ON COLUMN market.indicators_daily.ema_12 IS 'Exponential moving average of close, 12 bars, SMA-seeded (talib.EMA).';
COMMENT ON COLUMN market.indicators_daily.ema_26 IS 'Exponential moving average of close, 26 bars, SMA-seeded (talib.EMA).';
COMMENT ON COLUMN market.indicators_daily.bb_upper IS 'Bollinger upper band: SMA20 + 2 population standard deviations.';
COMMENT ON COLUMN market.indicators_daily.bb_middle IS 'Bollinger middle band: SMA20 of close.';
COMMENT ON COLUMN market.indicators_daily.bb_lower IS 'Bollinger lower band: SMA20 - 2 population standard deviations.';
COMMENT ON COLUMN market.indicators_daily.atr_14 IS 'Average true range, 14 bars, Wilder smoothing (talib.ATR).';
COMMENT ON COLUMN market.indicators_daily.stoch_k IS 'Slow stochastic %K 5/3 (talib.STOCH, SMA smoothing).';
COMMENT ON COLUMN market.indicators_daily.stoch_d IS 'Slow stochastic %D: 3-bar SMA of stoch_k.';
COMMENT ON COLUMN market.indicators_daily.volume_sma_20 IS 'Simple moving average of volume, 20 bars.';
COMMENT ON COLUMN market.indicators_daily.relative_volume IS 'Volume / average volume of the 20 bars before (1 = normal).';
COMMENT ON COLUMN market.indicators_daily.volume_zscore IS 'Z-score of volume against the 20 bars before.';
COMMENT ON COLUMN market.indicators_daily.volume_spike IS 'True when relative volume is at least 2 (unusual activity).';
COMMENT ON COLUMN market.indicators_daily.obv IS
    'On-balance volume (talib.OBV), cumulative from the symbol''s first stored bar; only its changes are meaningful.';
COMMENT ON COLUMN market.indicators_daily.ad IS
    'Chaikin accumulation/distribution line (talib.AD), cumulative from the symbol''s first stored bar.';
COMMENT ON COLUMN market.indicators_daily.return_1d IS 'Simple return of close over 1 session (0.01 = +1%).';
COMMENT ON COLUMN market.indicators_daily.return_5d IS 'Simple return of close over 5 sessions.';
COMMENT ON COLUMN market.indicators_daily.return_20d IS 'Simple return of close over 20 sessions.';
COMMENT ON COLUMN market.indicators_daily.return_60d IS 'Simple return of close over 60 sessions.';
COMMENT ON COLUMN market.indicators_daily.return_252d IS 'Simple return of close over 252 sessions (one year).';
COMMENT ON COLUMN market.indicators_daily.log_return_1d IS 'Log return of close over 1 session.';
COMMENT ON COLUMN market.indicators_daily.log_return_5d IS 'Log return of close over 5 sessions.';
COMMENT ON COLUMN market.indicators_daily.log_return_20d IS 'Log return of close over 20 sessions.';
COMMENT ON COLUMN market.indicators_daily.log_return_60d IS 'Log return of close over 60 sessions.';
COMMENT ON COLUMN market.indicators_daily.log_return_252d IS 'Log return of close over 252 sessions.';
COMMENT ON COLUMN market.indicators_daily.gap_pct IS 'Opening gap: open / previous close - 1.';
COMMENT ON COLUMN market.indicators_daily.true_range IS 'True range: max(high, prev close) - min(low, prev close).';
COMMENT ON COLUMN market.indicators_daily.realized_vol_20 IS 'Annualised standard deviation of 20 daily log returns.';
COMMENT ON COLUMN market.indicators_daily.dist_52w_high IS 'close / highest high of the last 252 sessions - 1 (<= 0).';
COMMENT ON COLUMN market.indicators_daily.dist_52w_low IS 'close / lowest low of the last 252 sessions - 1 (>= 0).';
COMMENT ON COLUMN market.indicators_daily.drawdown IS 'close / highest close of the last 252 sessions - 1 (<= 0).';
COMMENT ON COLUMN market.indicators_daily.vwap_intraday IS
    'Session VWAP from market.bars_minute: sum(minute vwap x volume) / sum(volume); NULL where no minute bars are stored.';
COMMENT ON COLUMN market.indicators_daily.minute_bars IS 'Minute bars behind vwap_intraday (NULL when none).';
COMMENT ON COLUMN market.indicators_daily.run_id IS 'Dagster run that computed the row.';

CREATE TABLE IF NOT EXISTS market.patterns (
    symbol    text             NOT NULL,
    ts        timestamptz      NOT NULL,
    session   date             NOT NULL,
    pattern   text             NOT NULL,
    direction text             NOT NULL CHECK (direction IN ('bullish', 'bearish', 'neutral')),
    strength  double precision NOT NULL CHECK (strength BETWEEN 0 AND 1),
    details   jsonb            NOT NULL DEFAULT '{}'::jsonb,
    run_id    text,
    computed_at timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts, pattern)
);
CREATE INDEX IF NOT EXISTS patterns_session_idx ON market.patterns (session, symbol);
COMMENT ON TABLE market.patterns IS
    'Candlestick (TA-Lib CDL*) and chart/signal patterns (MA and MACD crosses, RSI zones, breakouts, double '
    'tops/bottoms, head and shoulders), dated on the bar where each becomes knowable: no look-ahead.';
COMMENT ON COLUMN market.patterns.ts IS 'Bar on which the pattern completes (same ts as market.bars_daily).';
COMMENT ON COLUMN market.patterns.direction IS 'bullish, bearish or neutral.';
COMMENT ON COLUMN market.patterns.strength IS '0..1; candles: |TA-Lib value| / 100; chart patterns: see details.';
COMMENT ON COLUMN market.patterns.details IS 'Pattern-specific facts (e.g. peaks, neckline, TA-Lib value) as JSON.';

CREATE TABLE IF NOT EXISTS market.support_resistance (
    symbol      text             NOT NULL,
    as_of       date             NOT NULL,
    session     date             NOT NULL CHECK (session = as_of),
    kind        text             NOT NULL CHECK (kind IN ('support', 'resistance')),
    level       double precision NOT NULL CHECK (level > 0),
    touches     integer          NOT NULL CHECK (touches >= 1),
    first_touch timestamptz      NOT NULL,
    last_touch  timestamptz      NOT NULL,
    strength    double precision NOT NULL CHECK (strength BETWEEN 0 AND 1),
    run_id      text,
    computed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, as_of, kind, level),
    CHECK (first_touch <= last_touch)
);
CREATE INDEX IF NOT EXISTS support_resistance_session_idx ON market.support_resistance (session, symbol);
COMMENT ON TABLE market.support_resistance IS
    'Support/resistance levels per symbol as known at the close of session as_of: confirmed swing highs/lows of '
    'the last 252 sessions clustered within 0.5 x ATR-14. Support is at or below that close, resistance above.';
COMMENT ON COLUMN market.support_resistance.session IS 'Equal to as_of: the partition key column.';
COMMENT ON COLUMN market.support_resistance.level IS 'Mean price of the clustered swing points.';
COMMENT ON COLUMN market.support_resistance.touches IS 'Swing points in the cluster.';
COMMENT ON COLUMN market.support_resistance.first_touch IS 'Bar time (ts) of the earliest swing in the cluster.';
COMMENT ON COLUMN market.support_resistance.last_touch IS 'Bar time (ts) of the latest swing in the cluster.';
COMMENT ON COLUMN market.support_resistance.strength IS '0..1: 60% touches (saturating at 5), 40% recency of the last touch.';

CREATE TABLE IF NOT EXISTS market.pivot_points (
    symbol      text             NOT NULL,
    ts          timestamptz      NOT NULL,
    session     date             NOT NULL,
    pivot       double precision NOT NULL,
    r1          double precision NOT NULL,
    r2          double precision NOT NULL,
    r3          double precision NOT NULL,
    s1          double precision NOT NULL,
    s2          double precision NOT NULL,
    s3          double precision NOT NULL,
    run_id      text,
    computed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts)
);
CREATE INDEX IF NOT EXISTS pivot_points_session_idx ON market.pivot_points (session, symbol);
COMMENT ON TABLE market.pivot_points IS
    'Classic floor pivots to trade session `session`, from the previous session''s high/low/close: '
    'P = (H+L+C)/3, R1 = 2P-L, S1 = 2P-H, R2 = P+(H-L), S2 = P-(H-L), R3 = H+2(P-L), S3 = L-2(H-P). '
    'A symbol''s first stored bar has no row (no previous session).';

-- ---------------------------------------------------------------------------------------------
-- Analyst views
-- ---------------------------------------------------------------------------------------------

-- Session VWAP straight from the minute bars (always current with market.bars_minute), next to
-- the daily bar's own vwap; NULL where no minute bars are stored for that day.
CREATE OR REPLACE VIEW market.vwap_daily AS
SELECT b.symbol,
       b.session,
       b.ts,
       m.vwap          AS vwap_intraday,
       b.vwap          AS vwap_bar,
       m.minute_bars,
       m.minute_volume
FROM market.bars_daily b
LEFT JOIN LATERAL (
    SELECT sum(coalesce(x.vwap, (x.high + x.low + x.close) / 3.0) * x.volume) / nullif(sum(x.volume), 0) AS vwap,
           count(*)::integer AS minute_bars,
           sum(x.volume)     AS minute_volume
    FROM market.bars_minute x
    WHERE x.symbol = b.symbol AND x.session = b.session
    HAVING count(*) > 0
) m ON true;
COMMENT ON VIEW market.vwap_daily IS
    'Daily VWAP computed live from market.bars_minute (sum(vwap x volume)/sum(volume); typical price where a minute '
    'has no vwap) beside the daily bar''s vwap; NULL where no minute bars exist.';

-- The latest indicator row per symbol with its bar: the "where does everything stand" table.
CREATE OR REPLACE VIEW market.v_technical_snapshot AS
SELECT DISTINCT ON (i.symbol)
       i.symbol,
       i.session,
       b.open, b.high, b.low, b.close, b.volume,
       i.return_1d, i.return_5d, i.return_20d, i.return_252d,
       i.rsi,
       CASE WHEN i.rsi >= 70 THEN 'overbought' WHEN i.rsi <= 30 THEN 'oversold' ELSE 'neutral' END AS rsi_zone,
       i.macd, i.macd_signal, i.macd_hist,
       i.sma_20, i.sma_50, i.sma_200,
       b.close > i.sma_200 AS above_sma_200,
       CASE WHEN i.sma_50 > i.sma_200 THEN 'uptrend' WHEN i.sma_50 < i.sma_200 THEN 'downtrend' END AS trend,
       i.bb_upper, i.bb_middle, i.bb_lower,
       (b.close - i.bb_lower) / nullif(i.bb_upper - i.bb_lower, 0) AS bb_percent_b,
       i.atr_14,
       i.atr_14 / b.close AS atr_pct,
       i.stoch_k, i.stoch_d,
       i.relative_volume, i.volume_spike,
       i.realized_vol_20,
       i.dist_52w_high, i.dist_52w_low, i.drawdown,
       i.vwap_intraday,
       i.computed_at
FROM market.indicators_daily i
JOIN market.bars_daily b USING (symbol, ts)
ORDER BY i.symbol, i.ts DESC;
COMMENT ON VIEW market.v_technical_snapshot IS
    'Latest session per symbol: close, returns, RSI-14 (with zone), MACD, SMA 20/50/200 (with trend), Bollinger %B, '
    'ATR, volume activity, 52-week distances and intraday VWAP.';

-- Patterns of the last 30 sessions (of the bars stored), with the close of that day.
CREATE OR REPLACE VIEW market.v_signals_recent AS
WITH recent AS (
    SELECT session FROM (SELECT DISTINCT session FROM market.bars_daily) s ORDER BY session DESC LIMIT 30
)
SELECT p.session,
       p.symbol,
       p.pattern,
       p.direction,
       p.strength,
       b.close,
       i.rsi,
       i.relative_volume,
       p.details
FROM market.patterns p
JOIN recent r ON r.session = p.session
LEFT JOIN market.bars_daily b ON b.symbol = p.symbol AND b.ts = p.ts
LEFT JOIN market.indicators_daily i ON i.symbol = p.symbol AND i.ts = p.ts
ORDER BY p.session DESC, p.strength DESC, p.symbol, p.pattern;
COMMENT ON VIEW market.v_signals_recent IS
    'Patterns detected in the last 30 stored sessions, newest and strongest first, with close, RSI and relative volume.';

-- Latest support/resistance levels per symbol, with the distance from the last close.
CREATE OR REPLACE VIEW market.v_levels_latest AS
WITH latest AS (
    SELECT symbol, max(as_of) AS as_of FROM market.support_resistance GROUP BY symbol
)
SELECT s.symbol,
       s.as_of,
       s.kind,
       s.level,
       s.touches,
       s.strength,
       s.first_touch,
       s.last_touch,
       b.close,
       s.level / b.close - 1 AS distance_pct
FROM market.support_resistance s
JOIN latest l USING (symbol, as_of)
LEFT JOIN market.bars_daily b ON b.symbol = s.symbol AND b.session = s.as_of
ORDER BY s.symbol, abs(s.level / b.close - 1);
COMMENT ON VIEW market.v_levels_latest IS
    'Support/resistance levels of each symbol''s latest as_of, nearest to the close first (distance_pct = level/close - 1).';

-- Indicator crossings as events: MACD vs signal, SMA 50 vs 200, close vs Bollinger bands, RSI 30/70.
CREATE OR REPLACE VIEW market.v_indicator_events AS
WITH x AS (
    SELECT i.symbol, i.session, b.close, i.rsi, i.macd, i.macd_signal, i.sma_50, i.sma_200, i.bb_upper, i.bb_lower,
           lag(i.macd - i.macd_signal) OVER w AS prev_macd_diff,
           lag(i.sma_50 - i.sma_200) OVER w   AS prev_sma_diff,
           lag(i.rsi) OVER w                  AS prev_rsi
    FROM market.indicators_daily i
    JOIN market.bars_daily b USING (symbol, ts)
    WINDOW w AS (PARTITION BY i.symbol ORDER BY i.ts)
)
SELECT symbol, session, event, close, rsi FROM (
    SELECT symbol, session, close, rsi, 'macd_cross_up' AS event FROM x
        WHERE prev_macd_diff <= 0 AND macd - macd_signal > 0
    UNION ALL
    SELECT symbol, session, close, rsi, 'macd_cross_down' FROM x
        WHERE prev_macd_diff >= 0 AND macd - macd_signal < 0
    UNION ALL
    SELECT symbol, session, close, rsi, 'golden_cross' FROM x WHERE prev_sma_diff <= 0 AND sma_50 - sma_200 > 0
    UNION ALL
    SELECT symbol, session, close, rsi, 'death_cross' FROM x WHERE prev_sma_diff >= 0 AND sma_50 - sma_200 < 0
    UNION ALL
    SELECT symbol, session, close, rsi, 'close_above_upper_band' FROM x WHERE close > bb_upper
    UNION ALL
    SELECT symbol, session, close, rsi, 'close_below_lower_band' FROM x WHERE close < bb_lower
    UNION ALL
    SELECT symbol, session, close, rsi, 'rsi_enters_overbought' FROM x WHERE prev_rsi < 70 AND rsi >= 70
    UNION ALL
    SELECT symbol, session, close, rsi, 'rsi_enters_oversold' FROM x WHERE prev_rsi > 30 AND rsi <= 30
) e;
COMMENT ON VIEW market.v_indicator_events IS
    'Indicator crossings derived from market.indicators_daily with window functions: MACD/signal crosses, '
    'golden/death crosses (SMA 50/200), closes outside the Bollinger bands, RSI entering 70/30. Filter by session.';
