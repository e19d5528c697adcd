"""``assemblyai/universal-streaming:<language>``: AssemblyAI's v3 streaming WebSocket (``/v3/ws``).

The stream opens ``wss://streaming.assemblyai.com/v3/ws`` with the key in the
``Authorization`` header and ``sample_rate``, ``encoding=pcm_s16le``,
``format_turns`` and ``speech_model`` as query parameters, sends PCM in binary
messages of 50 to 1000 ms, and at the end ``ForceEndpoint`` (so the last turn
ends) and ``Terminate``. AssemblyAI answers ``Begin``, ``Turn`` messages (the
running transcript of turn ``turn_order``; ``end_of_turn`` once the turn ended,
then again with ``turn_is_formatted`` when formatting is on) and
``Termination``; an error is an ``Error`` frame and a close with the same code.
``universal-streaming:en`` uses the English model, another language the
multilingual one.
"""

from __future__ import annotations

from typing import Any

from voicemesh.backend import BackendSettings, ModelCard
from voicemesh.errors import (
    DeadlineExceeded,
    InvalidInput,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    VoiceMeshError,
)
from voicemesh.services.stt.backend import (
    RecognitionOptions,
    SpeechEndedEvent,
    SpeechStartedEvent,
    SttEvent,
    TranscriptEvent,
    WordTiming,
)
from voicemesh.services.stt.backends.websocket import StreamingSttBackend, Turns

KNOWN_MODELS = ("universal-streaming",)
# Account conditions (1008 "Unauthorized connection: <reason>") that are quota, not a bad key.
_QUOTA_WORDS = ("concurrent", "balance", "insufficient", "limit", "funds")


class AssemblyAISttBackend(StreamingSttBackend):
    """AssemblyAI Universal-Streaming: turns with end-of-turn detection and formatted finals."""

    provider = "assemblyai"
    default_base_url = "wss://streaming.assemblyai.com"
    key_env = ("ASSEMBLYAI_API_KEY",)
    path = "/v3/ws"
    min_chunk_ms = 50  # AssemblyAI closes with 3007 for audio messages outside 50-1000 ms
    max_chunk_ms = 1000

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        return [
            ModelCard(descriptor=f"{cls.provider}/{model}", sample_rates_hz=(8000, 16000, 24000, 48000),
                      capabilities={"streaming": True, "interim_results": True, "word_times": True},
                      description="AssemblyAI v3 streaming WebSocket (/v3/ws), end of turn and formatted finals by "
                                  "AssemblyAI; :en is the English model, other languages the multilingual one")
            for model in KNOWN_MODELS
        ]

    def query(self, options: RecognitionOptions) -> dict[str, str]:
        return {"sample_rate": str(options.sample_rate_hz), "encoding": "pcm_s16le", "format_turns": "true",
                "speech_model": self._speech_model(options.language)}

    def _speech_model(self, language: str) -> str:
        if self.model != "universal-streaming":
            return self.model  # a newer model name, passed through as AssemblyAI spells it
        return "universal-streaming-english" if language in ("", "en") else "universal-streaming-multilingual"

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.options.api_key} if self.options.api_key else {}

    def turns(self, options: RecognitionOptions) -> Turns:
        formatted = self.options.extra.get("format_turns", "true").lower() != "false"
        return AssemblyAITurns(options, model=self.descriptor, formatted=formatted)

    def end_messages(self) -> list[dict[str, Any]]:
        return [{"type": "ForceEndpoint"}, {"type": "Terminate"}]

    def close_error(self, code: int, reason: str) -> VoiceMeshError | None:
        return close_error(code, reason, model=self.descriptor)


def close_error(code: int, reason: str, *, model: str) -> VoiceMeshError | None:
    """The error of an AssemblyAI close code (or an Error frame's ``error_code``); None for a normal close."""
    if code == 1000:
        return None
    message = f"{model} closed the stream: {code} {reason}".strip()
    lowered = reason.lower()
    if code in (3009, 4002, 4003, 4029, 4102) or (code == 1008 and any(w in lowered for w in _QUOTA_WORDS)):
        return ResourceExhausted(message, model=model)
    if code in (1008, 4001):
        return Unauthenticated(message, model=model)
    if code in (3006, 3007, 4000, 4100, 4101, 4032, 4033, 4034):
        return InvalidInput(message, model=model)
    if code in (3008, 4008, 4031):
        return DeadlineExceeded(message, model=model)
    return Unavailable(message, model=model)  # 3005 server error, 1011, 1013 and the rest


