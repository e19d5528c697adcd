"""Speech to text: streaming recognition (faster-whisper locally, or any OpenAI-compatible API).

Serves voicemesh.v1.SttService: Recognize (config, then PCM audio; events
SPEECH_STARTED, INTERIM, FINAL, SPEECH_ENDED, USAGE) and Describe.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicemesh.mesh import DEFAULT_PORTS
from voicemesh.runtime.service import ModelService, ModelServiceSettings
from voicemesh.services.stt.servicer import SttServicer
from voicemesh.settings import setting
from voicemesh.v1 import stt_pb2, stt_pb2_grpc


@dataclass
class Settings(ModelServiceSettings):
    """Settings of the stt service."""

    port: int = setting(DEFAULT_PORTS["stt"], "gRPC port (0 picks a free one and logs it)")
    preload: str = setting("faster-whisper/tiny.en:en",
                           "comma-separated model descriptors to load before the service reports SERVING")
    workers: int = setting(2, "local decoding threads (each decodes one utterance at a time)")
    queue: int = setting(8, "streams admitted beyond --workers; more are refused with RESOURCE_EXHAUSTED")
    threads: int = setting(1, "CPU threads per local decoding worker")
    beam_size: int = setting(1, "beam size of local decoding (1 = greedy, fastest)")
    interim_interval_ms: int = setting(500, "audio (ms) between two interim re-decodes of a growing utterance")
    remote_timeout_s: float = setting(30.0, "default timeout (s) of one request to a remote transcription API")


def create(settings: Settings) -> ModelService:
    """The stt service definition."""
    return ModelService(
        name="stt",
        full_name=stt_pb2.DESCRIPTOR.services_by_name["SttService"].full_name,
        settings=settings,
        servicer_factory=SttServicer,
        add_to_server=stt_pb2_grpc.add_SttServiceServicer_to_server,
    )
