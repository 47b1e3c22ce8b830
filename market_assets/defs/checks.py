"""Asset-check results shared by the ingestion and derived assets.

Why shared: "more than 1 % of what the source delivered was rejected" and "a partition with no session
passes its checks with a note" are the same rule for bars and options; written once, the threshold and
the metadata an operator reads are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

QUARANTINE_RATE_LIMIT = 0.01  # above 1 % rejected, the source (or our contract) changed: worth a look, not a stop


def quarantine_rate_check(quarantined: int, fetched: int, check_name: str = "quarantine_rate") -> AssetCheckResult:
    """A warning when more than `QUARANTINE_RATE_LIMIT` of the fetched rows were quarantined."""
    rate = quarantined / fetched if fetched else 0.0
    return AssetCheckResult(
        check_name=check_name,
        passed=rate <= QUARANTINE_RATE_LIMIT,
        severity=AssetCheckSeverity.WARN,
        metadata={"quarantined": quarantined, "rate": MetadataValue.float(round(rate, 6))},
    )


def none_found_check(
    check_name: str, found: int, label: str, severity: AssetCheckSeverity = AssetCheckSeverity.ERROR
) -> AssetCheckResult:
    """Passes when a "rows that must not exist" count is 0; the count is shown under `label`."""
    return AssetCheckResult(check_name=check_name, passed=found == 0, severity=severity, metadata={label: found})


def no_missing_sessions_check(missing: pd.DataFrame, still_missing: int | None = None) -> AssetCheckResult:
    """Passes when no (symbol, session) of the window lacks its bar; names the symbols and shows the first 20 gaps.

    `still_missing`: how many of the window's pairs have no stored bar at all (the rest kept a previous one).
    """
    symbols = sorted(missing["symbol"].unique()) if len(missing) else []
    metadata: dict[str, object] = {
        "missing": MetadataValue.int(len(missing)),
        "symbols": ", ".join(symbols) or "none",
        "examples": MetadataValue.md(missing.head(20).to_markdown(index=False) if len(missing) else "none"),
    }
    if still_missing is not None:
        metadata["kept_previous_rows"] = MetadataValue.int(max(len(missing) - still_missing, 0))
    return AssetCheckResult(
        check_name="no_missing_sessions",
        passed=missing.empty,
        severity=AssetCheckSeverity.ERROR,
        description=f"no valid bar delivered for {', '.join(symbols)}" if symbols else None,
        metadata=metadata,
    )


def skipped_checks(names: Sequence[str], note: str) -> list[AssetCheckResult]:
    """Passing results with a note, for partitions where there is nothing to check (e.g. no session)."""
    return [AssetCheckResult(check_name=n, passed=True, metadata={"note": note}) for n in names]
