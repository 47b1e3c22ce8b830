"""Settings of the options pipeline, read from the environment with errors that name the variable.

Why a module of its own: settings.py belongs to the platform core; the options assets need a few
more values (the rate and dividend yields that turn quotes into implied volatilities, the
expiry horizon and the options feed). They are parsed here with the same rules: a bad value
fails once, early, with the variable's name and what is expected.

Variables (all optional):

``RISK_FREE_RATE``             continuously compounded annual rate, default 0.045 (4.5 %, the
                               level of short T-bills in 2024-2025 and the simulator's rate).
                               Between -0.05 and 0.5.
``DIVIDEND_YIELDS``            ``AAPL=0.005,MSFT=0.007``: continuous dividend yields per
                               underlying; an underlying not listed has 0. Each in [0, 1).
``OPTION_EXPIRY_HORIZON_DAYS`` only contracts expiring within this many calendar days of the
                               snapshot are ingested (default 366; 1..3660). Long LEAPS chains
                               multiply the request count for little analytical value.
``OPTIONS_FEED``               ``indicative`` (default, free plans) or ``opra`` (subscription).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from market_assets.settings import SYMBOL_PATTERN, SettingsError

DEFAULT_RISK_FREE_RATE = 0.045
DEFAULT_EXPIRY_HORIZON_DAYS = 366
OPTION_FEEDS = ("indicative", "opra")


@dataclass(frozen=True)
class OptionSettings:
    """Resolved options configuration."""

    risk_free_rate: float = DEFAULT_RISK_FREE_RATE
    dividend_yields: Mapping[str, float] = field(default_factory=dict)
    expiry_horizon_days: int = DEFAULT_EXPIRY_HORIZON_DAYS
    feed: str = "indicative"

    def dividend_yield(self, underlying: str) -> float:
        """The configured yield of `underlying`; 0 for one that is not configured."""
        return float(self.dividend_yields.get(underlying, 0.0))


def parse_rate(raw: str, variable: str = "RISK_FREE_RATE") -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise SettingsError(f"{variable}={raw!r} is not a number: expected e.g. 0.045 for 4.5 %") from None
    if not -0.05 <= value <= 0.5:
        raise SettingsError(
            f"{variable}={raw!r} is outside [-0.05, 0.5]: give a decimal rate (0.045), not a percentage (4.5)"
        )
    return value


def parse_dividend_yields(raw: str, variable: str = "DIVIDEND_YIELDS") -> dict[str, float]:
    """``AAPL=0.005, msft=0.007`` -> {"AAPL": 0.005, "MSFT": 0.007}; empty -> {}."""
    out: dict[str, float] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        symbol, sep, value = item.partition("=")
        symbol = symbol.strip().upper()
        if not sep or not symbol or not value.strip():
            raise SettingsError(f"{variable}: {item!r} is not SYMBOL=YIELD (expected e.g. AAPL=0.005,MSFT=0.007)")
        if not SYMBOL_PATTERN.match(symbol):
            raise SettingsError(f"{variable}: {symbol!r} is not a valid ticker (expected e.g. AAPL or BRK.B)")
        try:
            y = float(value)
        except ValueError:
            raise SettingsError(f"{variable}: yield of {symbol} {value.strip()!r} is not a number") from None
        if not 0.0 <= y < 1.0:
            raise SettingsError(
                f"{variable}: yield of {symbol} is {y}; expected a decimal in [0, 1) such as 0.005 (0.5 %)"
            )
        if symbol in out and out[symbol] != y:
            raise SettingsError(f"{variable}: {symbol} is given twice with different yields")
        out[symbol] = y
    return out


def _parse_int(raw: str, variable: str, low: int, high: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{variable}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingsError(f"{variable}={value} is outside [{low}, {high}]")
    return value


def load_option_settings(environ: Mapping[str, str] | None = None) -> OptionSettings:
    """Read and validate the options variables; raise SettingsError naming the first bad one."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value is not None and value.strip() != "" else None

    rate_raw = get("RISK_FREE_RATE")
    rate = parse_rate(rate_raw) if rate_raw else DEFAULT_RISK_FREE_RATE
    yields_raw = get("DIVIDEND_YIELDS")
    yields = parse_dividend_yields(yields_raw) if yields_raw else {}
    horizon_raw = get("OPTION_EXPIRY_HORIZON_DAYS")
    horizon = (
        _parse_int(horizon_raw, "OPTION_EXPIRY_HORIZON_DAYS", 1, 3660) if horizon_raw else DEFAULT_EXPIRY_HORIZON_DAYS
    )
    feed = (get("OPTIONS_FEED") or "indicative").strip().lower()
    if feed not in OPTION_FEEDS:
        raise SettingsError(f"OPTIONS_FEED={feed!r} is not one of {', '.join(OPTION_FEEDS)}")
    return OptionSettings(risk_free_rate=rate, dividend_yields=yields, expiry_horizon_days=horizon, feed=feed)
