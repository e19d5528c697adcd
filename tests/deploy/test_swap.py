"""Swapping one service live: while an orchestrator session is open, its TTS
process is stopped and a different one (the same voice name, spoken 1.6 times
slower) is started on the same address. The turn during the swap gets an
error event; the next turn speaks with the new voice, as does a new session;
and a spoken turn after it goes through the same STT and LLM processes (same
pids, the same LLM stream) and the same orchestrator."""

from __future__ import annotations

import asyncio

import pytest

from tests.deploy.mesh import LLM, RATE, STT, metric, say_turn, spoken_turn, start, text_turn, voice_folder
from voicemesh.client import AgentSession
from voicemesh.process import ServiceProcess, free_port

pytestmark = pytest.mark.slow

VOICE = "swap-voice"
SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


async def test_tts_swapped_live_while_a_session_is_open(tmp_path):
    old_voices = voice_folder(tmp_path / "voices-old", VOICE, length_scale=1.0)
    new_voices = voice_folder(tmp_path / "voices-new", VOICE, length_scale=1.6)
    tts_port = free_port()
    stt, _ = start("stt", tmp_path)
    llm, llm_metrics = start("llm", tmp_path)
    tts, old_metrics = start("tts", tmp_path, "--piper-voices-dir", str(old_voices), "--preload", f"piper/{VOICE}",
                             port=tts_port, tag="-old")
    procs: list[ServiceProcess] = [stt, llm, tts]
    try:
        for proc in procs:
            proc.wait_serving()
        env = {"VOICEMESH_MESH_STT": stt.address, "VOICEMESH_MESH_LLM": llm.address,
               "VOICEMESH_MESH_TTS": tts.address}
        orchestrator = ServiceProcess("orchestrator", args=["--metrics-port", "-1", "--max-tokens", "40"], env=env,
                                      log_path=tmp_path / "orchestrator.log")
        procs.append(orchestrator.start())
        orchestrator.wait_serving()
        pids = {p.service: p.proc.pid for p in (stt, llm, orchestrator)}

        async with AgentSession(address=orchestrator.address, stt=STT, llm=LLM, tts=f"piper/{VOICE}",
                                instructions="Answer in one short sentence.", input_sample_rate=RATE,
                                output_sample_rate=RATE, first_result_timeout_ms=20000) as session:
            before = await say_turn(session, SENTENCE)
            assert not before.errors and before.audio_s > 1.0, before
            first = await text_turn(session, "What is the capital of France?")
            assert first.text and first.audio_s > 0 and not first.errors, first

            assert metric(old_metrics, "voicemesh_rpcs_total", method="Synthesize") >= 2
            chat_messages = metric(llm_metrics, "voicemesh_messages_received_total", method="Chat")
            assert tts.stop() == 0  # drained and exited cleanly
            during = await text_turn(session, "And what is the capital of Italy?")
            assert during.errors, "a turn whose TTS service is gone must get an error event"
            assert any(e.code == "UNAVAILABLE" for e in during.errors), during.errors
            assert not during.audio

            tts, new_metrics = start("tts", tmp_path, "--piper-voices-dir", str(new_voices),
                                     "--preload", f"piper/{VOICE}", port=tts_port, tag="-new")
            procs.append(tts)
            tts.wait_serving()
            # The orchestrator's channel to that address retried while it was down; its next try comes within
            # grpc.max_reconnect_backoff_ms (2 s, orchestrator/clients.py), and only then does it see the new process.
            await asyncio.sleep(2.5)

            after = await say_turn(session, SENTENCE)
            assert not after.errors, after.errors
            # The same sentence, now in the slower voice of the new process.
            assert after.audio_s > 1.3 * before.audio_s, (before.audio_s, after.audio_s)
            assert metric(new_metrics, "voicemesh_rpcs_total", method="Synthesize") >= 1
            # A spoken turn: the STT process, untouched by the swap, still hears the session.
            reply = await spoken_turn(session, "What is the capital of Spain?")
            assert "spain" in reply.heard.lower(), reply
            assert reply.text and reply.audio_s > 0 and not reply.errors, reply
            # The LLM process answered after the swap on the session's one Chat stream, opened before it.
            assert metric(llm_metrics, "voicemesh_messages_received_total", method="Chat") > chat_messages
            assert metric(llm_metrics, "voicemesh_streams_open", method="Chat") == 1
            assert metric(llm_metrics, "voicemesh_rpcs_total", method="Chat") == 0

            # A new session uses the new service too.
            async with AgentSession(address=orchestrator.address, stt=STT, llm=LLM, tts=f"piper/{VOICE}",
                                    input_sample_rate=RATE, output_sample_rate=RATE,
                                    first_result_timeout_ms=20000) as fresh:
                newcomer = await say_turn(fresh, SENTENCE)
                assert not newcomer.errors and newcomer.audio_s > 1.3 * before.audio_s, newcomer

        assert {p.service: p.proc.pid for p in (stt, llm, orchestrator)} == pids
        assert all(p.proc.poll() is None for p in (stt, llm, orchestrator))
    finally:
        for proc in reversed(procs):
            proc.stop()
