"""ALPACA_STREAM_URL: parsed like the other URLs, and derived from ALPACA_DATA_URL's host when unset."""

from __future__ import annotations

import pytest

from market_assets.config import load_settings
from market_assets.errors import SettingsError


def test_default_is_alpacas_stream_for_the_feed() -> None:
    assert load_settings({"ALPACA_FEED": "sip"}).stream_url() == "wss://stream.data.alpaca.markets/v2/sip"


def test_follows_the_data_host_when_only_the_data_url_is_set() -> None:
    settings = load_settings(
        {"ALPACA_DATA_URL": "http://127.0.0.1:8765", "ALPACA_API_KEY": "k", "ALPACA_SECRET_KEY": "s"}
    )
    assert settings.stream_url() == "ws://127.0.0.1:8765/v2/iex"
    assert load_settings({"ALPACA_DATA_URL": "https://proxy.example/x"}).stream_url() == "wss://proxy.example/v2/iex"


def test_explicit_url_wins_and_may_name_the_feed() -> None:
    env = {"ALPACA_STREAM_URL": "ws://10.0.0.5:9000/v2/{feed}/", "ALPACA_DATA_URL": "http://elsewhere:1"}
    assert load_settings(env).stream_url() == "ws://10.0.0.5:9000/v2/iex"


def test_a_bad_stream_url_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="ALPACA_STREAM_URL"):
        load_settings({"ALPACA_STREAM_URL": "http://not-a-websocket"})
