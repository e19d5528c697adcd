"""Faults mid-session: kill -9 of the STT, LLM or TTS process that serves a session, with a second
process of the same service as the fallback; a remote backend that accepts and never answers.

The session must report the failure, serve the turn from the fallback or the next turn, and go on;
the services' shared ledger meters every turn once and none twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.orchestrator.client import LLM, TTS, AgentClient, session_config
from tests.orchestrator.conftest import write_mesh
from tests.reliability.fuzz import ALLOWED_NAMES
from tests.speech import speak
from voicemesh.mesh import MeshConfig
from voicemesh.metering.ledger import open_store
from voicemesh.process import ServiceProcess
from voicemesh.v1 import agent_pb2, common_pb2

pytestmark = pytest.mark.slow

ARGS = {
    "stt": ["--workers", "1", "--threads", "1"],
    "llm": ["--preload", LLM, "--llama-threads", "1", "--temperature", "0"],
    "tts": ["--preload", TTS, "--piper-workers", "1"],
}


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> str:
    """One SQLite ledger every service process of this module records usage in (no API keys)."""
    return f"sqlite:///{tmp_path_factory.mktemp('ledger')}/ledger.db"


def metered(*args: str, url: str) -> list[str]:
    return [*args, "--ledger", url, "--no-auth"]


@pytest.fixture(scope="module")
def fallbacks(tmp_path_factory, ledger) -> Iterator[dict[str, ServiceProcess]]:
    """One STT, LLM and TTS process: the fallback of a killed primary, and the server of the other modalities."""
    logs = tmp_path_factory.mktemp("fallbacks")
    procs = {m: ServiceProcess(m, args=["--metrics-port", "-1", *metered(*ARGS[m], url=ledger)],
                               log_path=logs / f"{m}.log").start() for m in ARGS}
    try:
        for proc in procs.values():
            proc.wait_serving()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


def failure_reported(s: AgentClient, dead: str) -> bool:
    """An error event with a documented code and a message, or a per-turn fallback entry naming the dead address."""
    for error in s.of("error"):
        assert error.code in ALLOWED_NAMES and error.code != "OK" and error.message, error
    named = any(dead in entry and "UNAVAILABLE" in entry for m in s.of("metrics") for entry in m.fallbacks)
    return bool(s.of("error")) or named


async def _until_killed(s: AgentClient, modality: str, primary: ServiceProcess) -> None:
    """Start a turn and kill -9 the primary while it serves that turn."""
    if modality == "stt":
        s.say(speak("Tell me something about the ocean and the fish that live in it."))
        await s.wait_for(lambda e: e.kind == "user_transcript", timeout=60)  # the STT stream is live
    else:
        s.send(text="Tell me a long story about a dragon who learns to sing.")
        kind = "agent_text" if modality == "llm" else "agent_audio"
        await s.wait_for(lambda e: e.kind == kind, timeout=90)
    primary.proc.kill()
    primary.proc.wait(10)


@pytest.mark.parametrize("modality", ["stt", "llm", "tts"])
async def test_kill_9_mid_session_fails_over_and_the_session_goes_on(fallbacks, ledger, service_process, tmp_path,
                                                                     modality):
    primary = service_process(modality, args=metered(*ARGS[modality], url=ledger))
    tables = {m: {"*": [fallbacks[m].address]} for m in ARGS}
    tables[modality] = {"*": [primary.address, fallbacks[modality].address]}  # a fresh orchestrator: primary first
    orchestrator = service_process("orchestrator", args=["--mesh", str(write_mesh(tmp_path, MeshConfig(tables))),
                                                         "--max-tokens", "40"])
    config = session_config(first_result_timeout_ms=5000)
    async with AgentClient(orchestrator.address, config) as s:
        s.start_audio()
        await _until_killed(s, modality, primary)
        killed_turn = max([e.event.turn_id for e in s.events if e.kind == "turn_done"], default=0) + 1
        # The turn that lost its service ends: served by the fallback, or with an error.
        await s.wait_for(lambda e: (e.kind == "turn_done" and e.event.turn_id >= killed_turn) or e.kind == "error",
                         timeout=120)
        await s.wait_for(lambda e: e.kind == "turn_done" and e.event.turn_id >= killed_turn, timeout=120)
        # The session goes on: the next turn is answered in full (transcript, text and audio) by the fallback.
        if modality == "stt":
            s.say(speak("What is the capital of France?"))
        else:
            s.send(text="What is the capital of France?")
        done = await s.wait_for(lambda e: e.kind == "turn_done" and e.event.turn_id > killed_turn, timeout=120)
        served = done.event.turn_id
        assert s.agent_text(served) and s.agent_audio(served), s.of("error")
        assert failure_reported(s, primary.address), [list(m.fallbacks) for m in s.of("metrics")]
        if modality == "stt":
            assert any(t.text.strip() for t in s.of("user_transcript", served) if t.final)
        assert orchestrator.proc.poll() is None and fallbacks[modality].proc.poll() is None
        assert not s.call.done()  # the session stream is still open
        session_id = s.of("started")[0].session_id
        done_turns = sorted(t.turn_id for t in s.of("turn_done"))
    store = open_store(ledger)
    try:
        records = [r for r in store.usage() if r.session_id == session_id]
    finally:
        store.close()
    # The ledger: every turn is metered once, none twice. Usage of the one stream that was on the killed
    # process when it died is lost with it (a service records a stream's usage when the stream ends).
    tts_per_turn = Counter(r.turn for r in records if r.service == "tts")
    llm_generations = sum(1 for r in records if r.service == "llm")
    assert all(n == 1 for n in tts_per_turn.values()), tts_per_turn
    for turn in done_turns:
        if not (modality == "tts" and turn == killed_turn):
            assert tts_per_turn[turn] == 1, (turn, tts_per_turn)
    lost = 1 if modality == "llm" else 0
    assert len(done_turns) - lost <= llm_generations <= len(done_turns), (llm_generations, done_turns)
    assert len({r.id for r in records}) == len(records)


async def test_remote_backend_that_never_answers_is_a_stall_and_falls_back(fallbacks, service_process, tmp_path):
    """An OpenAI-compatible base_url that accepts connections and never answers: a stall, then the fallback."""
    held: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda _r, w: held.append(w), "127.0.0.1", 0)
    hang = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    try:
        tables = {m: {"*": [fallbacks[m].address]} for m in ARGS}
        orchestrator = service_process("orchestrator", args=["--mesh", str(write_mesh(tmp_path, MeshConfig(tables))),
                                                             "--max-tokens", "40"])
        config = session_config(first_result_timeout_ms=2000)
        remote = agent_pb2.ModelSpec(descriptor="openai/gpt-4o-mini",
                                     backend=common_pb2.BackendOptions(base_url=hang, api_key="test"))
        del config.llm.candidates[:]
        config.llm.candidates.extend([remote, agent_pb2.ModelSpec(descriptor=LLM)])
        async with AgentClient(orchestrator.address, config) as s:
            s.send(text="What is the capital of France?")
            done = await s.turn_done(1, timeout=120)
            assert done.text
            metrics = s.metrics(1)
            assert metrics.llm_model == LLM
            assert metrics.fallbacks and metrics.fallbacks[0].startswith("openai/gpt-4o-mini@"), metrics.fallbacks
            assert "DEADLINE_EXCEEDED" in metrics.fallbacks[0], metrics.fallbacks
            assert held, "the hanging server never saw the LLM service connect"
    finally:
        for writer in held:
            writer.close()
        server.close()

