"""The OpenAI Realtime test double answers as the documented API does: the official openai SDK's realtime
client (``client.beta.realtime.connect``, the beta protocol the double speaks) parses every event it sends,
and the strictness the backend and gateway tests rely on holds (errors, ``*.done`` events, VAD settings)."""

from __future__ import annotations

import base64
import time

import numpy as np
import openai
import pytest

from tests.realtime.openai_server import RATE, REPLY, FakeRealtimeServer
from tests.speech import speak

pytestmark = pytest.mark.timeout(120)  # recv() blocks: a missing event fails the test, not the run


@pytest.fixture(scope="module")
def fake():
    server = FakeRealtimeServer().start()
    yield server
    server.stop()


def connect(fake: FakeRealtimeServer, key: str = "test-key"):
    client = openai.OpenAI(api_key=key, websocket_base_url=fake.url)
    return client.beta.realtime.connect(model="gpt-realtime")


def until(connection, kind: str, timeout_s: float = 30) -> list:
    """The SDK's parsed events up to the first of ``kind`` (inclusive)."""
    events, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events.append(connection.recv())
        if events[-1].type == kind:
            return events
    raise AssertionError(f"no {kind} in {timeout_s} s: {[e.type for e in events]}")


def test_session_created_has_openais_defaults_and_a_wrong_key_is_refused(fake):
    with connect(fake) as connection:
        created = connection.recv()
    assert created.type == "session.created"
    vad = created.session.turn_detection
    assert (vad.type, vad.threshold, vad.prefix_padding_ms, vad.silence_duration_ms) == ("server_vad", 0.5, 300, 500)
    assert created.session.input_audio_format == "pcm16" and created.session.voice == "alloy"
    with pytest.raises(Exception, match="401"):
        with connect(fake, key="wrong") as connection:
            connection.recv()


def test_errors_items_and_every_done_event(fake):
    with connect(fake) as connection:
        connection.recv()
        connection.session.update(session={"turn_detection": None, "modalities": ["text"]})
        assert until(connection, "session.updated")[-1].session.turn_detection is None
        connection.response.cancel()
        error = until(connection, "error")[-1].error
        assert error.code == "response_cancel_not_active" and error.type == "invalid_request_error"
        connection.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "Hi?"}]})
        created = until(connection, "conversation.item.created")[-1]
        assert created.previous_item_id is None and created.item.role == "user"
        connection.response.create()
        connection.response.create()  # one is running
        events = until(connection, "response.done")
        connection.conversation.item.delete(item_id=created.item.id)
        deleted = until(connection, "conversation.item.deleted")[-1]
        connection.conversation.item.delete(item_id="item_nope")
        missing = until(connection, "error")[-1].error
        connection.input_audio_buffer.commit()
        empty = until(connection, "error")[-1].error
    # The response's own events, in order (the second create's busy error may come before or among them).
    kinds = [e.type for e in events if e.type != "error"]
    assert kinds[:4] == ["response.created", "response.output_item.added", "conversation.item.created",
                         "response.content_part.added"], kinds
    assert kinds[-4:] == ["response.text.done", "response.content_part.done", "response.output_item.done",
                          "response.done"], kinds
    busy = next(e for e in events if e.type == "error").error
    assert busy.code == "conversation_already_has_active_response"
    assistant = next(e for e in events if e.type == "conversation.item.created")
    assert assistant.previous_item_id == created.item.id and assistant.item.role == "assistant"
    assert next(e for e in events if e.type == "response.text.done").text == REPLY
    done = events[-1].response
    assert done.status == "completed" and done.usage.output_tokens == len(REPLY.split())
    assert done.output[0].id == assistant.item.id and done.output[0].status == "completed"
    assert deleted.item_id == created.item.id and missing.param == "item_id"
    assert empty.code == "input_audio_buffer_commit_empty"


def spoken(connection, audio: bytes, kind: str) -> list:
    for i in range(0, len(audio), RATE // 10 * 2):
        connection.input_audio_buffer.append(audio=base64.b64encode(audio[i:i + RATE // 10 * 2]).decode())
    return until(connection, kind)


def test_the_vad_settings_are_honoured(fake):
    speech = speak("What is the capital of France?", RATE)
    audio = bytes(RATE) + speech + bytes(RATE * 3)  # 0.5 s of silence, the question, 1.5 s of silence
    frames = np.frombuffer(speech[:len(speech) // 960 * 960], dtype="<i2").reshape(-1, 480) / 32768
    loud = np.flatnonzero(np.sqrt((frames ** 2).mean(axis=1)) > 0.02)  # 20 ms frames over threshold 0.5's level
    first_ms, last_ms = 500 + loud[0] * 20, 500 + (loud[-1] + 1) * 20  # piper pads its speech with silence
    with connect(fake) as connection:
        connection.recv()
        connection.session.update(session={"input_audio_transcription": {"model": "whisper-1"}, "turn_detection": {
            "type": "server_vad", "prefix_padding_ms": 200, "silence_duration_ms": 800, "create_response": False}})
        until(connection, "session.updated")
        events = spoken(connection, audio, "conversation.item.input_audio_transcription.completed")
        started = next(e for e in events if e.type == "input_audio_buffer.speech_started")
        stopped = next(e for e in events if e.type == "input_audio_buffer.speech_stopped")
        assert abs(started.audio_start_ms - (first_ms - 200)) <= 40, (started, first_ms)  # the prefix padding
        assert abs(stopped.audio_end_ms - (last_ms + 800)) <= 40, (stopped, last_ms)  # the silence duration
        # create_response false: nothing answers; a threshold above the speech's level hears nothing
        connection.session.update(session={"turn_detection": {"type": "server_vad", "threshold": 1.0}})
        until(connection, "session.updated")
        for i in range(0, len(audio), RATE // 10 * 2):
            connection.input_audio_buffer.append(audio=base64.b64encode(audio[i:i + RATE // 10 * 2]).decode())
        connection.input_audio_buffer.commit()  # the manual commit shows every append was taken first
        later = until(connection, "conversation.item.input_audio_transcription.completed")
    assert not any(e.type.startswith("response.") for e in events + later), [e.type for e in events + later]
    assert not any(e.type == "input_audio_buffer.speech_started" for e in later), [e.type for e in later]
