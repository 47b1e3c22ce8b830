"""The cache over TLS with a password (``rediss://``), against a real redis-server with TLS enabled.

A throwaway CA and server certificate are made with the openssl CLI; the server accepts TLS only
(``--port 0``) and requires a password, so a warm and a read that succeed went through both.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import redis

from market_assets.cache.models import MarketData
from market_assets.cache.resource import CacheResource


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[tuple[str, str]]:
    server = shutil.which("redis-server")
    if not server or not shutil.which("openssl"):
        pytest.skip("redis-server and openssl are needed for the TLS test")
    folder = Path(tempfile.mkdtemp(prefix="mdtls-", dir="/tmp"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=md-test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "redis.key",
             "-out", "redis.csr", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "1", "-extfile", "san.ext", "-out", "redis.crt", cwd=folder)  # fmt: skip
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    password = uuid.uuid4().hex
    proc = subprocess.Popen(
        [server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(folder / "redis.crt"), "--tls-key-file", str(folder / "redis.key"),
         "--tls-ca-cert-file", str(folder / "ca.crt"), "--tls-auth-clients", "no",
         "--requirepass", password, "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"rediss://:{password}@127.0.0.1:{port}/0?ssl_ca_certs={folder / 'ca.crt'}"
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode() if proc.stderr else ""
                pytest.skip(f"this redis-server has no TLS support: {stderr[-200:]}")
            try:
                if redis.Redis.from_url(url).ping():
                    break
            except (redis.ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url, password
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def test_warm_and_read_over_tls_with_password(tls_redis: tuple[str, str]) -> None:
    url, password = tls_redis
    now = datetime.now(UTC)
    item = MarketData(symbol="AAPL", session=date(2026, 6, 30), ts=now, source="1Day", price=200.0, open=199.0,
                      high=201.0, low=198.0, volume=10, cached_at=now)  # fmt: skip
    cache = CacheResource(redis_url=url, key_prefix=f"mdtest:{uuid.uuid4().hex[:8]}")
    report = cache.write_market([item])
    assert report.ok, report.errors
    assert cache.read_market("AAPL") == item
    # without the password, or in plain text, the same server refuses
    assert not CacheResource(redis_url=url.replace(f":{password}@", "@")).ping()
    assert not CacheResource(redis_url=url.replace("rediss://", "redis://").split("?")[0]).ping()
    cache.close()
