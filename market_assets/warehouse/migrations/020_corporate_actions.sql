-- Corporate actions as delivered, the adjustment factors derived from them, and adjusted bars on read.
-- Raw bars (market.bars_daily) are never rewritten: adjusted prices are (raw bar) x (factor of the first ex-date
-- after its session), so a late action re-adjusts the whole history by writing a handful of factor rows.

CREATE TABLE IF NOT EXISTS market.corporate_actions (
    id            text             NOT NULL,
    type          text             NOT NULL CHECK (type IN (
                      'forward_split', 'reverse_split', 'unit_split', 'stock_dividend', 'cash_dividend',
                      'spin_off', 'cash_merger', 'stock_merger', 'stock_and_cash_merger', 'redemption',
                      'name_change', 'worthless_removal', 'rights_distribution')),
    symbol        text             NOT NULL,
    new_symbol    text,
    cusip         text,
    new_cusip     text,
    ex_date       date             NOT NULL,
    record_date   date,
    payable_date  date,
    process_date  date             NOT NULL,
    new_rate      double precision CHECK (new_rate > 0),
    old_rate      double precision CHECK (old_rate > 0),
    cash_amount   double precision CHECK (cash_amount >= 0),
    is_special    boolean,
    is_foreign    boolean,
    payload       jsonb            NOT NULL,
    run_id        text,
    ingested_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS corporate_actions_symbol_idx ON market.corporate_actions (symbol, ex_date);
CREATE INDEX IF NOT EXISTS corporate_actions_new_symbol_idx ON market.corporate_actions (new_symbol)
    WHERE new_symbol IS NOT NULL;
COMMENT ON TABLE market.corporate_actions IS
    'Corporate actions from Alpaca /v1/corporate-actions, one row per action as delivered (payload = the JSON).';
COMMENT ON COLUMN market.corporate_actions.id IS
    'Alpaca''s id; for older payloads without one, a stable hash of (type, payload).';
COMMENT ON COLUMN market.corporate_actions.symbol IS
    'The symbol whose prices the action affects: the symbol, old_symbol (name change, unit split), '
    'source_symbol (spin-off, rights) or acquiree_symbol (mergers).';
COMMENT ON COLUMN market.corporate_actions.new_symbol IS
    'new_symbol of a name change, spin-off, unit split or rights distribution; acquirer_symbol of a merger.';
COMMENT ON COLUMN market.corporate_actions.ex_date IS
    'The date prices start trading without the entitlement: ex_date; effective_date for mergers and unit splits; '
    'process_date for name changes, redemptions and worthless removals.';
COMMENT ON COLUMN market.corporate_actions.process_date IS
    'Alpaca''s process date (start/end filter on it): for a cash dividend the payable date, weeks after ex_date.';
COMMENT ON COLUMN market.corporate_actions.new_rate IS
    'Splits new_rate (4 in a 4:1); stock dividend rate; spin-off new_rate; merger acquirer_rate.';
COMMENT ON COLUMN market.corporate_actions.old_rate IS 'Splits old_rate; spin-off source_rate; merger acquiree_rate.';
COMMENT ON COLUMN market.corporate_actions.cash_amount IS
    'Cash per share: cash dividend rate, cash merger rate, stock-and-cash merger cash_rate, redemption rate.';

CREATE TABLE IF NOT EXISTS market.adjustment_factors (
    symbol              text             NOT NULL,
    ex_date             date             NOT NULL,
    split_factor        double precision NOT NULL CHECK (split_factor > 0),
    volume_factor       double precision NOT NULL CHECK (volume_factor > 0),
    dividend_factor     double precision NOT NULL CHECK (dividend_factor > 0 AND dividend_factor <= 1),
    cum_split_factor    double precision NOT NULL CHECK (cum_split_factor > 0),
    cum_volume_factor   double precision NOT NULL CHECK (cum_volume_factor > 0),
    cum_dividend_factor double precision NOT NULL CHECK (cum_dividend_factor > 0 AND cum_dividend_factor <= 1),
    prev_session        date,
    prev_close          double precision,
    actions             integer          NOT NULL CHECK (actions >= 1),
    reason              text,
    run_id              text,
    computed_at         timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ex_date)
);
COMMENT ON TABLE market.adjustment_factors IS
    'Per symbol and ex-date: the factors of that date''s actions and the cumulative factors (product over this and '
    'every later ex-date) that apply to every bar BEFORE it. Bars on or after the last ex-date have factor 1.';
COMMENT ON COLUMN market.adjustment_factors.split_factor IS 'Price factor of splits and stock dividends: old/new.';
COMMENT ON COLUMN market.adjustment_factors.volume_factor IS 'Volume factor of splits and stock dividends: new/old.';
COMMENT ON COLUMN market.adjustment_factors.dividend_factor IS
    'Price factor of cash dividends: 1 - D / prev_close (D the amount, prev_close the raw close before ex_date).';
COMMENT ON COLUMN market.adjustment_factors.reason IS
    'Why an action of this date could not be applied (factor 1 instead), e.g. no raw close before the ex-date.';

-- One (symbol, ex_date) lookup per bar through the primary key: the first ex-date after the bar's session.
CREATE OR REPLACE VIEW market.bars_daily_adjusted AS
SELECT b.symbol,
       b.ts,
       b.session,
       b.open * f.price   AS open,
       b.high * f.price   AS high,
       b.low * f.price    AS low,
       b.close * f.price  AS close,
       round(b.volume * f.volume)::bigint AS volume,
       b.vwap * f.price   AS vwap,
       b.trade_count,
       f.price            AS price_factor,
       f.volume           AS volume_factor