class AssemblyAITurns(Turns):
    """AssemblyAI messages to events: one utterance per ``turn_order``."""

    def __init__(self, options: RecognitionOptions, *, model: str, formatted: bool = True):
        self.options = options
        self.model = model
        self.formatted = formatted  # with format_turns a turn's FINAL is its formatted end_of_turn message
        self.utterance = 0
        self.open = False
        self.turn: int | None = None  # turn_order of the open utterance, once a Turn named it
        self.text = ""
        self.words: tuple[WordTiming, ...] = ()
        self.language = options.language
        self._done = False

    @property
    def finished(self) -> bool:
        return self._done

    def feed(self, message: dict[str, Any]) -> list[SttEvent]:
        match message["type"]:
            case "Turn":
                return self._turn(message)
            case "SpeechStarted":
                return self._open(int(message.get("timestamp", 0)))
            case "Termination":
                self._done = True
                return []
            case "Error":
                code = int(message.get("error_code") or 0)
                error = close_error(code, str(message.get("error", "")), model=self.model)
                raise error or Unavailable(f"{self.model} reported an error: {message}", model=self.model)
        return []  # Begin, Heartbeat, Warning and message types this client does not use

    def flush(self) -> list[SttEvent]:
        return self._close()

    def _open(self, time_ms: int) -> list[SttEvent]:
        if self.open:
            return []
        self.open, self.utterance = True, self.utterance + 1
        return [SpeechStartedEvent(utterance_id=self.utterance, time_ms=time_ms)]

    def _turn(self, message: dict[str, Any]) -> list[SttEvent]:
        try:
            turn = int(message["turn_order"])
            text = str(message["transcript"]).strip()
            raw = message.get("words") or ()
            words = tuple(WordTiming(word=str(w["text"]), start_ms=int(w["start"]), end_ms=int(w["end"]),
                                     confidence=float(w.get("confidence", 0.0))) for w in raw)
            stable = " ".join(str(w["text"]) for w in raw if w.get("word_is_final"))
        except (KeyError, TypeError, ValueError):
            raise Unavailable(f"{self.model} sent a Turn message unlike the documented one (malformed frame)",
                              model=self.model) from None
        ended = bool(message.get("end_of_turn"))
        events: list[SttEvent] = []
        if self.open and self.turn is not None and turn != self.turn:
            events += self._close()  # a new turn began before the old one said it ended
        if not text and not words and not ended:
            return events
        events += self._open(words[0].start_ms if words else 0)
        # transcript holds only the finalized words: a partial shows every word heard so far
        self.turn, self.words = turn, words
        self.text = text if ended or not words else " ".join(w.word for w in words)
        self.language = str(message.get("language_code") or self.options.language)
        if ended and (message.get("turn_is_formatted") or not self.formatted):
            return events + self._close()
        if not ended and self.options.interim_results and self.text:
            events.append(self._transcript(final=False, stable=stable))
        return events

    def _transcript(self, *, final: bool, stable: str) -> TranscriptEvent:
        words = self.words
        return TranscriptEvent(utterance_id=self.utterance, text=self.text, final=final,
                               start_ms=words[0].start_ms if words else 0, end_ms=words[-1].end_ms if words else 0,
                               stable_text=stable, words=words,
                               confidence=sum(w.confidence for w in words) / len(words) if words else 0.0,
                               language=self.language)

    def _close(self) -> list[SttEvent]:
        if not self.open:
            return []
        events: list[SttEvent] = [self._transcript(final=True, stable=self.text)] if self.text else []
        events.append(SpeechEndedEvent(utterance_id=self.utterance,
                                       time_ms=self.words[-1].end_ms if self.words else 0))
        self.open, self.turn, self.text, self.words = False, None, "", ()
        return events
