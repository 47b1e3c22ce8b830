-- API tokens of the WebSocket fan-out (`market-data serve`), managed with `market-data tokens create|list|revoke`.
-- The key is a public identifier (like Alpaca's key id); only a SHA-256 of the secret is stored, so a copy of the
-- warehouse does not hand out working credentials. The secret is 256 random bits, so a fast hash is enough: a slow
-- KDF protects guessable passwords, not random tokens. A revoked token keeps its row (who had access, and until when).
CREATE TABLE IF NOT EXISTS market.api_tokens (
    key             text        PRIMARY KEY,
    name            text        NOT NULL,
    secret_hash     text        NOT NULL,
    max_connections integer     NOT NULL CHECK (max_connections > 0),
    max_symbols     integer     NOT NULL CHECK (max_symbols > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);
-- one live token per name: `tokens revoke NAME` is unambiguous, and a name can be reused after a revoke
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_live_name ON market.api_tokens (name) WHERE revoked_at IS NULL;
COMMENT ON TABLE market.api_tokens IS 'Credentials of the live WebSocket service: key, SHA-256 of the secret, per-token limits.';
