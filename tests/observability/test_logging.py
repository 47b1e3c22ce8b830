"""Structured logs parse line by line, and no secret reaches a log stream, the event log, metadata or the audit."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from alpaca_sim.market_model import MarketModel
from alpaca_sim.server import SimulatorServer
from market_assets.config import SettingsError, load_log_format, secret_values
from market_assets.domain.sessions import last_completed_session, sessions_between
from market_assets.observability.logging import JsonFormatter, SecretMasker, configure
from market_assets.warehouse.resource import to_conninfo

KEY = "AKLEAKTEST0123456789"
SECRET = "SKLEAKTESTsecret0123456789abcdef"
PASSWORD = "PWLEAKTEST98765"


def test_log_format_is_validated() -> None:
    assert load_log_format({}) == "text"
    assert load_log_format({"MARKET_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(SettingsError, match="MARKET_LOG_FORMAT"):
        load_log_format({"MARKET_LOG_FORMAT": "xml"})


def test_secret_values_include_keys_and_url_passwords() -> None:
    env = {"ALPACA_API_KEY": KEY, "ALPACA_SECRET_KEY": SECRET, "DATABASE_URL": f"postgresql://u:{PASSWORD}@h/db"}
    assert set(secret_values(env)) == {KEY, SECRET, PASSWORD}


def test_json_lines_carry_the_fields_and_mask_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("cli", masker=SecretMasker([SECRET])))
    log = logging.getLogger("test.json")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("calling with %s", SECRET, extra={"run_id": "r1", "partition": "2026-06-01"})
        try:
            raise ValueError(f"bad secret {SECRET}\nsecond line")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "calling with ***" and first["component"] == "cli" and first["level"] == "INFO"
    assert first["run_id"] == "r1" and first["partition"] == "2026-06-01" and first["time"].endswith("+00:00")
    assert "ValueError: bad secret ***" in second["exc"] and SECRET not in lines[1]


def test_configure_text_is_masked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    monkeypatch.setenv("ALPACA_API_KEY", KEY)
    stream = io.StringIO()
    handler = configure("cli", stream=stream, log_format="text")
    try:
        logging.getLogger("test.text").warning("key %s secret %s", KEY, SECRET)
    finally:
        logging.getLogger().removeHandler(handler)
    assert "key *** secret ***" in stream.getvalue()


def _with_password(url: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.split("@")[-1]
    return urlunsplit((parts.scheme, f"{user}:{PASSWORD}@{host}", parts.path, parts.query, ""))


def _dump_database(conninfo: str) -> str:
    """Every row of every user table, as text: what a person with read access to the database could find."""
    out = []
    with psycopg.connect(conninfo) as conn:
        tables = conn.execute(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for (name,) in tables:
            out.extend(str(r[0]) for r in conn.execute(f"SELECT t::text FROM {name} t"))
    return "\n".join(out)


@pytest.mark.slow
def test_no_secret_in_logs_event_log_metadata_or_audit(database_url: str, redis_url: str, tmp_path: Path) -> None:
    """A JSON-logged `market-data run` with recognisable keys (real-Alpaca code path against the simulator)."""
    model = MarketModel(seed=9)
    # with real keys Alpaca serves option snapshots as of now only: the window ends at the last completed session
    last = last_completed_session(datetime.now(UTC))
    assert last is not None
    first = sessions_between(last - timedelta(days=10), last)[-3]
    with SimulatorServer(model, api_key=KEY, secret_key=SECRET, enable_ws=False) as sim:
        warehouse_url = _with_password(database_url) if "@" in database_url else database_url
        env = {
            **os.environ,
            "DATABASE_URL": warehouse_url,
            "REDIS_URL": redis_url,
            "MARKET_DATA_HOME": str(tmp_path),
            "ALPACA_API_KEY": KEY,
            "ALPACA_SECRET_KEY": SECRET,
            "ALPACA_DATA_URL": sim.base_url,
            "ALPACA_TRADING_URL": sim.base_url,
            "MARKET_LOG_FORMAT": "json",
            "DAGSTER_HOME": "",
            "DAGSTER_POSTGRES_URL": "",
        }
        done = subprocess.run(
            [sys.executable, "-m", "market_assets.runtime.cli", "run", "--symbols", "AAPL,MSFT",
             "--start", str(first), "--end", str(last), "--intraday-days", "1"],
            env=env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        health = subprocess.run(
            [sys.executable, "-m", "market_assets.runtime.cli", "health"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert health.returncode == 0, health.stderr
    assert sim.stats.total > 0  # the keys were really used

    events = []
    for stream in (done.stderr, health.stderr):
        for line in stream.splitlines():
            if line.strip():
                events.append(json.loads(line))  # every line is one JSON object
    assert events and all({"time", "level", "component", "event"} <= set(e) for e in events)
    assert any(e["component"] == "dagster" and e.get("run_id") and e.get("step") for e in events)
    assert any(e.get("partition") == f"{first}..{last}" for e in events)
    assert any(e["component"] == "cli" and "result: SUCCESS" in e["event"] for e in events)
    assert done.stdout.strip() == ""  # JSON mode: the report goes through the log

    warehouse_dump = _dump_database(to_conninfo(database_url))
    assert "market-data run" in warehouse_dump  # the settings audit row is there...
    storage_db = (urlsplit(database_url).path.lstrip("/") or "postgres") + "_dagster"
    parts = urlsplit(database_url)
    dagster_dump = _dump_database(to_conninfo(urlunsplit((*parts[:2], f"/{storage_db}", *parts[3:]))))
    assert "ASSET_MATERIALIZATION" in dagster_dump  # ...and the event log with the metadata
    secrets = [KEY, SECRET] + ([PASSWORD] if "@" in database_url else [])
    for secret in secrets:
        for where, text in (("stdout", done.stdout), ("stderr", done.stderr), ("health", health.stderr),
                            ("warehouse", warehouse_dump), ("dagster storage", dagster_dump)):  # fmt: skip
            assert secret not in text, (
                f"{secret[:6]}... found in {where}: "
                + (re.search(f".{{0,200}}{re.escape(secret)}.{{0,100}}", text) or [""])[0]
            )
