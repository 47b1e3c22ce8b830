"""Options in real time: the cached chains kept current from Alpaca's option stream.

Why a chain in memory: a quote names one contract; its IV and Greeks need the chain's spot, the contract's
strike, type and expiry, and the pricing inputs (the rate, the underlying's dividend yield). The ingest service
loads the chains the batch cached (``OptionsChain`` in Redis), subscribes to the contracts of the nearest
expiries first within the feed's symbol limit (alpaca-py's ``OptionDataStream``: msgpack only, and it refuses
``"*"`` for quotes, so the contracts are named), applies each micro-batch of quotes here, recomputing IV and
Greeks with the project's own analytics for the contracts that changed only, and writes the changed chains back
(``CacheResource.write_chains``: one atomic replace per chain and batch, not per quote).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from market_assets.analytics.options.black_scholes import greeks, time_to_expiry
from market_assets.analytics.options.implied_vol import implied_vol
from market_assets.cache.models import OptionsChain

GREEKS = ("delta", "gamma", "theta", "vega", "rho")


class LiveChains:
    """The chains being kept current, and which contracts of them the stream subscribes to."""

    def __init__(self, chains: Iterable[OptionsChain], limit: int) -> None:
        self.chains = {c.underlying: c for c in chains}
        everything = [
            (q.expiration, abs(q.strike - (c.underlying_price or q.strike)), q.symbol, c.underlying, i)
            for c in self.chains.values()
            for i, q in enumerate(c.quotes)
        ]
        everything.sort()  # nearest expiry first, then nearest the money
        chosen = everything[: max(limit, 0)]
        self.contracts = [symbol for _, _, symbol, _, _ in chosen]
        self._where = {symbol: (underlying, i) for _, _, symbol, underlying, i in chosen}
        self.updates = 0

    def apply(
        self, msgs: Iterable[dict[str, Any]], *, rate: float, dividend_yields: Mapping[str, float]
    ) -> list[OptionsChain]:
        """Quotes (``T`` = ``q``) and trades (``t``) into their contracts; returns the chains that changed.

        The cache models are immutable: a changed contract is a copy, a changed chain a copy with a new
        ``generation`` (a reader can tell one live version from the next)."""
        changed: dict[str, dict[int, datetime]] = {}
        for msg in msgs:
            where = self._where.get(msg.get("S", ""))
            if where is None:
                continue
            underlying, i = where
            quotes = self.chains[underlying].quotes
            quote = quotes[i]
            if msg.get("T") == "q":
                quotes[i] = quote.model_copy(update={"bid": _positive(msg.get("bp")), "ask": _positive(msg.get("ap"))})
            elif msg.get("T") == "t":
                size = msg.get("s")
                volume = (quote.volume or 0) + size if isinstance(size, int) else quote.volume
                quotes[i] = quote.model_copy(update={"last": _positive(msg.get("p")), "volume": volume})
            else:
                continue
            changed.setdefault(underlying, {})[i] = _when(msg.get("t"))
        out = []
        for underlying, rows in changed.items():
            chain = self.chains[underlying]
            self._reprice(chain, rows, rate, float(dividend_yields.get(underlying, 0.0)))
            chain = self.chains[underlying] = chain.model_copy(
                update={"generation": f"live-{time.time_ns()}", "cached_at": datetime.now(UTC)}
            )
            self.updates += len(rows)
            out.append(chain)
        return out

    @staticmethod
    def _reprice(chain: OptionsChain, rows: Mapping[int, datetime], rate: float, dividend_yield: float) -> None:
        """IV from the mid (the last trade without a two-sided quote) and BSM Greeks, for ``rows`` only."""
        idx = list(rows)
        quotes = [chain.quotes[i] for i in idx]
        mids = [
            (q.bid + q.ask) / 2 if q.bid is not None and q.ask is not None else (q.last if q.last else np.nan)
            for q in quotes
        ]
        price = np.array(mids, dtype=float)
        spot = np.full(len(idx), np.nan if chain.underlying_price is None else chain.underlying_price, dtype=float)
        strike = np.array([q.strike for q in quotes], dtype=float)
        when = pd.to_datetime([rows[i] for i in idx], utc=True)
        expiry = np.asarray(time_to_expiry(when, pd.to_datetime([q.expiration for q in quotes])), float).reshape(-1)
        is_call = np.array([q.type == "call" for q in quotes])
        iv, _ = implied_vol(price, spot, strike, expiry, rate, dividend_yield, is_call)
        iv = np.asarray(iv, dtype=float).reshape(-1)
        g = greeks(is_call, spot, strike, expiry, rate, dividend_yield, np.where(np.isnan(iv), 1.0, iv))
        values = {name: np.asarray(getattr(g, name), dtype=float).reshape(-1) for name in GREEKS}
        for k, (i, q) in enumerate(zip(idx, quotes, strict=True)):
            ok = bool(np.isfinite(iv[k]))
            update: dict[str, float | None] = {"iv": float(iv[k]) if ok else None}
            for name in GREEKS:
                update[name] = float(values[name][k]) if ok and np.isfinite(values[name][k]) else None
            chain.quotes[i] = q.model_copy(update=update)


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _when(value: Any) -> datetime:
    """A wire ``t`` (msgpack Timestamp, RFC 3339 text) as an aware datetime; now when absent."""
    if hasattr(value, "to_unix_nano"):
        return pd.Timestamp(value.to_unix_nano(), tz=UTC).to_pydatetime()
    if value is None:
        return datetime.now(UTC)
    ts = pd.Timestamp(value)
    return (ts.tz_convert(UTC) if ts.tzinfo else ts.tz_localize(UTC)).to_pydatetime()
