"""deploy/helm/values.yaml (Dagster's chart) and deploy/k8s/ (stream, serve) checked by parsing.

No cluster here: the checks are what would break a rollout or drift from docker-compose.yml: the
run launcher and coordinator, the code location's module, one image everywhere, the same commands
and health endpoints as the compose services, non-root pods, one stream replica.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for p in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_helm_values_use_the_k8s_run_launcher_queue_and_external_stores(values: dict[str, Any]) -> None:
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    assert coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] > 0
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == "market_assets.definitions"
    assert deployment["port"] == 4000 and deployment["podSecurityContext"]["runAsNonRoot"]
    assert deployment["image"]["tag"] != "latest", "runs of one release must use one image"
    assert (
        values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    )
    assert values["generatePostgresqlPasswordSecret"] is False and "postgresqlPassword" not in values["postgresql"]
    secrets = {"market-data-secrets"}
    assert {s["name"] for s in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]} == secrets
    assert {s["name"] for s in deployment["envSecrets"]} == secrets


def test_stream_and_serve_manifests_match_the_compose_services(
    values: dict[str, Any], manifests: dict[tuple[str, str], dict[str, Any]], compose: dict[str, Any]
) -> None:
    image = values["dagster-user-deployments"]["deployments"][0]["image"]
    expected_image = f"{image['repository']}:{image['tag']}"
    for name in ("stream", "serve"):
        deployment = manifests[("Deployment", f"market-{name}")]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == expected_image, name
        assert container["command"] == compose[name]["command"], name
        assert (
            pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["allowPrivilegeEscalation"] is False
        )
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        command = container["command"]
        port = int(command[command.index("--health-port" if name == "stream" else "--port") + 1])
        for probe in ("readinessProbe", "livenessProbe"):
            http = container[probe]["httpGet"]
            assert http["path"] == "/healthz" and ports[http["port"]] == port, (name, probe)
        assert container["resources"]["limits"] and container["resources"]["requests"]
        assert (
            deployment["spec"]["selector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
    stream = manifests[("Deployment", "market-stream")]["spec"]
    assert stream["replicas"] == 1 and stream["strategy"]["type"] == "Recreate"  # one Alpaca connection
    service = manifests[("Service", "market-serve")]["spec"]
    assert service["ports"][0]["targetPort"] == "ws"
    hpa = manifests[("HorizontalPodAutoscaler", "market-serve")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "market-serve" and hpa["minReplicas"] >= 2
