"""Options flow analytics on daily chain snapshots: pure pandas/numpy, tidy frames out.

Input chain columns: ``symbol, underlying, expiration, strike, type ('call'/'put'), volume,
open_interest, iv, delta, underlying_price, snapshot_date``. Every function groups by
``(underlying, snapshot_date)`` (and ``expiration`` where it says so) and returns one row per
group with plain columns, ready to be written to a warehouse table.

Ratios never return inf: a zero denominator gives NaN (SQL NULL), because "no calls traded"
is missing information, not an infinitely bearish market.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

CHAIN_COLUMNS = (
    "symbol",
    "underlying",
    "expiration",
    "strike",
    "type",
    "volume",
    "open_interest",
    "iv",
    "delta",
    "underlying_price",
    "snapshot_date",
)
DAY_KEYS = ["underlying", "snapshot_date"]
EXPIRY_KEYS = ["underlying", "snapshot_date", "expiration"]


def _require(df: pd.DataFrame, cols: Iterable[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"chain is missing columns: {missing}")


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    num = num.astype(float)
    den = den.astype(float)
    return (num / den.where(den != 0)).astype(float)


def _split_call_put(chain: pd.DataFrame, keys: list[str], cols: list[str]) -> pd.DataFrame:
    """Sum ``cols`` by ``keys`` into ``call_<col>``/``put_<col>`` columns (0 where a side is absent)."""
    df = chain[[*keys, "type", *cols]].copy()
    df["type"] = df["type"].astype(str).str.lower()
    for c in cols:
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0)
    g = df.groupby([*keys, "type"], sort=True, observed=True)[cols].sum().unstack("type", fill_value=0)
    out = pd.DataFrame(index=g.index)
    for c in cols:
        for side in ("call", "put"):
            out[f"{side}_{c}"] = g[(c, side)] if (c, side) in g.columns else 0
    return out.reset_index()


def daily_summary(chain: pd.DataFrame) -> pd.DataFrame:
    """Per underlying and day: call/put volume and OI, put/call ratios by volume and by OI."""
    _require(chain, [*DAY_KEYS, "type", "volume", "open_interest"])
    out = _split_call_put(chain, DAY_KEYS, ["volume", "open_interest"])
    out = out.rename(columns={"call_open_interest": "call_oi", "put_open_interest": "put_oi"})
    out["total_volume"] = out["call_volume"] + out["put_volume"]
    out["total_oi"] = out["call_oi"] + out["put_oi"]
    out["put_call_volume_ratio"] = _ratio(out["put_volume"], out["call_volume"])
    out["put_call_oi_ratio"] = _ratio(out["put_oi"], out["call_oi"])
    return out


def volume_oi_by_expiry(chain: pd.DataFrame) -> pd.DataFrame:
    """Per underlying, day and expiry: call/put volume and open interest."""
    _require(chain, [*EXPIRY_KEYS, "type", "volume", "open_interest"])
    out = _split_call_put(chain, EXPIRY_KEYS, ["volume", "open_interest"])
    return out.rename(columns={"call_open_interest": "call_oi", "put_open_interest": "put_oi"})


def volume_oi_by_strike(chain: pd.DataFrame) -> pd.DataFrame:
    """Per underlying, day and strike (summed over expiries): call/put volume and open interest."""
    keys = [*DAY_KEYS, "strike"]
    _require(chain, [*keys, "type", "volume", "open_interest"])
    out = _split_call_put(chain, keys, ["volume", "open_interest"])
    return out.rename(columns={"call_open_interest": "call_oi", "put_open_interest": "put_oi"})


def oi_change(today: pd.DataFrame, previous: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Open-interest change per contract and per underlying, today vs the previous snapshot.

    Contracts are matched on ``symbol``. A contract new today (not in ``previous``) counts as a
    change from 0 (``is_new`` True): its whole OI was opened since the last snapshot. Contracts
    present only in ``previous`` are left out: they expired or were delisted, and counting their
    OI as "closed" would make every expiry look like a mass liquidation.

    Returns ``(per_contract, per_underlying)``; per_underlying has ``total_oi``,
    ``previous_total_oi`` (over today's contracts), ``oi_change`` and ``new_contracts``.
    """
    _require(today, [*DAY_KEYS, "symbol", "expiration", "strike", "type", "open_interest"])
    _require(previous, ["symbol", "open_interest"])
    prev = (
        previous[["symbol", "open_interest"]]
        .assign(open_interest=lambda d: pd.to_numeric(d["open_interest"], errors="coerce"))
        .groupby("symbol", as_index=False)["open_interest"]
        .sum()
        .rename(columns={"open_interest": "previous_open_interest"})
    )
    cols = ["underlying", "snapshot_date", "symbol", "expiration", "strike", "type", "open_interest"]
    per = today[cols].merge(prev, on="symbol", how="left", indicator=True)
    per["is_new"] = per["_merge"] == "left_only"
    per = per.drop(columns="_merge")
    per["open_interest"] = pd.to_numeric(per["open_interest"], errors="coerce").fillna(0)
    per["previous_open_interest"] = per["previous_open_interest"].fillna(0)
    per["oi_change"] = per["open_interest"] - per["previous_open_interest"]
    tot = per.groupby(DAY_KEYS, as_index=False).agg(
        total_oi=("open_interest", "sum"),
        previous_total_oi=("previous_open_interest", "sum"),
        oi_change=("oi_change", "sum"),
        new_contracts=("is_new", "sum"),
    )
    tot["new_contracts"] = tot["new_contracts"].astype(int)
    return per, tot


