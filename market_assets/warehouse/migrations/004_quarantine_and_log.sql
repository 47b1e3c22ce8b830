-- Rows that failed validation: kept with the reason, never written to fact tables.
CREATE TABLE IF NOT EXISTS market.quarantine (
    id             bigserial   PRIMARY KEY,
    source         text        NOT NULL,           -- e.g. alpaca:/v2/stocks/bars
    dataset        text        NOT NULL,           -- the table the row was meant for
    partition_key  text,
    symbol         text,
    ts             timestamptz,
    payload        jsonb       NOT NULL,           -- the row as received
    reason         text        NOT NULL,           -- which rule failed, readable
    run_id         text,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS quarantine_dataset_idx ON market.quarantine (dataset, partition_key);

-- One row per asset materialization (per partition range): what was fetched, kept, rejected.
CREATE TABLE IF NOT EXISTS market.ingestion_log (
    id               bigserial   PRIMARY KEY,
    run_id           text,
    asset            text        NOT NULL,
    partition_key    text,
    dataset          text        NOT NULL,
    symbols          integer     NOT NULL,
    rows_fetched     bigint      NOT NULL,
    rows_written     bigint      NOT NULL,
    rows_quarantined bigint      NOT NULL,
    http_requests    integer,
    http_retries     integer,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL DEFAULT now(),
    status           text        NOT NULL CHECK (status IN ('success', 'failed')),
    error            text
);
CREATE INDEX IF NOT EXISTS ingestion_log_asset_idx ON market.ingestion_log (asset, finished_at DESC);
