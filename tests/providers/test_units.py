"""Pure logic of the streaming STT providers: keys from the provider's variables, message readers, close codes."""

from __future__ import annotations

import pytest

from voicemesh import targets
from voicemesh.backend import RemoteOptions
from voicemesh.errors import (
    DeadlineExceeded,
    InvalidInput,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from voicemesh.remote import RemoteSettings
from voicemesh.services.stt.backend import RecognitionOptions, SpeechEndedEvent, SpeechStartedEvent, TranscriptEvent
from voicemesh.services.stt.backends.assemblyai import AssemblyAISttBackend, AssemblyAITurns, close_error
from voicemesh.services.stt.backends.deepgram import DeepgramSttBackend, DeepgramTurns

OPTIONS = RecognitionOptions(language="en", sample_rate_hz=16000, interim_results=True)


def _resolve(cls, options: RemoteOptions) -> RemoteOptions:
    return cls.accept_options(options, RemoteSettings(), targets.Allowlist.parse("http://127.0.0.1:*"))


def test_the_providers_own_key_variable_is_read_after_the_voicemesh_one(monkeypatch):
    monkeypatch.delenv("VOICEMESH_DEEPGRAM_API_KEY", raising=False)
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-own")
    resolved = _resolve(DeepgramSttBackend, RemoteOptions())
    assert (resolved.base_url, resolved.api_key) == ("wss://api.deepgram.com", "dg-own")
    monkeypatch.setenv("VOICEMESH_DEEPGRAM_API_KEY", "dg-voicemesh")
    assert _resolve(DeepgramSttBackend, RemoteOptions()).api_key == "dg-voicemesh"
    # a URL the client names never gets the operator's key, whichever variable holds it
    client = _resolve(DeepgramSttBackend, RemoteOptions(base_url="ws://127.0.0.1:9"))
    assert (client.base_url, client.api_key) == ("ws://127.0.0.1:9", "")
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "aai-own")
    resolved = _resolve(AssemblyAISttBackend, RemoteOptions())
    assert (resolved.base_url, resolved.api_key) == ("wss://streaming.assemblyai.com", "aai-own")


def test_a_provider_variable_does_not_leak_to_another_provider(monkeypatch):
    monkeypatch.delenv("VOICEMESH_ASSEMBLYAI_API_KEY", raising=False)
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-own")
    assert _resolve(AssemblyAISttBackend, RemoteOptions()).api_key == ""


def _results(text: str, start: float, duration: float, *, final: bool, speech_final: bool = False) -> dict:
    words = [{"word": w.lower(), "punctuated_word": w, "start": start + i * 0.3, "end": start + i * 0.3 + 0.25,
              "confidence": 0.9} for i, w in enumerate(text.split())]
    return {"type": "Results", "start": start, "duration": duration, "is_final": final, "speech_final": speech_final,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.9, "words": words}]}}


def test_deepgram_final_joins_settled_segments_and_ends_at_utterance_end():
    turns = DeepgramTurns(OPTIONS, model="deepgram/nova-3")
    events = turns.feed({"type": "SpeechStarted", "channel": [0], "timestamp": 0.5})
    events += turns.feed(_results("What is", 0.5, 0.6, final=False))
    events += turns.feed(_results("What is the", 0.5, 1.0, final=True))  # settled, utterance goes on
    events += turns.feed(_results("capital", 1.5, 0.4, final=False))
    events += turns.feed(_results("capital?", 1.5, 0.5, final=True))
    assert not any(isinstance(e, TranscriptEvent) and e.final for e in events)
    events += turns.feed({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 2.0})
    kinds = [(type(e).__name__, getattr(e, "final", None)) for e in events]
    assert kinds == [("SpeechStartedEvent", None), ("TranscriptEvent", False), ("TranscriptEvent", False),
                     ("TranscriptEvent", True), ("SpeechEndedEvent", None)]
    interim, final = events[2], events[3]
    assert interim.text == "What is the capital" and interim.stable_text == "What is the"
    assert final.text == "What is the capital?" and final.end_ms == 2000
    assert [w.word for w in final.words] == ["What", "is", "the", "capital?"]
    assert turns.feed({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 2.0}) == []  # already ended
    assert not turns.finished and turns.feed({"type": "Metadata", "duration": 3.0}) == [] and turns.finished


def test_deepgram_speech_final_ends_the_utterance_and_silence_results_are_ignored():
    turns = DeepgramTurns(OPTIONS, model="deepgram/nova-3")
    assert turns.feed(_results("", 0.0, 1.0, final=True)) == []
    events = turns.feed(_results("Hello there.", 1.0, 1.0, final=True, speech_final=True))
    assert [type(e) for e in events] == [SpeechStartedEvent, TranscriptEvent, SpeechEndedEvent]
    assert events[1].final and events[1].text == "Hello there."


def test_deepgram_close_codes():
    backend = DeepgramSttBackend(model="nova-3", options=RemoteOptions(), settings=RemoteSettings())
    assert backend.close_error(1000, "") is None
    assert isinstance(backend.close_error(1008, "DATA-0000"), InvalidInput)
    assert isinstance(backend.close_error(1011, "NET-0001"), Unavailable)


