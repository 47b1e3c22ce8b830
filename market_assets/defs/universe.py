"""The run's universe: resolved once, at launch, and carried by the run as a tag.

Why a tag and not ``market.symbols`` read by every step: the universe table is shared mutable state. Two runs
started 0.3 s apart with ``--symbols KO`` and ``--symbols PEP`` both rewrote it and both re-read it step by step,
so the KO run ingested PEP and reported SUCCESS (issue 13, item 2); a scheduled run raced a CLI run the same
way. A run now carries its universe (``market/universe``), set by whoever launches it: the CLI from
``--symbols`` or the active universe, the schedule from the active universe at its tick. Steps read only the
tag. A run without the tag (launched by hand in the UI) falls back to the active universe at that step, as before.
Changing the active universe is its own audited command (``market-data universe set``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from market_assets.config import parse_symbols
from market_assets.warehouse.queries.bars import active_symbols
from market_assets.warehouse.resource import WarehouseResource

UNIVERSE_TAG = "market/universe"


def universe_tags(symbols: Sequence[str]) -> dict[str, str]:
    """The run tags that pin a run to `symbols`."""
    return {UNIVERSE_TAG: ",".join(sorted(dict.fromkeys(symbols)))}


def run_universe(context: Any, warehouse: WarehouseResource) -> list[str]:
    """The symbols this run ingests and derives: its tag, else (an untagged run) the active universe."""
    tag = context.run.tags.get(UNIVERSE_TAG)
    if tag is None:
        return active_symbols(warehouse)
    return sorted(parse_symbols(tag, f"run tag {UNIVERSE_TAG}"))
