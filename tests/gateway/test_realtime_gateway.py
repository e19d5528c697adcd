"""/v1/realtime: the openai SDK's realtime client, with its defaults, over the mesh's local cascade."""

from __future__ import annotations

import base64
import time

import httpx
import openai
import pytest

from tests.speech import speak

RATE = 24000
CHUNK = RATE * 2 // 10  # 100 ms
pytestmark = pytest.mark.timeout(240)  # recv() blocks: a missing event fails the test, not the run


def events_until(connection, done, timeout_s: float = 120.0) -> list:
    """Server events until ``done(event)`` holds (inclusive)."""
    events, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        event = connection.recv()
        events.append(event)
        if done(event):
            return events
    raise AssertionError(f"no final event in {timeout_s} s: {[e.type for e in events]}")


def test_a_spoken_question_gets_a_spoken_answer(realtime_gateway):
    client = openai.OpenAI(base_url=realtime_gateway, api_key="unused")
    with client.realtime.connect(model="gpt-realtime") as connection:
        assert connection.recv().type == "session.created"
        connection.session.update(session={"type": "realtime", "instructions": "Answer in one short sentence."})
        assert connection.recv().type == "session.updated"
        audio = speak("What is the capital of France?", RATE) + bytes(RATE * 2 * 2)  # then 2 s of silence
        for i in range(0, len(audio), CHUNK):
            connection.input_audio_buffer.append(audio=base64.b64encode(audio[i:i + CHUNK]).decode())
        events = events_until(connection, lambda e: e.type == "response.done")
    kinds = [e.type for e in events]
    for kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                 "input_audio_buffer.committed", "conversation.item.added", "response.created",
                 "response.output_item.added", "response.output_audio.delta", "response.output_audio_transcript.done",
                 "response.output_item.done"):
        assert kind in kinds, (kind, kinds)
    heard = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
    assert "capital" in heard.transcript.lower() and "france" in heard.transcript.lower(), heard.transcript
    spoken = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta")
    assert len(spoken) / 2 / RATE > 0.5
    done = events[-1].response
    assert done.status == "completed" and done.usage.output_tokens > 0
    response_id = next(e for e in events if e.type == "response.created").response.id
    assert all(e.response_id == response_id for e in events if e.type == "response.output_audio.delta")


def test_truncate_and_cancel_mid_reply(realtime_gateway):
    client = openai.OpenAI(base_url=realtime_gateway, api_key="unused")
    with client.realtime.connect(model="gpt-realtime") as connection:
        assert connection.recv().type == "session.created"
        connection.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Tell me a long story about a dog."}]})
        connection.response.create()
        first = events_until(connection, lambda e: e.type == "response.output_audio.delta")
        item_id = first[-1].item_id
        connection.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=100)
        connection.response.cancel()
        events = events_until(connection, lambda e: e.type == "response.done")
        truncated = [e for e in first + events if e.type == "conversation.item.truncated"]
        if not truncated:
            truncated = [e for e in events_until(connection, lambda e: e.type == "conversation.item.truncated")
                         if e.type == "conversation.item.truncated"]
        # an event the mesh cannot take answers an error event and leaves the session open
        connection.send({"type": "no.such.event"})
        error = events_until(connection, lambda e: e.type == "error")[-1]
    assert events[-1].response.status == "cancelled"
    assert truncated[0].item_id == item_id and truncated[0].audio_end_ms == 100
    assert error.error.code == "invalid_value" and "no.such.event" in error.error.message


def test_an_unknown_model_is_refused_before_the_upgrade(realtime_gateway):
    with pytest.raises(Exception) as caught:
        with openai.OpenAI(base_url=realtime_gateway, api_key="unused").realtime.connect(model="gpt-9") as c:
            c.recv()
    assert "404" in str(caught.value)
    response = httpx.get(realtime_gateway + "/realtime", timeout=30)  # a plain GET is not a WebSocket
    assert response.status_code in (400, 404, 426)


def test_beta_names_and_the_browser_key_subprotocol(realtime_gateway):
    import json

    from websockets.sync.client import connect

    url = realtime_gateway.replace("http://", "ws://") + "/realtime?model=gpt-4o-realtime-preview"
    with connect(url, subprotocols=["realtime", "openai-insecure-api-key.unused", "openai-beta.realtime-v1"],
                 open_timeout=30) as socket:
        assert socket.subprotocol == "realtime"
        created = json.loads(socket.recv(30))
        assert created["type"] == "session.created" and created["session"]["input_audio_format"] == "pcm16"
        socket.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}}))
        socket.send(json.dumps({"type": "response.create", "response": {"modalities": ["text"]}}))
        kinds, text = [], ""
        while not kinds or kinds[-1] != "response.done":
            event = json.loads(socket.recv(120))
            kinds.append(event["type"])
            text += event.get("delta", "") if event["type"] == "response.text.delta" else ""
    assert "conversation.item.created" in kinds and "response.text.done" in kinds, kinds
    assert not any(k.startswith(("response.output_text", "response.output_audio")) for k in kinds), kinds
    assert text.strip()


