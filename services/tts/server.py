"""Text to speech: streaming text in, tagged audio out (piper locally, or a remote provider).

Serves voicemesh.v1.TtsService. Voices: piper/<voice> (installed voice packages
and the models folder, --models-dir), openai/<model>:<voice> for OpenAI-compatible APIs,
and the streaming providers cartesia/<model>:<voice-id>, elevenlabs/<model>:<voice-id>
and deepgram/aura-<voice>.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicemesh.runtime.service import ModelService, ModelServiceSettings
from voicemesh.services.tts.servicer import TtsServicer
from voicemesh.settings import setting
from voicemesh.v1 import tts_pb2_grpc


@dataclass
class Settings(ModelServiceSettings):
    """Settings of the TTS service."""

    port: int = setting(50063, "gRPC port (0 picks a free one and logs it)")
    # The backends declare their own settings (PiperSettings, RemoteSettings): see voicemesh serve tts --help.
    chunk_ms: int = setting(100, "longest audio chunk sent, in milliseconds (10-100)")
    max_piece_chars: int = setting(4096, "longest text piece accepted in one message, in characters")
    max_pending_chars: int = setting(16384, "most text a stream may hold that is not spoken yet, in characters")
    max_segment_chars: int = setting(250, "longest segment synthesized at once; longer text is cut at a clause or space")
    first_clause_min_chars: int = setting(
        16, "a reply's first clause (up to , ; :) of at least this many characters is spoken before its sentence ends"
    )
    first_words: int = setting(
        4, "a reply's first sentence without such a clause is spoken in two pieces, the first after this many words "
        "(when two words or more follow it), so its first audio comes sooner"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 10 <= self.chunk_ms <= 100:
            raise ValueError(f"chunk_ms must be between 10 and 100, got {self.chunk_ms}")
        if self.first_words < 2:
            raise ValueError(f"first_words must be at least 2 (a one-word piece sounds odd), got {self.first_words}")
        if self.max_segment_chars < 8:
            raise ValueError(f"max_segment_chars must be at least 8, got {self.max_segment_chars}")


def create(settings: Settings) -> ModelService:
    """The TTS service definition for ``voicemesh serve tts``."""
    return ModelService(
        name="tts",
        full_name="voicemesh.v1.TtsService",
        settings=settings,
        servicer_factory=TtsServicer,
        add_to_server=tts_pb2_grpc.add_TtsServiceServicer_to_server,
    )
