-- Issue 10: two costs that grew with the stored history, found on ten years of 500 symbols.
--
-- 1. The stale-symbol check of adjusted_history (queries/corporate_actions.py) asks, per symbol, when its oldest
--    derived row was computed: `min(computed_at)` over the symbol's indicator rows read all 1.26 M of them on
--    every run (2.3 s at ten years, a quarter of a one-session technicals run). With (symbol, computed_at) indexed
--    it is one index probe per symbol, and so is "an indicator row computed before this factor". The index costs
--    one entry per indicator row (126 k a year for 500 symbols), a twelfth of the support/resistance rows.
CREATE INDEX IF NOT EXISTS indicators_daily_symbol_computed_idx ON market.indicators_daily (symbol, computed_at);

-- 2. BRIN autosummarize queued one autovacuum work item per filled block range; a year of support/resistance
--    fills thousands at once, the queue overflowed and PostgreSQL logged three lines per lost request (8 MB of log
--    per ten-year backfill). Autovacuum summarizes new ranges anyway when it vacuums the inserted rows, and until
--    then a query simply reads the unsummarized (newest) ranges, which are the ones a new session's reads want.
ALTER INDEX market.indicators_daily_session_brin SET (autosummarize = off);
ALTER INDEX market.patterns_session_brin SET (autosummarize = off);
ALTER INDEX market.support_resistance_session_brin SET (autosummarize = off);
ALTER INDEX market.pivot_points_session_brin SET (autosummarize = off);
