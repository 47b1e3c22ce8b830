"""share_repeated: the same values in less memory, never a changed value or dtype."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from market_assets.analytics.compact import detach_text, share_repeated


def test_repeated_values_become_one_shared_object_and_compare_equal_to_the_input() -> None:
    text = pd.Series(["".join(["AA", "PL"]), "".join(["AA", "PL"]), None, "MSFT", np.nan], dtype=object)
    days = pd.Series([date(2026, 1, 2), date(2026, 1, 2), date(2026, 1, 5), None, date(2026, 1, 2)], dtype=object)
    frame = pd.DataFrame({"u": text, "d": days, "n": [1.5, 2.5, 3.5, 4.5, 5.5], "s": ["a", "b", "c", "d", "e"]})
    assert frame["u"][0] is not frame["u"][1]  # built per row, as pandas builds them from a feed
    out = share_repeated(frame, ["u", "d", "n", "s", "missing"])
    assert out["u"][0] is out["u"][1] and out["d"][0] is out["d"][4]
    assert out["u"].tolist()[:2] == ["AAPL", "AAPL"] and out["u"][3] == "MSFT"
    assert out["u"][2] is None and isinstance(out["u"][4], float) and np.isnan(out["u"][4])  # markers as they were
    assert out["d"].tolist() == [date(2026, 1, 2), date(2026, 1, 2), date(2026, 1, 5), None, date(2026, 1, 2)]
    assert out.dtypes.tolist() == frame.dtypes.tolist()
    assert out["n"].tolist() == [1.5, 2.5, 3.5, 4.5, 5.5]  # numbers are never narrowed
    assert out["s"].tolist() == ["a", "b", "c", "d", "e"]  # all distinct: left as it is
    assert frame["u"][0] is not frame["u"][1]  # the input is not modified


def test_a_column_with_unhashable_values_is_left_alone() -> None:
    frame = pd.DataFrame({"status": pd.Series([["active"], "active", "active"], dtype=object)})
    out = share_repeated(frame, ["status"])
    assert out["status"].tolist() == [["active"], "active", "active"]


def test_detached_text_is_equal_but_new_and_other_values_stay() -> None:
    frame = pd.DataFrame({"s": pd.Series(["AAPL240621C00190000", None, 5, "é\udc80"], dtype=object), "n": [1, 2, 3, 4]})
    out = detach_text(frame, ["s", "n", "missing"])
    assert out["s"].tolist() == frame["s"].tolist()
    assert out["s"][0] is not frame["s"][0] and out["s"][3] is not frame["s"][3]
    assert out["s"][2] == 5 and out["s"][1] is None and out["s"].dtype == object
    assert out["n"].tolist() == [1, 2, 3, 4]
