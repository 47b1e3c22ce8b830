-- The audit trail (issue 12): who changed what, append-only, range-partitioned by month on ts.
-- kind: api_calls (per materialization: endpoint, requests, statuses, retries), websocket (connect, disconnect,
-- auth failure), cache_warm, migration, universe, token (created, revoked), settings (in force at start-up,
-- secrets masked). Rows are written in the same transaction as the data they describe where there is one.
CREATE TABLE IF NOT EXISTS market.audit_log (
    id            bigserial   NOT NULL,
    ts            timestamptz NOT NULL DEFAULT now(),
    kind          text        NOT NULL CHECK (kind IN ('api_calls', 'websocket', 'cache_warm', 'migration',
                                                       'universe', 'token', 'settings')),
    action        text        NOT NULL,           -- e.g. summary, connect, auth_failed, applied, added, created
    actor         text        NOT NULL,           -- the component: pipeline, cli, stream, serve, migrations
    subject       text,                           -- asset, endpoint, table, migration file, token id, peer
    run_id        text,
    partition_key text,
    details       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS audit_log_kind_idx ON market.audit_log (kind, ts DESC);
COMMENT ON TABLE market.audit_log IS
    'Append-only audit trail: no UPDATE/DELETE/TRUNCATE for the pipeline role; old months are detached, not deleted.';

-- Append-only for everyone who does not own the table: a row trigger refuses UPDATE and DELETE (even a role that
-- was granted them by mistake); retention is DETACH/DROP of whole month partitions by the owner.
CREATE OR REPLACE FUNCTION market.audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'market.audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER IF EXISTS audit_log_append_only ON market.audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON market.audit_log
    FOR EACH ROW EXECUTE FUNCTION market.audit_log_refuse_change();

-- The pipeline's role (market_writer, created by the least-privilege migration when it exists) may read and
-- append, nothing else. Guarded: the role may not exist (yet); call again after creating it.
CREATE OR REPLACE FUNCTION market.audit_log_restrict() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    part regclass;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'market_writer') THEN
        RETURN;
    END IF;
    FOR part IN SELECT 'market.audit_log'::regclass
                UNION ALL SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'market.audit_log'::regclass
    LOOP
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %s FROM market_writer', part);
        EXECUTE format('GRANT SELECT, INSERT ON %s TO market_writer', part);
    END LOOP;
    GRANT USAGE ON SEQUENCE market.audit_log_id_seq TO market_writer;
    GRANT EXECUTE ON FUNCTION market.audit_log_partition(timestamptz) TO market_writer;
END $$;

-- Month partitions on demand (UTC months), created with the owner's rights so the pipeline role needs no CREATE;
-- each new partition gets the same restriction as its parent.
CREATE OR REPLACE FUNCTION market.audit_log_partition(at timestamptz) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, market AS $$
DECLARE
    lower date := date_trunc('month', at AT TIME ZONE 'UTC')::date;
    name  text := format('audit_log_%s', to_char(lower, 'YYYYMM'));
BEGIN
    IF to_regclass(format('market.%I', name)) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS market.%I PARTITION OF market.audit_log FOR VALUES FROM (%L) TO (%L)',
        name, lower::text || ' 00:00+00', (lower + interval '1 month')::date::text || ' 00:00+00'
    );
    PERFORM market.audit_log_restrict();
END $$;
REVOKE ALL ON FUNCTION market.audit_log_partition(timestamptz) FROM PUBLIC;

SELECT market.audit_log_partition(now());
SELECT market.audit_log_restrict();
