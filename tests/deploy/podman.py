"""The container engine of tests/deploy/test_stack.py: podman with the project's
containers.conf, its Docker-compatible API socket (``podman system service``) for
docker-compose, and the health checks run on a schedule.

Podman runs a container's HEALTHCHECK from a systemd timer; these machines have no
systemd, so nothing would ever run it and compose's ``condition: service_healthy``
would wait forever. ``HealthChecks`` is that timer: every few seconds it runs
``podman healthcheck run`` (the image's own check command, with its retries and
start period) on every running container of the project.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def engine_env() -> dict[str, str]:
    """This environment with the project's containers.conf (runc, cgroupfs, no default rlimits)."""
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))}


def missing_tools() -> list[str]:
    return [tool for tool in ("podman", "runc", "debootstrap", "docker-compose") if shutil.which(tool) is None]


def podman(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=engine_env())
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def build_images(timeout: float) -> str:
    """Every Dockerfile target, by deploy/podman/build (which makes the local base first); its report."""
    result = subprocess.run([str(ROOT / "deploy" / "podman" / "build")], capture_output=True, text=True,
                            timeout=timeout, env=engine_env(), cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"deploy/podman/build failed:\n{result.stdout}\n{result.stderr[-4000:]}")
    return result.stdout


class ApiService:
    """``podman system service`` on a private socket: the Docker API docker-compose talks to."""

    def __init__(self, folder: Path):
        self.socket = folder / "podman.sock"
        self.proc: subprocess.Popen | None = None
        self._log = folder / "podman-service.log"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 30.0) -> ApiService:
        log = open(self._log, "ab")  # noqa: SIM115 - the child holds it; closed with the process
        self.proc = subprocess.Popen(["podman", "system", "service", "--time=0", self.docker_host],
                                     stdout=log, stderr=subprocess.STDOUT, env=engine_env())
        log.close()
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start: {self._log.read_text()[-2000:]}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def containers(project: str, service: str | None = None, *, all_states: bool = False) -> list[dict]:
    """``podman inspect`` of the project's containers (of one service), oldest first."""
    args = ["ps", "--format", "{{.ID}}", "--filter", f"label={PROJECT_LABEL}={project}"]
    if service:
        args += ["--filter", f"label={SERVICE_LABEL}={service}"]
    if all_states:
        args.append("--all")
    ids = podman(*args).stdout.split()
    if not ids:
        return []
    found = json.loads(podman("inspect", *ids).stdout)
    return sorted(found, key=lambda c: c["Created"])


def health_status(container: dict) -> str:
    state = container["State"]
    return (state.get("Health") or state.get("Healthcheck") or {}).get("Status", "")


class HealthChecks:
    """Runs the project's containers' health checks every ``interval`` seconds in a thread."""

    def __init__(self, project: str, interval: float = 3.0):
        self.project = project
        self.interval = interval
        # Container id -> when a check of it first passed (just after it ended): podman keeps
        # only the last few results, so the first one is remembered here.
        self.first_passed: dict[str, dt.datetime] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="podman-healthchecks", daemon=True)

    def __enter__(self) -> HealthChecks:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                ids = podman("ps", "--no-trunc", "--format", "{{.ID}}", "--filter", f"label={PROJECT_LABEL}={self.project}",
                             "--filter", "status=running", check=False).stdout.split()
                for cid in ids:
                    # Exit 1 is an unhealthy result, already recorded in the container's state.
                    if podman("healthcheck", "run", cid, timeout=30, check=False).returncode == 0:
                        self.first_passed.setdefault(cid, dt.datetime.now(dt.UTC))
            except subprocess.TimeoutExpired:
                continue
