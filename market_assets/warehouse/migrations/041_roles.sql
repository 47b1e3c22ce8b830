-- Least privilege: two group roles (NOLOGIN) that login users are made members of.
--
--   market_writer  what the pipeline needs and nothing more: read and write rows of every table
--                  (DELETE+COPY partition replaces, upserts through temporary tables, quarantine
--                  and logs), use the id sequences, create next month's partition through
--                  market.ensure_month_partition (SECURITY DEFINER, the only DDL it can cause).
--                  No CREATE on the schema, no TRUNCATE, no ownership: it cannot DROP, ALTER or
--                  create anything. Migrations run as the schema owner (the admin URL), never as
--                  the writer: WarehouseResource.migrate is a read-only check when all are applied.
--   market_reader  analysts: SELECT on the tables and views of schema market (not the API token
--                  hashes), nothing else.
--
-- market.audit_log (migration 040) stays append-only for the writer: the blanket grants below would
-- give it UPDATE/DELETE there too, so 040's market.audit_log_restrict() is called again at the end.
--
-- Roles are cluster-wide while this file runs once per database: CREATE ROLE is guarded so a
-- second database (or a role an administrator made beforehand) does not fail the migration.
-- The GRANTs are per database and run here. ALTER DEFAULT PRIVILEGES covers tables and views
-- that later migrations create (as the same owner), so no future file has to remember them.
--
-- Example (as an administrator):
--   CREATE ROLE pipeline LOGIN PASSWORD '...' IN ROLE market_writer;
--   CREATE ROLE analyst  LOGIN PASSWORD '...' IN ROLE market_reader;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'market_writer') THEN
        CREATE ROLE market_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'market_reader') THEN
        CREATE ROLE market_reader NOLOGIN;
    END IF;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO market_writer', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO market_reader', current_database());
END
$$;

GRANT USAGE ON SCHEMA market TO market_writer, market_reader;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA market TO market_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA market TO market_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA market TO market_reader;
-- the migration ledger is the owner's: the writer may read it (to see the schema is current), not change it
REVOKE INSERT, UPDATE, DELETE ON market.schema_migrations FROM market_writer;
-- API token hashes are credentials, not market data: analysts do not read them
REVOKE SELECT ON market.api_tokens FROM market_reader;

ALTER DEFAULT PRIVILEGES IN SCHEMA market GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO market_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA market GRANT USAGE, SELECT ON SEQUENCES TO market_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA market GRANT SELECT ON TABLES TO market_reader;

-- Monthly partitions (bars_minute, indicators_intraday) are created on demand as rows arrive
-- (audit_log has its own, market.audit_log_partition, which also restricts each new month).
-- Creating one is DDL, so it runs with the owner's rights, limited to partitioned tables of
-- schema market and to whole UTC months; search_path is pinned so the definer's rights cannot
-- be redirected to other objects. Rows in the partition are reached through the parent, whose
-- grants apply.
CREATE OR REPLACE FUNCTION market.ensure_month_partition(parent text, month date)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    table_name text := split_part(parent, '.', 2);
    lower_bound date := date_trunc('month', month)::date;
    upper_bound date := (date_trunc('month', month) + interval '1 month')::date;
BEGIN
    IF split_part(parent, '.', 1) <> 'market' OR table_name = 'audit_log' OR NOT EXISTS (
        SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'market' AND c.relname = table_name AND c.relkind = 'p'
    ) THEN
        RAISE EXCEPTION 'market.ensure_month_partition: % is not a partitioned table of schema market', parent
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS market.%I PARTITION OF market.%I FOR VALUES FROM (%L) TO (%L)',
        table_name || '_' || to_char(lower_bound, 'YYYYMM'), table_name,
        lower_bound::text || ' 00:00+00', upper_bound::text || ' 00:00+00'
    );
END
$$;

REVOKE ALL ON FUNCTION market.ensure_month_partition(text, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION market.ensure_month_partition(text, date) TO market_writer;

-- audit_log: read and append only (040's restriction, now that market_writer exists)
SELECT market.audit_log_restrict();
