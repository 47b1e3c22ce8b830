"""The TA-Lib candlestick functions the project's patterns are checked against, by the project's pattern name.

One map for every test that uses TA-Lib as the oracle (it was written out in three test modules). Each module
still does its own `pytest.importorskip("talib")` before importing this one.
"""

from __future__ import annotations

from collections.abc import Callable

import talib

TALIB: dict[str, Callable[..., object]] = {
    "cdl_doji": talib.CDLDOJI,
    "cdl_hammer": talib.CDLHAMMER,
    "cdl_shooting_star": talib.CDLSHOOTINGSTAR,
    "cdl_engulfing": talib.CDLENGULFING,
    "cdl_morning_star": talib.CDLMORNINGSTAR,
    "cdl_evening_star": talib.CDLEVENINGSTAR,
    "cdl_3_white_soldiers": talib.CDL3WHITESOLDIERS,
    "cdl_3_black_crows": talib.CDL3BLACKCROWS,
}
