"""The alert rules and the dashboard only name metrics the platform exports, and the README documents them all."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from market_assets.observability.metrics import BATCH_FAMILIES, exported_names, live_family_names

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
METRIC = re.compile(r"\bmarket_[a-z0-9_]+\b")
# what an operator needs paged for (issue 12)
REQUIRED_ALERTS = {
    "MarketDataStaleAfterClose",
    "MarketRunFailures",
    "MarketQuarantineRateHigh",
    "MarketStreamSilentDuringSession",
    "MarketSlowClients",
    "MarketCacheDown",
}


def _rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_parse_and_name_exported_metrics() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    exported = exported_names()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]
        names = set(METRIC.findall(rule["expr"]))
        assert names or "up{" in rule["expr"], rule["alert"]
        assert names <= exported, f"{rule['alert']}: {names - exported} not exported"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_query_names_an_exported_metric() -> None:
    assert DASHBOARDS
    exported = exported_names()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        targets = [t for panel in dashboard["panels"] for t in panel.get("targets", [])]
        assert targets, path.name
        for target in targets:
            names = set(METRIC.findall(target["expr"]))
            assert names, f"{path.name}: {target['expr']} names no metric"
            assert names <= exported, f"{path.name}: {names - exported} not exported"


def test_readme_documents_every_metric_family() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in {f.name for f in BATCH_FAMILIES} | live_family_names():
        assert f"`{name}`" in readme, name
