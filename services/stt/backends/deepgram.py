"""``deepgram/<model>:<language>``: Deepgram's live transcription WebSocket (``/v1/listen``).

The stream opens ``wss://api.deepgram.com/v1/listen`` with ``Authorization: Token
<key>`` and its options as query parameters (``encoding=linear16``,
``sample_rate``, ``interim_results``, ``endpointing``, ``utterance_end_ms``,
``vad_events``), sends raw PCM as binary messages, ``KeepAlive`` while the
input is idle and ``CloseStream`` at its end. Deepgram answers ``Results``
(``is_final`` for a settled segment, ``speech_final`` when endpointing ended the
utterance), ``SpeechStarted``, ``UtteranceEnd`` and ``Metadata``, then closes.
An utterance's FINAL joins its settled segments; it ends at ``speech_final`` or
``UtteranceEnd``, whichever comes first.
"""

from __future__ import annotations

from typing import Any

from voicemesh.backend import BackendSettings, ModelCard
from voicemesh.errors import InvalidInput, ResourceExhausted, Unauthenticated, Unavailable, VoiceMeshError
from voicemesh.services.stt.backend import (
    RecognitionOptions,
    SpeechEndedEvent,
    SpeechStartedEvent,
    SttEvent,
    TranscriptEvent,
    WordTiming,
)
from voicemesh.services.stt.backends.websocket import StreamingSttBackend, Turns

KNOWN_MODELS = ("nova-3", "nova-2", "nova-3-medical", "enhanced", "base")
MIN_UTTERANCE_END_MS = 1000  # Deepgram's documented lower bound for utterance_end_ms


class DeepgramSttBackend(StreamingSttBackend):
    """Deepgram live streaming STT with interims, endpointing and word times."""

    provider = "deepgram"
    default_base_url = "wss://api.deepgram.com"
    key_env = ("DEEPGRAM_API_KEY",)
    path = "/v1/listen"
    keepalive_s = 4.0  # Deepgram closes a stream after 10 s without audio or KeepAlive

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        return [
            ModelCard(descriptor=f"{cls.provider}/{model}", sample_rates_hz=(8000, 16000, 24000, 48000),
                      capabilities={"streaming": True, "interim_results": True, "word_times": True},
                      description="Deepgram live WebSocket (/v1/listen), endpointing by Deepgram; "
                                  "any model name it knows")
            for model in KNOWN_MODELS
        ]

    def query(self, options: RecognitionOptions) -> dict[str, str]:
        query = {"model": self.model, "encoding": "linear16", "sample_rate": str(options.sample_rate_hz),
                 # UtteranceEnd works only with interim results: always ask, pass them on only if asked
                 "channels": "1", "interim_results": "true",
                 "endpointing": str(options.min_silence_ms),
                 "utterance_end_ms": str(max(MIN_UTTERANCE_END_MS, options.min_silence_ms)),
                 "vad_events": "true", "punctuate": "true"}
        if options.language:
            query["language"] = options.language
        return query

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.options.api_key}"} if self.options.api_key else {}

    def turns(self, options: RecognitionOptions) -> Turns:
        return DeepgramTurns(options, model=self.descriptor)

    def end_messages(self) -> list[dict[str, Any]]:
        return [{"type": "CloseStream"}]

    def keepalive_message(self) -> dict[str, Any] | None:
        return {"type": "KeepAlive"}

    def close_error(self, code: int, reason: str) -> VoiceMeshError | None:
        if code == 1000:
            return None
        message = f"{self.descriptor} closed the stream: {code} {reason}".strip()
        if code == 1008 or reason.startswith("DATA-"):  # DATA-0000: the payload is not audio it can decode
            return InvalidInput(message, model=self.descriptor)
        if code == 4001 or "auth" in reason.lower():
            return Unauthenticated(message, model=self.descriptor)
        if code == 4029 or "credit" in reason.lower() or "rate limit" in reason.lower():
            return ResourceExhausted(message, model=self.descriptor)
        return Unavailable(message, model=self.descriptor)  # 1011 NET-0000/NET-0001 and the rest: retry elsewhere


