"""Session lifecycle on a real realtime process: admission, a client that vanishes
mid-response, and a session update that changes the session mid-stream."""

from __future__ import annotations

import grpc

from tests.realtime.helpers import Conversation, session, status_of
from tests.speech import words
from voicemesh.v1 import realtime_pb2


async def test_a_vanished_client_frees_its_slot_and_a_session_over_the_limit_is_refused(service_process):
    realtime = service_process("realtime", args=["--max-sessions", "1", "--max-response-tokens", "60"])
    first = Conversation(realtime.address, session(vad=False))
    await first.until("session_updated")
    first.send(item_create={"item": {"role": "user", "content": "Can you tell me a short story about a dog?"}})
    first.send(response_create={})
    await first.until("audio_delta")
    over = Conversation(realtime.address, session(vad=False))
    code, details = await status_of(over)
    await over.close()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "1 of 1" in details
    await first.close()  # gone mid-response: the server cancels the response and frees the slot

    second = Conversation(realtime.address, session(vad=False, modalities=["text"]))
    try:
        await second.until("session_updated", timeout=30)
        second.send(item_create={"item": {"role": "user", "content": "What is the capital of France?"}})
        second.send(response_create={})
        done = (await second.until("response_done")).response_done
        assert done.status == "completed", second.of("error")
        # a session update switches the output to audio and changes the instructions for the next response
        second.send(session_update=realtime_pb2.RealtimeSessionConfig(
            modalities=["text", "audio"], instructions="Answer with one word.", output_sample_rate_hz=22050))
        updated = (await second.until("session_updated")).session_updated.session
        assert list(updated.modalities) == ["text", "audio"] and updated.output_sample_rate_hz == 22050
        assert updated.model == "voicemesh/cascade" and updated.input_sample_rate_hz == 16000
        second.send(item_create={"item": {"role": "user", "content": "And the capital of Italy?"}})
        second.send(response_create={})
        created = (await second.until("response_created")).response_created
        done = (await second.until("response_done", response_id=created.response_id)).response_done
        second.end()
        await second.rest()
    finally:
        await second.close()
    assert done.status in ("completed", "incomplete")
    audio = second.audio(created.response_id)
    assert audio and done.usage.audio_seconds_out == len(audio) / 2 / 22050
    assert words(second.text(created.response_id, transcript=True))
