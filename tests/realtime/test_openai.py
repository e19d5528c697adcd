"""The openai realtime backend on a real realtime process, against a local server
that speaks the documented OpenAI Realtime WebSocket protocol."""

from __future__ import annotations

import json
import socket

import grpc
import pytest

from tests.realtime.helpers import Conversation, session, status_of
from tests.realtime.openai_server import RATE, REPLY, FakeRealtimeServer
from tests.speech import silence, speak
from voicemesh.process import free_port
from voicemesh.v1 import common_pb2

MODEL = "openai/gpt-realtime"


@pytest.fixture(scope="module")
def fake():
    server = FakeRealtimeServer(pace_s=0.05).start()
    yield server
    server.stop()


@pytest.fixture
def realtime(service_process):
    return service_process("realtime", args=["--preload", ""])


def _options(url: str, key: str = "test-key") -> common_pb2.BackendOptions:
    return common_pb2.BackendOptions(base_url=url, api_key=key, timeout_s=10)


async def test_spoken_turn_with_server_vad_gets_transcript_audio_and_usage(fake, realtime):
    conv = Conversation(realtime.address, session(MODEL, backend=_options(fake.url)))
    try:
        updated = await conv.until("session_updated")
        assert updated.session_updated.session.model == MODEL
        question = silence(0.3) + speak("What is the capital of France?") + silence(1.0)
        conv.send_audio(question)
        started = (await conv.until("speech_started")).speech_started
        stopped = (await conv.until("speech_stopped")).speech_stopped
        assert started.item_id == stopped.item_id and stopped.audio_ms > started.audio_ms
        final = (await conv.until("input_transcription", final=True)).input_transcription
        assert final.item_id == stopped.item_id
        # the fake reports the milliseconds of 24 kHz audio it got: the 16 kHz input arrived whole, resampled
        assert abs(int(final.text.split()[0]) - stopped.audio_ms) <= 40, (final.text, stopped.audio_ms)
        created = (await conv.until("response_created")).response_created
        done = (await conv.until("response_done")).response_done
        assert done.response_id == created.response_id and done.status == "completed"
        assert conv.text(created.response_id, transcript=True) == REPLY
        audio = conv.audio(created.response_id)
        expected_s = len(fake.reply_audio) / 2 / RATE
        assert abs(len(audio) / 2 / 16000 - expected_s) < 0.02  # resampled from 24 kHz to the 16 kHz asked for
        assert max(abs(int.from_bytes(audio[i:i + 2], "little", signed=True)) for i in range(0, len(audio), 2)) > 1000
        assert all(d.item_id == created.item_id for d in conv.of("audio_delta"))
        assert done.usage.output_tokens == len(REPLY.split()) and done.usage.input_tokens > 0
        assert abs(done.usage.audio_seconds_out - expected_s) < 0.02
        assert done.usage.audio_seconds_in == pytest.approx(len(question) / 2 / 16000, abs=0.01)
        assert done.usage.model == MODEL
    finally:
        await conv.close()
    handshake = fake.seen.handshakes[-1]
    assert handshake["path"] == "/v1/realtime?model=gpt-realtime"
    assert handshake["authorization"] == "Bearer test-key" and handshake["openai-beta"] == "realtime=v1"
    update = [e for e in fake.seen.events if e["type"] == "session.update"][-1]["session"]
    assert update["turn_detection"]["type"] == "server_vad" and update["input_audio_format"] == "pcm16"
    assert update["turn_detection"]["silence_duration_ms"] == 600


