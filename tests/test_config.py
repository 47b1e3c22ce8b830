"""Bad configuration fails once, early, naming the variable; good configuration resolves."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from market_assets.config import DEFAULT_SYMBOLS, SettingsError, load_settings, redact, require_alpaca_keys
from market_assets.domain.sessions import sessions_between


def test_defaults_need_nothing() -> None:
    settings = load_settings({})
    assert settings.database_url is None and settings.redis_url is None
    assert settings.uses_simulator
    assert settings.symbols == DEFAULT_SYMBOLS
    assert settings.alpaca_feed == "iex"
    # issue 11: the default history must fill every 252-session metric (>= 300 sessions before today)
    assert len(sessions_between(settings.history_start, date.today() - timedelta(days=1))) >= 300
    assert settings.data_home == Path.cwd() / ".data"


def test_values_are_parsed_and_normalised() -> None:
    settings = load_settings(
        {
            "MARKET_SYMBOLS": " aapl, brk.b ,AAPL",
            "MARKET_HISTORY_START": "2020-01-02",
            "ALPACA_FEED": "SIP",
            "DATABASE_URL": "postgresql+psycopg://u:secret@db:5432/market",
            "ALPACA_API_KEY": "KEYVALUE123",
            "ALPACA_SECRET_KEY": "SECRETVALUE456",
            "ALPACA_DATA_URL": "http://proxy:8080/",
        }
    )
    assert settings.symbols == ("AAPL", "BRK.B")
    assert settings.history_start == date(2020, 1, 2)
    assert settings.alpaca_feed == "sip"
    assert settings.alpaca_data_url == "http://proxy:8080"
    assert not settings.uses_simulator
    described = settings.describe()
    assert "secret" not in str(described) and "***" in described["database"]
    assert "KEYVALUE123" not in repr(settings) and "SECRETVALUE456" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MARKET_SYMBOLS": "AAPL,123,toolongname"}, "MARKET_SYMBOLS"),
        ({"MARKET_SYMBOLS": " , "}, "MARKET_SYMBOLS"),
        ({"MARKET_HISTORY_START": "01/02/2020"}, "MARKET_HISTORY_START"),
        ({"MARKET_HISTORY_START": "2001-01-02"}, "MARKET_HISTORY_START"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"ALPACA_FEED": "bloomberg"}, "ALPACA_FEED"),
        ({"ALPACA_API_KEY": "only-the-key"}, "ALPACA_SECRET_KEY"),
        ({"ALPACA_SECRET_KEY": "only-the-secret"}, "ALPACA_API_KEY"),
        ({"ALPACA_DATA_URL": "ftp://x"}, "ALPACA_DATA_URL"),
        ({"ALPACA_TRADING_URL": "nope"}, "ALPACA_TRADING_URL"),
        ({"ALPACA_RATE_LIMIT_PER_MINUTE": "-5"}, "ALPACA_RATE_LIMIT_PER_MINUTE"),
        ({"ALPACA_HTTP_TIMEOUT_SECONDS": "soon"}, "ALPACA_HTTP_TIMEOUT_SECONDS"),
        # issue 13, item 10: each of these was accepted
        ({"ALPACA_HTTP_TIMEOUT_SECONDS": "nan"}, "ALPACA_HTTP_TIMEOUT_SECONDS"),
        ({"ALPACA_RATE_LIMIT_PER_MINUTE": "inf"}, "ALPACA_RATE_LIMIT_PER_MINUTE"),
        ({"MARKET_SYMBOLS": ""}, "MARKET_SYMBOLS"),
        ({"MARKET_DATA_HOME": "/tmp/" + "d" * 100}, "MARKET_DATA_HOME"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(env)


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"DATABASE_URL": "mysql://user:hunter2@db/x"})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://:hunter2@10.0.0.1:6379",
        "rediss+cluster://default:hunter2@redis.internal:6380/0",
        "rediss://:hunter2@cache:6380",
        "postgresql://pipeline:hunter2@db:5432/market",
    ],
)
def test_cluster_and_tls_redis_urls_are_accepted_and_redacted(url: str) -> None:
    settings = load_settings({"DATABASE_URL" if url.startswith("postgres") else "REDIS_URL": url})
    shown = str(settings.describe())
    assert "hunter2" not in shown and "***" in shown


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql+psycopg://u:hunter2@db:5432/market", "hunter2"),
        ("redis://:hunter2@cache:6379/0", "hunter2"),  # Redis: a password without a user
        ("rediss://default:hunter2@cache:6380", "hunter2"),
        ("postgresql://u@db/market?password=hunter2&sslmode=require", "hunter2"),
        ("postgresql://u@db/market?sslmode=require&sslpassword=hunter2", "hunter2"),
        ("http://proxyuser:hunter2@proxy:8080", "hunter2"),
        ("host=/tmp user=postgres password=hunter2 dbname=market", "hunter2"),
    ],
)
def test_every_url_shape_is_redacted(url: str, secret: str) -> None:
    shown = redact(url)
    assert secret not in shown and "***" in shown
    assert shown.split("***")[0] in url  # what is shown is still the URL, up to the secret


def test_describe_hides_every_password_it_could_print() -> None:
    """Issue 13, item 6: redis://:pw@, ?password= and user:pw in ALPACA_DATA_URL were printed in clear."""
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://u@db/market?password=pg-secret",
            "REDIS_URL": "redis://:redis-secret@cache:6379",
            "ALPACA_DATA_URL": "https://user:proxy-secret@proxy.example",
            "ALPACA_API_KEY": "KEY",
            "ALPACA_SECRET_KEY": "SECRET",
        }
    )
    shown = str(settings.describe())
    for secret in ("pg-secret", "redis-secret", "proxy-secret"):
        assert secret not in shown
    assert "cache:6379" in shown and "proxy.example" in shown


@pytest.mark.parametrize("variable", ["ALPACA_DATA_URL", "ALPACA_TRADING_URL"])
def test_a_url_override_without_keys_is_refused_before_a_run(variable: str) -> None:
    """Issue 13, item 10: it used to fail at run time with exit 1; `market-data run` checks it up front."""
    settings = load_settings({variable: "http://proxy:8080"})
    with pytest.raises(SettingsError, match=variable):
        require_alpaca_keys(settings)
    require_alpaca_keys(load_settings({variable: "http://proxy:8080", "ALPACA_API_KEY": "k", "ALPACA_SECRET_KEY": "s"}))
