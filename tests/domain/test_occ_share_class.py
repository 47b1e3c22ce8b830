"""Share-class symbols and their OCC roots: BRK.B's options are BRKB..., and are ingested, not quarantined."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd

from alpaca_sim.server import SimulatorServer
from market_assets.alpaca.options import fetch_option_chain, option_contract_pages
from market_assets.contracts.options import (
    coerce_raw_chain,
    coerce_raw_contracts,
    split_option_chain,
    split_option_contracts,
)
from market_assets.domain.occ import option_root, validate_occ
from tests.fixtures.pipeline import alpaca_for


def test_option_root_drops_the_class_dot() -> None:
    assert option_root("BRK.B") == "BRKB" and option_root("BF.B") == "BFB" and option_root("AAPL") == "AAPL"
    symbols = pd.Series(["BRKB250117C00450000", "BRKB250117C00450000", "AAPL250117C00200000"])
    reasons = validate_occ(symbols, underlying=pd.Series(["BRK.B", "BRK.A", "AAPL"]))
    assert reasons.tolist() == [None, "mismatch_underlying", None]


def test_brk_b_chain_and_contracts_are_ingested() -> None:
    day = date(2025, 1, 15)
    with SimulatorServer(clock=datetime(2025, 1, 15, 23, 0, tzinfo=UTC)) as sim:
        alpaca = alpaca_for(sim)
        chain = fetch_option_chain(alpaca, "BRK.B", as_of=day)
        pages = option_contract_pages(alpaca, ["BRK.B"], as_of=day, expiration_date_lte=date(2025, 3, 31))
        contracts = pd.concat(list(pages), ignore_index=True)
    assert len(chain) > 100 and chain["symbol"].str.startswith("BRKB").all()
    kept = split_option_chain(coerce_raw_chain(chain, day))
    assert kept.rejected.empty, kept.rejected["reason"].unique()
    kept_contracts = split_option_contracts(coerce_raw_contracts(contracts, day))
    assert kept_contracts.rejected.empty, kept_contracts.rejected["reason"].unique()
    assert set(kept_contracts.valid["root"]) == {"BRKB"} and set(kept_contracts.valid["underlying"]) == {"BRK.B"}
