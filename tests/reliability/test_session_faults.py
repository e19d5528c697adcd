"""Sessions outlive a crashed model service, and a draining orchestrator ends them cleanly.

Real processes, one of each service and no fallback: kill -9 of the STT mid-utterance (then the STT is
started again on its port, as ``voicemesh up`` does), kill -9 of the TTS mid-reply, SIGTERM of the
orchestrator with a reply being spoken and an idle session. Every service and the orchestrator share one
ledger: each case leaves no duplicate record and no gap, the killed stream billed from what the
orchestrator sent it.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import grpc
import pytest

from tests.orchestrator.client import LLM, TTS, AgentClient, session_config
from tests.orchestrator.conftest import write_mesh
from tests.speech import speak
from voicemesh.mesh import MeshConfig
from voicemesh.metering.ledger import open_store
from voicemesh.process import ServiceProcess

pytestmark = pytest.mark.slow

ARGS = {
    "stt": ["--workers", "1", "--threads", "1"],
    "llm": ["--preload", LLM, "--llama-threads", "1", "--temperature", "0"],
    "tts": ["--preload", TTS, "--piper-workers", "1"],
}


def metered(url: str, *args: str) -> list[str]:
    return [*args, "--ledger", url, "--no-auth"]


@pytest.fixture
def ledger(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture
def mesh(service_process, ledger, tmp_path):
    """STT, LLM and TTS processes and an orchestrator over them, all on one ledger."""
    # The first one creates the ledger alone: services creating a new SQLite ledger at the same moment may
    # find it locked and exit at start.
    procs = {"tts": service_process("tts", args=metered(ledger, *ARGS["tts"]))}
    procs.update({m: service_process(m, args=metered(ledger, *ARGS[m]), wait=False) for m in ("stt", "llm")})
    for proc in procs.values():
        proc.wait_serving()
    path = write_mesh(tmp_path, MeshConfig({m: {"*": [p.address]} for m, p in procs.items()}))

    def orchestrator(*extra: str) -> ServiceProcess:
        return service_process("orchestrator", args=metered(ledger, "--mesh", str(path), "--max-tokens", "40",
                                                             *extra))

    return procs, orchestrator


def kill_9(proc: ServiceProcess) -> None:
    proc.proc.kill()
    proc.proc.wait(10)


def restart(proc: ServiceProcess, tmp_path) -> ServiceProcess:
    """The same service on the same port (what ``voicemesh up`` does after a crash)."""
    again = ServiceProcess(proc.service, port=proc.port, args=proc.args,
                           log_path=tmp_path / f"{proc.service}-again.log")
    again.start()
    return again


async def ledger_records(url: str, session_id: str, settle_s: float = 1.5, timeout_s: float = 15.0) -> list:
    """The session's records once they stopped changing: services commit a stream's last record as it ends."""
    store = open_store(url)
    try:
        def read() -> list:
            return sorted((r for r in store.usage() if r.session_id == session_id), key=lambda r: r.id)

        deadline = asyncio.get_running_loop().time() + timeout_s
        records, since = read(), asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - since < settle_s and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            again = read()
            if again != records:
                records, since = again, asyncio.get_running_loop().time()
        return records
    finally:
        store.close()


def assert_ledger(records: list, done_turns: list[int]) -> None:
    """No record twice; each answered turn's voice and generation metered once (the killed stream included)."""
    assert len({r.id for r in records}) == len(records), records
    tts = Counter(r.turn for r in records if r.service == "tts")
    assert all(n == 1 for n in tts.values()), tts
    for turn in done_turns:
        assert tts[turn] == 1, (turn, tts)
    llm = Counter(r.turn for r in records if r.service == "llm")
    assert all(n == 1 for n in llm.values()), llm
    assert set(done_turns) <= set(llm), (done_turns, llm)