FROM market.bars_daily b
CROSS JOIN LATERAL (
    SELECT coalesce(max(a.cum_split_factor * a.cum_dividend_factor), 1.0) AS price,
           coalesce(max(a.cum_volume_factor), 1.0)                      AS volume
    FROM (SELECT x.cum_split_factor, x.cum_dividend_factor, x.cum_volume_factor
          FROM market.adjustment_factors x
          WHERE x.symbol = b.symbol AND x.ex_date > b.session
          ORDER BY x.ex_date
          LIMIT 1) a
) f;
COMMENT ON VIEW market.bars_daily_adjusted IS
    'Daily bars adjusted for splits, stock dividends and cash dividends as of the latest known action: prices x '
    'price_factor (cum_split_factor x cum_dividend_factor of the first ex-date after the session), volume x '
    'volume_factor (splits only, rounded to whole shares). Equal to market_assets.analytics.adjustments.adjust_bars.';

CREATE OR REPLACE VIEW market.bars_daily_split_adjusted AS
SELECT b.symbol,
       b.ts,
       b.session,
       b.open * f.price   AS open,
       b.high * f.price   AS high,
       b.low * f.price    AS low,
       b.close * f.price  AS close,
       round(b.volume * f.volume)::bigint AS volume,
       b.vwap * f.price   AS vwap,
       b.trade_count,
       f.price            AS price_factor,
       f.volume           AS volume_factor
FROM market.bars_daily b
CROSS JOIN LATERAL (
    SELECT coalesce(max(a.cum_split_factor), 1.0)  AS price,
           coalesce(max(a.cum_volume_factor), 1.0) AS volume
    FROM (SELECT x.cum_split_factor, x.cum_volume_factor
          FROM market.adjustment_factors x
          WHERE x.symbol = b.symbol AND x.ex_date > b.session
          ORDER BY x.ex_date
          LIMIT 1) a
) f;
COMMENT ON VIEW market.bars_daily_split_adjusted IS
    'Daily bars adjusted for splits and stock dividends only (chart levels as traded, no dividend drift).';

-- Name changes: the old symbol's history stays reachable under the new one.
CREATE OR REPLACE VIEW market.symbol_renames AS
SELECT symbol AS old_symbol, new_symbol, ex_date AS effective_date, id AS action_id
FROM market.corporate_actions
WHERE type = 'name_change' AND new_symbol IS NOT NULL;
COMMENT ON VIEW market.symbol_renames IS
    'Name changes (old_symbol -> new_symbol from effective_date). Query the history of a renamed symbol with '
    'market.bars_daily_adjusted WHERE symbol IN (new, old), or through market.bars_daily_adjusted_lineage.';

CREATE OR REPLACE VIEW market.bars_daily_adjusted_lineage AS
SELECT a.symbol, a.symbol AS listed_as, a.ts, a.session, a.open, a.high, a.low, a.close, a.volume, a.vwap,
       a.price_factor
FROM market.bars_daily_adjusted a
UNION ALL
SELECT r.new_symbol, a.symbol, a.ts, a.session, a.open, a.high, a.low, a.close, a.volume, a.vwap, a.price_factor
FROM market.symbol_renames r
JOIN market.bars_daily_adjusted a ON a.symbol = r.old_symbol AND a.session < r.effective_date
WHERE NOT EXISTS (SELECT 1 FROM market.bars_daily n WHERE n.symbol = r.new_symbol AND n.session = a.session);
COMMENT ON VIEW market.bars_daily_adjusted_lineage IS
    'bars_daily_adjusted plus, under each new symbol of a name change, the old symbol''s bars before the change '
    '(listed_as says which ticker traded). The old symbol''s factors apply to its own bars.';

-- The analyst views that put a stored indicator next to a historical close must use the close the indicator
-- was computed from (adjusted, MARKET_PRICE_ADJUSTMENT=all, the default): before a split, a raw close against
-- adjusted Bollinger bands reads as a breakout that never happened. (v_technical_snapshot and v_levels_latest
-- read the latest session only, where every factor is 1.)
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
LEFT JOIN market.bars_daily_adjusted b ON b.symbol = p.symbol AND b.ts = p.ts
LEFT JOIN market.indicators_daily i ON i.symbol = p.symbol AND i.ts = p.ts
ORDER BY p.session DESC, p.strength DESC, p.symbol, p.pattern;

CREATE OR REPLACE VIEW market.v_indicator_events AS
WITH x AS (
    SELECT i.symbol, i.session, b.close, i.rsi, i.macd, i.macd_signal, i.sma_50, i.sma_200, i.bb_upper, i.bb_lower,
           lag(i.macd - i.macd_signal) OVER w AS prev_macd_diff,
           lag(i.sma_50 - i.sma_200) OVER w   AS prev_sma_diff,
           lag(i.rsi) OVER w                  AS prev_rsi
    FROM market.indicators_daily i
    JOIN market.bars_daily_adjusted b USING (symbol, ts)
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
    'golden/death crosses (SMA 50/200), closes (adjusted, like the indicators) outside the Bollinger bands, RSI '
    'entering 70/30. Filter by session.';
