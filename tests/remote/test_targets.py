"""Remote targets belong to the operator, and model copies are bounded (issue 20, findings 1 and 2).

Every test runs the real LLM or TTS service in its own process; a capture server on
loopback plays the URL a hostile client names and records what reaches it.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from tests.llm.chat import Chat, user
from tests.remote.capture import CaptureServer
from tests.stt.helpers import recognize
from tests.tts.helpers import config, synthesize, text
from voicemesh.v1 import common_pb2, llm_pb2

OPERATOR_KEY = "sk-operator-secret-0123456789"
REMOTE = "openai/gpt-4.1-mini"
LOCAL = "llama.cpp/smollm2-135m-instruct"
LEAKED = ("upstream-secret", "10.0.0.7")  # in the capture server's error body


@pytest.fixture
def allowed():
    server = CaptureServer().start()
    yield server
    server.stop()


@pytest.fixture
def unlisted():
    server = CaptureServer().start()
    yield server
    server.stop()


def chat_error(address: str, model: str, backend: common_pb2.BackendOptions | None) -> grpc.RpcError | None:
    """The error one short generation ends with (None when it answers)."""
    with Chat(address, model, backend=backend) as chat:
        try:
            chat.turn("g", [user("Hello?")], sampling=llm_pb2.Sampling(max_tokens=4))
        except grpc.RpcError as error:
            return error
    return None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_no_operator_key_reaches_a_client_url_and_an_unlisted_url_gets_no_request(service_process, allowed,
                                                                                   unlisted):
    llm = service_process("llm", env={"VOICEMESH_OPENAI_API_KEY": OPERATOR_KEY,
                                      "VOICEMESH_ALLOWED_BASE_URLS": allowed.base_url})
    # A listed URL the client named, without a key of its own: the request carries no key at all.
    error = chat_error(llm.address, REMOTE, common_pb2.BackendOptions(base_url=allowed.base_url))
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert [seen.authorization for seen in allowed.seen] == [""]
    # With its own key, that key goes there and nothing else.
    chat_error(llm.address, REMOTE, common_pb2.BackendOptions(base_url=allowed.base_url, api_key="sk-client"))
    assert [seen.authorization for seen in allowed.seen] == ["", "Bearer sk-client"]
    # Unlisted URLs (another port, the cloud metadata address, a name for loopback) are refused before any request.
    for url in (unlisted.base_url, "http://169.254.169.254/latest/meta-data", allowed.base_url.replace(
            "127.0.0.1", "localhost"), allowed.base_url + "/../admin"):
        error = chat_error(llm.address, REMOTE, common_pb2.BackendOptions(base_url=url, api_key="sk-client"))
        assert error is not None, url
        assert error.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT), url
        assert "base_url" in error.details(), error.details()
    assert unlisted.seen == [] and len(allowed.seen) == 2
    assert OPERATOR_KEY not in llm.log_tail(400)


async def test_remote_error_bodies_are_logged_not_relayed(service_process, allowed):
    tts = service_process("tts")  # tests/conftest.py lists loopback as allowed
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await synthesize(tts.address, [config("openai/tts-1:alloy", base_url=allowed.base_url, api_key="sk-client"),
                                       text("Hello there.")])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "HTTP 400 (Bad Request)" in caught.value.details()
    assert not any(secret in caught.value.details() for secret in LEAKED), caught.value.details()

    llm = service_process("llm")
    error = chat_error(llm.address, REMOTE, common_pb2.BackendOptions(base_url=allowed.base_url, api_key="sk-c"))
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not any(secret in error.details() for secret in LEAKED), error.details()
    assert LEAKED[0] in tts.log_tail(400) and LEAKED[0] in llm.log_tail(400)  # the operator can still read it


def test_option_variations_load_no_copies_of_a_local_model(service_process):
    llm = service_process("llm", args=["--preload", LOCAL])
    assert chat_error(llm.address, LOCAL, None) is None
    before = rss_mib(llm.proc.pid)
    variations = [common_pb2.BackendOptions(extra={"variation": str(i)}) if i % 2 else
                  common_pb2.BackendOptions(timeout_s=1.0 + i) for i in range(20)]
    for i, backend in enumerate(variations):
        error = chat_error(llm.address, LOCAL, backend)
        grown = rss_mib(llm.proc.pid) - before
        assert grown < 48, f"VmRSS grew {grown:.0f} MiB after {i + 1} option variations"
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert "takes no backend options" in error.details()
    print(f"\nLLM service VmRSS {before:.0f} MiB, after 20 option variations {rss_mib(llm.proc.pid):.0f} MiB")
    assert chat_error(llm.address, LOCAL, common_pb2.BackendOptions()) is None  # empty options are no options


def test_option_variations_load_no_copies_of_the_local_stt_model(service_process):
    stt = service_process("stt")  # preloads faster-whisper tiny.en
    silence = bytes(16000 * 2)  # one second
    assert recognize(stt.address, silence)[-1].WhichOneof("event") == "usage"
    before = rss_mib(stt.proc.pid)
    for i in range(20):
        backend = common_pb2.BackendOptions(extra={"variation": str(i)})
        try:
            recognize(stt.address, silence, backend=backend)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()
        grown = rss_mib(stt.proc.pid) - before
        assert grown < 48, f"VmRSS grew {grown:.0f} MiB after {i + 1} option variations"
        assert code == grpc.StatusCode.INVALID_ARGUMENT, code
    print(f"\nSTT service VmRSS {before:.0f} MiB, after 20 option variations {rss_mib(stt.proc.pid):.0f} MiB")


def test_remote_backends_sit_in_a_bounded_lru_and_one_in_use_stays_open(service_process, allowed):
    llm = service_process("llm", args=["--max-remote-backends", "3"])
    with Chat(llm.address, REMOTE, backend=common_pb2.BackendOptions(base_url=allowed.base_url,
                                                                       api_key="sk-held")) as held:
        time.sleep(1.0)  # the stream's config is in: the stream holds its backend from here on
        for i in range(20):
            error = chat_error(llm.address, REMOTE, common_pb2.BackendOptions(base_url=allowed.base_url,
                                                                             api_key=f"sk-client-{i}"))
            assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        deadline = time.monotonic() + 10
        while allowed.open_connections > 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert allowed.open_connections <= 3, allowed.open_connections
        # The held stream's backend was evicted long ago but is not closed under it: it still reaches the remote.
        held.generate("late", [user("Hi")])
        with pytest.raises(grpc.RpcError) as info:
            while True:
                held.next()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert allowed.seen[-1].authorization == "Bearer sk-held" and len(allowed.seen) == 21