async def test_kill_9_of_stt_mid_utterance_keeps_the_session_and_the_next_utterance_is_heard(mesh, ledger, tmp_path):
    """The STT is started again only after the bounded wait ran out: the error event comes first, then the
    words cut by the kill are heard from the replay, and the next utterance too."""
    procs, orchestrator = mesh
    orch = orchestrator()
    async with AgentClient(orch.address, session_config()) as s:
        s.start_audio()
        s.say(speak("Tell me something about the ocean and the fish that live in it."))
        await s.wait_for(lambda e: e.kind == "user_transcript", timeout=60)  # the STT stream is live
        kill_9(procs["stt"])
        # No STT answers within the bounded wait: an error event says so, and the session goes on listening.
        lost = (await s.wait_for(lambda e: e.kind == "error", timeout=30)).event
        assert lost.code == "UNAVAILABLE" and "speech-to-text" in lost.message, lost
        assert not s.call.done(), "the session ended with its STT service"
        again = restart(procs["stt"], tmp_path)
        try:
            again.wait_serving()
            # The utterance the kill cut is heard from the replay, and answered.
            first = await s.wait_for(lambda e: e.kind == "turn_done", timeout=120)
            assert "ocean" in " ".join(t.text.lower() for t in s.of("user_transcript") if t.final), \
                s.of("user_transcript")
            s.say(speak("What is the capital of France?"))
            done = await s.wait_for(lambda e: e.kind == "turn_done" and e.event.turn_id > first.event.turn_id,
                                    timeout=120)
            heard = [t.text for t in s.of("user_transcript", done.event.turn_id) if t.final]
            assert any("france" in t.lower() for t in heard), heard
            assert s.agent_text(done.event.turn_id) and s.agent_audio(done.event.turn_id)
            assert not s.call.done()
            session_id = s.of("started")[0].session_id
            done_turns = sorted(t.turn_id for t in s.of("turn_done"))
            s.close()
            await s.ended(60)
        finally:
            again.stop()
    records = await ledger_records(ledger, session_id)
    assert_ledger(records, done_turns)
    # The killed stream is billed from the audio the orchestrator sent it (reported to the client too), in
    # the one record the STT had been growing: the ledger's STT usage is exactly what the client was told.
    stt = sorted(round(r.audio_seconds_in, 6) for r in records if r.service == "stt")
    reported = sorted(round(u.usage.audio_seconds_in, 6) for u in s.of("usage") if u.service == "stt")
    assert len(reported) >= 2 and stt == reported, (stt, reported)


async def test_kill_9_of_tts_mid_reply_ends_the_turn_interrupted_with_only_what_was_heard(mesh, ledger):
    procs, orchestrator = mesh
    orch = orchestrator()
    async with AgentClient(orch.address, session_config()) as s:
        s.start_audio()
        s.send(text="Tell me a long story about a dragon who learns to sing.")
        await s.wait_for(lambda e: e.kind == "agent_audio", timeout=90)
        await asyncio.sleep(0.5)
        kill_9(procs["tts"])
        done = (await s.wait_for(lambda e: e.kind == "turn_done", timeout=60)).event
        said = s.agent_text(done.turn_id)
        assert done.interrupted, done
        assert done.text and len(done.text) < len(said.strip()), (done.text, said)
        assert said.replace(" ", "").startswith(done.text.replace(" ", "")), (done.text, said)
        errors = s.of("error", done.turn_id)
        assert errors and errors[0].code == "UNAVAILABLE", errors
        # The session goes on: a typed turn is answered in text (its voice is gone: an error, not the end).
        s.send(text="What is the capital of France?")
        nxt = await s.wait_for(lambda e: e.kind == "turn_done" and e.event.turn_id > done.turn_id, timeout=120)
        assert s.of("error", nxt.event.turn_id)
        assert not s.call.done()
        session_id = s.of("started")[0].session_id
        done_turns = [done.turn_id]
    records = await ledger_records(ledger, session_id)
    assert_ledger(records, done_turns)
    # The killed voice is billed from what the orchestrator sent it and got back (reported to the client too),
    # in the one record of that stream.
    billed = [(r.characters, round(r.audio_seconds_out, 6)) for r in records if r.service == "tts"]
    reported = [(u.usage.characters, round(u.usage.audio_seconds_out, 6)) for u in s.of("usage", done.turn_id)
                if u.service == "tts"]
    assert len(billed) == 1 and billed == reported and billed[0][0] > 0 and billed[0][1] > 0, (billed, reported)


async def test_sigterm_on_the_orchestrator_gives_each_session_draining_then_a_clean_end(mesh, ledger):
    _, orchestrator = mesh
    orch = orchestrator("--grace-s", "30", "--drain-idle-s", "5")
    async with AgentClient(orch.address, session_config()) as speaking, \
            AgentClient(orch.address, session_config()) as idle:
        await idle.wait_for(lambda e: e.kind == "started", timeout=30)
        speaking.start_audio()
        speaking.send(text="Tell me a long story about a dragon who learns to sing.")
        await speaking.wait_for(lambda e: e.kind == "agent_audio", timeout=90)
        orch.proc.send_signal(signal.SIGTERM)
        for s in (speaking, idle):
            draining = (await s.wait_for(lambda e: e.kind == "draining", timeout=10)).event
            assert 0 < draining.seconds_left <= 30, draining
            if s._sender is not None:
                # What a client does on the event: its audio is no longer heard, so it stops sending (a
                # grpc-python client still writing when the OK status arrives may report INTERNAL: grpc#36066).
                s._sender.cancel()
            await s.ended(40)  # a clean end: no error status
            assert s.call.done() and await s.call.code() == grpc.StatusCode.OK
        # The reply that was speaking finished its turn before the end.
        done = speaking.of("turn_done")
        assert done and not done[-1].interrupted and done[-1].text.strip() == speaking.agent_text(1).strip(), done
        kinds = [e.kind for e in speaking.events]
        assert kinds.index("draining") < kinds.index("turn_done"), kinds
        session_id = speaking.of("started")[0].session_id
    assert orch.proc.wait(30) == 0
    assert_ledger(await ledger_records(ledger, session_id), [1])
