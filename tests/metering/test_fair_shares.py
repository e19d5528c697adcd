"""Fair shares among API keys on the real services of the metered mesh (default limits): one key's idle
streams or long generations leave room for another key, an idle stream is closed, and a flood of audio
into an orchestrator session is dropped rather than buffered."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from tests.metering.helpers import recorded_usage
from tests.orchestrator.client import LLM, STT, TTS, AgentClient, session_config
from tests.speech import silence
from voicemesh.audio import chunks
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.v1 import llm_pb2, llm_pb2_grpc, stt_pb2, stt_pb2_grpc, tts_pb2, tts_pb2_grpc

pytestmark = pytest.mark.slow

COUNTING = "Count from 1 to 1000, separated by commas."


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def new_key(mesh, name: str) -> tuple[str, str]:
    store = open_store(mesh.url)
    record, key = keys.create_key(store, name)
    store.close()
    return record.id, key


async def idle_stt(stub, key: str):
    """A Recognize stream that sends its config and then nothing."""

    async def feed():
        yield stt_pb2.RecognizeRequest(config=stt_pb2.RecognitionConfig(model=STT, sample_rate_hz=16000))
        await asyncio.Event().wait()

    return stub.Recognize(feed(), metadata=bearer(key), timeout=120)


async def test_a_second_key_is_served_while_the_first_holds_its_limit_of_idle_streams(mesh):
    _, hog = new_key(mesh, "idle-hog")
    other_id, other = new_key(mesh, "other-listener")
    async with grpc.aio.insecure_channel(mesh.services["stt"].address) as channel:
        stub = stt_pb2_grpc.SttServiceStub(channel)
        # As many idle streams as the service admits in all (--workers 1 + --queue 8): one key tries them all.
        calls = [await idle_stt(stub, hog) for _ in range(9)]
        await asyncio.sleep(2.0)
        refused = [call for call in calls if call.done()]
        assert refused, "one key held every recognition stream"
        assert [await call.code() for call in refused] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * len(refused)
        # The decoder's fair share binds first (all but one of its 9 streams); --max-streams-per-key (16) is
        # tested on its own in tests/reliability/test_limits.py.
        assert "8 of the 9 recognition streams, its share" in await refused[0].details()

        requests = [stt_pb2.RecognizeRequest(config=stt_pb2.RecognitionConfig(model=STT, sample_rate_hz=16000)),
                    *(stt_pb2.RecognizeRequest(audio=piece) for piece in chunks(silence(1.0), rate=16000, ms=100))]
        served = [response async for response in stub.Recognize(iter(requests), metadata=bearer(other), timeout=60)]
        assert served[-1].WhichOneof("event") == "usage", "the other key's stream ran to its usage"
        for call in calls:
            call.cancel()
    store = open_store(mesh.url)
    assert sum(r.audio_seconds_in for r in await recorded_usage(store, other_id)) == pytest.approx(1.0)
    store.close()


async def test_an_idle_stream_is_closed_after_the_timeout(service_process, tmp_path):
    tts = service_process("tts", args=["--preload", TTS, "--piper-workers", "1", "--idle-timeout-s", "1.5"])

    async def feed():
        yield tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice=TTS))
        await asyncio.Event().wait()  # then nothing

    async with grpc.aio.insecure_channel(tts.address) as channel:
        started = time.monotonic()
        call = tts_pb2_grpc.TtsServiceStub(channel).Synthesize(feed(), timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        waited = time.monotonic() - started
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, info.value.details()
    assert "--idle-timeout-s" in info.value.details()
    assert 1.5 <= waited < 5.0, f"closed after {waited:.1f} s"


async def chat(address: str, key: str, text: str, max_tokens: int, first_delta: asyncio.Event | None = None):
    """One generation on a Chat stream: (its text, seconds to its Done)."""
    started = time.monotonic()
    requests = [llm_pb2.ChatRequest(config=llm_pb2.ChatConfig(model=LLM)),
                llm_pb2.ChatRequest(generate=llm_pb2.Generate(
                    id="g", messages=[llm_pb2.ChatMessage(role="user", content=text)],
                    sampling=llm_pb2.Sampling(max_tokens=max_tokens, temperature=0)))]

    async def feed():
        for request in requests:
            yield request
        await asyncio.Event().wait()

    pieces = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = llm_pb2_grpc.LlmServiceStub(channel).Chat(feed(), metadata=bearer(key), timeout=300)
        try:
            async for response in call:
                if response.WhichOneof("event") == "text_delta":
                    pieces.append(response.text_delta)
                    if first_delta is not None:
                        first_delta.set()
                elif response.WhichOneof("event") == "done":
                    return "".join(pieces), time.monotonic() - started
        finally:
            call.cancel()
    raise AssertionError("the chat stream ended without Done")


async def test_one_keys_two_long_generations_do_not_block_another_keys(mesh):
    address = mesh.services["llm"].address
    _, hog = new_key(mesh, "long-generations")
    _, other = new_key(mesh, "short-question")
    first = asyncio.Event()
    long_ones = [asyncio.create_task(chat(address, hog, COUNTING, 1500, first)) for _ in range(2)]
    await asyncio.wait_for(first.wait(), 60)
    await asyncio.sleep(0.5)  # both of the hog's requests are in (one runs, one waits for the key's share)
    try:
        text, seconds = await asyncio.wait_for(chat(address, other, "What is the capital of France?", 20), 60)
        assert text.strip(), "the other key got an answer"
        assert not all(task.done() for task in long_ones), "the other key was answered while the hog generated"
    finally:
        for task in long_ones:
            task.cancel()
        await asyncio.gather(*long_ones, return_exceptions=True)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_flood_of_audio_into_a_session_is_dropped_not_buffered(mesh):
    _, key = new_key(mesh, "flood")
    orchestrator = mesh.orchestrator()
    async with AgentClient(orchestrator.address, session_config(), metadata=tuple(bearer(key))) as session:
        await session.wait_for(lambda e: e.kind == "started")
        before = rss_mib(orchestrator.proc.pid)
        for piece in chunks(silence(600.0), rate=16000, ms=100):  # ten minutes of audio, as fast as it goes
            session.send(audio=piece)
        peak = before
        for _ in range(40):
            await asyncio.sleep(0.25)
            peak = max(peak, rss_mib(orchestrator.proc.pid))
        session.send(text="Say hello.")
        done = await session.turn_done(1, timeout=120)
        assert done.text, session.of("error")
    log = orchestrator.log_path.read_text()
    print(f"\norchestrator RSS {before:.0f} -> peak {peak:.0f} MiB")
    assert peak - before < 60, f"the orchestrator grew from {before:.0f} to {peak:.0f} MiB"
    assert "faster than 2 x real time: dropped" in log


async def test_a_text_session_goes_on_after_its_idle_streams_were_closed(mesh, tmp_path):
    """The orchestrator's STT and Chat streams of a session idle while a client only sends text; closed
    by the services' idle timeout, they are opened again and the next turn is answered."""
    from voicemesh.mesh import MeshConfig
    from voicemesh.process import ServiceProcess

    idle = ["--metrics-port", "-1", "--idle-timeout-s", "2"]
    procs = {"stt": ServiceProcess("stt", env=mesh.env, log_path=tmp_path / "stt.log",
                                   args=[*idle, "--workers", "1", "--threads", "1"]),
             "llm": ServiceProcess("llm", env=mesh.env, log_path=tmp_path / "llm.log",
                                   args=[*idle, "--preload", LLM, "--temperature", "0", "--llama-threads", "1"])}
    try:
        for proc in procs.values():
            proc.start()
        for proc in procs.values():
            proc.wait_serving()
        MeshConfig({"stt": {"*": [procs["stt"].address]}, "llm": {"*": [procs["llm"].address]},
                    "tts": {"*": [mesh.services["tts"].address]}}).write(tmp_path / "mesh.json")
        procs["orchestrator"] = ServiceProcess("orchestrator", env=mesh.env, log_path=tmp_path / "orchestrator.log",
                                               args=["--metrics-port", "-1", "--mesh", str(tmp_path / "mesh.json"),
                                                     "--max-tokens", "24"]).start().wait_serving()
        _, key = new_key(mesh, "pauses")
        async with AgentClient(procs["orchestrator"].address, session_config(), metadata=tuple(bearer(key))) as session:
            await session.wait_for(lambda e: e.kind == "started")
            session.send(text="What is the capital of France?")
            assert (await session.turn_done(1, timeout=120)).text
            await asyncio.sleep(5.0)  # the services close the idle streams meanwhile
            session.send(text="What is the capital of Germany?")
            assert (await session.turn_done(2, timeout=120)).text
            assert not session.of("error"), session.of("error")
        for name in ("stt", "llm"):
            assert "idle timeout" in procs[name].log_path.read_text(), f"the {name} stream was not closed"
    finally:
        for proc in procs.values():
            proc.stop()
