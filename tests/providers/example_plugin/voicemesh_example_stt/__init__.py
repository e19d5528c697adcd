"""``example/energy``: an STT provider in a package of its own.

It finds utterances by signal energy and "transcribes" each as its length
("speech of 1.4 seconds"): no model, so the example shows only what a provider
owes VoiceMesh. A backend implements one modality's interface
(``SttBackend.recognize``: audio chunks in, typed events out), lists its models
in ``catalog``, declares its operator settings in ``settings_type`` (each field
becomes a service flag and a ``VOICEMESH_*`` variable), raises
``voicemesh.errors`` exceptions for bad input, and never imports grpc.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from voicemesh.backend import BackendSettings, ModelCard
from voicemesh.errors import InvalidInput
from voicemesh.services.stt.backend import (
    RecognitionOptions,
    SpeechEndedEvent,
    SpeechStartedEvent,
    SttBackend,
    SttEvent,
    TranscriptEvent,
    UsageEvent,
)
from voicemesh.settings import setting


@dataclass(frozen=True)
class EnergySettings(BackendSettings):
    """The operator's options: ``--example-threshold-db`` / ``VOICEMESH_EXAMPLE_THRESHOLD_DB``."""

    example_threshold_db: float = setting(-35.0, "level (dBFS) above which a 20 ms frame counts as speech")


class EnergySttBackend(SttBackend):
    """Utterances by energy, each transcribed as its length."""

    provider = "example"
    settings_type = EnergySettings
    settings: EnergySettings
    languages = ("en",)

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        return [ModelCard(descriptor="example/energy:en", languages=("en",), sample_rates_hz=(16000,),
                          capabilities={"streaming": True}, description="example plugin: energy segmentation")]

    async def recognize(self, options: RecognitionOptions, audio: AsyncIterator[bytes]) -> AsyncIterator[SttEvent]:
        if options.sample_rate_hz != 16000:
            raise InvalidInput(f"example/energy takes 16000 Hz audio, got {options.sample_rate_hz}")
        frame, silence_frames = 640, max(1, options.min_silence_ms // 20)  # 20 ms frames of 16-bit samples
        pending, position, utterance, start, quiet = b"", 0, 0, None, 0
        async for chunk in audio:
            pending += chunk
            while len(pending) >= frame:
                samples = np.frombuffer(pending[:frame], dtype="<i2").astype(np.float32) / 32768
                pending, position = pending[frame:], position + 20
                loud = 20 * np.log10(np.sqrt(np.mean(samples ** 2)) + 1e-9) > self.settings.example_threshold_db
                if loud and start is None:
                    utterance, start = utterance + 1, position - 20
                    yield SpeechStartedEvent(utterance_id=utterance, time_ms=start)
                quiet = 0 if loud else quiet + 1
                if start is not None and quiet >= silence_frames:
                    end = position - quiet * 20
                    yield TranscriptEvent(utterance_id=utterance, text=f"speech of {(end - start) / 1000:.1f} seconds",
                                          final=True, start_ms=start, end_ms=end, language="en")
                    yield SpeechEndedEvent(utterance_id=utterance, time_ms=end)
                    start = None
        yield UsageEvent(audio_seconds_in=position / 1000, model="example/energy:en")
