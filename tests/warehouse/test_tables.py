"""The table registry is the warehouse: it must equal information_schema after the migrations."""

from __future__ import annotations

from market_assets.warehouse.resource import WarehouseResource
from market_assets.warehouse.tables import TABLES

# information_schema's udt_name -> the registry's type names
_TYPES = {"float8": "float8", "int8": "int8", "int4": "int4", "text": "text", "date": "date", "bool": "bool",
          "timestamptz": "timestamptz", "jsonb": "jsonb", "float8[]": "_float8", "int4[]": "_int4",
          "bool[]": "_bool", "timestamptz[]": "_timestamptz"}  # fmt: skip


def _schema(warehouse: WarehouseResource) -> dict[str, list[tuple[str, str]]]:
    rows = warehouse.read_frame(
        "SELECT c.table_schema || '.' || c.table_name AS t, c.column_name, c.udt_name"
        " FROM information_schema.columns c JOIN information_schema.tables t"
        "   ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = 'market' AND t.table_type = 'BASE TABLE'"
        "   AND c.table_name <> 'schema_migrations'"
        "   AND NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid"
        "                   WHERE k.relname = c.table_name)"  # monthly partitions are the parent's
        " ORDER BY t, c.ordinal_position"
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for t, name, udt in rows.itertuples(index=False):
        out.setdefault(t, []).append((name, udt))
    return out


def test_registry_equals_information_schema(migrated_warehouse: WarehouseResource) -> None:
    schema = _schema(migrated_warehouse)
    assert set(TABLES) == set(schema), "a table exists in the warehouse or the registry but not both"
    for name, table in TABLES.items():
        actual = dict(schema[name])
        written = dict(table.columns)
        assert set(written) | set(table.server_columns) == set(actual), name
        assert not set(written) & set(table.server_columns), name
        for column, pg_type in written.items():
            assert _TYPES[pg_type] == actual[column], f"{name}.{column}: registry {pg_type}, table {actual[column]}"


def test_registry_keys_are_the_primary_keys(migrated_warehouse: WarehouseResource) -> None:
    rows = migrated_warehouse.read_frame(
        "SELECT n.nspname || '.' || c.relname AS t, array_agg(a.attname ORDER BY k.ord) AS cols"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum"
        " WHERE i.indisprimary AND n.nspname = 'market' AND c.relkind IN ('r', 'p') GROUP BY 1"
    )
    keys = {t: tuple(cols) for t, cols in rows.itertuples(index=False)}
    for name, table in TABLES.items():
        assert keys[name] == table.key, name
