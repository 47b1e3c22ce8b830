"""Compact in-memory shapes for large frames of repetitive text, without changing any value.

Why: an option batch of 500 underlyings is ~300k rows whose text columns (underlying, root, type, style,
status, exchange codes) repeat a few hundred distinct values. pandas builds one Python ``str`` per row for
them (~60 bytes each) and a category column changes the dtype that pandera, the writer and the flow code
compare against. Sharing one ``str`` object per distinct value keeps the column ``object`` (every check,
comparison and write sees the same values) at 8 bytes a row. Numbers are never narrowed here: prices,
IVs and Greeks are stored and compared exactly (float64), so float32 would change what is written.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd


def share_repeated(frame: pd.DataFrame, columns: Iterable[str], max_distinct: int = 50_000) -> pd.DataFrame:
    """`frame` with each object column of `columns` holding one shared object per distinct value (text, or the
    ``datetime.date`` objects psycopg returns for date columns).

    Values, missing markers (None/NaN) and the dtype are unchanged; a column with more than `max_distinct`
    values (per-row identifiers) or with unhashable values (a hostile payload's list) is left as it is.
    """
    out = {}
    for name in columns:
        if name not in frame or frame[name].dtype != object:
            continue
        column = frame[name]
        try:
            codes, uniques = pd.factorize(column, use_na_sentinel=True)
        except TypeError:  # unhashable values: nothing to share
            continue
        if len(uniques) > max_distinct or len(uniques) == len(column):
            continue
        shared = pd.Series(pd.Index(uniques, dtype=object).take(codes, allow_fill=True, fill_value=None),
                           index=column.index, dtype=object)  # fmt: skip
        out[name] = shared.where(codes >= 0, column)  # missing rows keep their own marker (None or NaN)
    return frame.assign(**out) if out else frame


def detach_text(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """`frame` with the text of `columns` copied into new ``str`` objects (equal values; anything else as it is).

    Why: the strings a typed page keeps (contract symbols, ids, names) were allocated by the JSON parser among the
    page's dicts; the few that outlive the page pin the allocator's memory blocks the page's other objects freed,
    so a 300k-contract listing held several times its live size (measured: 150 underlyings, 574 -> 485 MiB).
    Copies made together are packed together, and the parsed page is freed whole.
    """
    out = {}
    for name in columns:
        if name in frame and frame[name].dtype == object:
            values = [_copy(v) if type(v) is str else v for v in frame[name].tolist()]
            out[name] = pd.Series(values, index=frame.index, dtype=object)
    return frame.assign(**out) if out else frame


def _copy(text: str) -> str:
    """A new ``str`` equal to `text` (slicing or ``str()`` return the same object)."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")
