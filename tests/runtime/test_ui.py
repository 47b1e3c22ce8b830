"""What a person sees in the Dagster UI, checked through the real UI server.

`dagster-webserver` on a free port over the instance a run wrote to; its GraphQL API for the facts (each
partition's own row count, the chart on the charts asset's latest materialization and its pixel size); headless Chromium
(Debian's `chromium`) for the asset page itself.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import DagsterInstance

from alpaca_sim.server import SimulatorServer
from market_assets.defs.bars import daily_bars
from market_assets.defs.charts import technicals_charts
from market_assets.defs.technicals import technical_indicators
from market_assets.reporting import charts
from market_assets.reporting.technicals import CHART_SYMBOLS
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.pipeline import alpaca_for, run, seed_symbols

pytestmark = pytest.mark.slow
UNIVERSE = ["AAPL", "MSFT", "SPY"]
CLOCK = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
QUERY = """
query {
  assetOrError(assetKey: {path: ["%s"]}) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        partition
        metadataEntries {
          label
          ... on MarkdownMetadataEntry { mdStr }
          ... on IntMetadataEntry { intValue }
        }
      }
    }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"]


@pytest.fixture
def ui(tmp_path: Path, warehouse: WarehouseResource, database_url: str, redis_url: str):
    """A run's results in a file-backed instance, and the UI server over that instance."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    instance = DagsterInstance.from_config(str(home))
    with SimulatorServer(clock=CLOCK, enable_ws=False) as sim:
        seed_symbols(UNIVERSE, warehouse)
        resources = {"alpaca": alpaca_for(sim), "warehouse": warehouse}
        assert run([daily_bars], resources, window=("2025-11-03", "2026-01-14"), instance=instance).success
        assert run([technical_indicators], resources, window=("2026-01-05", "2026-01-14"), instance=instance).success
        assert run([technicals_charts], resources, window=("2026-01-05", "2026-01-14"), instance=instance).success
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
         "-m", "market_assets.definitions"],
        env=env, cwd=str(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("dagster-webserver did not start")
        yield port, tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)
        instance.dispose()


def test_latest_materialization_carries_its_partition_and_a_readable_chart(ui: tuple[int, Path]) -> None:
    port, _ = ui
    (latest,) = _graphql(port, QUERY % "technical_indicators")["assetOrError"]["assetMaterializations"]
    entries = {e["label"]: e for e in latest["metadataEntries"]}
    assert latest["partition"] == "2026-01-14"
    # that partition's own rows, not the run's 8 sessions x 3 symbols
    assert entries["dagster/partition_row_count"]["intValue"] == len(UNIVERSE)
    assert entries["rows_written"]["intValue"] == len(UNIVERSE)
    assert entries["run_rows_written"]["intValue"] == 8 * len(UNIVERSE)
    # the pictures: on the charts asset's latest materialization (drawn off the data path, defs/charts.py)
    (latest,) = _graphql(port, QUERY % "technicals_charts")["assetOrError"]["assetMaterializations"]
    entries = {e["label"]: e for e in latest["metadataEntries"]}
    assert latest["partition"] == "2026-01-14"
    encoded = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", entries["movers"]["mdStr"])
    assert encoded, "the latest materialization carries the chart itself"
    width, height = _png_size(base64.b64decode(encoded.group(1)))
    # the intended size: one 6.0 in column per charted symbol, 8.6 in tall, at the first DPI step (>= 72: labels
    # sized >= 10 pt render >= 10 px)
    dpi = charts._DPI_STEPS[0]
    symbols = min(CHART_SYMBOLS, len(UNIVERSE))
    assert (width, height) == (round(6.0 * symbols * dpi), round(8.6 * dpi))
    assert min(charts.FONT, charts.LABEL, charts.TITLE) * min(charts._DPI_STEPS) / 72 >= 10


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_asset_page_renders_in_headless_chromium(ui: tuple[int, Path]) -> None:
    port, tmp_path = ui
    shot = tmp_path / "asset.png"
    url = f"http://127.0.0.1:{port}/assets/technical_indicators"
    common = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
              "--window-size=1400,1000"]  # fmt: skip
    subprocess.run([*common, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=120)
    assert _png_size(shot.read_bytes()) == (1400, 1000)
    dom = subprocess.run([*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120).stdout
    assert "technical_indicators" in dom
