"""The offline Alpaca simulator, exercised through real sockets and the real alpaca-py clients.

Why these tests: every other part of the platform trusts that (1) the simulator serves exactly the
model's ground truth, (2) alpaca-py cannot tell it from Alpaca, and (3) faults are deterministic.
"""

from __future__ import annotations

import math
import queue
import threading
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical.option import OptionHistoricalDataClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.live.stock import StockDataStream
from alpaca.data.requests import OptionChainRequest, StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.requests import GetOptionContractsRequest

from alpaca_sim.market_model import BAR_COLUMNS, MarketModel
from alpaca_sim.server import FaultConfig, SimulatorServer

CLOCK = datetime(2025, 1, 15, 23, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def model() -> MarketModel:
    return MarketModel(seed=7)


@pytest.fixture(scope="module")
def server(model: MarketModel):
    with SimulatorServer(model, clock=CLOCK, enable_ws=True) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _reset(server: SimulatorServer):
    server.faults = FaultConfig()
    server.clock = CLOCK
    yield
    server.faults = FaultConfig()
    server.clock = CLOCK


def stock_client(srv: SimulatorServer, raw: bool = True) -> StockHistoricalDataClient:
    return StockHistoricalDataClient(srv.api_key, srv.secret_key, raw_data=raw, url_override=srv.base_url)


def to_frame(bars: dict[str, list[dict]]) -> pd.DataFrame:
    """Parse Alpaca JSON bars the way a consumer would (the comparison target is the model)."""
    rows = [
        {
            "symbol": sym,
            "ts": r["t"],
            "open": r["o"],
            "high": r["h"],
            "low": r["l"],
            "close": r["c"],
            "volume": r["v"],
            "trade_count": r["n"],
            "vwap": r["vw"],
        }
        for sym, rs in bars.items()
        for r in rs
    ]
    df = pd.DataFrame(rows, columns=BAR_COLUMNS)
    df["ts"] = pd.to_datetime(df["ts"], utc=True).astype("datetime64[ns, UTC]")
    df["volume"] = df["volume"].astype("int64")
    df["trade_count"] = df["trade_count"].astype("int64")
    return df.sort_values(["symbol", "ts"]).reset_index(drop=True)


def fetch_pages(client: StockHistoricalDataClient, params: dict) -> tuple[dict[str, list[dict]], int]:
    """Page by hand with a small page size (alpaca-py's own loop always asks for 10,000)."""
    out: dict[str, list[dict]] = {}
    token, pages = None, 0
    while True:
        resp = client.get("/stocks/bars", {**params, "page_token": token})
        pages += 1
        for sym, rows in resp["bars"].items():
            out.setdefault(sym, []).extend(rows)
        token = resp.get("next_page_token")
        if not token:
            return out, pages


def test_daily_bars_paged_across_symbols_equal_model(server: SimulatorServer, model: MarketModel) -> None:
    syms = ["MSFT", "AAPL", "ZZZ", "BRK.B"]
    client = stock_client(server)
    params = {
        "symbols": ",".join(syms),
        "timeframe": "1Day",
        "start": "2024-01-01T00:00:00Z",
        "end": "2024-12-31T23:59:59Z",
        "limit": 97,
    }
    bars, pages = fetch_pages(client, params)
    truth = model.daily_bars(syms, date(2024, 1, 1), date(2024, 12, 31))
    assert pages == math.ceil(len(truth) / 97) and pages > 4
    pd.testing.assert_frame_equal(to_frame(bars), truth, check_exact=True)
    assert bars["AAPL"][0]["t"] == "2024-01-02T05:00:00Z"  # midnight New York, in UTC
    # the plain alpaca-py call (one 10k page) agrees, raw and parsed
    req = StockBarsRequest(
        symbol_or_symbols=syms,
        timeframe=TimeFrame.Day,
        start=datetime(2024, 1, 1),
        end=datetime(2024, 12, 31, 23, 59),
    )
    pd.testing.assert_frame_equal(to_frame(client.get_stock_bars(req)), truth, check_exact=True)
    parsed = stock_client(server, raw=False).get_stock_bars(req)
    assert [b.close for b in parsed.data["MSFT"]] == truth[truth.symbol == "MSFT"]["close"].tolist()


def test_minute_bars_half_day_and_hour_bars(server: SimulatorServer, model: MarketModel) -> None:
    client = stock_client(server)
    day = date(2024, 11, 29)  # day after Thanksgiving: closes 13:00 ET
    start, end = datetime(2024, 11, 29, tzinfo=UTC), datetime(2024, 11, 30, tzinfo=UTC)
    bars, _ = fetch_pages(
        client,
        {
            "symbols": "AAPL,QQQ",
            "timeframe": "1Min",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "limit": 150,
        },
    )
    got = to_frame(bars)
    pd.testing.assert_frame_equal(got, model.minute_bars(["AAPL", "QQQ"], start, end), check_exact=True)
    daily = model.daily_bars(["AAPL", "QQQ"], day, day).set_index("symbol")
    for sym, g in got.groupby("symbol"):
        d = daily.loc[sym]
        assert g.ts.iloc[0] == pd.Timestamp("2024-11-29 14:30Z")
        assert g.ts.iloc[-1] == pd.Timestamp("2024-11-29 17:59Z")  # last minute before 13:00 ET
        assert (g.open.iloc[0], g.close.iloc[-1]) == (d.open, d.close)
        assert (g.high.max(), g.low.min(), g.volume.sum()) == (d.high, d.low, d.volume)
        assert ((g.low <= g[["open", "close"]].min(axis=1)) & (g.high >= g[["open", "close"]].max(axis=1))).all()
    hours = client.get_stock_bars(
        StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Hour, start=start, end=end)
    )
    hb = to_frame(hours)
    pd.testing.assert_frame_equal(hb, model.hour_bars("AAPL", start, end), check_exact=True)
    assert hb.volume.sum() == daily.loc["AAPL"].volume and len(hb) == 4