class DeepgramTurns(Turns):
    """Deepgram messages to events: settled segments gathered into one FINAL per utterance."""

    def __init__(self, options: RecognitionOptions, *, model: str):
        self.options = options
        self.model = model
        self.utterance = 0
        self.open = False  # inside an utterance (SpeechStarted sent)
        self.settled: list[dict[str, Any]] = []  # is_final alternatives of the open utterance
        self.start_ms = 0
        self._done = False

    @property
    def finished(self) -> bool:
        return self._done

    def feed(self, message: dict[str, Any]) -> list[SttEvent]:
        match message["type"]:
            case "Results":
                return self._results(message)
            case "SpeechStarted":
                return self._start(_ms(message.get("timestamp", 0.0)))
            case "UtteranceEnd":
                return self._end(_ms(message.get("last_word_end", 0.0)))
            case "Metadata":
                self._done = True  # the summary comes last, after CloseStream
                return []
            case "Error":
                raise Unavailable(f"{self.model} reported an error: {message.get('description') or message}",
                                  model=self.model)
        return []  # a message type this client does not use (documented as extensible)

    def flush(self) -> list[SttEvent]:
        return self._end(None)

    def _start(self, time_ms: int) -> list[SttEvent]:
        if self.open:
            return []
        self.open, self.utterance, self.start_ms = True, self.utterance + 1, time_ms
        return [SpeechStartedEvent(utterance_id=self.utterance, time_ms=time_ms)]

    def _results(self, message: dict[str, Any]) -> list[SttEvent]:
        try:
            alternative = message["channel"]["alternatives"][0]
            text = str(alternative["transcript"]).strip()
            start, duration = float(message["start"]), float(message["duration"])
        except (KeyError, IndexError, TypeError, ValueError):
            raise Unavailable(f"{self.model} sent a Results message without a transcript (malformed frame)",
                              model=self.model) from None
        events: list[SttEvent] = []
        if not text and not self.open:
            return events  # silence
        if text:
            events += self._start(_ms(start))
        if message.get("is_final"):
            if text:
                self.settled.append(alternative)
            if message.get("speech_final"):
                events += self._end(_ms(start + duration))
        elif text and self.options.interim_results:
            events.append(self._transcript([*self.settled, alternative], final=False, end_ms=_ms(start + duration)))
        return events

    def _end(self, end_ms: int | None) -> list[SttEvent]:
        if not self.open:
            return []
        words = _words(self.settled)
        end = end_ms if end_ms is not None else (words[-1].end_ms if words else self.start_ms)
        events: list[SttEvent] = []
        if self.settled:
            events.append(self._transcript(self.settled, final=True, end_ms=end))
        events.append(SpeechEndedEvent(utterance_id=self.utterance, time_ms=end))
        self.open, self.settled = False, []
        return events

    def _transcript(self, parts: list[dict[str, Any]], *, final: bool, end_ms: int) -> TranscriptEvent:
        words = _words(parts)
        text = " ".join(str(p["transcript"]).strip() for p in parts if str(p["transcript"]).strip())
        confidence = sum(float(p.get("confidence", 0.0)) for p in parts) / len(parts)
        stable = " ".join(str(p["transcript"]).strip() for p in self.settled) if not final else text
        return TranscriptEvent(utterance_id=self.utterance, text=text, final=final,
                               start_ms=words[0].start_ms if words else self.start_ms, end_ms=end_ms,
                               stable_text=stable, words=words, confidence=confidence,
                               language=self.options.language)


def _words(parts: list[dict[str, Any]]) -> tuple[WordTiming, ...]:
    return tuple(
        WordTiming(word=str(w.get("punctuated_word") or w.get("word", "")), start_ms=_ms(w.get("start", 0.0)),
                   end_ms=_ms(w.get("end", 0.0)), confidence=float(w.get("confidence", 0.0)))
        for part in parts for w in part.get("words") or ()
    )


def _ms(seconds: Any) -> int:
    return round(float(seconds) * 1000)

