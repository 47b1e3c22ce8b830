-- Issue 10: the derived tables' session indexes become BRIN, like the bar tables' (003_bars.sql).
--
-- Why: rows arrive in session order (a backfill goes forward in time, the schedule appends the newest session),
-- so a block-range index answers "every symbol as of session X" nearly as well as a B-tree while costing almost
-- nothing to maintain. The B-tree (session, symbol) indexes were a third of the cost of writing a year of
-- support/resistance levels (1.5 M rows for 500 symbols); the primary keys (symbol first) still serve per-symbol
-- reads and the writer's replace.
DROP INDEX IF EXISTS market.indicators_daily_session_idx;
DROP INDEX IF EXISTS market.patterns_session_idx;
DROP INDEX IF EXISTS market.support_resistance_session_idx;
DROP INDEX IF EXISTS market.pivot_points_session_idx;
CREATE INDEX IF NOT EXISTS indicators_daily_session_brin ON market.indicators_daily USING brin (session)
    WITH (pages_per_range = 32, autosummarize = on);
CREATE INDEX IF NOT EXISTS patterns_session_brin ON market.patterns USING brin (session)
    WITH (pages_per_range = 32, autosummarize = on);
CREATE INDEX IF NOT EXISTS support_resistance_session_brin ON market.support_resistance USING brin (session)
    WITH (pages_per_range = 32, autosummarize = on);
CREATE INDEX IF NOT EXISTS pivot_points_session_brin ON market.pivot_points USING brin (session)
    WITH (pages_per_range = 32, autosummarize = on);
