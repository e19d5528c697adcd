"""Realtime speech to speech with OpenAI Realtime event semantics (a local STT→LLM→TTS cascade, or OpenAI Realtime).

Serves voicemesh.v1.RealtimeService: Converse (a session update naming the
model first, then input audio, commits, items, response create/cancel and
truncate; events: speech started/stopped, input transcription, response
text/audio/transcript deltas, response done with usage, truncation, errors)
and Describe. Models: voicemesh/cascade (faster-whisper, llama.cpp and piper
in this process) and openai/<realtime-model> over the OpenAI Realtime
WebSocket protocol (base_url and api_key from the session's backend options
or VOICEMESH_OPENAI_* / OPENAI_* environment variables).
"""

from __future__ import annotations

from dataclasses import dataclass

from voicemesh.mesh import DEFAULT_PORTS
from voicemesh.runtime.service import ModelService, ModelServiceSettings
from voicemesh.services.realtime.servicer import RealtimeServicer
from voicemesh.settings import setting
from voicemesh.v1 import realtime_pb2, realtime_pb2_grpc


@dataclass
class Settings(ModelServiceSettings):
    """Settings of the realtime service."""

    port: int = setting(DEFAULT_PORTS["realtime"], "gRPC port (0 picks a free one and logs it)")
    preload: str = setting("voicemesh/cascade",
                           "comma-separated model descriptors to load before the service reports SERVING")
    cascade_stt: str = setting("faster-whisper/tiny.en:en", "speech-to-text model of the local cascade")
    cascade_llm: str = setting("llama.cpp/smollm2-135m-instruct", "language model of the local cascade")
    cascade_tts: str = setting("piper/en_US-joe-medium", "default voice (text-to-speech model) of the local cascade")
    max_sessions: int = setting(4, "cascade sessions open at once (one llama.cpp context each); more are refused "
                                "with RESOURCE_EXHAUSTED")
    stt_threads: int = setting(1, "CPU threads of the cascade's speech recognition")
    llm_threads: int = setting(1, "CPU threads of the cascade's llama.cpp generation "
                               "(more threads slow it down badly when the cores are shared)")
    llm_context: int = setting(2048, "context window of the cascade's llama.cpp model, in tokens")
    tts_threads: int = setting(1, "CPU threads of the cascade's piper synthesis")
    max_response_tokens: int = setting(200, "tokens a cascade response generates at most")
    temperature: float = setting(0.0, "sampling temperature of cascade responses (0 = greedy)")
    max_input_seconds: float = setting(120.0, "uncommitted input audio kept at most (s) without server VAD")
    remote_timeout_s: float = setting(30.0, "timeout (s) of connecting to a remote realtime API")

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")


def create(settings: Settings) -> ModelService:
    """The realtime service definition for ``voicemesh serve realtime``."""
    return ModelService(
        name="realtime",
        full_name=realtime_pb2.DESCRIPTOR.services_by_name["RealtimeService"].full_name,
        settings=settings,
        servicer_factory=RealtimeServicer,
        add_to_server=realtime_pb2_grpc.add_RealtimeServiceServicer_to_server,
    )
