"""A whole mesh on this machine: STT, LLM, TTS and the orchestrator as child processes.

Used by ``voicemesh up`` (in the foreground) and ``voicemesh talk`` (when no
mesh answers, for the duration of the command). The state directory holds
the mesh config the orchestrator reads (``mesh.json``), one log file per
service (``logs/``), ``up.json`` (addresses and process ids), the usage
ledger every service records into (``ledger.db``) and, with auth on (the
default), the local API key (``api_key``) that ``talk`` and the SDK send.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from voicemesh.client.session import DEFAULT_LLM, DEFAULT_STT, DEFAULT_TTS
from voicemesh.mesh import DEFAULT_PORTS, MeshConfig
from voicemesh.process import ServiceProcess

log = logging.getLogger(__name__)

MODEL_SERVICES = ("stt", "llm", "tts")
# Orchestrator first: it is the client of the others, so it goes down first.
STOP_ORDER = ("orchestrator", "realtime", "tts", "llm", "stt")


def port_offsets() -> dict[str, int]:
    """Each service's port relative to the orchestrator's (stt +1, llm +2, tts +3, realtime +4)."""
    base = DEFAULT_PORTS["orchestrator"]
    return {name: DEFAULT_PORTS[name] - base for name in ("orchestrator", *MODEL_SERVICES, "realtime")}


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port_base(host: str = "127.0.0.1", start: int = 20000, stop: int = 60000) -> int:
    """A port base whose four service ports are all free right now."""
    span = max(port_offsets().values()) + 1
    for base in range(start + os.getpid() % 997 * 4, stop, span):
        if all(port_is_free(host, base + offset) for offset in range(span)):
            return base
    raise RuntimeError(f"no {span} consecutive free ports on {host}")


@dataclass
class LocalMeshOptions:
    """What ``LocalMesh`` starts."""

    state_dir: Path
    host: str = "127.0.0.1"
    port_base: int = DEFAULT_PORTS["orchestrator"]
    stt: str = DEFAULT_STT
    llm: str = DEFAULT_LLM
    tts: str = DEFAULT_TTS
    realtime: bool = False  # also run the realtime service (the local cascade of the three models)
    preload: bool = True
    auth: bool = True
    grace_s: float = 5.0
    log_level: str = "INFO"
    # Fair shares, passed to every service (the defaults of `voicemesh serve`; 0 turns one off).
    max_streams_per_key: int = 4
    idle_timeout_s: float = 120.0
    max_stream_s: float = 0.0


class LocalMesh:
    """Starts, watches and stops the four services of a local mesh."""

    def __init__(self, options: LocalMeshOptions):
        self.options = options
        self.state_dir = Path(options.state_dir).expanduser()
        self.services = (*MODEL_SERVICES, "realtime") if options.realtime else MODEL_SERVICES
        self.ports = {name: options.port_base + offset for name, offset in port_offsets().items()
                      if name == "orchestrator" or name in self.services}
        self.mesh_path = self.state_dir / "mesh.json"
        self.log_dir = self.state_dir / "logs"
        self.ledger_url = f"sqlite:///{self.state_dir / 'ledger.db'}"
        self.key_path = self.state_dir / "api_key"
        self.api_key: str | None = None
        self.processes: dict[str, ServiceProcess] = {}

    def address(self, service: str) -> str:
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "") else self.options.host
        return f"{host}:{self.ports[service]}"

    @property
    def orchestrator_address(self) -> str:
        return self.address("orchestrator")

    def busy_ports(self) -> list[int]:
        return [port for port in self.ports.values() if not port_is_free(self.options.host, port)]

    def start(self) -> LocalMesh:
        """Write the mesh config and start the four processes (without waiting for them)."""
        busy = self.busy_ports()
        if busy:
            raise RuntimeError(f"port(s) {', '.join(map(str, busy))} on {self.options.host} are in use; "
                               "stop what holds them or pick another --port-base")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        client_host = self.address("stt").rpartition(":")[0]
        MeshConfig({m: {"*": [f"{client_host}:{self.ports[m]}"]} for m in self.services}).write(self.mesh_path)
        common = ["--grace-s", str(self.options.grace_s), "--log-level", self.options.log_level,
                  "--max-streams-per-key", str(self.options.max_streams_per_key),
                  "--idle-timeout-s", str(self.options.idle_timeout_s), "--max-stream-s", str(self.options.max_stream_s)]
        models = {"stt": self.options.stt, "llm": self.options.llm, "tts": self.options.tts,
                  "realtime": "voicemesh/cascade"}
        # Every service meters into one ledger; with auth (the default) each RPC needs the local key.
        metering = {"VOICEMESH_LEDGER": self.ledger_url, "VOICEMESH_AUTH": "1" if self.options.auth else "0"}
        if self.options.auth:
            from voicemesh.metering.keys import ensure_local_key

            self.api_key = ensure_local_key(self.ledger_url, self.key_path)
        for name in (*self.services, "orchestrator"):
            args = list(common)
            env = dict(metering)
            if name in models and self.options.preload:
                args += ["--preload", models[name]]
            if name == "llm" and self.options.llm == DEFAULT_LLM:
                # SmolLM2-135M rambles and drifts into other languages when sampled; greedy, it answers plainly
                # (as the realtime cascade does by default). A request's own sampling still wins.
                args += ["--temperature", "0"]
            if name == "realtime":  # the cascade runs the same models as the pipeline
                args += ["--cascade-stt", self.options.stt, "--cascade-llm", self.options.llm,
                         "--cascade-tts", self.options.tts]
            if name == "orchestrator":
                args += ["--mesh", str(self.mesh_path)]
                env["VOICEMESH_MESH"] = str(self.mesh_path)
            log_path = self.log_dir / f"{name}.log"
            log_path.write_bytes(b"")  # a fresh log per run
            self.processes[name] = ServiceProcess(
                name, port=self.ports[name], host=self.options.host, args=args, env=env, log_path=log_path,
            ).start()
        self._write_state()
        return self

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "mesh": str(self.mesh_path),
            "ledger": self.ledger_url,
            "api_key_file": str(self.key_path) if self.options.auth else None,
            "services": {name: {"address": self.address(name), "pid": proc.proc.pid if proc.proc else None,
                                "log": str(proc.log_path)} for name, proc in self.processes.items()},
        }
        (self.state_dir / "up.json").write_text(json.dumps(state, indent=2) + "\n")

    def wait_serving(self, timeout: float = 180.0, on_ready=None) -> None:
        """Block until every service reports SERVING (``on_ready(name, seconds)`` as each one does)."""
        started = time.monotonic()
        for name in (*self.services, "orchestrator"):
            remaining = max(1.0, timeout - (time.monotonic() - started))
            self.processes[name].wait_serving(remaining)
            if on_ready is not None:
                on_ready(name, time.monotonic() - started)

    def dead(self) -> list[str]:
        """Services whose process has exited."""
        return [name for name, p in self.processes.items() if p.proc is not None and p.proc.poll() is not None]

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every service (orchestrator first), then wait for each; returns exit codes."""
        for name in STOP_ORDER:
            proc = self.processes.get(name)
            if proc is not None and proc.proc is not None and proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGTERM)
        codes = {}
        for name in STOP_ORDER:
            proc = self.processes.get(name)
            if proc is None:
                continue
            if proc.proc is not None:
                try:  # a second SIGTERM after the server removed its handler would kill it mid-cleanup
                    proc.proc.wait(self.options.grace_s + 10)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop within %.0f s", name, self.options.grace_s + 10)
            codes[name] = proc.stop(timeout=5)
        state = self.state_dir / "up.json"
        if state.exists():
            state.unlink()
        return codes

    def __enter__(self) -> LocalMesh:
        self.start()
        try:
            self.wait_serving()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
