"""Bad input on a real realtime process: clear statuses for malformed streams, error
events for refused events, and the other sessions keep working. Also Describe."""

from __future__ import annotations

import grpc

from tests.realtime.helpers import Conversation, session, status_of
from tests.speech import speak
from voicemesh.v1 import common_pb2, realtime_pb2, realtime_pb2_grpc

R = realtime_pb2.ConverseRequest


async def _status(address: str, first: R, *later: R) -> tuple[grpc.StatusCode, str]:
    conv = Conversation(address, first)
    for request in later:
        conv.send_request(request)
    conv.end()
    try:
        return await status_of(conv)
    finally:
        await conv.close()


async def test_malformed_streams_end_with_a_clear_status_and_other_sessions_go_on(service_process):
    realtime = service_process("realtime", args=["--max-response-tokens", "30"])
    address = realtime.address
    # a healthy session stays open across all the failures below
    healthy = Conversation(address, session(vad=False, modalities=["text"]))
    await healthy.until("session_updated")

    code, details = await _status(address, R(input_audio_append=b"\0\0"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "session_update" in details
    code, details = await _status(address, R(session_update=realtime_pb2.RealtimeSessionConfig(
        input_sample_rate_hz=16000)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "model" in details
    code, details = await _status(address, R(session_update=realtime_pb2.RealtimeSessionConfig(
        model="voicemesh/cascade", input_sample_rate_hz=4000)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "input_sample_rate_hz" in details and "4000" in details
    code, details = await _status(address, session("voicemesh/nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "voicemesh/cascade" in details
    code, details = await _status(address, session("nobody/model"))
    assert code == grpc.StatusCode.NOT_FOUND and "nobody" in details
    code, details = await _status(address, session("voicemesh/cascade:no-such-voice"))
    assert code == grpc.StatusCode.NOT_FOUND and "en_US-joe-medium" in details
    code, details = await _status(address, session(), R(input_audio_append=b"\0\0\0"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "odd byte count" in details
    code, details = await _status(address, session(), R(input_audio_append=b"\0\0" * 16000 * 3))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "over the limit" in details
    code, details = await _status(address, session(), R(session_update=realtime_pb2.RealtimeSessionConfig(
        model="openai/gpt-realtime")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "cannot change" in details
    code, details = await _status(address, session(), R())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "empty message" in details
    code, details = await _status(address, session(), R(item_create=realtime_pb2.ConversationItemCreate()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "role" in details
    code, details = await _status(address, session(), R(item_delete=realtime_pb2.ItemDelete()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "item_delete needs an item_id" in details
    code, details = await _status(address, session(), R(item_delete=realtime_pb2.ItemDelete(item_id="i" * 65)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 64 characters" in details

    # refused events are error events; the session goes on and still answers
    healthy.send(input_audio_commit={})
    empty = (await healthy.until("error")).error
    assert empty.code == "INVALID_ARGUMENT" and empty.detail.reason == "INPUT_AUDIO_BUFFER_COMMIT_EMPTY"
    healthy.send(item_create={"item": {"role": "user", "content": "What is the capital of France?"}})
    healthy.send(item_truncate={"item_id": "item_0001", "audio_end_ms": 10})
    not_assistant = (await healthy.until("error")).error
    assert not_assistant.detail.reason == "ITEM_NOT_ASSISTANT"
    healthy.send(session_update=realtime_pb2.RealtimeSessionConfig(voice="no-such-voice"))
    voice = (await healthy.until("error")).error
    assert voice.code == "NOT_FOUND" and "en_US-joe-medium" in voice.message
    healthy.send(response_create={})
    done = (await healthy.until("response_done")).response_done
    assert done.status == "completed" and done.usage.output_tokens > 0
    healthy.end()
    assert await status_of(healthy) == (grpc.StatusCode.OK, "")
    await healthy.close()


async def test_committed_speech_is_transcribed_and_cleared_audio_is_dropped(service_process):
    realtime = service_process("realtime")
    # backend options mean nothing to the local cascade: they must not load it a second time
    options = common_pb2.BackendOptions(base_url="http://127.0.0.1:9/v1", api_key="unused")
    conv = Conversation(realtime.address, session(vad=False, modalities=["text"], backend=options))
    try:
        await conv.until("session_updated")
        conv.send_audio(speak("Turn off the lights in the kitchen."))
        conv.send(input_audio_clear={})
        conv.send_audio(speak("The weather is nice today."))
        conv.send(input_audio_commit={})
        final = (await conv.until("input_transcription", final=True)).input_transcription
        conv.end()
        await conv.rest()
    finally:
        await conv.close()
    assert "weather" in final.text.lower() and "kitchen" not in final.text.lower(), final.text
    assert realtime.log_path.read_text().count("loading realtime backend for voicemesh/cascade") == 1
    assert not conv.of("response_created")  # without server VAD only response_create starts a response


async def test_describe_lists_models_voices_and_capabilities(service_process):
    realtime = service_process("realtime", args=["--preload", ""])
    async with grpc.aio.insecure_channel(realtime.address) as channel:
        reply = await realtime_pb2_grpc.RealtimeServiceStub(channel).Describe(
            realtime_pb2.RealtimeServiceDescribeRequest(), timeout=30)
    description = reply.description
    assert description.service == "realtime"
    assert set(description.providers) >= {"voicemesh", "openai"}
    models = {m.descriptor: m for m in description.models}
    cascade = models["voicemesh/cascade"]
    assert "en_US-joe-medium" in cascade.voices
    for flag in ("server_vad", "truncate", "text_only_output"):
        assert getattr(cascade.capabilities, flag), flag
    remote = models["openai/gpt-realtime"]
    assert "alloy" in remote.voices and remote.capabilities.truncate
