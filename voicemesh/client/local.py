"""A whole mesh on this machine: STT, LLM, TTS and the orchestrator as child processes (and the realtime and
avatar services when asked for).

Used by ``voicemesh up`` (in the foreground) and ``voicemesh talk`` (when no
mesh answers, for the duration of the command). The state directory holds
the mesh config the orchestrator reads (``mesh.json``), one log file per
service (``logs/``), ``up.json`` (addresses and process ids), the usage
ledger every service records into (``ledger.db``) and, with auth on (the
default), the local API key (``api_key``) that ``talk`` and the SDK send.
With ``wyoming_port`` set, a Wyoming server for Home Assistant runs over the
STT and TTS services too, calling them with that key; with ``console_port`` set, the HTTP gateway
(``voicemesh serve gateway``) runs over the mesh, and its browser console is at ``console_url``.
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
from voicemesh.client.supervise import ServiceState, state_of
from voicemesh.mesh import DEFAULT_PORTS, MeshConfig
from voicemesh.private import private_dir, private_file
from voicemesh.process import ServiceProcess

log = logging.getLogger(__name__)

MODEL_SERVICES = ("stt", "llm", "tts")
# The clients of the others first (the Wyoming edge, the orchestrator), so they go down first.
STOP_ORDER = ("gateway", "wyoming", "orchestrator", "avatar", "realtime", "tts", "llm", "stt")
DEFAULT_AVATAR = "local/ada"


def port_offsets() -> dict[str, int]:
    """Each service's port relative to the orchestrator's (stt +1, llm +2, tts +3, realtime +4, avatar +5,
    the gateway with the console +6)."""
    base = DEFAULT_PORTS["orchestrator"]
    offsets = {name: DEFAULT_PORTS[name] - base for name in ("orchestrator", *MODEL_SERVICES, "realtime", "avatar")}
    return {**offsets, "gateway": max(offsets.values()) + 1}


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
    avatar: str | None = None  # also run the avatar service, preloading this avatar
    preload: bool = True
    auth: bool = True
    wyoming_port: int | None = None  # also run a Wyoming server (voicemesh serve wyoming) on this port
    console: bool = False  # also run the gateway (its /console and /v1 routes)
    console_port: int | None = None  # on this port (None: the port base +6)
    grace_s: float = 5.0
    log_level: str = "INFO"
    # Fair shares, passed to every service (the defaults of `voicemesh serve`; 0 turns one off).
    max_streams_per_key: int = 16
    idle_timeout_s: float = 120.0
    max_stream_s: float = 0.0


class LocalMesh:
    """Starts, watches and stops the four services of a local mesh."""

    def __init__(self, options: LocalMeshOptions):
        self.options = options
        self.state_dir = Path(options.state_dir).expanduser()
        self.services = (*MODEL_SERVICES, *(("realtime",) if options.realtime else ()),
                         *(("avatar",) if options.avatar else ()))
        self.ports = {name: options.port_base + offset for name, offset in port_offsets().items()
                      if name == "orchestrator" or name in self.services}
        if options.wyoming_port is not None:
            self.ports["wyoming"] = options.wyoming_port
        if options.console:
            self.ports["gateway"] = options.console_port or options.port_base + port_offsets()["gateway"]
        self.mesh_path = self.state_dir / "mesh.json"
        self.log_dir = self.state_dir / "logs"
        self.ledger_url = f"sqlite:///{self.state_dir / 'ledger.db'}"
        self.key_path = self.state_dir / "api_key"
        self.api_key: str | None = None
        self.processes: dict[str, ServiceProcess] = {}
        self.states: dict[str, ServiceState] = {}  # kept by voicemesh.client.supervise while `up` runs

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
        private_dir(self.state_dir)  # the key, the ledger and logs: for this user only
        private_dir(self.log_dir)
        client_host = self.address("stt").rpartition(":")[0]
        MeshConfig({m: {"*": [f"{client_host}:{self.ports[m]}"]} for m in self.services}).write(self.mesh_path)
        common = ["--grace-s", str(self.options.grace_s), "--log-level", self.options.log_level,
                  "--max-streams-per-key", str(self.options.max_streams_per_key),
                  "--idle-timeout-s", str(self.options.idle_timeout_s), "--max-stream-s", str(self.options.max_stream_s)]
        models = {"stt": self.options.stt, "llm": self.options.llm, "tts": self.options.tts,
                  "realtime": "voicemesh/cascade", "avatar": self.options.avatar}
        # Every service meters into one ledger; with auth (the default) each RPC needs the local key.
        metering = {"VOICEMESH_LEDGER": self.ledger_url, "VOICEMESH_AUTH": "1" if self.options.auth else "0",
                    # the services' default models folder is <state dir>/models: this state dir's, not ~/.voicemesh's
                    "VOICEMESH_STATE_DIR": str(self.state_dir)}
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
            private_file(log_path).write_bytes(b"")  # a fresh log per run
            self.processes[name] = ServiceProcess(
                name, port=self.ports[name], host=self.options.host, args=args, env=env, log_path=log_path,
            ).start()
            self.states[name] = ServiceState(started_at=time.time())
        if "wyoming" in self.ports:
            self._start_wyoming()
        if "gateway" in self.ports:
            self._start_gateway()
        self.write_state()
        return self

    def _start_wyoming(self) -> None:
        """The Wyoming edge: a client of the STT and TTS services, with the local key (Wyoming sends none)."""
        args = ["--log-level", self.options.log_level, "--mesh", str(self.mesh_path), "--stt", self.options.stt, "--tts", self.options.tts]
        if self.options.auth:
            args += ["--api-key-file", str(self.key_path)]
        log_path = self.log_dir / "wyoming.log"
        private_file(log_path).write_bytes(b"")
        self.processes["wyoming"] = ServiceProcess("wyoming", port=self.ports["wyoming"], host=self.options.host,
                                                   args=args, log_path=log_path).start()
        self.states["wyoming"] = ServiceState(started_at=time.time())

    def _start_gateway(self) -> None:
        """The HTTP gateway: the console's sessions go to the orchestrator; browsers bring their own key."""
        args = ["--log-level", self.options.log_level, "--mesh", str(self.mesh_path),
                "--orchestrator", self.orchestrator_address]
        log_path = self.log_dir / "gateway.log"
        private_file(log_path).write_bytes(b"")
        # The ledger, for the console's usage panel (each page sees only its own key's usage).
        self.processes["gateway"] = ServiceProcess("gateway", port=self.ports["gateway"], host=self.options.host,
                                                   args=args, env={"VOICEMESH_LEDGER": self.ledger_url},
                                                   log_path=log_path).start()
        self.states["gateway"] = ServiceState(started_at=time.time())

    @property
    def console_url(self) -> str | None:
        return f"http://{self.address('gateway')}/console" if "gateway" in self.ports else None

    @property
    def wyoming_uri(self) -> str | None:
        return f"tcp://{self.address('wyoming')}" if "wyoming" in self.ports else None

    def write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "mesh": str(self.mesh_path),
            "ledger": self.ledger_url,
            "api_key_file": str(self.key_path) if self.options.auth else None,
            "services": {name: {"address": self.address(name), "pid": proc.proc.pid if proc.proc else None,
                                "log": str(proc.log_path), "supervisor": state_of(self.states, name)}
                         for name, proc in self.processes.items()},
        }
        # Written whole, then renamed: `voicemesh status` never reads half a file.
        path = self.state_dir / "up.json"
        path.with_suffix(".tmp").write_text(json.dumps(state, indent=2) + "\n")
        path.with_suffix(".tmp").replace(path)

    def wait_serving(self, timeout: float = 180.0, on_ready=None) -> None:
        """Block until every service reports SERVING (``on_ready(name, seconds)`` as each one does)."""
        started = time.monotonic()
        for name in (*self.services, "orchestrator"):
            remaining = max(1.0, timeout - (time.monotonic() - started))
            self.processes[name].wait_serving(remaining)
            self.states[name].state, self.states[name].serving_since = "serving", time.time()
            self.write_state()
            if on_ready is not None:
                on_ready(name, time.monotonic() - started)
        for edge in ("wyoming", "gateway"):
            if edge in self.processes:
                self._wait_edge(edge, max(1.0, timeout - (time.monotonic() - started)))
                self.states[edge].state, self.states[edge].serving_since = "serving", time.time()
                self.write_state()
                if on_ready is not None:
                    on_ready(edge, time.monotonic() - started)

    def _wait_edge(self, name: str, timeout: float) -> None:
        """The edges have no gRPC health check: wait until they answer their own protocol."""
        from voicemesh.client.supervise import serving_state

        proc, deadline = self.processes[name], time.monotonic() + timeout
        while serving_state(name, self.address(name), timeout=2.0) != "SERVING":
            if proc.proc is not None and proc.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.proc.returncode}:\n{proc.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} at {self.address(name)} not answering after {timeout:.0f} s:\n"
                                   f"{proc.log_tail()}")
            time.sleep(0.2)

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
