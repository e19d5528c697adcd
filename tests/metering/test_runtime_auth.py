"""The runtime's auth guard on an in-process gRPC server with a small TtsService servicer and a real ledger."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import grpc
import pytest

from tests.metering.helpers import recorded_usage
from voicemesh.metering import keys
from voicemesh.metering.ledger import Ledger, open_store
from voicemesh.metering.records import Quota
from voicemesh.runtime import auth
from voicemesh.runtime.interceptor import ServiceInterceptor
from voicemesh.v1 import agent_pb2, common_pb2, llm_pb2, realtime_pb2, stt_pb2, tts_pb2, tts_pb2_grpc


class CountingTts(tts_pb2_grpc.TtsServiceServicer):
    """Answers each text piece with a chunk; checks the quota per piece as the orchestrator does per turn."""

    def __init__(self):
        self.bound: list[tuple] = []

    async def Describe(self, request, context):
        return tts_pb2.TtsServiceDescribeResponse()

    async def Synthesize(self, requests, context):
        key = auth.current_key.get()
        self.bound.append((key.id if key else None, auth.forward_metadata(turn=9)))
        usage = common_pb2.Usage(model="fake/voice")
        sent = False
        try:
            async for request in requests:
                if request.WhichOneof("request") == "text":
                    await auth.check_quota(pending={"characters": len(request.text)})
                    usage.characters += len(request.text)
                    yield tts_pb2.SynthesizeResponse(audio=tts_pb2.AudioChunk(audio=b"\0\0"))
            sent = True
            yield tts_pb2.SynthesizeResponse(usage=usage)
        finally:
            if not sent:
                auth.record_unsent(usage)


@pytest.fixture
async def served(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    guard = await auth.Guard(service="tts", ledger=Ledger(url)).open()
    server = grpc.aio.server(interceptors=[ServiceInterceptor("tts", guard)])
    servicer = CountingTts()
    tts_pb2_grpc.add_TtsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    store = open_store(url)
    yield store, tts_pb2_grpc.TtsServiceStub(channel), servicer
    await channel.close()
    await server.stop(None)
    await guard.close()
    store.close()


def _meta(key: str, session: str = "s", turn: int | None = None):
    metadata = [("authorization", f"Bearer {key}"), ("x-session-id", session)]
    return metadata + ([("x-turn-id", str(turn))] if turn is not None else [])


async def _speak(stub, key: str, *texts: str, session: str = "s"):
    requests = [tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice="fake/voice"))]
    requests += [tts_pb2.SynthesizeRequest(text=t) for t in texts]
    return [r async for r in stub.Synthesize(iter(requests), metadata=_meta(key, session))]


async def test_quota_per_stream_and_per_turn(served):
    store, stub, _ = served
    record, key = keys.create_key(store, "ten", quotas=[Quota("characters", 10)])
    with pytest.raises(grpc.aio.AioRpcError) as info:  # the turn itself would exceed the quota
        await _speak(stub, key, "0123456789AB")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "characters=10/total" in info.value.details() and "would be exceeded" in info.value.details()
    await _speak(stub, key, "hello")
    await _speak(stub, key, "hel", "lo")  # 5 + 5 = 10: exactly the limit
    assert sum(r.characters for r in store.usage(key_id=record.id)) == 10
    with pytest.raises(grpc.aio.AioRpcError) as info:  # refused at admission: used up
        await _speak(stub, key, "x")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "is used up" in info.value.details()


async def test_key_revoked_mid_stream_is_refused_at_the_next_turn(served):
    store, stub, _ = served
    record, key = keys.create_key(store, "soon-gone")
    requests: asyncio.Queue = asyncio.Queue()
    await requests.put(tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice="fake/voice")))
    await requests.put(tts_pb2.SynthesizeRequest(text="first"))

    async def feed():
        while (item := await requests.get()) is not None:
            yield item

    call = stub.Synthesize(feed(), metadata=_meta(key))
    first = await call.read()
    assert first.WhichOneof("event") == "audio"
    store.revoke_key(record.id, time.time())
    await requests.put(tts_pb2.SynthesizeRequest(text="second"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "revoked" in info.value.details()


async def test_key_session_and_turn_are_bound_and_forwarded(served):
    store, stub, servicer = served
    record, key = keys.create_key(store, "bound")
    await _speak(stub, key, "hi", session="sess-42")
    key_id, forwarded = servicer.bound[-1]
    assert key_id == record.id
    assert dict(forwarded) == {"x-session-id": "sess-42", "authorization": f"Bearer {key}", "x-turn-id": "9"}


async def test_usage_of_a_client_that_left_is_still_recorded(served):
    store, stub, _ = served
    record, key = keys.create_key(store, "leaver")
    requests: asyncio.Queue = asyncio.Queue()
    for request in (tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice="fake/voice")),
                    tts_pb2.SynthesizeRequest(text="abc")):
        await requests.put(request)

    async def feed():
        while True:
            yield await requests.get()

    call = stub.Synthesize(feed(), metadata=_meta(key, "gone", turn=4))
    assert (await call.read()).WhichOneof("event") == "audio"
    call.cancel()
    records = await recorded_usage(store, record.id)
    assert [(r.session_id, r.turn, r.characters, r.model) for r in records] == [("gone", 4, 3, "fake/voice")]


async def test_unary_rpcs_need_a_key(served):
    store, stub, _ = served
    _, key = keys.create_key(store, "unary")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Describe(tts_pb2.TtsServiceDescribeRequest(), metadata=[("authorization", "Basic abc")])
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await stub.Describe(tts_pb2.TtsServiceDescribeRequest(), metadata=_meta(key))


def test_usage_paths_of_every_response():
    usage = common_pb2.Usage(model="m", characters=3)
    assert auth.usage_of(stt_pb2.RecognizeResponse(usage=usage)) == usage
    assert auth.usage_of(tts_pb2.SynthesizeResponse(usage=usage)) == usage
    assert auth.usage_of(llm_pb2.ChatResponse(done=llm_pb2.ChatDone(usage=usage))) == usage
    assert auth.usage_of(llm_pb2.ChatResponse(done=llm_pb2.ChatDone())) is None
    assert auth.usage_of(realtime_pb2.ConverseResponse(response_done=realtime_pb2.ResponseDone(usage=usage))) == usage
    assert auth.usage_of(stt_pb2.RecognizeResponse(final=stt_pb2.Transcript(text="x"))) is None
    assert auth.usage_of(llm_pb2.ChatResponse(text_delta="x")) is None
    # The orchestrator's UsageReport repeats the services' usage: never recorded twice.
    report = agent_pb2.SessionResponse(usage=agent_pb2.UsageReport(turn_id=1, service="tts", usage=usage))
    assert auth.usage_of(report) is None


def test_bearer_parsing():
    assert auth.bearer({"authorization": "Bearer vm_a_b"}) == "vm_a_b"
    assert auth.bearer({"authorization": "bearer   vm_a_b "}) == "vm_a_b"
    assert auth.bearer({"authorization": "Basic dXNlcg=="}) is None
    assert auth.bearer({"authorization": "Bearer "}) is None
    assert auth.bearer({}) is None


def test_a_bad_ledger_url_stops_the_server_with_a_clear_log():
    result = subprocess.run([sys.executable, "-m", "voicemesh.cli", "serve", "tts", "--port", "0", "--metrics-port",
                             "-1", "--ledger", "mysql://db/ledger"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "unsupported ledger URL scheme 'mysql'" in result.stderr
