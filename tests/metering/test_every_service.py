"""Keys on every service (STT, LLM, TTS, realtime, orchestrator) and realtime usage in the ledger."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from tests.metering.helpers import units
from tests.speech import silence, speak
from voicemesh.audio import chunks
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.process import ServiceProcess
from voicemesh.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    llm_pb2,
    llm_pb2_grpc,
    realtime_pb2,
    realtime_pb2_grpc,
    stt_pb2,
    stt_pb2_grpc,
    tts_pb2,
    tts_pb2_grpc,
)

pytestmark = pytest.mark.slow

# service -> (stub class, Describe request, streaming method name)
SERVICES = {
    "stt": (stt_pb2_grpc.SttServiceStub, stt_pb2.SttServiceDescribeRequest, "Recognize"),
    "llm": (llm_pb2_grpc.LlmServiceStub, llm_pb2.LlmServiceDescribeRequest, "Chat"),
    "tts": (tts_pb2_grpc.TtsServiceStub, tts_pb2.TtsServiceDescribeRequest, "Synthesize"),
    "realtime": (realtime_pb2_grpc.RealtimeServiceStub, realtime_pb2.RealtimeServiceDescribeRequest, "Converse"),
    "orchestrator": (agent_pb2_grpc.AgentServiceStub, agent_pb2.AgentServiceDescribeRequest, "Session"),
}


@pytest.fixture(scope="module")
def realtime(mesh):
    """A realtime process (local cascade) on the mesh's ledger."""
    proc = ServiceProcess("realtime", env=mesh.env, log_path=mesh.folder / "realtime.log",
                          args=["--metrics-port", "-1", "--max-response-tokens", "40"]).start()
    try:
        yield proc.wait_serving()
    finally:
        proc.stop()


def bearer(key: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")] if key is not None else []


async def stream_code(stub, method: str, key: str | None) -> tuple[grpc.StatusCode, str]:
    """Open a stream with ``key``, half-close at once, and return how it ended."""
    call = getattr(stub, method)(metadata=bearer(key))
    await call.done_writing()
    return await call.code(), await call.details()


async def test_every_service_checks_keys(mesh, realtime):
    store = open_store(mesh.url)
    _, good = keys.create_key(store, "everywhere")
    revoked_record, revoked = keys.create_key(store, "revoked")
    store.revoke_key(revoked_record.id, time.time())
    _, expired = keys.create_key(store, "expired", expires=time.time() - 60)
    store.close()
    wrong = good[:-3] + ("xyz" if not good.endswith("xyz") else "abc")
    addresses = {**{name: proc.address for name, proc in mesh.services.items()},
                 "realtime": realtime.address, "orchestrator": mesh.orchestrator().address}
    cases = [(None, grpc.StatusCode.UNAUTHENTICATED), (wrong, grpc.StatusCode.UNAUTHENTICATED),
             (revoked, grpc.StatusCode.PERMISSION_DENIED), (expired, grpc.StatusCode.PERMISSION_DENIED)]
    for name, (stub_class, describe_request, method) in SERVICES.items():
        async with grpc.aio.insecure_channel(addresses[name]) as channel:
            stub = stub_class(channel)
            for key, code in cases:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Describe(describe_request(), metadata=bearer(key))
                assert info.value.code() == code, (name, "Describe", key)
                assert (await stream_code(stub, method, key))[0] == code, (name, method, key)
            answer = await stub.Describe(describe_request(), metadata=bearer(good))
            assert answer.description.service == name
    secrets = [keys.split_key(k)[1] for k in (good, wrong, revoked, expired)]
    for log in mesh.folder.glob("*.log"):
        text = log.read_text()
        assert not any(secret in text for secret in secrets), f"a key appeared in {log.name}"


async def test_realtime_responses_land_in_the_ledger(mesh, realtime):
    store = open_store(mesh.url)
    record, key = keys.create_key(store, "realtime")
    requests: asyncio.Queue = asyncio.Queue()
    config = realtime_pb2.RealtimeSessionConfig(model="voicemesh/cascade", input_sample_rate_hz=16000,
                                                output_sample_rate_hz=16000, modalities=["text", "audio"])
    await requests.put(realtime_pb2.ConverseRequest(session_update=config))
    for chunk in chunks(silence(0.3) + speak("What is the capital of France?") + silence(0.3), rate=16000, ms=100):
        await requests.put(realtime_pb2.ConverseRequest(input_audio_append=chunk))
    await requests.put(realtime_pb2.ConverseRequest(input_audio_commit={}))
    await requests.put(realtime_pb2.ConverseRequest(response_create={}))

    async def feed():
        while (request := await requests.get()) is not None:
            yield request

    done = []
    async with grpc.aio.insecure_channel(realtime.address) as channel:
        call = realtime_pb2_grpc.RealtimeServiceStub(channel).Converse(
            feed(), metadata=[*bearer(key), ("x-session-id", "rt-1"), ("x-turn-id", "1")], timeout=300)
        async for event in call:
            if event.WhichOneof("event") == "response_done":
                done.append(event.response_done)
                await requests.put(None)
    assert len(done) == 1 and done[0].status == "completed"
    usage = done[0].usage
    assert usage.audio_seconds_in > 0 and usage.output_tokens > 0 and usage.audio_seconds_out > 0
    records = store.usage(key_id=record.id)
    assert [(r.session_id, r.turn) for r in records] == [("rt-1", 1)]
    assert [units(r.service, r) for r in records] == [units("realtime", usage)]
    store.close()