def _turn(order: int, words: list[str], *, final_words: int, end: bool = False, formatted: bool = False) -> dict:
    return {"type": "Turn", "turn_order": order, "turn_is_formatted": formatted, "end_of_turn": end,
            "transcript": " ".join(words[:final_words]), "end_of_turn_confidence": 0.5,
            "words": [{"text": w, "start": 100 * i, "end": 100 * i + 80, "confidence": 0.8,
                       "word_is_final": i < final_words} for i, w in enumerate(words)]}


def test_assemblyai_partials_then_the_formatted_end_of_turn():
    turns = AssemblyAITurns(OPTIONS, model="assemblyai/universal-streaming")
    events = turns.feed({"type": "Begin", "id": "x", "expires_at": 1})
    events += turns.feed(_turn(0, ["what", "is"], final_words=1))
    events += turns.feed(_turn(0, ["what", "is", "the", "capital"], final_words=3))
    events += turns.feed(_turn(0, ["what", "is", "the", "capital"], final_words=4, end=True))  # not formatted yet
    assert [type(e) for e in events] == [SpeechStartedEvent, TranscriptEvent, TranscriptEvent]
    assert events[2].text == "what is the capital" and events[2].stable_text == "what is the"
    formatted = _turn(0, ["What", "is", "the", "capital?"], final_words=4, end=True, formatted=True)
    formatted["transcript"] = "What is the capital?"
    done = turns.feed(formatted)
    assert [type(e) for e in done] == [TranscriptEvent, SpeechEndedEvent]
    assert done[0].final and done[0].text == "What is the capital?" and done[1].time_ms == 380
    nxt = turns.feed(_turn(1, ["next"], final_words=0))
    assert isinstance(nxt[0], SpeechStartedEvent) and nxt[0].utterance_id == 2
    flushed = turns.flush()  # Termination before that turn ended: its last words become its final
    assert [type(e) for e in flushed] == [TranscriptEvent, SpeechEndedEvent] and flushed[0].text == "next"


def test_assemblyai_error_frames_and_close_codes():
    turns = AssemblyAITurns(OPTIONS, model="assemblyai/universal-streaming")
    with pytest.raises(Unauthenticated):
        turns.feed({"type": "Error", "error_code": 1008, "error": "Unauthorized Connection: Invalid API key"})
    cases = {(1008, "Unauthorized Connection: Too many concurrent sessions"): ResourceExhausted,
             (1008, "Unauthorized Connection: insufficient account balance"): ResourceExhausted,
             (3009, "Too many concurrent sessions"): ResourceExhausted, (3006, "Invalid JSON"): InvalidInput,
             (3007, "Input duration violation"): InvalidInput, (3008, "Session Expired"): DeadlineExceeded,
             (3005, "Session Cancelled"): Unavailable, (4001, "Not Authorized"): Unauthenticated}
    for (code, reason), kind in cases.items():
        assert isinstance(close_error(code, reason, model="m"), kind), (code, reason)
    assert close_error(1000, "", model="m") is None


def test_assemblyai_speech_model_follows_the_language():
    backend = AssemblyAISttBackend(model="universal-streaming", options=RemoteOptions(), settings=RemoteSettings())
    assert backend.query(OPTIONS)["speech_model"] == "universal-streaming-english"
    spanish = RecognitionOptions(language="es", sample_rate_hz=16000)
    assert backend.query(spanish)["speech_model"] == "universal-streaming-multilingual"
    assert backend.query(OPTIONS)["encoding"] == "pcm_s16le" and backend.query(OPTIONS)["format_turns"] == "true"


async def test_without_the_websocket_client_a_stream_names_the_extra(monkeypatch):
    import importlib.util

    from voicemesh.errors import MissingExtra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "websockets" else real(name, *a))
    backend = DeepgramSttBackend(model="nova-3", options=RemoteOptions(), settings=RemoteSettings())
    with pytest.raises(MissingExtra, match=r"voicemesh\[realtime\]"):
        await backend.load()


def test_deepgram_always_asks_for_interims_since_utterance_end_needs_them():
    backend = DeepgramSttBackend(model="nova-3", options=RemoteOptions(), settings=RemoteSettings())
    query = backend.query(RecognitionOptions(language="en", sample_rate_hz=8000, min_silence_ms=300))
    assert query["interim_results"] == "true" and query["utterance_end_ms"] == "1000"
    assert (query["encoding"], query["sample_rate"], query["endpointing"]) == ("linear16", "8000", "300")
    turns = DeepgramTurns(RecognitionOptions(language="en", sample_rate_hz=8000), model="deepgram/nova-3")
    events = turns.feed(_results("What is", 0.5, 0.6, final=False))
    assert [type(e) for e in events] == [SpeechStartedEvent]  # the client asked for no interims


def test_extra_adds_query_parameters_but_never_changes_the_audio_format():
    extra = {"keyterm": "VoiceMesh", "encoding": "mulaw", "sample_rate": "8000"}
    backend = DeepgramSttBackend(model="nova-3", options=RemoteOptions(base_url="wss://dg.example", extra=extra),
                                 settings=RemoteSettings())
    url = backend.url(OPTIONS)
    assert url.startswith("wss://dg.example/v1/listen?") and "keyterm=VoiceMesh" in url
    assert "encoding=linear16" in url and "sample_rate=16000" in url and "mulaw" not in url
