#!/usr/bin/env bash
# First start of the PostgreSQL volume only (docker-entrypoint-initdb.d): the logins of the
# deployment. The warehouse schema and the group roles' GRANTs come from the package's migrations
# (041_roles.sql), run by the one-shot `migrate` service as the owner; this script creates the
# group roles too (guarded exactly like the migration) so the logins can be members from the start.
#
#   pipeline  LOGIN in market_writer: what the code server, the runs, stream and the exporter use
#   analyst   LOGIN in market_reader: read-only SQL for people and dashboards
#   dagster   LOGIN owning the `dagster` database: Dagster's run/event/schedule storage (it
#             migrates its own schema, so it owns that database and nothing else)
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v pipeline_password="$PIPELINE_DB_PASSWORD" \
    -v analyst_password="$ANALYST_DB_PASSWORD" \
    -v dagster_password="$DAGSTER_PG_PASSWORD" <<'SQL'
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
CREATE ROLE pipeline LOGIN PASSWORD :'pipeline_password' IN ROLE market_writer;
CREATE ROLE analyst LOGIN PASSWORD :'analyst_password' IN ROLE market_reader;
CREATE ROLE dagster LOGIN PASSWORD :'dagster_password';
CREATE DATABASE dagster OWNER dagster;
SQL
