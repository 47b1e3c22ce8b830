-- The symbol universe is data, seeded from MARKET_SYMBOLS / --symbols, not a partition dimension.
CREATE TABLE IF NOT EXISTS market.symbols (
    symbol      text PRIMARY KEY CHECK (symbol ~ '^[A-Z]{1,5}(\.[A-Z]{1,2})?$'),
    asset_class text        NOT NULL DEFAULT 'us_equity',
    active      boolean     NOT NULL DEFAULT true,
    added_at    timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE market.symbols IS 'The universe the pipeline ingests; one row per ticker.';
