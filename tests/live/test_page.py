"""The live page of `serve`, in headless Chromium (Debian's `chromium`), driven over the DevTools protocol."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

import pytest
from websockets.sync.client import connect

from market_assets.live import tokens
from market_assets.warehouse.resource import WarehouseResource
from tests.live.test_serve import _bar, _publish, _server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Browser:
    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "about:blank"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if "DevTools listening on" in line:
                port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
                break
        else:
            raise AssertionError("chromium did not start")
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list").read())
        self.ws = connect(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"], max_size=None)
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(30))
            if reply.get("id") == self._id:
                return reply.get("result", {})

    def js(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        self.ws.close()
        self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


def _until(browser: _Browser, expression: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.js(expression)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never true: {expression}")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (CI installs it)")
def test_live_page_shows_bars_updating_in_place(warehouse: WarehouseResource, redis_url: str) -> None:
    prefix = f"page{time.time_ns() % 1_000_000}"
    key, secret = tokens.create(warehouse, "page")
    srv = _server(warehouse, redis_url, prefix)
    browser = _Browser()
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"http://127.0.0.1:{srv.server.port}/")
        _until(browser, "document.readyState === 'complete' && !!document.getElementById('form')")
        browser.js(
            f"document.getElementById('key').value = {json.dumps(key)};"
            f"document.getElementById('secret').value = {json.dumps(secret)};"
            "document.getElementById('symbols').value = 'AAPL,MSFT';"
            "document.getElementById('form').requestSubmit(); true"
        )
        assert _until(browser, "document.getElementById('state').className === 'open'")
        assert browser.js("document.getElementById('state').textContent") == "live: AAPL,MSFT"
        for minute in range(3):
            _publish(redis_url, prefix, [_bar(s, minute) for s in ("AAPL", "MSFT", "SPY")])
            time.sleep(0.2)
        _until(browser, "document.getElementById('row-AAPL').cells[6].textContent === '1,002'")
        rows = browser.js(
            "[...document.querySelectorAll('#rows tr')].map(r => r.cells[0].textContent + ' ' + r.cells[5].textContent)"
        )
        assert rows == ["AAPL 102.5", "MSFT 102.5"]  # updated in place: one row per symbol, the latest close
        assert browser.js("document.getElementById('row-SPY')") is None
        srv.stop()  # the page says when the connection is gone
        assert _until(browser, "document.getElementById('state').textContent === 'disconnected'")
    finally:
        browser.close()
        srv.stop()
