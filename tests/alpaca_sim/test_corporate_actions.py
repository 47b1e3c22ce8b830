"""The simulator's corporate actions: raw bars carry them like a real market, /v1/corporate-actions serves them
in Alpaca's format, and adjustment=split|dividend|all back-adjusts bars exactly by the textbook rule."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest
import requests

from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import SimulatorServer

CLOCK = datetime(2025, 1, 15, 23, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(MarketModel(seed=7), clock=CLOCK) as srv:
        yield srv


def get(srv: SimulatorServer, path: str, **params: str) -> dict:
    headers = {"APCA-API-KEY-ID": srv.api_key, "APCA-API-SECRET-KEY": srv.secret_key}
    r = requests.get(f"{srv.base_url}{path}", params=params, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def bars(srv: SimulatorServer, symbol: str, start: str, end: str, adjustment: str = "raw") -> list[dict]:
    body = get(srv, "/v2/stocks/bars", symbols=symbol, timeframe="1Day", start=start, end=end,
               adjustment=adjustment, limit="10000")  # fmt: skip
    return body["bars"].get(symbol, [])


def test_raw_bars_carry_the_split_and_adjusted_bars_undo_it(server: SimulatorServer) -> None:
    raw = bars(server, "AAPL", "2020-08-24", "2020-09-04")
    split = bars(server, "AAPL", "2020-08-24", "2020-09-04", "split")
    i = next(k for k, b in enumerate(raw) if b["t"].startswith("2020-08-31"))
    assert raw[i]["c"] / raw[i - 1]["c"] < 0.4  # the overnight "drop" of a 4:1 split, as traded
    for k, (r, s) in enumerate(zip(raw, split, strict=True)):
        factor = 0.25 if k < i else 1.0
        assert s["c"] == r["c"] * factor and s["o"] == r["o"] * factor
        assert s["v"] == r["v"] * (4 if k < i else 1)


def test_dividend_adjustment_moves_the_ratio_by_one_minus_d_over_c(server: SimulatorServer) -> None:
    actions = get(server, "/v1/corporate-actions", symbols="JPM", start="2023-01-01", end="2024-12-31", limit="1000")
    dividends = actions["corporate_actions"]["cash_dividends"]
    assert len(dividends) >= 7
    raw = bars(server, "JPM", "2022-12-01", "2024-12-31")
    adj = bars(server, "JPM", "2022-12-01", "2024-12-31", "all")
    days = [b["t"][:10] for b in raw]
    ratio = np.array([a["c"] / r["c"] for a, r in zip(adj, raw, strict=True)])
    for d in dividends:
        if d["ex_date"] > days[-1]:
            continue
        i = days.index(d["ex_date"])
        c = raw[i - 1]["c"]
        assert ratio[i - 1] / ratio[i] == pytest.approx(1 - d["rate"] / c, rel=1e-12)
        assert date.fromisoformat(d["process_date"]) > date.fromisoformat(d["ex_date"])  # payable, weeks later
        assert d["special"] is False and d["foreign"] is False and d["id"]
    assert [a["v"] for a in adj] == [r["v"] for r in raw]  # dividends never change volume


def test_name_change_and_reverse_split_are_served(server: SimulatorServer) -> None:
    body = get(server, "/v1/corporate-actions", symbols="META", start="2022-01-01", end="2022-12-31")
    change = body["corporate_actions"]["name_changes"]
    assert change == [{**change[0], "old_symbol": "FB", "new_symbol": "META", "process_date": "2022-06-09"}]
    fb = bars(server, "FB", "2022-06-01", "2022-06-30")
    meta = bars(server, "META", "2022-06-01", "2022-06-30")
    assert fb[-1]["t"].startswith("2022-06-08") and meta[0]["t"] == fb[0]["t"] and meta[0]["c"] == fb[0]["c"]
    model = server.model
    symbol = next(
        s for s in (f"R{a}{b}" for a in "ABCDEFGHIJ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        if any(x.kind == "reverse_split" and x.ex_date < date(2025, 1, 1) for x in model.corporate_actions(s))
    )  # fmt: skip
    rev = next(x for x in model.corporate_actions(symbol) if x.kind == "reverse_split")
    body = get(server, "/v1/corporate-actions", symbols=symbol, types="reverse_split",
               start=rev.ex_date.isoformat(), end=rev.ex_date.isoformat())  # fmt: skip
    (served,) = body["corporate_actions"]["reverse_splits"]
    assert served["new_rate"] == 1 and served["old_rate"] == 10 and served["ex_date"] == rev.ex_date.isoformat()


def test_paging_and_the_process_date_filter(server: SimulatorServer) -> None:
    server.corporate_actions_page_size = 3
    try:
        seen, token, pages = [], None, 0
        while True:
            params = {"symbols": "JPM,KO,NVDA", "start": "2020-01-01", "end": "2024-12-31", "limit": "1000"}
            if token:
                params["page_token"] = token
            body = get(server, "/v1/corporate-actions", **params)
            for group in body["corporate_actions"].values():
                seen += [a["id"] for a in group]
            pages += 1
            token = body["next_page_token"]
            if not token:
                break
    finally:
        server.corporate_actions_page_size = 1000
    full = get(server, "/v1/corporate-actions", symbols="JPM,KO,NVDA", start="2020-01-01", end="2024-12-31",
               limit="1000")  # fmt: skip
    everything = [a["id"] for g in full["corporate_actions"].values() for a in g]
    assert pages > 3 and sorted(seen) == sorted(everything) and len(set(seen)) == len(seen)


def test_a_warmed_server_serves_the_same_actions_and_bars_as_a_cold_one() -> None:
    """`warm` (what a benchmark calls before its clock) only builds ahead what first use would build."""
    query = {"symbols": "JPM,AAPL", "start": "2020-01-01", "end": "2024-12-31", "limit": "1000"}
    with SimulatorServer(MarketModel(seed=7), clock=CLOCK) as cold:
        expected = get(cold, "/v1/corporate-actions", **query), bars(cold, "AAPL", "2020-08-24", "2020-09-04", "all")
    with SimulatorServer(MarketModel(seed=7), clock=CLOCK) as warm:
        warm.warm(["JPM", "AAPL"])
        got = get(warm, "/v1/corporate-actions", **query), bars(warm, "AAPL", "2020-08-24", "2020-09-04", "all")
    assert got == expected
    assert expected[0]["corporate_actions"]["cash_dividends"] and expected[1]
