"""The offline Alpaca-compatible simulator: a sibling package of the product, never imported by it.

Only the composition root (``market_assets/definitions.py``) and the CLI's ``simulator`` command know it exists
(import-linter enforces it). It is also an independent oracle: its market model prices options with its own BSM
and parses OCC symbols with its own code, and it imports nothing from ``market_assets``, so a bug in the product's
analytics cannot hide behind the same bug in the data it is tested on.
"""

from __future__ import annotations

import threading

from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import DEFAULT_API_KEY, DEFAULT_SECRET_KEY, FaultConfig, SimulatorServer

__all__ = ["DEFAULT_API_KEY", "DEFAULT_SECRET_KEY", "FaultConfig", "MarketModel", "SimulatorServer", "shared_server"]

_lock = threading.Lock()
_shared: SimulatorServer | None = None


def shared_server() -> SimulatorServer:
    """One in-process simulator (REST only) per process, started on first use.

    Deterministic, so every process (each Dagster step runs in its own) sees the same market.
    """
    global _shared
    with _lock:
        if _shared is None:
            _shared = SimulatorServer().start()
        return _shared