def unusual_activity(
    chain: pd.DataFrame,
    history: pd.DataFrame | None = None,
    ratio_threshold: float = 2.0,
    min_volume: float = 100,
    z_threshold: float = 3.0,
    min_history: int = 5,
) -> pd.DataFrame:
    """Contracts with unusual volume: rows of ``chain`` that pass all tests, with the evidence.

    Tests: ``volume >= min_volume`` and ``volume / open_interest >= ratio_threshold`` (a contract
    with OI 0 and enough volume passes: all of it is new; its ratio is reported as NaN, never inf);
    and, when ``history`` (``symbol, snapshot_date, volume`` of earlier days) is given, a volume
    z-score (sample std) against that contract's trailing volumes >= ``z_threshold``. With fewer
    than ``min_history`` prior observations (or zero spread) the z-score is NaN and does not
    block the flag: there is no history to call the volume usual against.
    """
    _require(chain, ["symbol", *DAY_KEYS, "expiration", "strike", "type", "volume", "open_interest"])
    df = chain[["symbol", *DAY_KEYS, "expiration", "strike", "type", "volume", "open_interest"]].copy()
    vol = pd.to_numeric(df["volume"], errors="coerce").fillna(0).astype(float)
    oi = pd.to_numeric(df["open_interest"], errors="coerce").fillna(0).astype(float)
    df["vol_oi_ratio"] = _ratio(vol, oi)
    ratio_ok = (oi == 0) | (df["vol_oi_ratio"] >= ratio_threshold)
    passed = (vol >= min_volume) & ratio_ok
    df["volume_z"] = np.nan
    if history is not None and len(history):
        _require(history, ["symbol", "snapshot_date", "volume"])
        h = history[["symbol", "snapshot_date", "volume"]].rename(
            columns={"snapshot_date": "hist_date", "volume": "hist_volume"}
        )
        m = df[["symbol", "snapshot_date"]].reset_index().merge(h, on="symbol", how="inner")
        m = m[pd.to_datetime(m["hist_date"]) < pd.to_datetime(m["snapshot_date"])]
        m["hist_volume"] = pd.to_numeric(m["hist_volume"], errors="coerce")
        stats = m.groupby("index")["hist_volume"].agg(["mean", "std", "count"])
        stats = stats[(stats["count"] >= min_history) & (stats["std"] > 0)]
        z = (vol.loc[stats.index] - stats["mean"]) / stats["std"]
        df.loc[stats.index, "volume_z"] = z
        passed &= df["volume_z"].isna() | (df["volume_z"] >= z_threshold)
    out = df[passed].copy()
    out["volume"] = vol[passed]
    out["open_interest"] = oi[passed]
    return out.reset_index(drop=True)


def max_pain(chain: pd.DataFrame) -> pd.DataFrame:
    """Max-pain strike per underlying, day and expiry.

    The strike P among the listed strikes minimising what option holders collect at expiry:
    ``sum_calls OI*max(P-K, 0) + sum_puts OI*max(K-P, 0)``. Ties go to the lowest strike;
    expiries with no open interest give NaN (every strike would tie at 0).
    """
    _require(chain, [*EXPIRY_KEYS, "strike", "type", "open_interest"])
    rows = []
    for key, g in chain.groupby(EXPIRY_KEYS, sort=True, observed=True):
        k = pd.to_numeric(g["strike"], errors="coerce").to_numpy(float)
        oi = pd.to_numeric(g["open_interest"], errors="coerce").fillna(0).to_numpy(float)
        is_call = g["type"].astype(str).str.lower().to_numpy() == "call"
        strikes = np.unique(k[np.isfinite(k)])
        total_oi = oi.sum()
        if strikes.size == 0 or total_oi <= 0:
            rows.append((*key, np.nan, np.nan, total_oi))
            continue
        diff = strikes[:, None] - k[None, :]  # settlement price P (rows) minus contract strike
        payout = np.where(is_call[None, :], np.maximum(diff, 0), np.maximum(-diff, 0)) @ oi
        i = int(np.argmin(payout))
        rows.append((*key, strikes[i], payout[i], total_oi))
    return pd.DataFrame(rows, columns=[*EXPIRY_KEYS, "max_pain_strike", "holder_payout", "total_oi"])


