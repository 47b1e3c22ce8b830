-- Views an analyst reads: sensible precision, dates as dates, and why an IV is missing.
-- Why: views showed float noise (122.66479999999994), support/resistance touches as timestamps at 04:00+00,
-- and v_latest_option_chain had NULL IVs with no reason. Tables keep full precision (the analytics are tested
-- to 1e-9 on them); only the views round. Views whose column types change are dropped and re-created
-- (CREATE OR REPLACE cannot change a column's type); no view depends on these.

-- round a double to n decimals and keep it a double (round(numeric, n) would turn the column into numeric)
CREATE OR REPLACE FUNCTION market.round_to(x double precision, n integer) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT round(x::numeric, n)::double precision $$;
COMMENT ON FUNCTION market.round_to(double precision, integer) IS
    'x rounded to n decimals, still a double: the display precision of the analyst views.';

DROP VIEW IF EXISTS market.v_technical_snapshot;
CREATE VIEW market.v_technical_snapshot AS
SELECT DISTINCT ON (i.symbol)
       i.symbol,
       i.session,
       b.open, b.high, b.low, b.close, b.volume,
       market.round_to(i.return_1d, 6) AS return_1d, market.round_to(i.return_5d, 6) AS return_5d,
       market.round_to(i.return_20d, 6) AS return_20d, market.round_to(i.return_252d, 6) AS return_252d,
       market.round_to(i.rsi, 2) AS rsi,
       CASE WHEN i.rsi >= 70 THEN 'overbought' WHEN i.rsi <= 30 THEN 'oversold' ELSE 'neutral' END AS rsi_zone,
       market.round_to(i.macd, 4) AS macd, market.round_to(i.macd_signal, 4) AS macd_signal,
       market.round_to(i.macd_hist, 4) AS macd_hist,
       market.round_to(i.sma_20, 4) AS sma_20, market.round_to(i.sma_50, 4) AS sma_50,
       market.round_to(i.sma_200, 4) AS sma_200,
       b.close > i.sma_200 AS above_sma_200,
       CASE WHEN i.sma_50 > i.sma_200 THEN 'uptrend' WHEN i.sma_50 < i.sma_200 THEN 'downtrend' END AS trend,
       market.round_to(i.bb_upper, 4) AS bb_upper, market.round_to(i.bb_middle, 4) AS bb_middle,
       market.round_to(i.bb_lower, 4) AS bb_lower,
       market.round_to((b.close - i.bb_lower) / nullif(i.bb_upper - i.bb_lower, 0), 4) AS bb_percent_b,
       market.round_to(i.atr_14, 4) AS atr_14,
       market.round_to(i.atr_14 / b.close, 6) AS atr_pct,
       market.round_to(i.stoch_k, 2) AS stoch_k, market.round_to(i.stoch_d, 2) AS stoch_d,
       market.round_to(i.relative_volume, 3) AS relative_volume, i.volume_spike,
       market.round_to(i.realized_vol_20, 4) AS realized_vol_20,
       market.round_to(i.dist_52w_high, 6) AS dist_52w_high, market.round_to(i.dist_52w_low, 6) AS dist_52w_low,
       market.round_to(i.drawdown, 6) AS drawdown,
       market.round_to(i.vwap_intraday, 4) AS vwap_intraday,
       i.computed_at
FROM market.indicators_daily i
JOIN market.bars_daily b USING (symbol, ts)
ORDER BY i.symbol, i.ts DESC;
COMMENT ON VIEW market.v_technical_snapshot IS
    'Latest session per symbol: close, returns, RSI-14 (with zone), MACD, SMA 20/50/200 (with trend), Bollinger %B, '
    'ATR, volume activity, 52-week distances and intraday VWAP; rounded for reading (tables keep full precision).';

DROP VIEW IF EXISTS market.v_levels_latest;
CREATE VIEW market.v_levels_latest AS
WITH latest AS (
    SELECT symbol, max(as_of) AS as_of FROM market.support_resistance GROUP BY symbol
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

DROP VIEW IF EXISTS market.v_latest_option_chain;
CREATE VIEW market.v_latest_option_chain AS
SELECT c.symbol, c.underlying, c.expiration, c.strike, c.type, c.snapshot_date, c.bid, c.ask, c.mark, c.last,
       c.volume, c.open_interest, c.crossed, c.zero_bid, g.underlying_price,
       market.round_to(g.iv, 6) AS iv, g.iv_reason,
       market.round_to(g.delta, 6) AS delta, market.round_to(g.gamma, 6) AS gamma,
       market.round_to(g.theta, 6) AS theta, market.round_to(g.vega, 6) AS vega, market.round_to(g.rho, 6) AS rho,
       g.early_exercise_flag, c.alpaca_iv, c.alpaca_delta
FROM market.option_chain c
JOIN (SELECT underlying, max(snapshot_date) AS snapshot_date FROM market.option_chain GROUP BY underlying) latest
  USING (underlying, snapshot_date)
LEFT JOIN market.option_greeks g USING (symbol, snapshot_date);
COMMENT ON VIEW market.v_latest_option_chain IS
  'Each underlying''s most recent chain snapshot with our IV and Greeks next to the quotes; iv_reason says why an '
  'IV is NULL (e.g. price below intrinsic, no underlying price).';

DROP VIEW IF EXISTS market.v_put_call_ratio;
CREATE VIEW market.v_put_call_ratio AS
SELECT underlying, snapshot_date,
       market.round_to(put_call_volume_ratio, 4) AS put_call_volume_ratio,
       market.round_to(put_call_oi_ratio, 4) AS put_call_oi_ratio,
       market.round_to(avg(put_call_oi_ratio) OVER w, 4) AS put_call_oi_ratio_avg_20,
       market.round_to(avg(put_call_volume_ratio) OVER w, 4) AS put_call_volume_ratio_avg_20,
       total_volume, total_oi, oi_change
FROM market.options_flow_daily
WINDOW w AS (PARTITION BY underlying ORDER BY snapshot_date ROWS BETWEEN 19 PRECEDING AND CURRENT ROW);
COMMENT ON VIEW market.v_put_call_ratio IS
  'Daily put/call ratios per underlying with their trailing 20-snapshot averages (4 decimals).';

DROP VIEW IF EXISTS market.v_iv_term_structure;
CREATE VIEW market.v_iv_term_structure AS
SELECT underlying, snapshot_date, expiration, days_to_expiry,
       market.round_to(atm_iv, 6) AS atm_iv, market.round_to(skew_25d, 6) AS skew_25d,
       market.round_to(put_iv_25d, 6) AS put_iv_25d, market.round_to(call_iv_25d, 6) AS call_iv_25d
FROM market.options_by_expiry
WHERE atm_iv IS NOT NULL;
COMMENT ON VIEW market.v_iv_term_structure IS
  'ATM implied volatility and 25-delta skew by expiry: the term structure per underlying and snapshot_date.';
