"""Auth, quotas and metering on a real ``voicemesh serve tts`` process with a SQLite ledger."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.metering.records import Quota
from voicemesh.process import health
from voicemesh.runtime.status import detail_of
from voicemesh.v1 import common_pb2, tts_pb2, tts_pb2_grpc

pytestmark = pytest.mark.slow

JOE = "piper/en_US-joe-medium"
SENTENCE = "Metering counts every second of speech."


def _requests(words: str) -> list[tts_pb2.SynthesizeRequest]:
    return [tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice=JOE, sample_rate_hz=16000)),
            tts_pb2.SynthesizeRequest(text=words), tts_pb2.SynthesizeRequest(flush=common_pb2.Flush())]


def _metadata(key: str | None, session: str = "", turn: int | None = None) -> list[tuple[str, str]]:
    metadata = [("authorization", f"Bearer {key}")] if key is not None else []
    if session:
        metadata.append(("x-session-id", session))
    if turn is not None:
        metadata.append(("x-turn-id", str(turn)))
    return metadata


async def synthesize(address: str, key: str | None, *, session: str = "", turn: int | None = None,
                     words: str = SENTENCE) -> list[tts_pb2.SynthesizeResponse]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = tts_pb2_grpc.TtsServiceStub(channel).Synthesize(iter(_requests(words)),
                                                               metadata=_metadata(key, session, turn))
        return [response async for response in call]


async def refused(address: str, key: str | None) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await synthesize(address, key)
    return info.value


def _usages(responses) -> list[common_pb2.Usage]:
    return [r.usage for r in responses if r.WhichOneof("event") == "usage"]


@pytest.fixture
def ledger(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    store = open_store(url)
    yield url, store
    store.close()


async def test_keys_on_a_real_service(service_process, ledger):
    url, store = ledger
    good, good_key = keys.create_key(store, "good")
    revoked, revoked_key = keys.create_key(store, "revoked")
    _, expired_key = keys.create_key(store, "expired", expires=time.time() - 1)
    _, later_key = keys.create_key(store, "later")
    store.revoke_key(revoked.id, time.time())
    server = service_process("tts", args=["--preload", JOE, "--log-level", "DEBUG"], env={"VOICEMESH_LEDGER": url})

    assert (await refused(server.address, None)).code() == grpc.StatusCode.UNAUTHENTICATED
    wrong = good_key[:-4] + ("abcd" if not good_key.endswith("abcd") else "dcba")
    error = await refused(server.address, wrong)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "unknown API key" in error.details()
    assert (await refused(server.address, "not-a-key")).code() == grpc.StatusCode.UNAUTHENTICATED
    error = await refused(server.address, revoked_key)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "revoked" in error.details()
    assert detail_of(error).reason == "PERMISSION_DENIED"
    error = await refused(server.address, expired_key)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "expired" in error.details()

    # Unary RPCs need the key too; health does not.
    async with grpc.aio.insecure_channel(server.address) as channel:
        describe = tts_pb2_grpc.TtsServiceStub(channel).Describe
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await describe(tts_pb2.TtsServiceDescribeRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = await describe(tts_pb2.TtsServiceDescribeRequest(), metadata=_metadata(good_key))
        assert answer.description.service == "tts"
    assert health(server.address) == "SERVING"

    # A good key works, and every Usage the client received is in the ledger, exactly.
    received = []
    for n, words in enumerate([SENTENCE, "Two. Three sentences here. Done."]):
        usages = _usages(await synthesize(server.address, good_key, session=f"sess-{n}", turn=n + 1, words=words))
        assert len(usages) == 1 and usages[0].characters > 0
        received.append((f"sess-{n}", n + 1, usages[0]))
    records = store.usage(key_id=good.id)
    assert [(r.session_id, r.turn, r.service, r.model, r.characters, r.audio_seconds_out) for r in records] == [
        (session, turn, "tts", u.model, u.characters, u.audio_seconds_out) for session, turn, u in received]
    assert all(r.audio_seconds_in == 0 and r.input_tokens == 0 for r in records)

    # Revoking with the CLI takes effect on the running server at once.
    cli = subprocess.run([sys.executable, "-m", "voicemesh.cli", "keys", "revoke", "later", "--ledger", url],
                         capture_output=True, text=True, check=True)
    assert "revoked key" in cli.stdout
    assert (await refused(server.address, later_key)).code() == grpc.StatusCode.PERMISSION_DENIED

    log_text = server.log_path.read_text()
    assert "UNAUTHENTICATED" in log_text and "PERMISSION_DENIED" in log_text, "the refusals are logged"
    for key in (good_key, wrong, revoked_key, expired_key, later_key):
        assert keys.split_key(key)[1] not in log_text, "a key appeared in the server log"


async def test_quota_refuses_its_key_and_not_another(service_process, ledger):
    url, store = ledger
    limited, limited_key = keys.create_key(store, "limited", quotas=[Quota("audio_seconds_out", 1.0, "day")])
    _, free_key = keys.create_key(store, "free", quotas=[Quota("audio_seconds_out", 1000.0, "day")])
    server = service_process("tts", args=["--preload", JOE], env={"VOICEMESH_LEDGER": url})

    # The sentence is longer than the quota: the stream stops as it overruns it (within one 100 ms chunk),
    # and what it sent is recorded.
    cut = await refused(server.address, limited_key)
    assert cut.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and detail_of(cut).reason == "QUOTA_EXCEEDED"
    assert "audio_seconds_out" in cut.details()
    await asyncio.sleep(0.5)  # the cut stream's record is written as it ends
    assert 1.0 < sum(r.audio_seconds_out for r in store.usage(key_id=limited.id)) <= 1.1 + 1e-6
    error = await refused(server.address, limited_key)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "audio_seconds_out=1/day" in error.details() and "resets at" in error.details()
    assert detail_of(error).reason == "QUOTA_EXCEEDED" and not detail_of(error).retryable
    assert _usages(await synthesize(server.address, free_key)), "another key keeps working"
    assert len(store.usage(key_id=limited.id)) == 1, "the refused stream recorded nothing"


async def test_no_auth_records_usage_without_keys(service_process, ledger):
    url, store = ledger
    server = service_process("tts", args=["--preload", JOE, "--no-auth"], env={"VOICEMESH_LEDGER": url})
    usages = _usages(await synthesize(server.address, None, session="anon"))
    assert [(r.key_id, r.session_id, r.characters) for r in store.usage()] == [("", "anon", usages[0].characters)]


async def test_kill_9_mid_stream_keeps_completed_streams_once(service_process, ledger):
    url, store = ledger
    key_record, key = keys.create_key(store, "crash")
    server = service_process("tts", args=["--preload", JOE], env={"VOICEMESH_LEDGER": url})
    received = {}
    for n in range(3):
        received[f"done-{n}"] = _usages(await synthesize(server.address, key, session=f"done-{n}"))[0]

    long_text = " ".join(["This stream is cut by a crash before it can finish speaking."] * 6)
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = tts_pb2_grpc.TtsServiceStub(channel).Synthesize(iter(_requests(long_text)),
                                                               metadata=_metadata(key, "cut"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for response in call:
                assert response.WhichOneof("event") != "usage"
                if response.WhichOneof("event") == "audio":
                    os.kill(server.proc.pid, signal.SIGKILL)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    server.proc.wait()
    assert server.proc.returncode == -signal.SIGKILL

    records = store.usage(key_id=key_record.id)
    assert sorted((r.session_id, r.characters, r.audio_seconds_out) for r in records) == sorted(
        (session, u.characters, u.audio_seconds_out) for session, u in received.items())

    # A new process on the same ledger after the crash: it opens, serves and adds one record.
    again = service_process("tts", args=["--preload", JOE], env={"VOICEMESH_LEDGER": url})
    await synthesize(again.address, key, session="after")
    sessions = [r.session_id for r in store.usage(key_id=key_record.id)]
    assert sorted(sessions) == ["after", "done-0", "done-1", "done-2"]


async def test_failed_key_guesses_are_audited_and_slowed_per_address(service_process, ledger):
    url, store = ledger
    good, good_key = keys.create_key(store, "good")
    server = service_process("tts", args=["--preload", JOE], env={"VOICEMESH_LEDGER": url})
    guesses = [f"vm_guess{n}_{'x' * 40}" for n in range(7)] + ["not-a-key"]
    waits = []
    for guess in guesses:
        started = time.monotonic()
        assert (await refused(server.address, guess)).code() == grpc.StatusCode.UNAUTHENTICATED
        waits.append(time.monotonic() - started)
    # Five failures are free; the 6th, 7th and 8th wait 0.25, 0.5 and 1 s before their refusal.
    assert waits[5] >= 0.25 and waits[6] >= 0.5 and waits[7] >= 1.0, waits
    # The same address with a valid key is served, and that clears its count.
    assert _usages(await synthesize(server.address, good_key))
    assert (await refused(server.address, guesses[0])).code() == grpc.StatusCode.UNAUTHENTICATED
    log_text = server.log_path.read_text()
    assert "API key refused: peer=127.0.0.1 key_id=guess3 failures=4" in log_text
    assert "peer=127.0.0.1 key_id=- failures=8 backoff=1.00s" in log_text
    assert "key_id=guess0 failures=1 backoff=0.00s" in log_text.split("failures=8")[1], "a success clears the count"
    assert "x" * 40 not in log_text, "a guessed secret appeared in the log"
