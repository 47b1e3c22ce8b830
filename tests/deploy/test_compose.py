"""docker-compose.yml, the Dockerfile and deploy/ checked without a Docker engine.

No engine runs on these machines, so the file is checked for what would break a deployment:
each service's command (and that the CLIs accept the flags used), its healthcheck, that every
dependency waits on health (or on the one-shot migration's success), that secrets come from
.env, that no docker.sock is mounted, resource limits, and that the Dagster instance and
workspace files agree with the services. ``docker-compose config -q`` (Debian's package) runs
too when installed, as in .ci/run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent

# service -> the command it must run (prefix); None: the image's own entrypoint (postgres, redis, ...)
COMMANDS: dict[str, list[str] | None] = {
    "postgres": ["postgres", "-c", "shared_buffers=512MB", "-c", "max_wal_size=4GB"],  # the image's server, tuned
    "redis": ["sh", "-c"],
    "migrate": ["market-data", "migrate"],
    "code-server": ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000",
                    "--module-name", "market_assets.definitions"],
    "webserver": ["dagster-webserver", "--host", "0.0.0.0", "--port", "3000",
                  "--workspace", "/opt/dagster/home/workspace.yaml"],
    "daemon": ["dagster-daemon", "run", "--workspace", "/opt/dagster/home/workspace.yaml"],
    "stream": ["market-data", "stream"],
    "serve": ["market-data", "serve"],
    "lb": None,
    "metrics": ["market-data", "metrics", "--host", "0.0.0.0", "--port", "9464"],
    "celery-worker": ["dagster-celery", "worker", "start", "-A", "dagster_celery.app", "-y",
                      "/opt/dagster/home/celery.yaml", "-q", "dagster"],
    "prometheus": ["--config.file=/etc/prometheus/prometheus.yml"],
    "grafana": None,
}  # fmt: skip
HEALTHCHECKS = {
    "postgres": "pg_isready",
    "redis": "ping",
    "code-server": "grpc-health-check",
    "webserver": "/server_info",
    "daemon": "liveness-check",
    "stream": "/healthz",
    "serve": "/healthz",
    "lb": "/healthz",
    "metrics": "/metrics",
    "celery-worker": "inspect ping",
    "prometheus": "/-/healthy",
    "grafana": "/api/health",
}
ONE_SHOT = {"migrate"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def command_of(service: dict[str, Any]) -> list[str] | None:
    command = service.get("command")
    if command is None or isinstance(command, list):
        return command
    return ["sh", "-c"] if command.startswith("sh -c") else command.split()


def test_every_service_runs_the_expected_command(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == set(COMMANDS)
    for name, expected in COMMANDS.items():
        command = command_of(services[name])
        if expected is None:
            assert command is None, name
        else:
            assert command is not None and command[: len(expected)] == expected, (name, command)
    code_server = services["code-server"]["command"]
    assert code_server[code_server.index("--port") + 1] == "4000"


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if name in ONE_SHOT:
            assert check.get("disable") is True and service.get("restart") == "no", name
            continue
        test = check.get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
        assert HEALTHCHECKS[name] in " ".join(test), (name, test)
        assert check.get("interval") and check.get("timeout") and check.get("retries"), name


def test_dependencies_wait_for_health_and_form_no_cycle(services: dict[str, dict[str, Any]]) -> None:
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name conditions, not a list"
        for target, spec in depends.items():
            assert target in services, (name, target)
            wanted = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert spec == {"condition": wanted}, (name, target, spec)
        graph[name] = set(depends)
    # the platform's order: stores -> migrate -> code server -> webserver/daemon; serve -> lb
    for app in ("code-server", "stream", "serve", "metrics", "celery-worker"):
        assert {"postgres", "redis", "migrate"} <= graph[app], app
    assert "code-server" in graph["webserver"] and "code-server" in graph["daemon"]
    assert graph["lb"] == {"serve"} and graph["migrate"] == {"postgres"}
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {n for n, deps in graph.items() if n not in done and deps <= done}
        assert ready, f"dependency cycle among {set(graph) - done}"
        done |= ready


def test_no_docker_socket_limits_and_secrets_from_env(services: dict[str, dict[str, Any]]) -> None:
    text = COMPOSE.read_text()
    assert "docker.sock" not in "\n".join(line.split("#")[0] for line in text.splitlines())
    for name, service in services.items():
        for volume in service.get("volumes", []):
            assert "docker.sock" not in str(volume), name
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("cpus") and limits.get("memory"), f"{name} has no resource limits"
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|_KEY$", key):
                assert str(value).startswith("${"), f"{name}.{key} must come from .env"
            userinfo = re.search(r"://[^:/@]*:([^@]*)@", re.sub(r"\$\{[^}]*\}", "VAR", str(value)))
            assert userinfo is None or userinfo.group(1) == "VAR", f"{name}.{key} has a literal password"
    required = set(re.findall(r"\$\{(\w+):\?", text))
    documented = set(re.findall(r"^(\w+)=", (ROOT / ".env.example").read_text(), re.M))
    assert required <= documented, f"not in .env.example: {required - documented}"
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert services["serve"]["deploy"]["replicas"] == "${SERVE_REPLICAS:-2}"
    assert "stream" not in [n for n, s in services.items() if "replicas" in s.get("deploy", {})]


def test_monitoring_profile_is_provisioned_from_deploy(services: dict[str, dict[str, Any]]) -> None:
    optional = {"prometheus": ["monitoring"], "grafana": ["monitoring"], "celery-worker": ["celery"]}
    for name, service in services.items():
        assert service.get("profiles") == optional.get(name), f"{name}: profiles {service.get('profiles')}"
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job.get("static_configs", []) for t in c["targets"]}
    assert {"metrics:9464", "stream:8081", "lb:8404"} <= targets
    assert any(c["names"] == ["serve"] and c["port"] == 8765 for j in prometheus["scrape_configs"]
               for c in j.get("dns_sd_configs", []))  # fmt: skip
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    mounts = " ".join(services["grafana"]["volumes"])
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning" in mounts
    assert "./deploy/grafana:/var/lib/grafana/dashboards" in mounts
    assert sorted((DEPLOY / "grafana").glob("*.json")), "the dashboards provisioned from deploy/grafana"


def test_load_balancer_checks_serve_health_and_tunnels_websockets(services: dict[str, dict[str, Any]]) -> None:
    config = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    serve = services["serve"]["command"]
    port = serve[serve.index("--port") + 1]
    assert f"server-template serve 8 serve:{port}" in config
    assert "option httpchk GET /healthz" in config and "timeout tunnel" in config
    assert f"bind :{port}" in config and "balance leastconn" in config


def test_dagster_instance_and_workspace_match_the_services(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.instance.config import dagster_instance_config

    for name, value in {"DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": "x", "DAGSTER_PG_HOST": "postgres",
                        "DAGSTER_PG_DB": "dagster", "DAGSTER_PG_PORT": "5432", "DAGSTER_MAX_CONCURRENT_RUNS": "4",
                        "DAGSTER_STORAGE_DIR": "/tmp/x"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    config, _ = dagster_instance_config(str(DEPLOY / "dagster"))
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_launcher"]["class"] == "DefaultRunLauncher"
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    workspace = yaml.safe_load((DEPLOY / "dagster" / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    assert (server["host"], server["port"]) == ("code-server", 4000)
    dagster_env = {"DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_DB"}
    for name in ("code-server", "webserver", "daemon"):
        assert dagster_env <= set(services[name]["environment"]), name


def test_dockerfile_is_multi_stage_slim_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)", text, re.M)
    assert [s for _, s in stages] == ["build", "runtime"]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER market", runtime, re.M) and "--uid 10001" in runtime
    assert "HEALTHCHECK" in runtime and "--no-index" in runtime and "--constraint" in runtime
    assert "pip wheel" in text.split("AS runtime", 1)[0] and "--constraint constraints.txt" in text
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in runtime, tool
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored


def test_dagster_commands_accept_the_flags_used(services: dict[str, dict[str, Any]]) -> None:
    """The compose commands are run against the installed CLIs' --help: a renamed flag fails here."""
    for name in ("code-server", "webserver", "daemon", "celery-worker"):
        command = services[name]["command"]
        command = command[: command.index("--")] if "--" in command else command
        words = [w for w in command if not w.startswith("-")]
        sub = words[: {"dagster": 3, "dagster-daemon": 2, "dagster-celery": 3}.get(command[0], 1)]
        help_text = subprocess.run([str(BIN / sub[0]), *sub[1:], "--help"], capture_output=True, text=True,
                                   timeout=120, check=True).stdout  # fmt: skip
        for flag in (w for w in command if w.startswith("--")):
            assert flag in help_text, (name, flag)
    for name in ("code-server", "daemon"):
        test = services[name]["healthcheck"]["test"][1:]
        sub = [w for w in test[1:] if not w.startswith("-")][:2]
        help_text = subprocess.run([str(BIN / test[0]), *sub, "--help"], capture_output=True, text=True,
                                   timeout=120, check=True).stdout  # fmt: skip
        for flag in (w for w in test if w.startswith("--")):
            assert flag in help_text, (name, flag)


def test_market_data_service_commands_exist(services: dict[str, dict[str, Any]]) -> None:
    """stream, serve and metrics are built in other issues: checked once the CLI has them."""
    pending = []
    for name in ("migrate", "stream", "serve", "metrics"):
        command = services[name]["command"]
        probe = subprocess.run([str(BIN / "market-data"), command[1], "--help"], capture_output=True, text=True,
                               timeout=120)  # fmt: skip
        if probe.returncode != 0:
            pending.append(f"market-data {command[1]}")
            continue
        for flag in (w for w in command if w.startswith("--")):
            assert flag in probe.stdout, (name, flag)
    if pending:
        pytest.skip(f"not in this CLI yet: {', '.join(pending)}")


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="Debian package docker-compose not installed")
def test_docker_compose_config_validates(tmp_path: Path) -> None:
    ok = subprocess.run(["docker-compose", "--env-file", ".env.example", "config", "-q"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.endswith("PASSWORD")}
    missing = subprocess.run(["docker-compose", "--env-file", str(empty), "config", "-q"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert missing.returncode != 0 and "set POSTGRES_PASSWORD in .env" in missing.stderr + missing.stdout
