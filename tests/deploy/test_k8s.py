"""deploy/k8s, validated offline against the Kubernetes JSON schemas
(kubernetes-validate ships them) and checked for what the mesh needs: a
Deployment and a headless Service per service, gRPC probes on the service
port, sized resource requests, and an autoscaler for the orchestrator."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from voicemesh.mesh import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s"
# Oldest version with stable gRPC probes, and the newest the package knows.
VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())


def build(directory: Path) -> list[dict]:
    """The resources `kustomize build` emits for a base that only lists resources.

    Any other kustomization field would transform them, which this reader does
    not do, so it refuses them rather than validate something else.
    """
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    extra = set(kustomization) - {"apiVersion", "kind", "resources"}
    if extra:
        raise ValueError(f"kustomization fields this reader does not apply: {sorted(extra)}")
    docs = []
    for resource in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((directory / resource).read_text()) if d)
    return docs


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict]:
    docs = build(BASE)
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(by_key) == len(docs), "duplicate kind/name"
    return by_key


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def quantity(text: str | int) -> float:
    """A Kubernetes quantity as a number (bytes or cores)."""
    text = str(text)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_resource_matches_the_kubernetes_schema(resources, version):
    for doc in resources.values():
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_catches_a_bad_probe(resources):
    bad = yaml.safe_load(yaml.safe_dump(resources[("Deployment", "stt")]))
    container(bad)["readinessProbe"]["grpc"]["portt"] = 50061
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)


def test_only_plain_resource_lists_are_read(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(ValueError, match="namePrefix"):
        build(tmp_path)


@pytest.mark.parametrize("service", sorted(DEFAULT_PORTS))
def test_deployment_and_headless_service_per_service(resources, service):
    port = DEFAULT_PORTS[service]
    deployment, svc = resources[("Deployment", service)], resources[("Service", service)]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"].items() <= labels.items()
    grpc_port = next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")
    assert grpc_port["port"] == port
    c = container(deployment)
    assert {"name": "grpc", "containerPort": port} in c["ports"]
    assert c["image"].split(":")[0] == f"voicemesh-{service}"
    assert c["args"] == ["voicemesh", "serve", service]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["VOICEMESH_PORT"] == str(port) and env["VOICEMESH_HOST"] == "0.0.0.0"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("service", sorted(DEFAULT_PORTS))
def test_grpc_probes_on_the_service_port(resources, service):
    c = container(resources[("Deployment", service)])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": DEFAULT_PORTS[service]}, probe


@pytest.mark.parametrize("service", sorted(DEFAULT_PORTS))
def test_resources_requested_and_bounded(resources, service):
    r = container(resources[("Deployment", service)])["resources"]
    assert quantity(r["requests"]["cpu"]) > 0 and quantity(r["requests"]["memory"]) > 0
    assert quantity(r["limits"]["memory"]) >= quantity(r["requests"]["memory"])
    assert quantity(r["limits"]["cpu"]) >= quantity(r["requests"]["cpu"])


def test_orchestrator_autoscales_on_cpu(resources):
    hpa = resources[("HorizontalPodAutoscaler", "orchestrator")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "orchestrator"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # Utilization targets are relative to the CPU request, and the HPA owns the replica count.
    deployment = resources[("Deployment", "orchestrator")]
    assert "cpu" in container(deployment)["resources"]["requests"]
    assert "replicas" not in deployment["spec"]


def test_orchestrator_mesh_names_the_headless_services(resources):
    env = {e["name"]: e["value"] for e in container(resources[("Deployment", "orchestrator")])["env"]}
    for service in ("stt", "llm", "tts", "realtime", "avatar"):
        host, port = env[f"VOICEMESH_MESH_{service.upper()}"].split(":")
        svc = resources[("Service", host)]
        assert svc["spec"]["clusterIP"] == "None"
        assert int(port) == DEFAULT_PORTS[service] == svc["spec"]["ports"][0]["port"]


def test_pods_run_as_the_images_user(resources):
    from tests.deploy import dockerfile

    runtime = " ".join(dockerfile.load(ROOT / "Dockerfile")["runtime"].all("RUN"))
    uid, gid = re.search(r"--uid (\d+)", runtime).group(1), re.search(r"--gid (\d+)", runtime).group(1)
    for service in DEFAULT_PORTS:
        context = resources[("Deployment", service)]["spec"]["template"]["spec"]["securityContext"]
        assert (str(context["runAsUser"]), str(context["runAsGroup"])) == (uid, gid), service


def test_wyoming_edge_reaches_stt_and_tts_by_name_with_a_key_from_a_secret(resources):
    deployment, svc = resources[("Deployment", "wyoming")], resources[("Service", "wyoming")]
    c = container(deployment)
    assert c["args"] == ["voicemesh", "serve", "wyoming"] and c["image"].split(":")[0] == "voicemesh-wyoming"
    assert {"name": "wyoming", "containerPort": 10300} in c["ports"]
    assert svc["spec"]["ports"] == [{"name": "wyoming", "port": 10300, "targetPort": "wyoming"}]
    assert svc["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    env = {e["name"]: e for e in c["env"]}
    for modality, port in (("STT", 50061), ("TTS", 50063)):
        host, _, value = env[f"VOICEMESH_MESH_{modality}"]["value"].partition(":")
        assert resources[("Service", host)]["spec"]["clusterIP"] == "None" and int(value) == port
    secret = env["VOICEMESH_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert secret["name"] == "voicemesh-wyoming" and secret["optional"] is True
    assert c["readinessProbe"]["exec"]["command"][-1] == "127.0.0.1:10300"
    assert c["livenessProbe"]["tcpSocket"] == {"port": 10300}
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("service", sorted(DEFAULT_PORTS))
def test_termination_grace_covers_the_prestop_wait_and_the_drain(resources, service):
    """Kubernetes counts terminationGracePeriodSeconds from the start of preStop: it must hold the preStop
    sleep, the service's own grace period (VOICEMESH_GRACE_S, or the runtime's default) and the closing of
    streams still open at its end, or the pod is killed mid-drain."""
    from voicemesh.runtime.server import ServerSettings

    spec = resources[("Deployment", service)]["spec"]["template"]["spec"]
    c = container(resources[("Deployment", service)])
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    env = {e["name"]: e.get("value") for e in c["env"]}
    grace_s = float(env.get("VOICEMESH_GRACE_S", ServerSettings.grace_s))
    closing_s = 3.0  # late streams get their status (1 s), then unary calls get a moment (1 s), then exit
    assert spec["terminationGracePeriodSeconds"] >= float(command[1]) + grace_s + closing_s


@pytest.mark.parametrize("service", ("stt", "llm", "tts", "realtime"))
def test_local_model_services_mount_the_models_volume_read_only(resources, service):
    pod = resources[("Deployment", service)]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "models"]
    claim = volume["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    assert ("PersistentVolumeClaim", claim["claimName"]) in resources
    main = container(resources[("Deployment", service)])
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in main["volumeMounts"]
    assert {"name": "VOICEMESH_MODELS_DIR", "value": "/models"} in main["env"]


def test_the_models_claim_can_be_read_by_every_replica(resources):
    claim = resources[("PersistentVolumeClaim", "voicemesh-models")]
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
