"""Interim input transcription deltas of the server-VAD listener (pure logic, no model)."""

from __future__ import annotations

from voicemesh.services.realtime import backend as rt
from voicemesh.services.realtime.listener import VadListener
from voicemesh.services.stt.backend import TranscriptEvent


class _Sink:
    def __init__(self) -> None:
        self.events: list = []

    def emit(self, event) -> None:
        self.events.append(event)


def _interim(text: str, stable: str = "") -> TranscriptEvent:
    return TranscriptEvent(utterance_id=1, text=text, final=False, start_ms=0, end_ms=0, stable_text=stable)


def test_deltas_append_to_what_was_sent_and_hold_back_the_last_word():
    listener = VadListener.__new__(VadListener)  # only the delta logic: no recognition stream
    listener.sink, listener._item, listener._sent = _Sink(), "item_0001", ""
    listener._interim(_interim("What is the..."))
    listener._interim(_interim("What is the capital"))
    listener._interim(_interim("What was the capital of"))  # disagrees with what was sent: nothing
    listener._interim(_interim("What is the capital of France", stable="What is the capital of"))
    deltas = [e.text for e in listener.sink.events]
    assert all(isinstance(e, rt.InputTranscription) and not e.final for e in listener.sink.events)
    assert deltas == ["What is", " the", " capital of"]
    assert "".join(deltas) == "What is the capital of"