def test_cancel_with_no_response_is_an_error_event_and_the_session_goes_on(realtime_gateway):
    client = openai.OpenAI(base_url=realtime_gateway, api_key="unused")
    with client.realtime.connect(model="gpt-realtime") as connection:
        assert connection.recv().type == "session.created"
        connection.response.cancel()
        error = events_until(connection, lambda e: e.type == "error")[-1]
        connection.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Say hello."}]})
        connection.response.create()
        done = events_until(connection, lambda e: e.type == "response.done")[-1]
    assert error.error.message
    assert done.response.status == "completed"


def quiet_for(connection, seconds: float) -> list:
    """Every event that comes within ``seconds`` (recv with a deadline: the SDK's recv blocks)."""
    import threading

    events: list = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                events.append(connection.recv())
            except Exception:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(seconds)
    stop.set()
    return events


def test_over_the_faithful_openai_double_a_turn_truncate_and_cancel(realtime_double_gateway):
    """/v1/realtime -> RealtimeService (openai backend) -> the OpenAI Realtime double, which answers as the
    documented API (errors, *.done events, VAD): the official SDK, GA names, sees one coherent session."""
    from tests.realtime.openai_server import REPLY

    base, fake = realtime_double_gateway
    client = openai.OpenAI(base_url=base, api_key="unused")
    with client.realtime.connect(model="gpt-realtime") as connection:
        assert connection.recv().type == "session.created"
        audio = bytes(RATE) + speak("What is the capital of France?", RATE) + bytes(RATE * 2 * 2)
        for i in range(0, len(audio), CHUNK):
            connection.input_audio_buffer.append(audio=base64.b64encode(audio[i:i + CHUNK]).decode())
        turn = events_until(connection, lambda e: e.type == "response.done", 60)
        connection.conversation.item.create(item={"id": "item_more", "type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Tell me more."}]})
        connection.response.create()
        first = events_until(connection, lambda e: e.type == "response.output_audio.delta", 60)
        item_id = first[-1].item_id
        connection.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=50)
        connection.response.cancel()
        cancelled = events_until(connection, lambda e: e.type == "response.done", 60)
        connection.response.cancel()  # nothing runs now: one error event, and the session goes on
        connection.conversation.item.delete(item_id="item_more")
        after = quiet_for(connection, 2.0)
    kinds = [e.type for e in turn]
    for kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                 "input_audio_buffer.committed", "conversation.item.input_audio_transcription.completed",
                 "response.created", "response.output_audio.delta", "response.output_audio_transcript.done",
                 "response.output_item.done"):
        assert kind in kinds, (kind, kinds)
    assert turn[-1].response.status == "completed" and turn[-1].response.usage.output_tokens == len(REPLY.split())
    transcript = next(e for e in turn if e.type == "response.output_audio_transcript.done").transcript
    assert transcript == REPLY
    truncated = [e for e in first + cancelled + after if e.type == "conversation.item.truncated"]
    assert truncated and truncated[0].item_id == item_id and truncated[0].audio_end_ms == 50, truncated
    assert cancelled[-1].response.status == "cancelled"
    errors = [e for e in first + cancelled + after if e.type == "error"]
    assert [e.error.code for e in errors] == ["response_cancel_not_active"], [e.error for e in errors]
    assert [e.item_id for e in after if e.type == "conversation.item.deleted"] == ["item_more"]
    sent = [e["type"] for e in fake.seen.events]
    assert sent.count("response.cancel") >= 1 and "conversation.item.truncate" in sent
    assert {"type": "conversation.item.delete", "item_id": "item_more"} in fake.seen.events


def test_conversation_item_delete(realtime_gateway):
    client = openai.OpenAI(base_url=realtime_gateway, api_key="unused")
    with client.realtime.connect(model="gpt-realtime") as connection:
        assert connection.recv().type == "session.created"
        connection.conversation.item.create(item={"id": "item_mine", "type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Forget this."}]})
        added = events_until(connection, lambda e: e.type == "conversation.item.added")[-1]
        connection.conversation.item.delete(item_id="item_mine")
        deleted = events_until(connection, lambda e: e.type == "conversation.item.deleted")[-1]
        connection.conversation.item.delete(item_id="item_mine")
        error = events_until(connection, lambda e: e.type == "error")[-1]
    assert added.item.id == deleted.item_id == "item_mine"
    assert error.error.code == "item_not_found" and "item_mine" in error.error.message
