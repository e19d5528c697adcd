"""Metering through the orchestrator: real STT, LLM, TTS and orchestrator processes sharing one SQLite ledger."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter

import grpc
import pytest

from tests.metering.helpers import recorded_usage, units
from tests.orchestrator.client import RATE, AgentClient, session_config
from tests.speech import speak
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.metering.records import Quota

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "What is the capital of Germany?"]


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def converse(address: str, key: str, questions: list[str]) -> AgentClient:
    """A whole session: the questions as speech, each turn to its end, then a half-close."""
    async with AgentClient(address, session_config(), metadata=bearer(key)) as session:
        await session.wait_for(lambda e: e.kind == "started")
        session.start_audio()
        for turn, question in enumerate(questions, start=1):
            session.say(speak(question, RATE))
            await session.turn_done(turn)
        session.close()
        await asyncio.wait_for(session._reader, 60)
    return session


async def test_ledger_totals_equal_the_usage_the_services_emitted(mesh):
    store = open_store(mesh.url)
    record, key = keys.create_key(store, "conversation")
    orchestrator = mesh.orchestrator()
    session = await converse(orchestrator.address, key, QUESTIONS)
    session_id = session.of("started")[0].session_id
    emitted = Counter(units(r.service, r.usage) for r in session.of("usage"))
    assert {"stt", "llm", "tts"} <= {service for service, *_ in emitted}
    records = store.usage(key_id=record.id)
    assert Counter(units(r.service, r) for r in records) == emitted
    assert {r.session_id for r in records} == {session_id}
    # Each record is under the turn its usage was emitted for (the LLM's one chat stream included).
    assert Counter((r.service, r.turn) for r in records) == Counter((u.service, u.turn_id) for u in session.of("usage"))
    assert {r.turn for r in records if r.service == "llm"} == {1, 2}
    for unit in ("audio_seconds_in", "audio_seconds_out", "input_tokens", "output_tokens", "characters"):
        assert sum(getattr(r, unit) for r in records) == sum(getattr(r.usage, unit) for r in session.of("usage"))
    secret = keys.split_key(key)[1]
    for proc in [orchestrator, *mesh.services.values()]:
        assert secret not in proc.log_path.read_text(), f"the key appeared in the {proc.service} log"
    store.close()


async def test_quota_refuses_the_exhausted_key_and_not_another(mesh):
    store = open_store(mesh.url)
    limited, limited_key = keys.create_key(store, "stt-limited", quotas=[Quota("audio_seconds_in", 1.0, "day")])
    _, other_key = keys.create_key(store, "other", quotas=[Quota("audio_seconds_in", 3600.0, "day")])
    orchestrator = mesh.orchestrator()
    # The quota runs out during the first question: the STT stream stops within a chunk of it, and the
    # session ends with the quota's status.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await converse(orchestrator.address, limited_key, QUESTIONS[:1])
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    assert "audio_seconds_in" in info.value.details()
    await recorded_usage(store, limited.id)
    assert 1.0 < sum(r.audio_seconds_in for r in store.usage(key_id=limited.id)) <= 2.0  # one message: <= 1 s

    async with AgentClient(orchestrator.address, session_config(), metadata=bearer(limited_key)) as refused:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await refused._reader
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "audio_seconds_in=1/day" in info.value.details() and "resets at" in info.value.details()

    # The STT service refuses the key on its own too (a client going around the orchestrator).
    from voicemesh.v1 import stt_pb2_grpc

    async with grpc.aio.insecure_channel(mesh.services["stt"].address) as channel:
        call = stt_pb2_grpc.SttServiceStub(channel).Recognize(metadata=bearer(limited_key))
        assert await call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "audio_seconds_in=1/day" in await call.details()

    session = await converse(orchestrator.address, other_key, QUESTIONS[:1])
    assert session.of("turn_done")[0].text.strip(), "another key keeps working"
    store.close()


async def test_kill_9_of_the_orchestrator_mid_session_loses_no_completed_turn(mesh):
    store = open_store(mesh.url)
    record, key = keys.create_key(store, "crash")
    orchestrator = mesh.orchestrator()
    async with AgentClient(orchestrator.address, session_config(), metadata=bearer(key)) as session:
        await session.wait_for(lambda e: e.kind == "started")
        session.start_audio()
        session.say(speak(QUESTIONS[0], RATE))
        await session.turn_done(1)
        session.say(speak(QUESTIONS[1], RATE))
        await session.wait_for(lambda e: e.kind == "agent_audio" and e.event.turn_id == 2)
        os.kill(orchestrator.proc.pid, signal.SIGKILL)
        orchestrator.proc.wait()
        with contextlib.suppress(grpc.aio.AioRpcError):
            await asyncio.wait_for(session._reader, 30)
    relayed = Counter(units(r.service, r.usage) for r in session.of("usage"))
    assert {r.service for r in session.of("usage", 1)} >= {"llm", "tts"}, "turn 1 completed before the kill"
    before = store.usage(key_id=record.id)
    print("\nrecorded for the killed session:", sorted((r.service, r.model) for r in before))
    print("relayed to the client before the kill:", sorted((r.turn_id, r.service) for r in session.of("usage")))
    recorded = Counter(units(r.service, r) for r in before)
    for usage, count in relayed.items():
        assert recorded[usage] == count, f"relayed {count}x but recorded {recorded[usage]}x: {usage}"

    # Restart: the next session is metered exactly and nothing from before is counted twice.
    again = mesh.orchestrator()
    await asyncio.sleep(1.0)  # streams of the killed session finish cancelling in the services
    settled = {r.id for r in store.usage(key_id=record.id)}
    session = await converse(again.address, key, QUESTIONS[:1])
    new = [r for r in store.usage(key_id=record.id) if r.id not in settled]
    assert Counter(units(r.service, r) for r in new) == Counter(units(r.service, r.usage) for r in session.of("usage"))
    assert len(store.usage(key_id=record.id)) == len(settled) + len(new)
    store.close()


async def test_describe_forwards_the_callers_key_to_the_services(mesh):
    from voicemesh.v1 import agent_pb2, agent_pb2_grpc

    _, key = keys.create_key(open_store(mesh.url), "describe")
    orchestrator = mesh.orchestrator()
    async with grpc.aio.insecure_channel(orchestrator.address) as channel:
        answer = await agent_pb2_grpc.AgentServiceStub(channel).Describe(agent_pb2.AgentServiceDescribeRequest(),
                                                                         metadata=bearer(key), timeout=30)
    found = {m.descriptor for m in answer.description.models}
    assert {"llama.cpp/smollm2-135m-instruct", "piper/en_US-joe-medium"} <= found, found


async def test_streams_opened_ahead_bill_each_turn_once_under_its_own_turn(mesh):
    """A voice turn's TTS stream is opened while the user speaks (orchestrator/warm.py), before the turn exists:
    each turn still has exactly one TTS record, under its turn, with what it synthesized, and none other
    (a barge-in's turn included)."""
    from voicemesh.v1 import agent_pb2

    store = open_store(mesh.url)
    record, key = keys.create_key(store, "warm-voice")
    orchestrator = mesh.orchestrator()
    story = " ".join(["Once upon a time a fox ran across a very long bridge over a river."] * 30)
    config = session_config(interruption=agent_pb2.InterruptionSettings(min_duration_ms=150))
    speech = [speak(text, RATE) for text in (QUESTIONS[0], "Stop, please stop talking now.", QUESTIONS[1])]
    async with AgentClient(orchestrator.address, config, metadata=bearer(key)) as session:
        await session.wait_for(lambda e: e.kind == "started")
        session.start_audio()
        session.say(speech[0])
        await session.turn_done(1)
        session.send(say=agent_pb2.Say(text=story))  # given text: no speech before it, a stream of its own
        await session.wait_for(lambda e: len(session.agent_audio(2)) >= RATE * 2, timeout=60)
        session.say(speech[1])
        assert (await session.turn_done(2)).interrupted
        await session.turn_done(3)
        session.say(speech[2])
        await session.turn_done(4)
        session.close()
        await asyncio.wait_for(session._reader, 60)
    records = await recorded_usage(store, record.id)
    tts = [r for r in records if r.service == "tts"]
    assert Counter(r.turn for r in tts) == {1: 1, 2: 1, 3: 1, 4: 1}, sorted((r.turn, r.characters) for r in tts)
    chars = {r.turn: r.characters for r in tts}
    # The cut reply bills what was synthesized before the barge-in: its Cancel stopped the rest (a reply stream
    # half-closed at the end of its text could take no Cancel, and all 2000 characters were synthesized).
    assert 0 < chars[2] < len(story) / 2, chars
    assert all(chars[turn] > 0 for turn in (1, 3, 4)), chars
    emitted = Counter((u.turn_id, u.usage.characters) for u in session.of("usage") if u.service == "tts")
    assert Counter((r.turn, r.characters) for r in tts) == emitted
    assert len({r.id for r in records}) == len(records)
    log = orchestrator.log_path.read_text()
    assert all(f"turn {turn} speaks on the TTS stream opened" in log for turn in (1, 3, 4)), log[-3000:]
    store.close()
