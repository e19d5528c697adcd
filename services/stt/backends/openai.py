"""Remote speech to text through an OpenAI-compatible ``/audio/transcriptions`` API.

The stream is segmented locally with Silero VAD; each utterance is sent as a
16 kHz WAV file (multipart form: ``file``, ``model``, ``language``,
``response_format``) and its transcript becomes the FINAL. HTTP errors and
timeouts become the VoiceMesh error taxonomy. No interims: the API
transcribes whole files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np

from voicemesh.audio import float_to_pcm, wav_bytes
from voicemesh import remote
from voicemesh.backend import BackendSettings, ModelCard
from voicemesh.errors import (
    Unavailable,
)
from voicemesh.services.stt.backend import Hypothesis, RecognitionOptions, SttBackend, SttEvent, WordTiming
from voicemesh.services.stt.stream import RecognizeStream
from voicemesh.speech.vad import RATE, shared_vad

log = logging.getLogger(__name__)

KNOWN_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")


class OpenAISttBackend(remote.RemoteBackend, SttBackend):
    """``openai/<model>:<language>``, or any server speaking OpenAI's transcription API."""

    provider = "openai"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._vad: Any = None

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        return [
            ModelCard(
                descriptor=f"{cls.provider}/{model}",
                sample_rates_hz=(RATE,),
                capabilities={"streaming": True, "interim_results": False, "word_times": model == "whisper-1"},
                description="remote OpenAI-compatible /audio/transcriptions (any model name the server knows)",
            )
            for model in KNOWN_MODELS
        ]

    async def load(self) -> None:
        await super().load()
        self._vad = await asyncio.to_thread(shared_vad)

    async def recognize(self, options: RecognitionOptions, audio: AsyncIterator[bytes]) -> AsyncIterator[SttEvent]:
        stream = RecognizeStream(
            options=options,
            vad=self._vad,
            decode=functools.partial(self._transcribe, language=options.language),
            model=self.descriptor + (f":{options.language}" if options.language else ""),
            eager_final=False,  # a speculative request per pause would be billed by a paid API
        )
        async with contextlib.aclosing(stream.events(audio)) as events:
            async for event in events:
                yield event

    def _form(self, language: str) -> dict[str, str]:
        response_format = self.options.extra.get(
            "response_format", "verbose_json" if self.model.startswith("whisper") else "json")
        form = {"model": self.model, "response_format": response_format}
        if language:
            form["language"] = language
        if response_format == "verbose_json":
            form["timestamp_granularities[]"] = "word"
        return form

    async def _transcribe(self, samples: np.ndarray, offset_ms: int, final: bool, *, language: str) -> Hypothesis:
        client = self.http_client()
        wav = await asyncio.to_thread(lambda: wav_bytes(float_to_pcm(samples), RATE))
        files = {"file": ("utterance.wav", wav, "audio/wav")}
        request = client.build_request("POST", "/audio/transcriptions", data=self._form(language), files=files)
        try:
            response = await remote.send(client, request, endpoint="/audio/transcriptions",
                                         model=self.descriptor)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise remote.transport_error(exc, url=str(request.url), timeout_s=self.options.timeout_s,
                                         model=self.descriptor) from None
        return self._hypothesis(response, offset_ms, language)

    def _hypothesis(self, response: httpx.Response, offset_ms: int, language: str) -> Hypothesis:
        if "json" not in response.headers.get("content-type", "json"):
            return Hypothesis(text=response.text.strip(), language=language)
        try:
            body = response.json()
        except ValueError as exc:
            log.warning("%s: the transcription API sent a body that is not JSON: %r", self.descriptor,
                        response.text[:200])
            raise Unavailable("the transcription API sent a body that is not JSON", model=self.descriptor) from exc
        words = tuple(
            WordTiming(word=str(w.get("word", "")).strip(), start_ms=offset_ms + round(float(w.get("start", 0)) * 1000),
                       end_ms=offset_ms + round(float(w.get("end", 0)) * 1000),
                       confidence=float(w.get("probability", 0.0)))
            for w in body.get("words") or ()
        )
        confidence = float(np.mean([w.confidence for w in words])) if words and any(w.confidence for w in words) else 0.0
        return Hypothesis(text=str(body.get("text", "")).strip(), words=words, confidence=confidence,
                          language=_language_code(body.get("language")) or language)


def _language_code(name: Any) -> str:
    """OpenAI's verbose_json names the language ("english"); keep codes, map the common names."""
    if not name:
        return ""
    name = str(name).lower()
    return {"english": "en", "french": "fr", "german": "de", "spanish": "es"}.get(name, name)
