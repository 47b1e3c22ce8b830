"""Named warehouse queries: every read the Dagster layer runs, one function each, by data domain."""
