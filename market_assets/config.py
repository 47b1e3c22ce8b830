"""Every setting the platform reads from the environment, in one place.

Why one module: the UI, the daemon, run workers and the CLI are separate processes; each must
resolve the same configuration the same way, and a bad value must fail once, early, with the
name of the variable rather than deep inside a run.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from market_assets.domain.symbols import SYMBOL_PATTERN, invalid_symbols
from market_assets.errors import SettingsError

# ~310 NYSE sessions: more than the 252 that return_252d and the 52-week distances need, so those columns are
# filled for the latest ~2 months after a default run instead of NULL everywhere (a year has only ~250 sessions)
DEFAULT_HISTORY_DAYS = 450

DEFAULT_SYMBOLS: tuple[str, ...] = (
    "AAPL",
    "MSFT",
    "AMZN",
    "GOOGL",
    "META",
    "NVDA",
    "TSLA",
    "JPM",
    "V",
    "JNJ",
    "WMT",
    "PG",
    "XOM",
    "UNH",
    "HD",
    "KO",
    "PEP",
    "DIS",
    "BAC",
    "SPY",
)
FEEDS = ("iex", "sip", "otc", "delayed_sip")
DEFAULT_STREAM_URL = "wss://stream.data.alpaca.markets/v2/{feed}"
#: MARKET_PRICE_ADJUSTMENT: which prices the analytics read. ``all`` (default): split- and dividend-adjusted
#: (market.bars_daily_adjusted), so indicators are continuous across every corporate action; ``split``: split
#: adjusted only (market.bars_daily_split_adjusted: chart levels as traded, no dividend drift); ``raw``: as
#: delivered (a 4:1 split then reads as a 75 % crash).
PRICE_ADJUSTMENTS = ("all", "split", "raw")


def parse_symbols(raw: str, variable: str = "MARKET_SYMBOLS") -> tuple[str, ...]:
    symbols = [s.strip().upper() for s in raw.split(",") if s.strip()]
    if not symbols:
        raise SettingsError(f"{variable} is empty: give a comma-separated list such as AAPL,MSFT")
    bad = invalid_symbols(symbols)
    if bad:
        raise SettingsError(
            f"{variable} has invalid symbol(s) {', '.join(repr(b) for b in bad)}: "
            "expected 1-5 capital letters with an optional class suffix such as BRK.B"
        )
    return tuple(dict.fromkeys(symbols))


def _reader(environ: Mapping[str, str] | None) -> Callable[[str], str | None]:
    """The one way a variable is read: from `environ` (default os.environ); unset and blank both mean "not set"."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value is not None and value.strip() != "" else None

    return get


