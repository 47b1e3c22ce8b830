-- The warehouse lives in its own schema so analysts can be granted it alone.
CREATE SCHEMA IF NOT EXISTS market;