def test_holidays_have_no_bars_and_clock_limits_data(server: SimulatorServer) -> None:
    client = stock_client(server)
    resp = client.get(
        "/stocks/bars",
        {"symbols": "AAPL", "timeframe": "1Day", "start": "2024-07-04", "end": "2024-07-04T23:00:00Z"},
    )
    assert resp["bars"] == {} and resp["next_page_token"] is None
    resp = client.get(
        "/stocks/bars",
        {
            "symbols": "AAPL",
            "timeframe": "1Min",
            "start": "2024-12-25T00:00:00Z",
            "end": "2024-12-26T00:00:00Z",
        },
    )
    assert resp["bars"] == {}
    days = client.get(
        "/stocks/bars", {"symbols": "AAPL", "timeframe": "1Day", "start": "2024-12-20", "end": "2024-12-31"}
    )["bars"]["AAPL"]
    assert "2024-12-25T05:00:00Z" not in {r["t"] for r in days} and len(days) == 7
    # nothing after the clock, and no bar of an unfinished interval
    server.clock = datetime(2025, 1, 14, 15, 0, 30, tzinfo=UTC)  # 10:00:30 ET
    mins = client.get("/stocks/bars", {"symbols": "AAPL", "timeframe": "1Min", "start": "2025-01-14"})
    assert mins["bars"]["AAPL"][-1]["t"] <= "2025-01-14T14:59:00Z"
    daily = client.get("/stocks/bars", {"symbols": "AAPL", "timeframe": "1Day", "start": "2025-01-10"})
    assert [r["t"][:10] for r in daily["bars"]["AAPL"]] == ["2025-01-10", "2025-01-13"]


def test_auth_errors_and_bad_params(server: SimulatorServer) -> None:
    bad = StockHistoricalDataClient("PKWRONG", "nope", raw_data=True, url_override=server.base_url)
    with pytest.raises(APIError) as err:
        bad.get_stock_bars(
            StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=datetime(2024, 1, 2))
        )
    assert err.value.status_code == 401 and err.value.code == 40110000
    client = stock_client(server)
    for params, status in [
        ({"symbols": "AAPL", "timeframe": "7Fortnights"}, 422),
        ({"symbols": "AAPL", "timeframe": "5Min"}, 422),
        ({"symbols": "aapl!", "timeframe": "1Day"}, 400),
        ({"symbols": "AAPL", "timeframe": "1Day", "start": "yesterday"}, 422),
        ({"symbols": "AAPL", "timeframe": "1Day", "limit": "0"}, 422),
    ]:
        with pytest.raises(APIError) as e:
            client.get("/stocks/bars", params)
        assert e.value.status_code == status, params
        assert e.value.message
    r = requests.get(
        f"{server.base_url}/v2/nothing/here",
        timeout=5,
        headers={"APCA-API-KEY-ID": server.api_key, "APCA-API-SECRET-KEY": server.secret_key},
    )
    assert r.status_code == 404 and "code" in r.json()


def _get(server: SimulatorServer, timeout: float = 5.0) -> requests.Response:
    return requests.get(
        f"{server.base_url}/v2/stocks/bars",
        params={"symbols": "AAPL", "timeframe": "1Day", "start": "2024-01-02", "end": "2024-01-10"},
        headers={"APCA-API-KEY-ID": server.api_key, "APCA-API-SECRET-KEY": server.secret_key},
        timeout=timeout,
    )


