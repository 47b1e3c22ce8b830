"""Ticker symbols: what a valid one looks like, shared by configuration, validation, the writer and the clients.

Why in the domain: the same rule refuses a typo in MARKET_SYMBOLS, a malformed row from the source and a bad
underlying before any request is spent on it; one pattern keeps those three in agreement.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from market_assets.errors import InvalidSymbolsError

SYMBOL_PATTERN = re.compile(r"^[A-Z]{1,5}(\.[A-Z]{1,2})?$")


def invalid_symbols(symbols: Sequence[str]) -> list[str]:
    """Symbols that cannot be valid tickers, so they are refused before any request is made."""
    return [s for s in symbols if not SYMBOL_PATTERN.match(s)]


def normalize_symbol(symbol: str) -> str:
    """`" aapl "` -> `"AAPL"`; anything that is still not a ticker is refused with the reason, never a silent miss."""
    if not isinstance(symbol, str):
        raise InvalidSymbolsError(f"symbol must be a string, got {type(symbol).__name__}")
    normal = symbol.strip().upper()
    if not SYMBOL_PATTERN.match(normal):
        raise InvalidSymbolsError(f"invalid symbol {symbol!r}: expected a ticker like AAPL or BRK.B")
    return normal
