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
