"""Supervision of a local mesh's processes (``voicemesh up``), and the report ``voicemesh status`` prints.

A service that exits is started again on the same port after a backoff (1 s, doubling while it keeps dying
soon after each start, at most 30 s), and each exit and restart is logged. Clients reconnect by themselves:
a gRPC channel to that address connects again once the service listens. ``up`` gives up, and stops the
whole mesh, only when a service cannot start at all: it died ``max_failures`` times in a row before it
ever reported SERVING. Each service's state, restarts and start time go to the state dir's ``up.json``,
which ``voicemesh status`` reads and completes with a health check.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from voicemesh.process import health


def serving_state(name: str, address: str, timeout: float = 0.5) -> str:
    """'SERVING' or what the service's health check says ('no answer' when nothing does). The edges have no
    gRPC health service: the Wyoming server serves once it answers ``describe``, the gateway once its console
    page loads."""
    if name == "gateway":
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{address}/console", timeout=timeout) as response:
                return "SERVING" if response.status == 200 else f"HTTP {response.status}"
        except OSError:
            return "no answer"
    if name == "wyoming":
        from voicemesh.edges.wyoming.probe import describe

        return "SERVING" if describe(address, timeout=timeout) is not None else "no answer"
    return health(address, timeout=timeout) or "no answer"

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    """What the supervisor knows of one service (written to ``up.json``)."""

    state: str = "starting"  # starting, serving, restarting (waiting out its backoff), failed
    restarts: int = 0
    started_at: float = 0.0  # time.time() when the running process was started
    serving_since: float = 0.0  # time.time() when it last reported SERVING (0: not since its start)
    exit_code: int | None = None  # of the last process that exited
    failures: int = 0  # exits in a row before reaching SERVING
    streak: int = 0  # exits in a row soon after a start: the backoff doubles with it
    restart_at: float = 0.0  # time.monotonic() of the next start, while restarting


class Supervisor:
    """Watches the processes of a ``LocalMesh``; ``step`` is called every half second by ``up``."""

    def __init__(self, mesh, *, say: Callable[[str], None], max_failures: int = 3, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, stable_s: float = 30.0):
        self.mesh = mesh
        self.say = say
        self.max_failures = max_failures
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s  # a process that ran this long was not crash-looping: the backoff resets

    def step(self) -> str | None:
        """Restart what died, note what came up; returns why ``up`` must stop, or None."""
        changed = False
        for name, proc in self.mesh.processes.items():
            state = self.mesh.states[name]
            if state.state in ("starting", "serving") and proc.proc is not None and proc.proc.poll() is not None:
                changed = True
                if not self._exited(name, proc, state):
                    self.mesh.write_state()
                    return (f"{name} cannot start: it exited {state.failures} times in a row before reporting "
                            f"SERVING (last exit code {state.exit_code}); see {proc.log_path}")
            elif state.state == "restarting" and time.monotonic() >= state.restart_at:
                proc.start()
                state.state, state.started_at, state.serving_since = "starting", time.time(), 0.0
                state.restarts += 1
                self.say(f"voicemesh up: restarted {name} (pid {proc.proc.pid}, restart {state.restarts})")
                changed = True
            elif state.state == "starting" and serving_state(name, proc.address) == "SERVING":
                state.state, state.serving_since, state.failures = "serving", time.time(), 0
                self.say(f"voicemesh up: {name} is SERVING again after {time.time() - state.started_at:.1f} s")
                changed = True
        if changed:
            self.mesh.write_state()
        return None

    def _exited(self, name: str, proc, state: ServiceState) -> bool:
        """Note an exit and schedule the restart; False when the service is given up (``failed``)."""
        state.exit_code = proc.stop()  # reaps it and closes its log; the next start appends to the log
        lived_s = time.time() - state.started_at
        state.failures = state.failures + 1 if state.state == "starting" else 0
        state.streak = state.streak + 1 if lived_s < self.stable_s else 1
        state.serving_since = 0.0
        exited = f"voicemesh up: {name} exited with code {state.exit_code} after {lived_s:.1f} s"
        if state.failures >= self.max_failures:
            state.state = "failed"
            self.say(f"{exited}. Its log ends with:\n{proc.log_tail(10)}")
            return False
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (state.streak - 1))
        state.state, state.restart_at = "restarting", time.monotonic() + delay
        self.say(f"{exited}; restarting it in {delay:.1f} s. Its log ends with:\n{proc.log_tail(10)}")
        return True


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status_report(state_dir: Path, timeout: float = 1.0) -> tuple[bool, list[str]]:
    """Lines that describe the mesh ``voicemesh up`` runs from ``state_dir``; True when every service serves."""
    path = state_dir / "up.json"
    if not path.exists():
        return False, [f"no `voicemesh up` is running from {state_dir} (no up.json)"]
    state = json.loads(path.read_text())
    if not _alive(state.get("pid")):
        return False, [f"the `voicemesh up` that wrote {path} (pid {state.get('pid')}) is gone"]
    now = time.time()
    lines = [f"voicemesh up (pid {state['pid']}), state in {state_dir}",
             f"{'SERVICE':<13}{'ADDRESS':<22}{'PID':<9}{'STATE':<12}{'HEALTH':<13}{'RESTARTS':<10}UPTIME"]
    every_serving = True
    for name, service in state["services"].items():
        supervised = service.get("supervisor", {})
        checked = serving_state(name, service["address"], timeout=timeout)
        every_serving = every_serving and checked == "SERVING"
        started = supervised.get("started_at") or 0.0
        uptime = _age(now - started) if started and supervised.get("state") in ("starting", "serving") else "-"
        lines.append(f"{name:<13}{service['address']:<22}{service.get('pid') or '-'!s:<9}"
                     f"{supervised.get('state', '?'):<12}{checked:<13}{supervised.get('restarts', 0)!s:<10}{uptime}")
    return every_serving, lines


def state_of(states: dict[str, ServiceState], name: str) -> dict:
    """The ``up.json`` entry of one service's supervision (what ``status_report`` reads)."""
    state = states.get(name)
    if state is None:
        return {}
    entry = asdict(state)
    del entry["restart_at"]  # a monotonic time: meaningless in another process
    return entry
