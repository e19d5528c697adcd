"""The gateway's shared fixture: real local services with an alias table, and the gateway in front."""

from __future__ import annotations

import pytest

from tests.gateway.test_gateway import gateway_process
from voicemesh.mesh import MeshConfig
from voicemesh.process import ServiceProcess

STT = "faster-whisper/tiny.en:en"
LLM = "llama.cpp/smollm2-135m-instruct"
VOICE = "piper/en_US-joe-medium"
ALIASES = {"models": {"house-stt": STT}, "voices": {"echo": "piper/nobody"}}
LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 12)

__all__ = ["gateway_process", "LONG_TEXT"]


@pytest.fixture(scope="session")
def openai_mesh(tmp_path_factory):
    """STT, LLM and TTS with their local models (TTS admits one stream at a time, so a second speech
    request meets a 429), an alias table in the mesh config, and the gateway in front."""
    tmp = tmp_path_factory.mktemp("openai-sdk")
    services = {
        "stt": ServiceProcess("stt", args=["--preload", STT, "--metrics-port", "-1"], log_path=tmp / "stt.log"),
        "llm": ServiceProcess("llm", args=["--preload", LLM, "--metrics-port", "-1"], log_path=tmp / "llm.log"),
        "tts": ServiceProcess("tts", args=["--preload", VOICE, "--metrics-port", "-1", "--max-streams", "1"],
                              log_path=tmp / "tts.log"),
    }
    try:
        for proc in services.values():
            proc.start()
        for proc in services.values():
            proc.wait_serving()
        routes = {m: {"*": [p.address]} for m, p in services.items()}
        with gateway_process(MeshConfig(routes, ALIASES), tmp,
                             env={"VOICEMESH_CORS_ORIGINS": "http://app.example"}) as (base, _proc):
            yield base
    finally:
        for proc in services.values():
            proc.stop()


@pytest.fixture(scope="session")
def realtime_gateway(tmp_path_factory):
    """A realtime service (the local cascade) with the gateway in front: /v1/realtime."""
    tmp = tmp_path_factory.mktemp("realtime-gateway")
    service = ServiceProcess("realtime", args=["--metrics-port", "-1", "--max-response-tokens", "60"],
                             log_path=tmp / "realtime.log")
    try:
        service.start()
        service.wait_serving()
        with gateway_process(MeshConfig({"realtime": {"*": [service.address]}}), tmp) as (base, _proc):
            yield base
    finally:
        service.stop()


@pytest.fixture(scope="session")
def realtime_double_gateway(tmp_path_factory):
    """The gateway over a realtime service whose openai backend talks to the OpenAI Realtime test double:
    gpt-realtime is aliased to openai/gpt-realtime. Yields the gateway's base URL and the double."""
    from tests.realtime.openai_server import FakeRealtimeServer

    tmp = tmp_path_factory.mktemp("realtime-double-gateway")
    fake = FakeRealtimeServer(pace_s=0.05).start()
    service = ServiceProcess("realtime", args=["--metrics-port", "-1", "--preload", ""], log_path=tmp / "realtime.log",
                             env={"VOICEMESH_OPENAI_BASE_URL": fake.url, "VOICEMESH_OPENAI_API_KEY": "test-key"})
    try:
        service.start()
        service.wait_serving()
        mesh = MeshConfig({"realtime": {"*": [service.address]}}, {"models": {"gpt-realtime": "openai/gpt-realtime"}})
        with gateway_process(mesh, tmp) as (base, _proc):
            yield base, fake
    finally:
        service.stop()
        fake.stop()
