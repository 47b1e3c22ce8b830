"""MARKET_PRICE_ADJUSTMENT is validated like every setting and reaches the warehouse the analytics read from."""

from __future__ import annotations

import pytest

from market_assets.config import SettingsError, load_settings
from market_assets.warehouse.queries.bars import ADJUSTED_RELATIONS


def test_default_is_all_and_values_are_normalised() -> None:
    assert load_settings({}).price_adjustment == "all"
    assert load_settings({"MARKET_PRICE_ADJUSTMENT": " Split "}).price_adjustment == "split"
    assert load_settings({"MARKET_PRICE_ADJUSTMENT": "raw"}).price_adjustment == "raw"
    assert set(ADJUSTED_RELATIONS) == {"all", "split", "raw"}


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="MARKET_PRICE_ADJUSTMENT='dividend' is not one of all, split, raw"):
        load_settings({"MARKET_PRICE_ADJUSTMENT": "dividend"})


def test_the_composition_root_binds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from market_assets import definitions

    monkeypatch.setenv("MARKET_PRICE_ADJUSTMENT", "split")
    assert definitions.build_resources()["warehouse"].price_adjustment == "split"
