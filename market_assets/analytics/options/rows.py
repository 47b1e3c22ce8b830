"""Validated option frames reshaped into the rows the option tables store: pure pandas, no I/O.

Why apart from the assets: which contract listing wins, which date an open-interest figure belongs
to and which open interest a snapshot carries are decisions about the data, testable without Dagster
or a database; the assets only fetch, call these, and hand the result to the warehouse writer
(which conforms types to the table registry).
"""

from __future__ import annotations

import pandas as pd

QUARANTINE_COLUMNS = ("source", "symbol", "ts", "payload", "reason", "run_id", "session")


def contract_rows(kept: pd.DataFrame) -> pd.DataFrame:
    """One row per contract from validated listings: the latest listing wins, and ``first_seen`` is the
    earliest snapshot that listed it in this batch (the writer keeps the earlier of that and the stored)."""
    out = pd.DataFrame(
        {
            "symbol": kept["symbol"],
            "contract_id": kept["id"],
            "underlying": kept["underlying"],
            "root": kept["root"],
            "name": kept["name"],
            "expiration": kept["expiration"],
            "strike": kept["strike"],
            "type": kept["type"],
            "style": kept["style"],
            "size": kept["size"],
            "status": kept["status"],
            "tradable": kept["tradable"],
            "open_interest": kept["open_interest"],
            "open_interest_date": kept["open_interest_date"],
            "close_price": kept["close_price"],
            "close_price_date": kept["close_price_date"],
            "as_of": kept["snapshot_date"],
        }
    )
    out["first_seen"] = out.groupby("symbol")["as_of"].transform("min")
    return out.sort_values(["as_of", "symbol"], kind="stable").drop_duplicates(subset=["symbol"], keep="last")


def open_interest_rows(kept: pd.DataFrame) -> pd.DataFrame:
    """The open-interest history rows of validated listings: one figure per contract and date, dated as
    delivered (the snapshot's date when Alpaca omits it); listings without a figure add nothing."""
    oi = kept[kept["open_interest"].notna()]
    rows = pd.DataFrame(
        {
            "symbol": oi["symbol"],
            "underlying": oi["underlying"],
            "as_of": oi["open_interest_date"].fillna(oi["snapshot_date"]),
            "open_interest": oi["open_interest"],
        }
    )
    return rows.drop_duplicates(subset=["symbol", "as_of"], keep="last")


def attach_open_interest(typed: pd.DataFrame, oi: pd.DataFrame) -> pd.DataFrame:
    """Each contract's latest open interest (as of <= the snapshot); NULL when none is known.

    `oi`: (symbol, open_interest, as_of), one row per contract."""
    oi = oi.rename(columns={"as_of": "open_interest_date"})[["symbol", "open_interest", "open_interest_date"]]
    merged = typed.drop(columns=["open_interest"], errors="ignore").merge(oi, on="symbol", how="left")
    merged.index = typed.index
    merged["open_interest"] = pd.to_numeric(merged["open_interest"], errors="coerce").astype("float64")
    merged["open_interest_date"] = pd.to_datetime(merged["open_interest_date"]).astype("datetime64[ns]")
    return merged


def quarantine_frame(source: str, rejected: pd.DataFrame, payload: pd.Series, run_id: str) -> pd.DataFrame:
    """Quarantine records of rejected rows, each with the payload exactly as delivered.

    Each record carries the session it was requested for (the snapshot date), so the warehouse keys it by
    (dataset, contract, session): a contract listing has no timestamp of its own, and without a session its
    reject was keyed by the window's range string and never cleared by a later good write (issue 13, item 8).
    """
    ts = rejected["quote_time"] if "quote_time" in rejected else pd.Series(pd.NaT, index=rejected.index)
    if "snapshot_date" in rejected:
        session = pd.to_datetime(rejected["snapshot_date"], errors="coerce").dt.date.astype(object)
    else:
        session = pd.Series(None, index=rejected.index, dtype=object)
    return pd.DataFrame(
        {
            "source": source,
            "symbol": rejected["symbol"],
            "ts": ts,
            "payload": payload.loc[rejected.index],
            "reason": rejected["reason"],
            "run_id": run_id,
            "session": session.where(session.notna(), None),
        },
        columns=list(QUARANTINE_COLUMNS),
    )