def parse_date(raw: str, variable: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise SettingsError(f"{variable}={raw!r} is not a date: expected YYYY-MM-DD") from None


def _parse_url(raw: str, variable: str, schemes: tuple[str, ...]) -> str:
    value = raw.strip()
    if not any(value.startswith(s) for s in schemes):
        raise SettingsError(f"{variable}={redact(value)!r} is not a URL starting with one of {schemes}")
    return value


def _parse_positive(raw: str, variable: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{variable}={raw!r} is not a number") from None
    if not math.isfinite(value):  # float() takes "nan" and "inf": a NaN timeout disabled every comparison with it
        raise SettingsError(f"{variable}={raw!r} must be a finite number")
    if value <= 0:
        raise SettingsError(f"{variable}={raw!r} must be positive")
    return value


# sockaddr_un.sun_path holds 108 bytes including the terminating NUL
UNIX_SOCKET_PATH_MAX = 107


def embedded_redis_socket(data_home: Path) -> Path:
    """The unix socket the embedded Redis listens on (embedded PostgreSQL falls back to a short runtime directory
    by itself when its data directory is too deep; redis-server does not)."""
    return data_home / "redis" / "redis.sock"


def _check_socket_path(data_home: Path) -> None:
    """A data home too deep for a unix socket used to fail with a traceback after Redis had started (issue 13)."""
    size = len(os.fsencode(embedded_redis_socket(data_home)))
    if size > UNIX_SOCKET_PATH_MAX:
        raise SettingsError(
            f"MARKET_DATA_HOME={str(data_home)!r} is too long for the embedded Redis's unix socket ({size} bytes, "
            f"at most {UNIX_SOCKET_PATH_MAX}): choose a shorter directory or set REDIS_URL"
        )


# user:password@ and :password@ (Redis has no user) in any scheme's authority
_USERINFO_PASSWORD = re.compile(r"(://[^:/@?#\s]*:)[^@/?#\s]*@")
# ?password=, &sslpassword=, ... in a query string or a libpq "key=value" conninfo
_PARAM_SECRET = re.compile(
    r"((?:^|[?&;\s])(?:password|passwd|pwd|sslpassword|secret|secret_key|api_key|token|access_token)=)[^&;\s#]*",
    re.IGNORECASE,
)


def redact(url: str) -> str:
    """Hide every password a URL or conninfo can carry before it is shown anywhere.

    Covers ``scheme://user:pw@host``, ``redis://:pw@host`` (no user), ``?password=`` and friends in the query, and
    libpq's ``password=`` in key=value form (issue 13, item 6: the last three leaked).
    """
    return _PARAM_SECRET.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1***@", url))


@dataclass(frozen=True)
class Settings:
    """The resolved configuration. Empty URLs mean "use the embedded server"."""

    data_home: Path
    database_url: str | None
    redis_url: str | None
    alpaca_api_key: str | None = field(repr=False)
    alpaca_secret_key: str | None = field(repr=False)
    alpaca_feed: str
    alpaca_data_url: str | None
    alpaca_trading_url: str | None
    symbols: tuple[str, ...]
    history_start: date
    rate_limit_per_minute: float
    http_timeout_seconds: float
    alpaca_stream_url: str | None = None
    price_adjustment: str = "all"

    def stream_url(self) -> str:
        """The market-data stream endpoint: ``ALPACA_STREAM_URL``, else the data host's ``/v2/{feed}``.

        Why derived from ``ALPACA_DATA_URL``: a proxy or a running simulator serves REST and the stream on one
        host, so setting one URL must not send the stream to Alpaca while REST goes elsewhere.
        """
        if self.alpaca_stream_url:
            return self.alpaca_stream_url.replace("{feed}", self.alpaca_feed)
        if self.alpaca_data_url:
            parts = urlsplit(self.alpaca_data_url)
            scheme = "wss" if parts.scheme == "https" else "ws"
            return urlunsplit((scheme, parts.netloc, f"/v2/{self.alpaca_feed}", "", ""))
        return DEFAULT_STREAM_URL.format(feed=self.alpaca_feed)

    @property
    def uses_simulator(self) -> bool:
        """No keys and no URL override means there is nothing to talk to but our own simulator."""
        return not self.alpaca_api_key and not self.alpaca_data_url

    def describe(self) -> dict[str, str]:
        """A printable view with secrets removed, for logs and the CLI summary."""
        return {
            "data_home": str(self.data_home),
            "database": redact(self.database_url) if self.database_url else "embedded PostgreSQL",
            "redis": redact(self.redis_url) if self.redis_url else "embedded Redis",
            "alpaca": "simulator" if self.uses_simulator else redact(self.alpaca_data_url or "api.alpaca.markets"),
            "feed": "simulator" if self.uses_simulator else self.alpaca_feed,  # what the bars are stored with
            "symbols": ",".join(self.symbols),
            "history_start": self.history_start.isoformat(),
            "prices": f"adjusted: {self.price_adjustment}",
        }


def require_alpaca_keys(settings: Settings) -> None:
    """A URL override without keys cannot ingest anything: say so before a run starts (issue 13, item 10: it
    used to exit 1 at run time). Not part of `load_settings`, where a data URL alone still resolves the stream
    URL for tools that need no REST keys."""
    if (settings.alpaca_data_url or settings.alpaca_trading_url) and not settings.alpaca_api_key:
        variable = "ALPACA_DATA_URL" if settings.alpaca_data_url else "ALPACA_TRADING_URL"
        raise SettingsError(
            f"{variable} is set but ALPACA_API_KEY and ALPACA_SECRET_KEY are not: an Alpaca-compatible server "
            "needs keys (unset the URL to use the built-in simulator)"
        )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment; raise SettingsError naming the first bad variable."""
    get = _reader(environ)

    home_raw = get("MARKET_DATA_HOME")
    data_home = Path(home_raw).expanduser().resolve() if home_raw else Path.cwd() / ".data"

    database_url = get("DATABASE_URL")
    if database_url:
        database_url = _parse_url(database_url, "DATABASE_URL", ("postgresql", "postgres"))
    redis_url = get("REDIS_URL")
    if redis_url:
        redis_url = _parse_url(
            redis_url, "REDIS_URL", ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
        )

    key, secret = get("ALPACA_API_KEY"), get("ALPACA_SECRET_KEY")
    if bool(key) != bool(secret):
        missing = "ALPACA_SECRET_KEY" if key else "ALPACA_API_KEY"
        raise SettingsError(f"{missing} is not set: ALPACA_API_KEY and ALPACA_SECRET_KEY go together")

    feed = (get("ALPACA_FEED") or "iex").lower()
    if feed not in FEEDS:
        raise SettingsError(f"ALPACA_FEED={feed!r} is not one of {', '.join(FEEDS)}")

    data_url = get("ALPACA_DATA_URL")
    if data_url:
        data_url = _parse_url(data_url, "ALPACA_DATA_URL", ("http://", "https://")).rstrip("/")
    trading_url = get("ALPACA_TRADING_URL")
    if trading_url:
        trading_url = _parse_url(trading_url, "ALPACA_TRADING_URL", ("http://", "https://")).rstrip("/")

    stream_url = get("ALPACA_STREAM_URL")
    if stream_url:
        stream_url = _parse_url(stream_url, "ALPACA_STREAM_URL", ("ws://", "wss://")).rstrip("/")
    symbols_raw = get("MARKET_SYMBOLS")
    if symbols_raw is None and "MARKET_SYMBOLS" in (os.environ if environ is None else environ):
        # set but blank is a mistake (an unexpanded variable, a templating slip), never "the default universe"
        raise SettingsError(
            "MARKET_SYMBOLS is set but empty: give a comma-separated list such as AAPL,MSFT, or unset it"
        )
    symbols = parse_symbols(symbols_raw) if symbols_raw else DEFAULT_SYMBOLS

    start_raw = get("MARKET_HISTORY_START")
    history_start = (
        parse_date(start_raw, "MARKET_HISTORY_START")
        if start_raw
        else date.today() - timedelta(days=DEFAULT_HISTORY_DAYS)
    )
    if history_start < date(2015, 1, 2):
        raise SettingsError(f"MARKET_HISTORY_START={history_start} is before 2015-01-02, the earliest supported")

    rate = _parse_positive(get("ALPACA_RATE_LIMIT_PER_MINUTE") or "180", "ALPACA_RATE_LIMIT_PER_MINUTE")
    timeout = _parse_positive(get("ALPACA_HTTP_TIMEOUT_SECONDS") or "30", "ALPACA_HTTP_TIMEOUT_SECONDS")
    if not redis_url:
        _check_socket_path(data_home)

    adjustment = (get("MARKET_PRICE_ADJUSTMENT") or "all").strip().lower()
    if adjustment not in PRICE_ADJUSTMENTS:
        raise SettingsError(
            f"MARKET_PRICE_ADJUSTMENT={adjustment!r} is not one of {', '.join(PRICE_ADJUSTMENTS)}"
            " (all: splits and dividends, split: splits only, raw: as delivered)"
        )

    return Settings(
        data_home=data_home,
        database_url=database_url,
        redis_url=redis_url,
        alpaca_api_key=key,
        alpaca_secret_key=secret,
        alpaca_feed=feed,
        alpaca_data_url=data_url,
        alpaca_trading_url=trading_url,
        symbols=symbols,
        history_start=history_start,
        rate_limit_per_minute=rate,
        http_timeout_seconds=timeout,
        alpaca_stream_url=stream_url,
        price_adjustment=adjustment,
    )


# --- observability -------------------------------------------------------------------------------
# ``MARKET_LOG_FORMAT``   ``text`` (default, for people) or ``json`` (one object per line, for a log
#                         shipper): every component (CLI, Dagster assets, exporter, live services).
# ``MARKET_METRICS_CACHE_SECONDS``  how long the batch exporter reuses one reading of the Dagster
#                         instance and the warehouse (default 5): a burst of scrapes costs one set of queries.

LOG_FORMATS = ("text", "json")
# variables whose values must never reach a log line, an event, metadata or the audit trail
SECRET_VARIABLES = ("ALPACA_API_KEY", "ALPACA_SECRET_KEY")
# variables that are URLs and may carry a password (shown through redact())
URL_VARIABLES = ("DATABASE_URL", "DAGSTER_POSTGRES_URL", "REDIS_URL")


def load_log_format(environ: Mapping[str, str] | None = None) -> str:
    """``MARKET_LOG_FORMAT``: ``text`` or ``json``; anything else is a SettingsError naming the variable."""
    raw = (_reader(environ)("MARKET_LOG_FORMAT") or "text").strip().lower()
    if raw not in LOG_FORMATS:
        raise SettingsError(f"MARKET_LOG_FORMAT={raw!r} is not one of {', '.join(LOG_FORMATS)}")
    return raw


def load_metrics_cache_seconds(environ: Mapping[str, str] | None = None) -> float:
    raw = _reader(environ)("MARKET_METRICS_CACHE_SECONDS")
    return _parse_positive(raw, "MARKET_METRICS_CACHE_SECONDS") if raw else 5.0


def secret_values(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The secret strings in force (keys, URL passwords), longest first, for log and audit masking."""
    get = _reader(environ)
    found = {v for v in (get(n) for n in SECRET_VARIABLES) if v}
    for name in URL_VARIABLES:
        match = re.search(r"://[^:/@]+:([^@]+)@", get(name) or "")
        if match:
            found.add(match.group(1))
    return tuple(sorted(found, key=len, reverse=True))


# --- options ------------------------------------------------------------------------------------
# ``RISK_FREE_RATE``             continuously compounded annual rate, default 0.045 (4.5 %, the
#                                level of short T-bills in 2024-2025 and the simulator's rate).
#                                Between -0.05 and 0.5.
# ``DIVIDEND_YIELDS``            ``AAPL=0.005,MSFT=0.007``: continuous dividend yields per
#                                underlying; an underlying not listed has 0. Each in [0, 1).
# ``OPTION_EXPIRY_HORIZON_DAYS`` only contracts expiring within this many calendar days of the
#                                snapshot are ingested (default 366; 1..3660). Long LEAPS chains
#                                multiply the request count for little analytical value.
# ``OPTIONS_FEED``               ``indicative`` (default, free plans) or ``opra`` (subscription).

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
    get = _reader(environ)

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
