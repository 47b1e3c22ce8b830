"""Options in real time: the simulator's option stream -> `stream` (alpaca-py OptionDataStream) -> cached chains."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, date, datetime

import msgpack
import numpy as np
import pandas as pd
import pytest
import redis
from alpaca.data.live.option import OptionDataStream

from alpaca_sim.server import SimulatorServer
from market_assets.alpaca.resource import AlpacaResource
from market_assets.cache.models import OptionQuote, OptionsChain
from market_assets.cache.resource import CacheResource
from market_assets.live import tokens
from market_assets.live.bus import bus_key
from market_assets.live.ingest import IngestService, StreamAuthError, StreamEntitlementError, option_url
from market_assets.live.serve import FanoutServer
from market_assets.warehouse.resource import WarehouseResource

SESSION = date(2024, 11, 26)
CLOSE = datetime(2024, 11, 26, 21, 0, tzinfo=UTC)  # the model quotes its chains at the session close
LIMIT = 6


@pytest.fixture
def sim():  # type: ignore[no-untyped-def]
    server = SimulatorServer(enable_ws=True).start()
    yield server
    server.stop()


def _cached_chain(truth: pd.DataFrame) -> OptionsChain:
    """The batch's chain as the cache holds it, with no quote yet: what the stream fills in is visible."""
    quotes = [OptionQuote(symbol=r.symbol, expiration=r.expiration, strike=float(r.strike), type=r.type)
              for r in truth.itertuples()]  # fmt: skip
    return OptionsChain(underlying="AAPL", snapshot_date=SESSION, underlying_price=float(truth["spot"].iloc[0]),
                        generation="batch", quotes=quotes, cached_at=datetime.now(UTC))  # fmt: skip


