"""The official openai SDK against the gateway, over real services on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.speech import speak, word_errors
from voicemesh.audio import wav_bytes
from voicemesh.mesh import MeshConfig
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.process import ServiceProcess, free_port

STT = "faster-whisper/tiny.en:en"
LLM = "llama.cpp/smollm2-135m-instruct"
VOICE = "piper/en_US-joe-medium"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}


@contextlib.contextmanager
def running_gateway(mesh: MeshConfig, tmp: Path) -> Iterator[str]:
    """``voicemesh serve gateway`` for ``mesh``; yields its base URL once /v1/models answers."""
    with gateway_process(mesh, tmp) as (base, _proc):
        yield base


@contextlib.contextmanager
def gateway_process(mesh: MeshConfig, tmp: Path, args=(), env=None) -> Iterator[tuple[str, subprocess.Popen]]:
    """``voicemesh serve gateway`` for ``mesh`` with ``args`` and ``env``; yields its base URL (once
    /v1/models answers) and its process."""
    mesh.write(tmp / "mesh.json")
    port = free_port()
    with open(tmp / "gateway.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voicemesh.cli", "serve", "gateway", "--port", str(port),
             "--mesh", str(tmp / "mesh.json"), *args], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
        try:
            base = f"http://127.0.0.1:{port}/v1"
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (tmp / "gateway.log").read_text()
                try:
                    httpx.get(base + "/models", timeout=5)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "gateway did not come up"
                    time.sleep(0.2)
            yield base, proc
        finally:
            proc.terminate()
            proc.wait(15)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    services = {
        "stt": ServiceProcess("stt", args=["--preload", STT, "--metrics-port", "-1"], log_path=tmp / "stt.log"),
        "llm": ServiceProcess("llm", args=["--preload", LLM, "--metrics-port", "-1"], log_path=tmp / "llm.log"),
        "tts": ServiceProcess("tts", args=["--preload", VOICE, "--metrics-port", "-1"], log_path=tmp / "tts.log"),
    }
    try:
        for proc in services.values():
            proc.start()
        for proc in services.values():
            proc.wait_serving()
        with running_gateway(MeshConfig({m: {"*": [p.address]} for m, p in services.items()}), tmp) as base:
            yield base
    finally:
        for proc in services.values():
            proc.stop()


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway, api_key="unused", max_retries=0, timeout=120)


def test_models_lists_every_service(client):
    ids = {m.id for m in client.models.list()}
    assert {VOICE, LLM}.issubset(ids)
    assert any(i.startswith("faster-whisper/") for i in ids)


def test_chat_completion(client):
    completion = client.chat.completions.create(
        model=LLM, temperature=0,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}])
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert "paris" in completion.choices[0].message.content.lower()
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0


def test_streamed_chat_completion(client):
    stream = client.chat.completions.create(
        model=LLM, temperature=0, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "What is the capital of France? Answer in one word."}])
    chunks = list(stream)
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "paris" in text.lower()
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_forced_tool_call(client, stream):
    kwargs = dict(model=LLM, tools=[WEATHER_TOOL], tool_choice="required",
                  messages=[{"role": "user", "content": "What's the weather like in Berlin?"}])
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **kwargs))
        deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        assert deltas and deltas[0].function.name == "get_weather"
        arguments = json.loads("".join(d.function.arguments or "" for d in deltas if d.index == 0))
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
    else:
        completion = client.chat.completions.create(**kwargs)
        call = completion.choices[0].message.tool_calls[0]
        assert call.type == "function" and call.function.name == "get_weather"
        assert completion.choices[0].finish_reason == "tool_calls"
        arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str) and arguments["unit"] in ("celsius", "fahrenheit")


def test_transcription_of_a_wav_file(client, tmp_path):
    sentence = "The train leaves the station at noon."
    path = tmp_path / "question.wav"
    path.write_bytes(wav_bytes(speak(sentence, 22050), 22050))
    with path.open("rb") as file:
        transcription = client.audio.transcriptions.create(model=STT, file=file)
    errors, total = word_errors(sentence, transcription.text)
    assert errors / total <= 0.2, transcription.text
    with path.open("rb") as file:
        verbose = client.audio.transcriptions.create(model=STT, file=file, response_format="verbose_json",
                                                     timestamp_granularities=["word"])
    assert verbose.words and verbose.words[-1].end > verbose.words[0].start


@pytest.mark.parametrize("response_format", ["pcm", "wav"])
def test_speech(client, response_format):
    response = client.audio.speech.create(model=VOICE, voice="en_US-joe-medium", input="Hello from the gateway.",
                                          response_format=response_format)
    audio = response.read()
    if response_format == "wav":
        assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
        audio = audio[44:]
    assert len(audio) > 24000 * 2 * 0.5  # more than half a second at 24 kHz


BAD_REQUESTS = [
    ("post", "/chat/completions", {"content": b"{not json"}, 400, "not valid JSON"),
    ("post", "/chat/completions", {"json": {"messages": [{"role": "user", "content": "hi"}]}}, 400, "'model'"),
    ("post", "/chat/completions", {"json": {"model": LLM, "messages": []}}, 400, "at least one message"),
    ("post", "/chat/completions", {"json": {"model": LLM, "messages": [{"role": "wizard", "content": "x"}]}}, 400,
     "role"),
    ("post", "/chat/completions", {"json": {"model": "nosuch/model", "messages": [{"role": "user", "content": "x"}]}},
     404, "nosuch"),
    ("post", "/chat/completions", {"json": {"model": LLM, "messages": [{"role": "user", "content": "x"}],
                                            "temperature": 7}}, 400, "temperature"),
    ("post", "/audio/speech", {"json": {"model": VOICE, "input": ""}}, 400, "empty"),
    ("post", "/audio/speech", {"json": {"model": VOICE, "input": "hi", "response_format": "ogg"}}, 400, "ogg"),
    ("post", "/audio/speech", {"json": {"model": "piper/nobody", "input": "hi"}}, 404, "nobody"),
    ("post", "/audio/speech", {"json": {"model": VOICE, "input": "hi", "speed": 40}}, 400, "speed"),
    ("post", "/audio/transcriptions", {"files": {"file": ("a.wav", b"not a wav")}, "data": {"model": STT}}, 400,
     "WAV"),
    ("post", "/audio/transcriptions", {"data": {"model": STT}, "files": {"other": ("x", b"1")}}, 400, "'file'"),
    ("get", "/nowhere", {}, 404, "unknown route"),
    ("get", "/chat/completions", {}, 405, "not allowed"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "message"), BAD_REQUESTS,
                         ids=[f"{b[1]}-{b[3]}-{b[4]}" for b in BAD_REQUESTS])
def test_bad_input_gets_an_openai_error_body(gateway, method, path, kwargs, status, message):
    response = getattr(httpx, method)(gateway + path, timeout=60, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message.lower() in error["message"].lower()
    assert {"message", "type", "param", "code"} <= set(error)


def test_sdk_raises_its_own_error_types(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nosuch/model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model=VOICE, voice="en_US-joe-medium", input="hi", response_format="ogg")


def test_api_keys_and_metering_apply_through_the_gateway(service_process, tmp_path):
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    key = keys.ensure_local_key(ledger, tmp_path / "key")
    tts = service_process("tts", args=["--preload", VOICE], env={"VOICEMESH_LEDGER": ledger})
    with running_gateway(MeshConfig({"tts": {"*": [tts.address]}}), tmp_path) as base:
        request = {"model": VOICE, "input": "Only paying customers hear this.", "response_format": "pcm"}
        missing = httpx.post(base + "/audio/speech", json=request, timeout=60)
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
        wrong = httpx.post(base + "/audio/speech", json=request, timeout=60,
                           headers={"Authorization": "Bearer vm_000000000000_wrong"})
        assert wrong.status_code == 401
        client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
        audio = client.audio.speech.create(model=VOICE, voice="en_US-joe-medium", input=request["input"],
                                           response_format="pcm").read()
    store = open_store(ledger)
    try:
        records = [r for r in store.usage() if r.service == "tts"]
    finally:
        store.close()
    assert len(records) == 1
    assert records[0].characters == len(request["input"])
    assert records[0].audio_seconds_out == pytest.approx(len(audio) / 2 / 24000, abs=0.05)