def _interp_at(xs: np.ndarray, ys: np.ndarray, x0: float) -> float:
    """Linear interpolation at x0 between the nearest bracketing points; NaN if x0 is outside."""
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    if xs.size == 0 or not np.isfinite(x0):
        return np.nan
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    if x0 < xs[0] or x0 > xs[-1]:
        return np.nan
    return float(np.interp(x0, xs, ys))


def atm_iv_term_structure(chain: pd.DataFrame) -> pd.DataFrame:
    """At-the-money implied volatility per underlying, day and expiry.

    Interpolated linearly in strike at the spot (``underlying_price``; the chain carries no rates
    or dividends, so spot moneyness is used, not forward) between the two listed strikes that
    bracket it. At each strike the OTM side is used (puts below spot, calls above; at a strike
    equal to spot the average of both): OTM quotes are the liquid ones and are untouched by the
    early-exercise premium of ITM American options. When the OTM side has no IV at a strike,
    the other side is used. No extrapolation: spot outside the strike range gives NaN.
    """
    _require(chain, [*EXPIRY_KEYS, "strike", "type", "iv", "underlying_price"])
    rows = []
    for key, g in chain.groupby(EXPIRY_KEYS, sort=True, observed=True):
        spot = float(pd.to_numeric(g["underlying_price"], errors="coerce").median())
        k = pd.to_numeric(g["strike"], errors="coerce").to_numpy(float)
        iv = pd.to_numeric(g["iv"], errors="coerce").to_numpy(float)
        iv = np.where(iv > 0, iv, np.nan)
        is_call = g["type"].astype(str).str.lower().to_numpy() == "call"
        strikes = np.unique(k[np.isfinite(k)])
        per_strike = np.full(strikes.size, np.nan)
        for n, s in enumerate(strikes):
            c = iv[(k == s) & is_call]
            p = iv[(k == s) & ~is_call]
            c = c[np.isfinite(c)]
            p = p[np.isfinite(p)]
            cv = float(c.mean()) if c.size else np.nan
            pv = float(p.mean()) if p.size else np.nan
            if s == spot:
                per_strike[n] = np.nanmean([cv, pv]) if (c.size or p.size) else np.nan
            elif s > spot:
                per_strike[n] = cv if np.isfinite(cv) else pv
            else:
                per_strike[n] = pv if np.isfinite(pv) else cv
        atm = _interp_at(strikes, per_strike, spot)
        exp = pd.Timestamp(key[2])
        snap = pd.Timestamp(key[1])
        rows.append((*key, spot, atm, int((exp.normalize() - snap.normalize()).days)))
    return pd.DataFrame(rows, columns=[*EXPIRY_KEYS, "underlying_price", "atm_iv", "days_to_expiry"])


def skew_25d(chain: pd.DataFrame) -> pd.DataFrame:
    """25-delta skew per underlying, day and expiry: IV(25-delta put) - IV(25-delta call).

    Each side's IV is interpolated linearly in delta at -0.25 (puts) and +0.25 (calls) between
    the nearest listed deltas around it; NaN when no pair of quotes brackets 25 delta.
    """
    _require(chain, [*EXPIRY_KEYS, "type", "iv", "delta"])
    rows = []
    for key, g in chain.groupby(EXPIRY_KEYS, sort=True, observed=True):
        d = pd.to_numeric(g["delta"], errors="coerce").to_numpy(float)
        iv = pd.to_numeric(g["iv"], errors="coerce").to_numpy(float)
        iv = np.where(iv > 0, iv, np.nan)
        is_call = g["type"].astype(str).str.lower().to_numpy() == "call"
        put_iv = _interp_at(d[~is_call], iv[~is_call], -0.25)
        call_iv = _interp_at(d[is_call], iv[is_call], 0.25)
        rows.append((*key, put_iv, call_iv, put_iv - call_iv))
    return pd.DataFrame(rows, columns=[*EXPIRY_KEYS, "put_iv_25d", "call_iv_25d", "skew_25d"])


# ----------------------------------------------------------------------------- the flow tables of a chain