def test_option_quotes_update_their_contracts_with_our_iv_and_greeks(
    sim: SimulatorServer, warehouse: WarehouseResource, redis_url: str
) -> None:
    model = sim.model
    truth = model.option_chain("AAPL", SESSION)
    truth = truth[truth["expiration"] <= sorted(truth["expiration"].unique())[1]].reset_index(drop=True)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    cache = CacheResource(redis_url=redis_url, key_prefix=prefix)
    assert cache.write_chains([_cached_chain(truth)]).ok
    service = IngestService(
        symbols=["AAPL"], stream_url=sim.ws_url, api_key=sim.api_key, secret_key=sim.secret_key, feed="iex",
        warehouse=warehouse, cache=cache,
        alpaca=AlpacaResource(api_key=sim.api_key, secret_key=sim.secret_key, data_url=sim.base_url),
        clock=lambda: CLOSE, option_contracts=LIMIT, risk_free_rate=model.risk_free_rate,
        dividend_yields={"AAPL": model.dividend_yield("AAPL")},
    )  # fmt: skip
    # a fan-out server on the same bus, and an alpaca-py option client of it
    fanout = FanoutServer(warehouse=warehouse, cache=cache, port=0)
    serve_thread = threading.Thread(target=lambda: asyncio.run(fanout.run()), daemon=True)
    serve_thread.start()
    key, secret = tokens.create(warehouse, "options")
    spot = float(truth["spot"].iloc[0])
    nearest = truth.assign(dist=(truth["strike"] - spot).abs()).sort_values(["expiration", "dist", "symbol"])
    chosen = nearest["symbol"].head(LIMIT).tolist()
    received: list[dict] = []

    async def on_quote(msg: dict) -> None:
        received.append(msg)

    thread = threading.Thread(target=lambda: asyncio.run(service.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not fanout.bound.is_set():
        assert time.monotonic() < deadline, "serve did not start"
        time.sleep(0.02)
    client = OptionDataStream(key, secret, raw_data=True,
                              url_override=f"ws://127.0.0.1:{fanout.port}/v1beta1/indicative")  # fmt: skip
    client.subscribe_quotes(on_quote, chosen[0])
    client_thread = threading.Thread(target=client.run, daemon=True)
    client_thread.start()
    try:
        while not any(c.options and c.subs["quotes"] for c in list(sim.stream._clients)) or not any(
            c.subs["optionQuotes"] for c in list(fanout.clients)
        ):
            assert time.monotonic() < deadline, "the option streams did not subscribe"
            time.sleep(0.05)
        assert sim.stream.publish_option_quotes(CLOSE) > 0
        while service.health()["option_updates"] < LIMIT or not received:
            assert time.monotonic() < deadline + 20, (service.health(), received)
            time.sleep(0.05)
        time.sleep(0.3)  # the chain write follows the update
        chain = cache.read_chain("AAPL")
        entries = redis.Redis.from_url(redis_url).xrange(bus_key(prefix))
    finally:
        client.stop()
        client_thread.join(10)
        service.stop()
        thread.join(15)
        fanout.stop()
        serve_thread.join(10)
        redis.Redis.from_url(redis_url).delete(bus_key(prefix))
    assert chain is not None and chain.generation.startswith("live-")
    # the subscribed contracts: the nearest expiry first, nearest the money first, within the limit
    assert service.chains is not None and service.chains.contracts == chosen
    by_symbol = {q.symbol: q for q in chain.quotes}
    expected = truth.set_index("symbol").loc[chosen]
    for symbol, row in expected.iterrows():
        q = by_symbol[symbol]
        assert (q.bid, q.ask, q.last) == (row["bid"], row["ask"], row["last_price"])
        # our IV from the mid: the model's smile within the spread's width; our delta beside the model's
        assert q.iv is not None and abs(q.iv - row["sigma"]) < 0.05, (symbol, q.iv, row["sigma"])
        assert q.delta is not None and abs(q.delta - row["true_delta"]) < 0.05
        assert q.gamma is not None and q.vega is not None and q.theta is not None and q.rho is not None
    untouched = [q for q in chain.quotes if q.symbol not in chosen]
    assert untouched and all(q.bid is None and q.iv is None for q in untouched)
    # and the raw messages went on the bus for the fan-out (optionQuotes / optionTrades)
    sent = [m for _, fields in entries for m in msgpack.unpackb(fields[b"m"])]
    assert {m["S"] for m in sent if m["T"] == "q"} == set(chosen)
    assert np.isfinite([m["bp"] for m in sent if m["T"] == "q"]).all()
    # through serve to alpaca-py's option client: exactly its contract's quote
    assert [(m["T"], m["S"], m["bp"]) for m in received] == [("q", chosen[0], expected.loc[chosen[0], "bid"])]


def test_option_url_sits_beside_the_stock_stream() -> None:
    assert (
        option_url("wss://stream.data.alpaca.markets/v2/sip") == "wss://stream.data.alpaca.markets/v1beta1/indicative"
    )
    assert option_url("ws://127.0.0.1:9000/v2/iex", "opra") == "ws://127.0.0.1:9000/v1beta1/opra"


def _option_service(sim: SimulatorServer, warehouse: WarehouseResource, redis_url: str) -> IngestService:
    """`stream` for AAPL with its option stream on (a cached chain to subscribe to), quick to reconnect."""
    truth = sim.model.option_chain("AAPL", SESSION)
    cache = CacheResource(redis_url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:8]}")
    assert cache.write_chains([_cached_chain(truth)]).ok
    return IngestService(
        symbols=["AAPL"], stream_url=sim.ws_url, api_key=sim.api_key, secret_key=sim.secret_key, feed="iex",
        warehouse=warehouse, cache=cache,
        alpaca=AlpacaResource(api_key=sim.api_key, secret_key=sim.secret_key, data_url=sim.base_url),
        clock=lambda: CLOSE, option_contracts=LIMIT, reconnect_min_seconds=0.1, watchdog_interval=0.2,
    )  # fmt: skip


def _run(service: IngestService) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(service.run())
        except BaseException as exc:  # the test asserts on it
            raised.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    return thread, raised


@pytest.mark.parametrize(
    ("code", "error", "says"),
    [
        (402, StreamAuthError, "option stream at ws://"),
        (409, StreamEntitlementError, "OPRA"),
        (405, StreamEntitlementError, "lower --option-contracts"),
    ],
)
def test_option_stream_configuration_errors_stop_the_service_with_a_clear_message(
    sim: SimulatorServer, warehouse: WarehouseResource, redis_url: str, code: int, error: type, says: str
) -> None:
    sim.stream.option_errors = [code, code, code]  # were it retried, it would fail again, and again
    service = _option_service(sim, warehouse, redis_url)
    started = time.monotonic()
    thread, raised = _run(service)
    thread.join(30)
    assert not thread.is_alive(), "the service kept running (a reconnect loop)"
    assert len(raised) == 1 and isinstance(raised[0], error), raised
    assert f"({code} " in str(raised[0]) and says in str(raised[0]), str(raised[0])
    assert sim.stream.option_errors == [code, code], "answered once, not retried"
    assert raised[0].exit_code == 2 and time.monotonic() - started < 30


def test_option_stream_connection_limit_is_retried_with_an_alert(
    sim: SimulatorServer, warehouse: WarehouseResource, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sim.stream.option_errors = [406, 406]
    service = _option_service(sim, warehouse, redis_url)
    thread, raised = _run(service)
    deadline = time.monotonic() + 30
    try:
        while not any(c.options and c.subs["quotes"] for c in list(sim.stream._clients)):
            assert time.monotonic() < deadline and not raised, (raised, service.health())
            time.sleep(0.05)
    finally:
        service.stop()
        thread.join(15)
    assert not raised and service.fatal is None
    assert service.connection_limit_alerts == 2 and sim.stream.option_errors == []
    alerts = [r for r in caplog.records if "ALERT: connection limit exceeded (406) on the option stream" in r.message]
    assert len(alerts) == 2 and all(r.levelname == "ERROR" for r in alerts)
