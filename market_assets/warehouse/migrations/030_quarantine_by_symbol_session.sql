-- Quarantine keyed by dataset, symbol and session (issue 13, item 8): rows used to be keyed by the exact
-- partition-range string, so healing a window with any other window (or the schedule's single days) left the
-- old rejections beside good rows. A write of (dataset, symbol, session) now clears exactly those records.
ALTER TABLE market.quarantine ADD COLUMN IF NOT EXISTS session date;
-- existing rows: the New York date of their timestamp (daily bars are stamped at midnight New York)
UPDATE market.quarantine SET session = (ts AT TIME ZONE 'America/New_York')::date
 WHERE session IS NULL AND ts IS NOT NULL;
CREATE INDEX IF NOT EXISTS quarantine_symbol_session_idx ON market.quarantine (dataset, symbol, session);