def test_faults_rate_limit_errors_slow_drop_forbidden(server: SimulatorServer) -> None:
    server.stats.reset()
    server.faults = FaultConfig(rate_limit_every=2)
    first, second = _get(server), _get(server)
    assert first.status_code == 200 and second.status_code == 429
    reset = int(second.headers["X-RateLimit-Reset"])
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert 0 < reset - datetime.now(UTC).timestamp() <= 3
    assert second.json()["code"] == 42910000

    server.faults = FaultConfig(seed=3, error_rate=0.5)
    codes = [_get(server).status_code for _ in range(20)]
    assert set(codes) - {200} <= {500, 502, 503, 504} and 200 in codes and len(set(codes)) > 1
    ok_bodies = {_get(server).text for _ in range(6)} - {""}
    good = [b for b in ok_bodies if '"bars"' in b]
    assert len(set(good)) == 1  # a retried request returns the same data

    server.faults = FaultConfig(slow_every=1, slow_seconds=1.0)
    with pytest.raises(requests.exceptions.Timeout):
        _get(server, timeout=0.3)
    server.faults = FaultConfig(drop_every=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        _get(server)
    server.faults = FaultConfig(forbidden=True)
    assert _get(server).status_code == 403
    stats = server.stats.snapshot()
    assert stats["faults"]["rate_limit"] >= 1 and stats["faults"]["drop"] == 1
    assert stats["statuses"][429] >= 1 and stats["statuses"][403] == 1


def test_malformed_rows_are_deterministic_and_recorded(server: SimulatorServer, model: MarketModel) -> None:
    client = stock_client(server)
    picks = [("AAPL", date(2024, 3, d)) for d in (4, 5, 6, 7, 8, 11, 12, 13, 14, 15)]
    server.stats.reset()
    server.faults = FaultConfig(malformed=picks)
    params = {
        "symbols": "AAPL,MSFT",
        "timeframe": "1Day",
        "start": "2024-03-01",
        "end": "2024-03-29",
        "limit": 7,
    }
    first, _ = fetch_pages(client, params)
    again, _ = fetch_pages(client, params)
    assert first == again
    corrupted = server.stats.snapshot()["corrupted"]
    assert {c[2][:10] for c in corrupted} == {d.isoformat() for _, d in picks}
    kinds = {c[3] for c in corrupted}
    assert len(kinds) >= 3
    truth = model.daily_bars(["AAPL", "MSFT"], date(2024, 3, 1), date(2024, 3, 29))
    pd.testing.assert_frame_equal(
        to_frame({"MSFT": first["MSFT"]}),
        truth[truth.symbol == "MSFT"].reset_index(drop=True),
        check_exact=True,
    )
    bad_ts = {c[2] for c in corrupted if c[3] != "invalid_symbol"}
    for row in first["AAPL"]:
        if row["t"] not in bad_ts:
            t = truth[(truth.symbol == "AAPL") & (truth.ts == pd.Timestamp(row["t"]))].iloc[0]
            assert (row["o"], row["c"], row["v"]) == (t.open, t.close, t.volume)
    if "invalid_symbol" in kinds:
        assert "aapl$" in first


def test_option_chain_through_alpaca_py(server: SimulatorServer, model: MarketModel) -> None:
    oc = OptionHistoricalDataClient(server.api_key, server.secret_key, url_override=server.base_url)
    chain = oc.get_option_chain(OptionChainRequest(underlying_symbol="AMZN"))
    session = server.last_closed_session()
    truth = model.option_chain("AMZN", session).set_index("symbol")
    assert set(chain) == set(truth.index) and len(chain) > 1000  # > one 1000-row page
    missing = [s for s, snap in chain.items() if snap.greeks is None]
    assert 0 < len(missing) < 0.25 * len(chain)
    assert all(np.isnan(truth.loc[s, "delta"]) for s in missing)
    for sym in list(chain)[::97]:
        snap, t = chain[sym], truth.loc[sym]
        assert (snap.latest_quote.bid_price, snap.latest_quote.ask_price) == (t.bid, t.ask)
        assert snap.latest_quote.ask_price >= snap.latest_quote.bid_price >= 0
        assert snap.latest_quote.timestamp == model.session_close(session)
    raw = OptionHistoricalDataClient(server.api_key, server.secret_key, raw_data=True, url_override=server.base_url)
    floor = float(truth["strike"].median())  # about the spot: AMZN trades near its real level (KNOWN_TICKERS)
    calls = raw.get_option_chain(
        OptionChainRequest(underlying_symbol="AMZN", type="call", strike_price_gte=floor, expiration_date="2025-02-21")
    )
    assert calls and all(s[4:10] == "250221" and s[10] == "C" and int(s[11:]) >= floor * 1000 for s in calls)


def test_exact_quotes_recover_true_vol() -> None:
    """The model's exact quotes invert, through an independent IV solver, to the smile it says it uses."""
    m = MarketModel(seed=11, quote_precision="exact")
    ch = m.option_chain("NVDA", date(2024, 6, 12))
    assert (ch.time_to_expiry > 0).all() and (ch.ask >= ch.bid).all()
    row = ch.iloc[(ch.log_moneyness.abs() + (ch.type == "put")).argmin()]
    mid = (row.bid + row.ask) / 2
    # an independent oracle (vollib, Jaeckel's "Let's Be Rational"), not the simulator's own pricing code
    from vollib.black_scholes_merton.implied_volatility import implied_volatility

    flag = "c" if row.type == "call" else "p"
    iv = implied_volatility(mid, row.spot, row.strike, row.time_to_expiry, row.rate, row.dividend_yield, flag)
    assert abs(iv - row.sigma) < 1e-10
    p = m.params("NVDA")
    atm = p.atm_long + (p.atm_short - p.atm_long) * math.exp(-row.time_to_expiry / p.atm_tau)
    k = row.log_moneyness
    assert row.sigma == pytest.approx(atm * (1 + p.skew * k + p.curv * k * k), rel=1e-12)


def test_option_contracts_paged_by_hand(server: SimulatorServer, model: MarketModel) -> None:
    tc = TradingClient(server.api_key, server.secret_key, url_override=server.base_url)
    got, token = [], None
    while True:
        resp = tc.get_option_contracts(
            GetOptionContractsRequest(
                underlying_symbols=["AAPL", "MSFT"],
                expiration_date_gte="2025-01-17",
                expiration_date_lte="2025-02-21",
                limit=37,
                page_token=token,
            )
        )
        got.extend(resp.option_contracts)
        token = resp.next_page_token
        if not token:
            break
    session = server.last_closed_session()
    truth = [
        r
        for u in ("AAPL", "MSFT")
        for r in model.option_contract_records(u, session)
        if "2025-01-17" <= r["expiration_date"] <= "2025-02-21"
    ]
    assert sorted(c.symbol for c in got) == sorted(r["symbol"] for r in truth)
    by_sym = {r["symbol"]: r for r in truth}
    c0 = got[0]
    assert str(c0.id) == by_sym[c0.symbol]["id"] and c0.open_interest == by_sym[c0.symbol]["open_interest"]
    assert c0.size == "100" and c0.style == "american"
    assert tc.get_option_contract(c0.id).symbol == c0.symbol
    with pytest.raises(APIError) as err:
        tc.get_option_contract("NOPE")
    assert err.value.status_code == 404


def test_stream_delivers_bars_to_stock_data_stream(server: SimulatorServer, model: MarketModel) -> None:
    received: queue.Queue = queue.Queue()
    stream = StockDataStream(server.api_key, server.secret_key, url_override=server.ws_url)

    async def on_bar(bar) -> None:
        received.put(bar)

    stream.subscribe_bars(on_bar, "AAPL")
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    try:
        assert server.stream.wait_for_clients(1, timeout=10)
        ts = datetime(2024, 11, 29, 15, 0, tzinfo=UTC)
        assert server.publish_minute(ts) >= 1
        bar = received.get(timeout=10)
        truth = model.minute_bars("AAPL", ts, ts).iloc[0]
        assert bar.symbol == "AAPL" and bar.timestamp == ts
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
            truth.open,
            truth.high,
            truth.low,
            truth.close,
            truth.volume,
        )
    finally:
        stream.stop()
        server.publish_minute(datetime(2024, 11, 29, 15, 1, tzinfo=UTC))  # wake the client loop
        thread.join(timeout=10)


def test_determinism_across_model_instances() -> None:
    a, b, c = MarketModel(seed=42), MarketModel(seed=42), MarketModel(seed=43)
    syms = ["AAPL", "XOM", "TINY"]
    da = a.daily_bars(syms, date(2016, 1, 1), date(2026, 12, 31))
    pd.testing.assert_frame_equal(da, b.daily_bars(syms, date(2016, 1, 1), date(2026, 12, 31)), check_exact=True)
    assert not da.equals(c.daily_bars(syms, date(2016, 1, 1), date(2026, 12, 31)))
    s, e = datetime(2023, 3, 1, tzinfo=UTC), datetime(2023, 3, 3, tzinfo=UTC)
    pd.testing.assert_frame_equal(a.minute_bars(syms, s, e), b.minute_bars(syms, s, e), check_exact=True)
    pd.testing.assert_frame_equal(
        a.option_chain("XOM", date(2023, 3, 1)), b.option_chain("XOM", date(2023, 3, 1)), check_exact=True
    )
    assert (da.low > 0).all() and (da.low <= da[["open", "close"]].min(axis=1)).all()
    assert ((da.vwap >= da.low) & (da.vwap <= da.high)).all()
