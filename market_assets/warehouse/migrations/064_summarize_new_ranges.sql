-- Issue 10: the writer summarizes the BRIN ranges its write appended (WarehouseResource.summarize_new_ranges).
--
-- Why: the session BRINs are not auto-summarized (062), and a block range without a summary matches every query.
-- During a backfill autovacuum rarely catches up, so each chunk's DELETE and checks read the pages of every earlier
-- chunk (an empty year of support/resistance: 0.5 s to find nothing at ten years, 6 ms with summaries): cost grew
-- with the stored history. brin_summarize_new_values reads only the unsummarized ranges, i.e. what was appended.
--
-- It needs the table's owner, and the pipeline's role (market_writer, 041) owns nothing: this function, owned by
-- the schema owner, does it for the BRIN indexes of a table of schema market and nothing else, like
-- market.ensure_month_partition.
CREATE OR REPLACE FUNCTION market.summarize_new_ranges(target text)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    relation oid;
    summarized integer := 0;
BEGIN
    SELECT c.oid INTO relation FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'market' AND c.relname = split_part(target, '.', 2) AND c.relkind = 'r'
      AND split_part(target, '.', 1) = 'market';
    IF relation IS NULL THEN
        RAISE EXCEPTION 'market.summarize_new_ranges: % is not a table of schema market', target
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT coalesce(sum(brin_summarize_new_values(i.indexrelid)), 0) INTO summarized
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am a ON a.oid = ic.relam
    WHERE i.indrelid = relation AND a.amname = 'brin';
    RETURN summarized;
END
$$;

REVOKE ALL ON FUNCTION market.summarize_new_ranges(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION market.summarize_new_ranges(text) TO market_writer;
