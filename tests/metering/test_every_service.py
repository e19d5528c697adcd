"""Keys on every service (STT, LLM, TTS, realtime, orchestrator) and realtime usage in the ledger."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from tests.metering.helpers import recorded_usage, units
from tests.orchestrator.client import LLM
from tests.speech import silence, speak
from voicemesh.audio import chunks
from voicemesh.client.describe import DESCRIBABLE
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.metering.records import Quota
from voicemesh.process import ServiceProcess
from voicemesh.v1 import (
    llm_pb2,
    llm_pb2_grpc,
    realtime_pb2,
    realtime_pb2_grpc,
    stt_pb2,
    stt_pb2_grpc,
)

pytestmark = pytest.mark.slow

# service -> (stub class, Describe request, streaming method name), from the table `voicemesh describe` uses
SERVICES = {
    name: (*DESCRIBABLE[f"voicemesh.v1.{full}"], method) for name, full, method in (
        ("stt", "SttService", "Recognize"), ("llm", "LlmService", "Chat"), ("tts", "TtsService", "Synthesize"),
        ("realtime", "RealtimeService", "Converse"), ("orchestrator", "AgentService", "Session"))
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


async def test_llm_chat_checks_the_quota_before_each_generation(mesh):
    store = open_store(mesh.url)
    record, key = keys.create_key(store, "tokens", quotas=[Quota("output_tokens", 5)])
    _, other = keys.create_key(store, "other-tokens", quotas=[Quota("output_tokens", 10**6)])
    store.close()

    async def chat(key: str, generations: int) -> tuple[list[llm_pb2.ChatDone], grpc.aio.AioRpcError | None]:
        requests: asyncio.Queue = asyncio.Queue()
        await requests.put(llm_pb2.ChatRequest(config=llm_pb2.ChatConfig(model=LLM)))

        async def feed():
            while (request := await requests.get()) is not None:
                yield request

        def generate(n: int) -> llm_pb2.ChatRequest:
            return llm_pb2.ChatRequest(generate=llm_pb2.Generate(
                id=f"g{n}", messages=[llm_pb2.ChatMessage(role="user", content="Count from one to ten.")],
                sampling=llm_pb2.Sampling(max_tokens=12, temperature=0)))

        done, error = [], None
        async with grpc.aio.insecure_channel(mesh.services["llm"].address) as channel:
            call = llm_pb2_grpc.LlmServiceStub(channel).Chat(feed(), metadata=bearer(key), timeout=300)
            await requests.put(generate(1))
            try:
                async for response in call:
                    if response.WhichOneof("event") == "done":
                        done.append(response.done)
                        await requests.put(generate(len(done) + 1) if len(done) < generations else None)
            except grpc.aio.AioRpcError as exc:
                error = exc
        return done, error

    done, error = await chat(key, 3)
    # The first generation asks for 12 tokens and is capped at the 5 the quota has left.
    assert len(done) == 1 and done[0].usage.output_tokens == 5 and done[0].finish_reason == llm_pb2.FINISH_REASON_LENGTH
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "output_tokens=5/total" in error.details()
    store = open_store(mesh.url)
    assert [r.output_tokens for r in store.usage(key_id=record.id)] == [done[0].usage.output_tokens]
    store.close()
    done, error = await chat(other, 2)
    assert error is None and len(done) == 2, "another key keeps working"


async def test_stt_audio_of_a_client_that_left_is_still_metered(mesh):
    """A Recognize stream cancelled before its USAGE (an orchestrator killed mid-session) is metered anyway."""
    store = open_store(mesh.url)
    record, key = keys.create_key(store, "vanishing-listener")
    audio = silence(0.2) + speak("The train leaves the station at noon.") + silence(1.0)  # ends the utterance
    pieces = list(chunks(audio, rate=16000, ms=100))
    sent = asyncio.Event()

    async def feed():
        yield stt_pb2.RecognizeRequest(config=stt_pb2.RecognitionConfig(model="faster-whisper/tiny.en:en",
                                                                        sample_rate_hz=16000))
        for piece in pieces:
            yield stt_pb2.RecognizeRequest(audio=piece)
        sent.set()
        await asyncio.Event().wait()  # never half-closes: the client goes away instead

    async with grpc.aio.insecure_channel(mesh.services["stt"].address) as channel:
        call = stt_pb2_grpc.SttServiceStub(channel).Recognize(feed(), metadata=[*bearer(key), ("x-session-id", "gone")])
        async with asyncio.timeout(120):
            async for event in call:
                if event.WhichOneof("event") == "final" and sent.is_set():
                    heard_ms = event.final.end_ms
                    break
        call.cancel()
    records = await recorded_usage(store, record.id)
    store.close()
    assert [(r.service, r.session_id) for r in records] == [("stt", "gone")]
    # what the service had read when the client left: at least the utterance it finalized, at most all sent
    assert heard_ms / 1000 <= records[0].audio_seconds_in <= len(audio) / 2 / 16000
    assert records[0].model == "faster-whisper/tiny.en:en"