def _volume_known(chain: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Groups whose chain delivered any volume: elsewhere volume figures are unknown, not zero."""
    return chain.assign(_known=chain["volume"].notna()).groupby(keys, as_index=False)["_known"].any()


def _null_unknown_volume(frame: pd.DataFrame, known: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    merged = frame.merge(known, on=keys, how="left")
    mask = ~merged["_known"].fillna(False).astype(bool)
    for c in columns:
        if c in merged:
            merged[c] = merged[c].astype("float64").where(~mask)
    return merged.drop(columns="_known")


def _with_oi_change(daily: pd.DataFrame, chain: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Daily rows plus the change in open interest against each underlying's previous snapshot."""
    changes = []
    for (u, d), today in chain.groupby(DAY_KEYS, sort=True):
        prev = previous[(previous["underlying"] == u) & (previous["snapshot_date"] == d)]
        if prev.empty:
            continue
        _, total = oi_change(today, prev)
        total["previous_snapshot_date"] = prev["previous_snapshot_date"].iloc[0]
        changes.append(total.drop(columns=["total_oi"]))
    if changes:
        return daily.merge(pd.concat(changes, ignore_index=True), on=DAY_KEYS, how="left")
    return daily.assign(previous_total_oi=np.nan, oi_change=np.nan, new_contracts=np.nan, previous_snapshot_date=None)


def _by_expiry(chain: pd.DataFrame) -> pd.DataFrame:
    """Volume/OI, put/call OI ratio, max pain, ATM IV and 25-delta skew per expiry."""
    by_expiry = volume_oi_by_expiry(chain)
    by_expiry = _null_unknown_volume(
        by_expiry, _volume_known(chain, EXPIRY_KEYS), EXPIRY_KEYS, ["call_volume", "put_volume"]
    )
    call_oi = by_expiry["call_oi"].astype(float)
    by_expiry["put_call_oi_ratio"] = by_expiry["put_oi"].astype(float) / call_oi.where(call_oi != 0)  # 0 -> NULL
    pain = max_pain(chain)[[*EXPIRY_KEYS, "max_pain_strike"]].rename(columns={"max_pain_strike": "max_pain"})
    term = atm_iv_term_structure(chain)[[*EXPIRY_KEYS, "atm_iv", "days_to_expiry"]]
    by_expiry = by_expiry.merge(pain, on=EXPIRY_KEYS, how="left").merge(term, on=EXPIRY_KEYS, how="left")
    return by_expiry.merge(skew_25d(chain), on=EXPIRY_KEYS, how="left")


def compute_flow(chain: pd.DataFrame, previous: pd.DataFrame, history: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The four flow tables of chain rows joined with our IV/delta: ``daily``, ``by_expiry``, ``by_strike``
    and ``unusual`` (the pure core of the ``options_flow`` asset).

    `previous`: (underlying, snapshot_date, previous_snapshot_date, symbol, open_interest) of each
    underlying's previous snapshot; `history`: (symbol, snapshot_date, volume) of earlier snapshots.
    Volume figures of a group whose chain delivered no volume at all are NULL (unknown), never 0.
    """
    daily = daily_summary(chain)
    daily = _null_unknown_volume(
        daily,
        _volume_known(chain, DAY_KEYS),
        DAY_KEYS,
        ["call_volume", "put_volume", "total_volume", "put_call_volume_ratio"],
    )
    counts = chain.groupby(DAY_KEYS, as_index=False).agg(
        contracts=("symbol", "size"), underlying_price=("underlying_price", "median")
    )
    daily = _with_oi_change(daily.merge(counts, on=DAY_KEYS, how="left"), chain, previous)
    by_expiry = _by_expiry(chain)
    front = by_expiry.sort_values(EXPIRY_KEYS).drop_duplicates(DAY_KEYS, keep="first")
    front = front[[*DAY_KEYS, "expiration", "max_pain", "atm_iv", "skew_25d"]].rename(
        columns={
            "expiration": "front_expiration",
            "max_pain": "front_max_pain",
            "atm_iv": "front_atm_iv",
            "skew_25d": "front_skew_25d",
        }
    )
    daily = daily.merge(front, on=DAY_KEYS, how="left")
    by_strike = volume_oi_by_strike(chain)
    by_strike = _null_unknown_volume(by_strike, _volume_known(chain, DAY_KEYS), DAY_KEYS, ["call_volume", "put_volume"])
    unusual = unusual_activity(chain[chain["volume"].notna()], history if len(history) else None)
    unusual_counts = unusual.groupby(DAY_KEYS).size().rename("unusual_contracts").reset_index()
    daily = daily.merge(unusual_counts, on=DAY_KEYS, how="left")
    daily["unusual_contracts"] = daily["unusual_contracts"].fillna(0)
    return {"daily": daily, "by_expiry": by_expiry, "by_strike": by_strike, "unusual": unusual}
