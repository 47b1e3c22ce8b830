"""The built wheel is the product: installed (not editable) into a fresh venv it must run the pipeline.

A wheel once shipped without its SQL migrations; the migrations applied nothing and the first write failed with
"relation does not exist". This test builds the wheel, installs it with ``pip install --no-deps <wheel>`` into a
new venv whose dependencies come from the test environment's site-packages (a plain path, so the checkout's
editable install is not visible), and runs ``market-data run`` for two symbols over a month on the embedded
defaults, from a directory outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # build from a copy of the tracked files: setuptools' build/ directory keeps deleted modules, and building in the
    # checkout would both leave it behind and let a stale module slip into the wheel
    src = tmp_path_factory.mktemp("src")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("market_assets-*.whl")
    return built


def test_wheel_carries_migrations_instance_file_and_simulator(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    migrations = [n for n in names if n.startswith("market_assets/warehouse/migrations/") and n.endswith(".sql")]
    sources = sorted(p.name for p in (ROOT / "market_assets" / "warehouse" / "migrations").glob("*.sql"))
    assert sorted(Path(n).name for n in migrations) == sources and sources
    assert "market_assets/runtime/dagster.yaml" in names
    assert "alpaca_sim/server.py" in names
    assert not [n for n in names if n.startswith("tests/")]


@pytest.mark.slow
def test_installed_wheel_runs_the_pipeline(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())  # fmt: skip
    # dependencies from this environment, as a plain path: .pth files inside it (the editable install) are not run
    (site / "test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a checkout on the path reads as installed
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        env=clean,
    )
    work = tmp_path / "w"  # short: the embedded servers' unix sockets live under it
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DAGSTER_HOME", "PYTHONPATH"}}
    env["MARKET_DATA_HOME"] = str(work / "d")
    cmd = [str(venv / "bin" / "market-data"), "run", "--symbols", "AAPL,MSFT", "--start", "2025-06-02",
           "--end", "2025-06-30", "--intraday-days", "1"]  # fmt: skip
    try:
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        where = subprocess.check_output(
            [str(py), "-c", "import market_assets; print(market_assets.__file__)"], cwd=work, text=True, env=env
        )
    finally:
        subprocess.run([str(venv / "bin" / "market-data"), "services", "stop"], cwd=work, env=env, timeout=60)
    assert str(site) in where, f"imported {where.strip()}, not the installed wheel"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "market.bars_daily" in done.stdout