async def test_text_only_truncate_cancel_and_errors_in_band(fake, realtime):
    conv = Conversation(realtime.address, session(MODEL, vad=False, backend=_options(fake.url)))
    try:
        await conv.until("session_updated")
        conv.send(item_create={"item": {"role": "user", "content": "What is the capital of France?"}})
        conv.send(response_create={"modalities": ["text"]})
        created = (await conv.until("response_created")).response_created
        done = (await conv.until("response_done")).response_done
        assert done.status == "completed"
        assert conv.text(created.response_id, transcript=False) == REPLY
        assert not conv.audio(created.response_id)

        # a second response.create while one runs is refused in band; cancel stops the running one
        conv.send(response_create={})
        second = (await conv.until("response_created")).response_created
        conv.send(response_create={})
        error = (await conv.until("error")).error
        assert error.code == "INVALID_ARGUMENT" and "active" in error.detail.reason.lower()
        conv.send(response_cancel={})
        done = (await conv.until("response_done", response_id=second.response_id)).response_done
        assert done.status == "cancelled"
        # a cancel with nothing running is a no-op, as on the cascade (the API's error is not passed on:
        # the next error read is the truncate's)
        conv.send(response_cancel={})

        # as OpenAI: a cut within the audio sent is taken, one past it is an error
        heard_ms = len(conv.audio(second.response_id)) // 2 * 1000 // 16000
        conv.send(item_truncate={"item_id": second.item_id, "audio_end_ms": heard_ms + 5000})
        error = (await conv.until("error")).error
        assert error.code == "INVALID_ARGUMENT" and "shorter than" in error.message, error
        conv.send(item_truncate={"item_id": second.item_id, "audio_end_ms": heard_ms})
        truncated = (await conv.until("item_truncated")).item_truncated
        assert truncated.item_id == second.item_id and truncated.audio_end_ms == heard_ms
        conv.send(item_truncate={"item_id": "item_nope", "audio_end_ms": 300})
        error = (await conv.until("error")).error
        assert error.code == "INVALID_ARGUMENT" and "item_nope" in error.message

        # an item created with the client's id is deleted by it upstream
        conv.send(item_create={"item": {"role": "user", "content": "Forget this."}, "item_id": "item_mine"})
        conv.send(item_delete={"item_id": "item_mine"})
        assert (await conv.until("item_deleted")).item_deleted.item_id == "item_mine"
        conv.send(item_delete={"item_id": "item_mine"})
        error = (await conv.until("error")).error
        assert error.code == "INVALID_ARGUMENT" and error.detail.reason == "ITEM_DELETE_INVALID_ITEM_ID", error

        # manual commit: the buffer (after a clear, only what came later) becomes an item with its transcription
        conv.send_audio(speak("Turn off the lights in the kitchen."))
        conv.send(input_audio_clear={})
        hello = speak("Hello there.")
        conv.send_audio(hello)
        conv.send(input_audio_commit={})
        final = (await conv.until("input_transcription", final=True)).input_transcription
        assert final.text.endswith("ms of audio")
        assert abs(int(final.text.split()[0]) - len(hello) // 2 * 1000 // 16000) <= 2, final.text
        conv.send(input_audio_commit={})
        error = (await conv.until("error")).error
        assert "too small" in error.message and error.detail.reason == "INPUT_AUDIO_BUFFER_COMMIT_EMPTY", error
    finally:
        await conv.close()
    kinds = fake.seen.types()
    for kind in ("conversation.item.delete", "conversation.item.create", "response.create", "response.cancel",
                 "conversation.item.truncate",
                 "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear"):
        assert kind in kinds, kind


async def test_speech_during_a_response_interrupts_it(fake, realtime):
    conv = Conversation(realtime.address, session(MODEL, backend=_options(fake.url)))
    try:
        await conv.until("session_updated")
        conv.send(item_create={"item": {"role": "user", "content": "Tell me about Paris."}})
        conv.send(response_create={})
        created = (await conv.until("response_created")).response_created
        await conv.until("audio_delta")
        conv.send_audio(speak("Wait, stop."))
        await conv.until("speech_started")
        done = (await conv.until("response_done", response_id=created.response_id)).response_done
        assert done.status == "cancelled"
        assert len(conv.audio(created.response_id)) < len(fake.reply_audio) * 2 // 3
    finally:
        await conv.close()


async def test_wrong_api_key_is_unauthenticated(fake, realtime):
    conv = Conversation(realtime.address, session(MODEL, backend=_options(fake.url, key="wrong")))
    code, details = await status_of(conv)
    await conv.close()
    assert code == grpc.StatusCode.UNAUTHENTICATED, details
    assert "401" in details


async def test_refused_connection_is_unavailable(realtime):
    conv = Conversation(realtime.address, session(MODEL, backend=_options(f"ws://127.0.0.1:{free_port()}/v1")))
    code, details = await status_of(conv)
    await conv.close()
    assert code == grpc.StatusCode.UNAVAILABLE, details


async def test_a_server_that_never_answers_the_handshake_is_deadline_exceeded(realtime):
    with socket.socket() as silent:  # accepts connections (backlog) but never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}/v1"
        conv = Conversation(realtime.address, session(MODEL, backend=common_pb2.BackendOptions(
            base_url=url, api_key="test-key", timeout_s=1.0)))
        code, details = await status_of(conv)
        await conv.close()
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED, details
    assert "1 s" in details


async def test_function_calls_come_back_in_response_done_and_their_output_goes_up(fake, realtime):
    first = session(MODEL, vad=False, modalities=["text"], backend=_options(fake.url))
    first.session_update.tools.add(name="get_weather", description="Weather of a city",
                                   parameters_json='{"type": "object", "properties": {"city": {"type": "string"}}}')
    conv = Conversation(realtime.address, first)
    try:
        await conv.until("session_updated")
        conv.send(item_create={"item": {"role": "user", "content": "What is the weather in Paris?"}})
        conv.send(response_create={})
        done = (await conv.until("response_done")).response_done
        assert [(c.name, json.loads(c.arguments_json)) for c in done.tool_calls] == [("get_weather", {"city": "Paris"})]
        call_id = done.tool_calls[0].id
        conv.send(item_create={"item": {"role": "tool", "tool_call_id": call_id, "content": "Sunny, 21 C"}})
        conv.send(response_create={})
        created = (await conv.until("response_created")).response_created
        (await conv.until("response_done", response_id=created.response_id))
        assert conv.text(created.response_id, transcript=False) == REPLY
    finally:
        await conv.close()
    update = [e for e in fake.seen.events if e["type"] == "session.update"][-1]["session"]
    assert update["tools"][0]["type"] == "function" and update["tools"][0]["name"] == "get_weather"
    output = [e["item"] for e in fake.seen.events if e["type"] == "conversation.item.create"][-1]
    assert output == {"type": "function_call_output", "call_id": call_id, "output": "Sunny, 21 C"}
