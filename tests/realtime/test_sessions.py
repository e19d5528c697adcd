"""Session lifecycle on a real realtime process: admission, a client that vanishes
mid-response, and a session update that changes the session mid-stream."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.realtime.helpers import Conversation, session, status_of
from tests.speech import silence, words
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

    for _ in range(100):  # the slot is free once the server has noticed the client left
        second = Conversation(realtime.address, session(vad=False, modalities=["text"]))
        try:
            await second.until("session_updated", timeout=30)
            break
        except grpc.aio.AioRpcError as error:
            await second.close()
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await asyncio.sleep(0.1)
    try:
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


async def test_usage_the_client_never_got_still_reaches_the_ledger(service_process, tmp_path):
    from voicemesh.metering import keys
    from voicemesh.metering.ledger import open_store

    url = f"sqlite:///{tmp_path}/ledger.db"
    store = open_store(url)
    record, key = keys.create_key(store, "realtime-unsent")
    store.close()
    realtime = service_process("realtime", env={"VOICEMESH_LEDGER": url}, args=["--max-response-tokens", "60"])
    metadata = [("authorization", f"Bearer {key}")]
    # a response cut off by the client leaving mid-audio, then input audio with no response after it
    conv = Conversation(realtime.address, session(vad=False), metadata=metadata)
    await conv.until("session_updated")
    conv.send(item_create={"item": {"role": "user", "content": "Can you tell me a short story about a dog?"}})
    conv.send(response_create={})
    await conv.until("audio_delta")
    conv.send_audio(silence(1.5))
    await asyncio.sleep(0.5)
    await conv.close()
    for _ in range(100):  # the server records once it notices the client left
        store = open_store(url)
        records = store.usage(key_id=record.id)
        store.close()
        if len(records) >= 2:
            break
        await asyncio.sleep(0.1)
    assert len(records) == 2, records
    by_kind = sorted(records, key=lambda r: r.output_tokens)
    assert by_kind[0].audio_seconds_in == pytest.approx(1.5) and by_kind[0].output_tokens == 0
    assert by_kind[1].output_tokens > 0 and by_kind[1].audio_seconds_out > 0
    assert {r.model for r in records} == {"voicemesh/cascade"}
