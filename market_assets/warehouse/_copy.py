"""Vectorised encoder for PostgreSQL's binary COPY format.

Why not `copy.write_row()`: a Python call per row caps a bulk load at a few hundred thousand rows
a second. Here rows that share a layout (same text lengths, same NULL pattern) are laid out at
once as a numpy structured array with big-endian fields, so encoding 1M bars costs about as much
as the server's own parsing, and the whole load runs close to the raw `COPY` limit.

Format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4): an 11-byte
signature, flags and header-extension length; per tuple an int16 field count and, per field, an
int32 byte length (-1 for NULL) followed by the value in network byte order; an int16 -1 trailer.

Array columns (type ``float8[]`` etc.) are *nested*: consecutive frame rows that share the key become one tuple,
each array column holding those rows' values in order (see ``tables.Table.nested``). A one-dimensional array
without NULLs is, in binary: ndim, has-null flag, element type OID, length, lower bound (int32 each), then every
element as length + value. Tuples with the same array length share a layout, so they are encoded at once too.
`decode_array_rows` reads the same format back (a text column, then such arrays), for the bar reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from market_assets.domain.sessions import as_days

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in microseconds since 1970
PG_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970

# PostgreSQL type -> numpy dtype of its binary representation
_FIXED = {
    "float8": np.dtype(">f8"),
    "int8": np.dtype(">i8"),
    "int4": np.dtype(">i4"),
    "timestamptz": np.dtype(">i8"),
    "date": np.dtype(">i4"),
    "bool": np.dtype("u1"),
}
PG_TYPES = (*_FIXED, "text", "jsonb", *(f"{t}[]" for t in _FIXED))
_ELEMENT_OID = {"float8": 701, "int8": 20, "int4": 23, "timestamptz": 1184, "date": 1082, "bool": 16}
_ARRAY_HEADER = 20  # ndim, flags, element OID, length, lower bound


@dataclass(frozen=True)
class _Column:
    name: str
    pg_type: str
    values: np.ndarray  # fixed types: native values; text: int codes into `strings`
    nulls: np.ndarray  # bool
    strings: list[bytes] | None = None  # text: the distinct encoded values


def _prepare(series: pd.Series, name: str, pg_type: str) -> _Column:
    if pg_type.endswith("[]"):  # nested: the flat elements, prepared as their element type
        element = _prepare(series, name, pg_type[:-2])
        if element.pg_type not in _ELEMENT_OID:
            raise ValueError(f"unsupported array type {pg_type!r} for column {name!r}")
        return _Column(name, pg_type, element.values, element.nulls)
    if pg_type in ("text", "jsonb"):
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        prefix = b"\x01" if pg_type == "jsonb" else b""  # jsonb binary format version 1
        strings = [prefix + str(u).encode("utf-8") for u in uniques]
        return _Column(name, pg_type, codes, codes < 0, strings)
    if pg_type == "float8":
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        return _Column(name, pg_type, values, np.isnan(values))
    if pg_type in ("int8", "int4"):
        nulls = series.isna().to_numpy()
        values = series.fillna(0).to_numpy(dtype="int64")
        return _Column(name, pg_type, values, nulls)
    if pg_type == "bool":
        nulls = series.isna().to_numpy()
        values = series.fillna(False).to_numpy(dtype="bool").astype("u1")
        return _Column(name, pg_type, values, nulls)
    if pg_type == "timestamptz":
        ts = pd.to_datetime(series, utc=True)
        nulls = ts.isna().to_numpy()
        micros = ts.dt.as_unit("us").to_numpy(dtype="datetime64[us]").astype("int64")
        return _Column(name, pg_type, micros - PG_EPOCH_US, nulls)
    if pg_type == "date":
        days_since_1970 = as_days(series)
        nulls = np.isnat(days_since_1970)
        values = days_since_1970.astype("int64") - PG_EPOCH_DAYS
        return _Column(name, pg_type, values, nulls)
    raise ValueError(f"unsupported PostgreSQL type {pg_type!r} for column {name!r}; use one of {PG_TYPES}")


@dataclass(frozen=True)
class _Nesting:
    """Which flat rows form each tuple: tuple t holds rows ``start[t] .. start[t] + count[t] - 1``."""

    start: np.ndarray
    count: np.ndarray


def _nest(
    frame: pd.DataFrame, columns: Sequence[tuple[str, str]], key: Sequence[str]
) -> tuple[list[_Column], _Nesting]:
    """The columns prepared for nesting: key and other scalar columns one value per tuple (its first row's),
    array columns flat; and the nesting. Only the key columns are prepared on every row.

    The rows of one key must be consecutive (the frame's order is kept, so is the tuples' order on disk): a key
    that comes back after another is a caller's error, raised here rather than as a duplicate-key failure.
    """
    types = dict(columns)
    if not key or any(k not in types or types[k].endswith("[]") for k in key):
        raise ValueError(f"array columns need scalar key columns to nest rows by, got {tuple(key)}")
    keyed = {k: _prepare(frame[k], k, types[k]) for k in key}
    n = len(frame)
    boundary = np.zeros(n, dtype=bool)
    boundary[0] = True
    for col in keyed.values():
        boundary[1:] |= col.values[1:] != col.values[:-1]
    start = np.flatnonzero(boundary)
    firsts = [col.values[start] for col in keyed.values()]
    ordered = np.lexsort(firsts[::-1])
    repeated = np.ones(start.size - 1, dtype=bool)
    for values in firsts:
        repeated &= values[ordered][1:] == values[ordered][:-1]
    if repeated.any():
        raise ValueError(f"rows of one key {tuple(key)} are not consecutive: sort the frame by its key first")
    out = []
    for name, pg_type in columns:
        if pg_type.endswith("[]"):
            col = _prepare(frame[name], name, pg_type)
            if col.nulls.any():
                raise ValueError(f"array column {name!r}: NULL elements are not stored")
        elif name in keyed:
            full = keyed[name]
            col = _Column(name, pg_type, full.values[start], full.nulls[start], full.strings)
        else:
            col = _prepare(frame[name].iloc[start], name, pg_type)
        out.append(col)
    return out, _Nesting(start, np.diff(np.append(start, n)))


def encode_rows(frame: pd.DataFrame, columns: Sequence[tuple[str, str]], key: Sequence[str] = ()) -> Iterator[bytes]:
    """Yield the tuples of `frame` in binary COPY format (no signature/trailer), group by group.

    `columns` is the COPY column list with PostgreSQL types, in order; array types (``float8[]``) nest the rows
    that share `key` into one tuple (see the module doc).
    """
    n = len(frame)
    if n == 0:
        return
    nesting: _Nesting | None = None
    if any(pg_type.endswith("[]") for _, pg_type in columns):
        prepared, nesting = _nest(frame, columns, key)
        n = nesting.start.size
    else:
        prepared = [_prepare(frame[name], name, pg_type) for name, pg_type in columns]

    # A row's layout is defined by its NULLs and its text lengths; rows sharing one are encoded
    # together. Each column's layout part is a small integer; the parts are folded into one
    # group code with re-factorisation after every column so the code never overflows.
    parts: list[np.ndarray] = []
    for col in prepared:
        if nesting is not None and col.pg_type.endswith("[]"):
            parts.append(nesting.count)  # one array length per tuple: all array columns share it
        elif col.strings is not None:
            lengths = np.array([len(s) for s in col.strings] + [-1], dtype=np.int64)
            parts.append(lengths[col.values])  # code -1 picks the trailing -1 (NULL)
        else:
            parts.append(col.nulls.astype(np.int64))
    group_of_row = np.zeros(n, dtype=np.int64)
    for part in parts:
        if part.min() == part.max():
            continue  # the same for every row: does not split groups
        part_codes, part_uniques = pd.factorize(part)
        group_of_row, _ = pd.factorize(group_of_row * len(part_uniques) + part_codes)
    n_groups = int(group_of_row.max()) + 1
    order = np.argsort(group_of_row, kind="stable")
    bounds = np.searchsorted(group_of_row[order], np.arange(n_groups + 1))
    first_row = order[bounds[:-1]]
    layouts = np.stack([part[first_row] for part in parts], axis=1)

    field_count = np.array(len(columns), dtype=">i2")
    for g, row_layout in enumerate(layouts):
        rows = order[bounds[g] : bounds[g + 1]] if n_groups > 1 else slice(None)
        n_rows = n if n_groups == 1 else len(rows)
        fields: list[tuple[str, np.dtype | str]] = [("n", ">i2")]
        for i, col in enumerate(prepared):
            fields.append((f"l{i}", ">i4"))
            if nesting is not None and col.pg_type.endswith("[]"):
                element = _FIXED[col.pg_type[:-2]]
                fields.append((f"h{i}", ">i4", (5,)))
                fields.append((f"e{i}", [("n", ">i4"), ("v", element)], (int(row_layout[i]),)))
            elif col.strings is not None:
                if row_layout[i] >= 0:
                    fields.append((f"v{i}", f"S{max(int(row_layout[i]), 1)}"))
            elif not (col.nulls.any() and row_layout[i] == 1):
                fields.append((f"v{i}", _FIXED[col.pg_type]))
        out = np.empty(n_rows, dtype=np.dtype(fields))
        out["n"] = field_count
        for i, col in enumerate(prepared):
            if nesting is not None and col.pg_type.endswith("[]"):
                size, element = int(row_layout[i]), _FIXED[col.pg_type[:-2]]
                out[f"l{i}"] = _ARRAY_HEADER + size * (4 + element.itemsize)
                out[f"h{i}"] = (1, 0, _ELEMENT_OID[col.pg_type[:-2]], size, 1)
                out[f"e{i}"]["n"] = element.itemsize
                starts = nesting.start[rows] if n_groups > 1 else nesting.start
                out[f"e{i}"]["v"] = col.values[starts[:, None] + np.arange(size)]
            elif col.strings is not None:
                length = int(row_layout[i])
                out[f"l{i}"] = length
                if length > 0:
                    out[f"v{i}"] = np.array([*col.strings, b""], dtype=f"S{length}")[col.values[rows]]
                elif length == 0:
                    # a zero-length string still needs a placeholder byte in the fixed layout: none allowed
                    raise ValueError(f"column {col.name!r}: empty strings are not stored; use NULL")
            elif col.nulls.any() and row_layout[i] == 1:
                out[f"l{i}"] = -1
            else:
                out[f"l{i}"] = _FIXED[col.pg_type].itemsize
                out[f"v{i}"] = col.values[rows]
        yield out.tobytes()


def decode_array_rows(data: bytes, element_types: Sequence[str]) -> tuple[list[str], list[list[np.ndarray]]]:
    """Parse a binary COPY of rows (text, then one-dimensional arrays without NULLs of `element_types`).

    Returns the text of each row and, per array column, each row's elements (native byte order). Binary COPY:
    an 11-byte signature, int32 flags, int32 extension length; per row int16 field count and per field int32
    length + bytes; int16 -1 at the end. An array: int32 ndim, has-null flag, element OID, then (length, lower
    bound) per dimension, then each element as int32 length + value.
    """
    names: list[str] = []
    columns: list[list[np.ndarray]] = [[] for _ in element_types]
    if not data:
        return names, columns
    pos = len(SIGNATURE) - 4  # the signature and flags; then the header extension length
    pos += 4 + int.from_bytes(data[pos : pos + 4], "big")
    while True:
        fields = int.from_bytes(data[pos : pos + 2], "big", signed=True)
        pos += 2
        if fields == -1:
            return names, columns
        size = int.from_bytes(data[pos : pos + 4], "big")
        names.append(data[pos + 4 : pos + 4 + size].decode())
        pos += 4 + size
        for out, element in zip(columns, element_types, strict=True):
            size = int.from_bytes(data[pos : pos + 4], "big")
            body = pos + 4
            ndim, has_null = (int.from_bytes(data[body + k : body + k + 4], "big") for k in (0, 4))
            if ndim != 1 or has_null:
                raise ValueError(f"expected a one-dimensional array without NULLs, got ndim={ndim} nulls={has_null}")
            n = int.from_bytes(data[body + 12 : body + 16], "big")
            layout = np.dtype([("length", ">i4"), ("value", element)])
            out.append(
                np.frombuffer(data, dtype=layout, count=n, offset=body + _ARRAY_HEADER)["value"].astype(element[1:])
            )
            pos = body + size
