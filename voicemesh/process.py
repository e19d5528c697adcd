"""Start and stop service processes (for ``voicemesh up``, tests and benchmarks)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from voicemesh import tls
from voicemesh.settings import environment

log = logging.getLogger(__name__)

# Set on a service this module starts: the pid of the process that started it (see runtime.server).
PARENT_ENV = "VOICEMESH_PARENT_PID"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def health(address: str, service: str = "", timeout: float = 1.0,
           credentials: grpc.ChannelCredentials | None = None) -> str | None:
    """The health status name at ``address``, or None when it does not answer.

    Over TLS with ``credentials``, else with ``VOICEMESH_TLS_*`` from the environment (voicemesh.tls),
    else plaintext.
    """
    with tls.channel(address, credentials=credentials) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return None
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


class ServiceProcess:
    """``voicemesh serve SERVICE`` in a child process on a loopback port."""

    def __init__(
        self,
        service: str,
        *,
        port: int | None = None,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        log_path: str | Path | None = None,
        host: str = "127.0.0.1",
        credentials: grpc.ChannelCredentials | None = None,
    ):
        self.service = service
        self.host = host
        self.port = port or free_port(host)
        self.args = list(args)
        self.env = {**environment(), **(env or {})}
        self.log_path = Path(log_path) if log_path else None
        self.credentials = credentials  # TLS client credentials for the health checks (None: from env)
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> ServiceProcess:
        cmd = [sys.executable, "-m", "voicemesh.cli", "serve", self.service, "--host", self.host,
               "--port", str(self.port), *self.args]
        if self.log_path:
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # The service stops (draining, as on SIGTERM) if this process dies without stopping it.
        env = {**self.env, PARENT_ENV: str(os.getpid())}
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log_file or subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        log.info("started %s (pid %d) on %s", self.service, self.proc.pid, self.address)
        return self

    def wait_serving(self, timeout: float = 120.0) -> ServiceProcess:
        """Block until health is SERVING; raise with the log tail if the process dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.service} exited with code {self.proc.returncode}:\n{self.log_tail()}")
            if health(self.address, credentials=self.credentials) == "SERVING":
                return self
            time.sleep(0.1)
        raise TimeoutError(f"{self.service} at {self.address} not SERVING after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", self.service, timeout)
                self.proc.kill()
                self.proc.wait()
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self.start().wait_serving()

    def __exit__(self, *exc: object) -> None:
        self.stop()
