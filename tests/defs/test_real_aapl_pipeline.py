"""Real AAPL 2020 bars through the pipeline as Alpaca 1Day bars, plus Alpaca-format actions (the 4:1 split of
2020-08-31 and the 0.82 dividend of 2020-08-07): ``market.bars_daily`` keeps the raw file, and the adjusted views
equal the split-adjusted file (prices at the file's 4 decimals, volume exact) and the dividend rule.

A minimal Alpaca-compatible server serves the real file on /v2/stocks/bars and the two actions on
/v1/corporate-actions, so the real assets run unchanged through alpaca-py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest

from market_assets.defs.bars import daily_bars
from market_assets.defs.corporate_actions import corporate_actions
from market_assets.warehouse.resource import WarehouseResource
from tests.fixtures.pipeline import alpaca_for, run, seed_symbols

REAL = Path("/work/shared/data/real")
pytestmark = pytest.mark.skipif(not REAL.exists(), reason="real data files not present")
WINDOW = ("2020-08-03", "2020-10-01")
ACTIONS = {
    "forward_splits": [{"id": "aapl-split-2020", "symbol": "AAPL", "cusip": "037833100", "new_rate": 4, "old_rate": 1,
                        "process_date": "2020-08-31", "ex_date": "2020-08-31", "record_date": "2020-08-24",
                        "payable_date": "2020-08-28"}],
    "cash_dividends": [{"id": "aapl-div-2020q3", "symbol": "AAPL", "cusip": "037833100", "rate": 0.82,
                        "special": False, "foreign": False, "process_date": "2020-08-13", "ex_date": "2020-08-07",
                        "record_date": "2020-08-10", "payable_date": "2020-08-13"}],
}  # fmt: skip


def _file(name: str) -> pd.DataFrame:
    return pd.read_csv(REAL / name)


class _RealServer:
    """Serves the real file (every bar in one page) and the actions (process-date filter), nothing else."""

    api_key, secret_key = "PKREALDATA000000", "real-data-secret"

    def __init__(self) -> None:
        raw = _file("aapl_2020_raw.csv")
        self.bars = [
            {"t": pd.Timestamp(r.Epoch).strftime("%Y-%m-%dT%H:%M:%SZ"), "o": r.Open, "h": r.High, "l": r.Low,
             "c": r.Close, "v": int(r.Volume)}
            for r in raw.itertuples()
        ]  # fmt: skip
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                q = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if url.path == "/v2/stocks/bars":
                    start, end = pd.Timestamp(q["start"]), pd.Timestamp(q["end"])
                    bars = [b for b in server.bars if start <= pd.Timestamp(b["t"]) <= end]
                    body = {"bars": {"AAPL": bars} if bars else {}, "next_page_token": None}
                elif url.path == "/v1/corporate-actions":
                    keep = {g: [a for a in acts if q["start"] <= a["process_date"] <= q["end"]]
                            for g, acts in ACTIONS.items()}  # fmt: skip
                    body = {"corporate_actions": {g: a for g, a in keep.items() if a}, "next_page_token": None}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def real_server() -> Iterator[_RealServer]:
    server = _RealServer()
    yield server
    server.httpd.shutdown()


def test_real_aapl_through_the_pipeline(warehouse: WarehouseResource, real_server: _RealServer) -> None:
    resources = {"warehouse": warehouse, "alpaca": alpaca_for(real_server, feed="sip")}  # type: ignore[arg-type]
    seed_symbols(["AAPL"], warehouse)
    assert run([daily_bars], resources, window=WINDOW).success
    result = run([corporate_actions], resources, window=WINDOW)
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())  # the 75 % "drop" is explained
    raw = _file("aapl_2020_raw.csv")
    expected = _file("aapl_2020_split_adjusted.csv")
    stored = warehouse.read_frame("SELECT close, volume FROM market.bars_daily ORDER BY ts")
    assert stored["close"].tolist() == raw["Close"].tolist() and stored["volume"].tolist() == raw["Volume"].tolist()
    split = warehouse.read_frame(
        "SELECT open, high, low, close, volume FROM market.bars_daily_split_adjusted WHERE symbol = 'AAPL' ORDER BY ts"
    )
    for ours, theirs in (("open", "Open"), ("high", "High"), ("low", "Low"), ("close", "Close")):
        rounded = [float(Decimal(repr(x)).quantize(Decimal("0.0001"), ROUND_HALF_UP)) for x in split[ours]]
        np.testing.assert_allclose(rounded, expected[theirs], rtol=1e-9, atol=0)
    assert split["volume"].tolist() == expected["Volume"].tolist()
    full = warehouse.read_frame("SELECT session, close FROM market.bars_daily_adjusted ORDER BY ts")
    before = (full["session"] < pd.Timestamp("2020-08-07").date()).to_numpy()
    np.testing.assert_allclose(full.loc[before, "close"], split.loc[before, "close"] * (1 - 0.82 / 455.61), rtol=1e-12)
    assert (full.loc[~before, "close"].to_numpy() == split.loc[~before, "close"].to_numpy()).all()
