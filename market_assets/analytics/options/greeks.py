"""Our implied volatility and BSM Greeks for a stored option chain: the pure core of ``option_greeks``.

Why a chain-level function apart from ``black_scholes`` and ``implied_vol``: those price arrays; this
decides, per contract, WHICH price and spot to trust and says why when there is none (``iv_reason``),
so the asset only reads, calls this and writes. Parameters are plain values (a rate, a mapping of
dividend yields), not configuration objects, so tests and notebooks call it directly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from market_assets.analytics.options.black_scholes import early_exercise_flags, greeks, time_to_expiry
from market_assets.analytics.options.implied_vol import implied_vol
from market_assets.domain.sessions import session_open_close

MODEL = "bsm-european-continuous-dividend"
GREEK_NAMES = ("delta", "gamma", "theta", "vega", "rho")
COLUMNS = (
    "symbol", "snapshot_date", "underlying", "expiration", "strike", "type", "underlying_price", "price_used",
    "price_source", "time_to_expiry", "rate", "dividend_yield", "iv", "iv_reason", *GREEK_NAMES, "model",
    "early_exercise_flag", "early_exercise_premium", "early_exercise_reason",
    *(f"alpaca_{g}" for g in ("iv", *GREEK_NAMES)), "iv_diff",
)  # fmt: skip


def _price_used(chain: pd.DataFrame, snap: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """The mid when the quote is two-sided and uncrossed, else the last trade if it printed on the
    snapshot's session (an older print says nothing about today's volatility), else none."""
    mark = pd.to_numeric(chain["mark"], errors="coerce")
    last = pd.to_numeric(chain["last"], errors="coerce")
    trade_time = pd.to_datetime(chain["trade_time"], utc=True)
    traded_today = trade_time.dt.tz_convert("America/New_York").dt.normalize().dt.tz_localize(None) == snap
    use_last = mark.isna() & (last > 0) & traded_today.fillna(False)
    return mark.where(mark.notna(), last.where(use_last)), np.where(
        mark.notna(), "mid", np.where(use_last, "last", None)
    )


def _early_exercise(out: pd.DataFrame, is_call: np.ndarray, S, K, T, r, q, iv: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Flag (in place) where an American holder would exercise early, with the premium and a readable why."""
    out["early_exercise_flag"] = pd.Series(pd.NA, index=out.index, dtype="boolean")
    out["early_exercise_premium"] = np.nan
    out["early_exercise_reason"] = None
    idx = np.flatnonzero(~np.isnan(iv))
    if not idx.size:
        return
    ee = early_exercise_flags(is_call[idx], S[idx], K[idx], T[idx], r[idx], q[idx], iv[idx])
    flagged = ee["early_exercise_flag"].to_numpy(bool)
    out.iloc[idx, out.columns.get_loc("early_exercise_flag")] = flagged
    out.iloc[idx, out.columns.get_loc("early_exercise_premium")] = ee["early_exercise_premium"].to_numpy(float)
    why = np.where(
        is_call[idx],
        "call on a dividend payer: early exercise before the dividend is worth",
        "deep ITM put: early exercise earns the strike's interest, worth",
    )
    text = [
        f"{w} {p:.4f} ({p / e:.1%} of the European price)" if f and e > 0 else (f"{w} {p:.4f}" if f else None)
        for w, p, e, f in zip(why, ee["early_exercise_premium"], ee["european_price"], flagged, strict=True)
    ]
    out.iloc[idx, out.columns.get_loc("early_exercise_reason")] = np.array(text, dtype=object)


def compute_greeks(
    chain: pd.DataFrame, closes: pd.DataFrame, *, rate: float, dividend_yields: Mapping[str, float]
) -> pd.DataFrame:
    """Our IV and BSM Greeks for chain rows, next to Alpaca's, one row per chain row (columns `COLUMNS`).

    `chain`: rows of market.option_chain; `closes`: (symbol, session, close) of market.bars_daily, the spot.
    `rate`: the continuously compounded risk-free rate; `dividend_yields`: underlying -> continuous yield
    (an underlying not in it has 0). Time to expiry runs from the quote time (the session close when
    unknown) to 16:00 New York on expiration, in years of 365 days.
    """
    out = chain[["symbol", "snapshot_date", "underlying", "expiration", "strike", "type"]].copy()
    if out.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    snap = pd.to_datetime(out["snapshot_date"])
    spot = closes.assign(session=pd.to_datetime(closes["session"])).rename(
        columns={"symbol": "underlying", "session": "snap", "close": "underlying_price"}
    )
    merged = pd.DataFrame({"underlying": out["underlying"], "snap": snap}).merge(
        spot[["underlying", "snap", "underlying_price"]], on=["underlying", "snap"], how="left"
    )
    out["underlying_price"] = pd.to_numeric(merged["underlying_price"], errors="coerce").to_numpy(float)
    out["price_used"], out["price_source"] = _price_used(chain, snap)
    session_closes = {d: session_open_close(d.date())[1] for d in snap.unique()}
    quote_time = pd.to_datetime(chain["quote_time"], utc=True).fillna(snap.map(session_closes))
    out["time_to_expiry"] = np.asarray(time_to_expiry(quote_time, pd.to_datetime(out["expiration"])), dtype=float)
    out["rate"] = rate
    out["dividend_yield"] = out["underlying"].map(lambda u: float(dividend_yields.get(u, 0.0))).astype(float)
    S, K, T, r, q = (out[c].to_numpy(float) for c in ("underlying_price", "strike", "time_to_expiry", "rate",
                                                     "dividend_yield"))  # fmt: skip
    is_call = (out["type"] == "call").to_numpy()
    price = out["price_used"].to_numpy(float)
    iv, reason = implied_vol(price, S, K, T, r, q, is_call)
    reason = np.asarray(reason, dtype=object)
    reason[np.isnan(price)] = "no_price"
    reason[~np.isnan(price) & np.isnan(S)] = "no_underlying_price"
    # A root with an adjustment digit (AAPL1) is a contract a corporate action changed: its deliverable is no
    # longer 100 shares of the underlying, so pricing it against the underlying's close would be wrong.
    adjusted = out["symbol"].astype(str).str.replace(" ", "", regex=False).str[:-15].str.contains(r"\d$").to_numpy()
    reason[adjusted] = "non_standard_deliverable"
    iv = np.where(pd.isna(reason), iv, np.nan)
    out["iv"] = iv
    out["iv_reason"] = reason
    g = greeks(is_call, S, K, T, r, q, np.where(np.isnan(iv), 1.0, iv))  # placeholder sigma, masked below
    for name in GREEK_NAMES:
        out[name] = np.where(~np.isnan(iv), np.asarray(getattr(g, name), dtype=float), np.nan)
    out["model"] = MODEL
    _early_exercise(out, is_call, S, K, T, r, q, iv)
    for gname in ("iv", *GREEK_NAMES):
        out[f"alpaca_{gname}"] = pd.to_numeric(chain[f"alpaca_{gname}"], errors="coerce").to_numpy(float)
    out["iv_diff"] = out["iv"] - out["alpaca_iv"]
    return out
