"""Acceptance of the local cascade (voicemesh/cascade) on a real realtime process."""

from __future__ import annotations

import grpc
import pytest

from tests.realtime.helpers import Conversation, session, status_of
from tests.speech import silence, speak, word_errors, words

QUESTION = "What is the capital of France?"
STORY = "Can you tell me a short story about a dog?"


def _serve(service_process):
    return service_process("realtime", args=["--max-response-tokens", "60"])


async def _transcribe(address: str, pcm: bytes) -> str:
    """What the cascade's own speech recognition hears in ``pcm`` (16 kHz), through a committed buffer."""
    conv = Conversation(address, session(vad=False))
    try:
        conv.send_audio(pcm)
        conv.send(input_audio_commit={})
        conv.end()
        return (await conv.until("input_transcription", final=True)).input_transcription.text
    finally:
        await conv.close()


def _wer(reference: str, hypothesis: str) -> float:
    errors, count = word_errors(reference, hypothesis)
    return errors / max(1, count)


async def test_spoken_question_gets_transcript_answer_and_audio_that_says_it(service_process):
    realtime = _serve(service_process)
    conv = Conversation(realtime.address, session())
    try:
        await conv.until("session_updated")
        question = silence(0.4) + speak(QUESTION) + silence(1.2)
        await conv.stream_audio(question, speed=1.0)  # real time, so interim transcripts come while it speaks
        started = (await conv.until("speech_started")).speech_started
        stopped = (await conv.until("speech_stopped")).speech_stopped
        assert stopped.item_id == started.item_id and 0 <= started.audio_ms < stopped.audio_ms
        final = (await conv.until("input_transcription", final=True)).input_transcription
        assert final.item_id == started.item_id
        assert _wer(QUESTION, final.text) <= 0.2, final.text
        # interims depend on decode speed (a slow decode is overtaken by the final): check them when they came
        interims = [t.text for t in conv.of("input_transcription") if not t.final]
        heard_early = words("".join(interims))
        assert _wer(" ".join(words(final.text)[:len(heard_early)]), " ".join(heard_early)) <= 0.34, (interims, final)
        created = (await conv.until("response_created")).response_created
        done = (await conv.until("response_done", response_id=created.response_id, timeout=180)).response_done
        conv.end()
        await conv.rest()
    finally:
        await conv.close()
    assert done.status == "completed"
    transcript = conv.text(created.response_id, transcript=True)
    assert "paris" in words(transcript), transcript
    assert conv.text(created.response_id, transcript=False) == ""
    audio = conv.audio(created.response_id)
    assert len(audio) / 2 / 16000 > 0.8
    assert done.usage.audio_seconds_out == pytest.approx(len(audio) / 2 / 16000)
    # input received up to the start of the response: at least the user's turn, at most all that was sent
    assert stopped.audio_ms / 1000 <= done.usage.audio_seconds_in <= len(question) / 2 / 16000 + 1e-6
    assert done.usage.input_tokens > 10 and done.usage.output_tokens > 3
    assert done.usage.characters >= len(transcript.strip()) - 2 and done.usage.model == "voicemesh/cascade"
    heard = await _transcribe(realtime.address, audio)
    assert _wer(transcript, heard) <= 0.2, (transcript, heard)


async def test_speech_during_a_response_cancels_it_and_starts_the_next_turn(service_process):
    realtime = _serve(service_process)
    conv = Conversation(realtime.address, session())
    try:
        await conv.until("session_updated")
        conv.send(item_create={"item": {"role": "user", "content": STORY}})
        conv.send(response_create={})
        first = (await conv.until("response_created")).response_created
        await conv.until("audio_delta")
        await conv.stream_audio(speak(QUESTION) + silence(1.2), speed=4.0)
        started = await conv.until("speech_started")
        done = (await conv.until("response_done", response_id=first.response_id)).response_done
        assert done.status == "cancelled"
        assert done.usage.output_tokens > 0 and done.usage.input_tokens > 0  # the cut-off generation is counted
        assert conv.events.index(started) < conv.events.index(next(
            e for e in conv.events if e.WhichOneof("event") == "response_done"))
        heard_before_cut = len(conv.audio(first.response_id))
        # the user's turn becomes the next response, which completes
        second = (await conv.until("response_created")).response_created
        assert second.response_id != first.response_id
        final = next(t for t in conv.of("input_transcription") if t.final)
        assert _wer(QUESTION, final.text) <= 0.2, final.text
        done2 = (await conv.until("response_done", response_id=second.response_id, timeout=180)).response_done
        assert done2.status == "completed"
        conv.end()
        await conv.rest()
    finally:
        await conv.close()
    # nothing of the cancelled response arrived after its response_done
    assert len(conv.audio(first.response_id)) == heard_before_cut
    assert done.usage.audio_seconds_out == pytest.approx(heard_before_cut / 2 / 16000)


async def test_truncate_cuts_the_item_to_the_audio_heard(service_process):
    realtime = _serve(service_process)
    conv = Conversation(realtime.address, session(vad=False))
    try:
        await conv.until("session_updated")
        conv.send(item_create={"item": {"role": "user", "content": STORY}})
        conv.send(response_create={})
        created = (await conv.until("response_created")).response_created
        done = (await conv.until("response_done", response_id=created.response_id, timeout=180)).response_done
        assert done.status in ("completed", "incomplete")
        full = conv.text(created.response_id, transcript=True).strip()
        audio = conv.audio(created.response_id)
        total_ms = len(audio) // 2 * 1000 // 16000
        assert total_ms > 4000, full
        cut_ms = min(total_ms // 2, 5000)
        conv.send(item_truncate={"item_id": created.item_id, "audio_end_ms": cut_ms})
        truncated = (await conv.until("item_truncated")).item_truncated
        assert truncated.item_id == created.item_id and truncated.audio_end_ms == cut_ms
        conv.send(item_truncate={"item_id": "item_9999", "audio_end_ms": 100})
        unknown = (await conv.until("error")).error
        conv.send(item_truncate={"item_id": created.item_id, "audio_end_ms": total_ms + 5000})
        too_far = (await conv.until("error")).error
        conv.end()
        assert await status_of(conv) == (grpc.StatusCode.OK, "")
    finally:
        await conv.close()
    assert unknown.code == "INVALID_ARGUMENT" and unknown.detail.reason == "ITEM_NOT_FOUND"
    assert too_far.code == "INVALID_ARGUMENT" and "past the end" in too_far.message
    text = truncated.text
    assert text and full.startswith(text) and len(words(text)) < len(words(full)), (text, full)
    heard = await _transcribe(realtime.address, audio[: cut_ms * 16000 // 1000 * 2])
    assert _wer(text, heard) <= 0.35, (text, heard)


async def test_text_only_response_and_a_second_response_create_is_refused_in_band(service_process):
    realtime = _serve(service_process)
    conv = Conversation(realtime.address, session(vad=False, modalities=["text"]))
    try:
        await conv.until("session_updated")
        conv.send(item_create={"item": {"role": "user", "content": QUESTION}})
        conv.send(response_create={})
        created = (await conv.until("response_created")).response_created
        conv.send(response_create={})
        busy = (await conv.until("error")).error
        done = (await conv.until("response_done", response_id=created.response_id)).response_done
        conv.end()
        await conv.rest()
    finally:
        await conv.close()
    assert busy.code == "INVALID_ARGUMENT" and busy.detail.reason == "CONVERSATION_ALREADY_HAS_ACTIVE_RESPONSE"
    assert done.status == "completed"
    text = conv.text(created.response_id, transcript=False)
    assert "paris" in words(text), text
    assert not conv.audio(created.response_id) and not conv.text(created.response_id, transcript=True)
    assert done.usage.audio_seconds_out == 0 and done.usage.output_tokens > 0 and done.usage.characters == 0
    assert len(conv.of("response_created")) == 1


async def test_without_interrupt_response_speech_waits_for_the_response_then_gets_its_own(service_process):
    realtime = _serve(service_process)
    conv = Conversation(realtime.address, session(interrupt=False))
    try:
        await conv.until("session_updated")
        conv.send(item_create={"item": {"role": "user", "content": STORY}})
        conv.send(response_create={})
        first = (await conv.until("response_created")).response_created
        await conv.until("audio_delta")
        await conv.stream_audio(speak(QUESTION) + silence(1.2), speed=4.0)
        done = (await conv.until("response_done", response_id=first.response_id)).response_done
        second = (await conv.until("response_created")).response_created
        done2 = (await conv.until("response_done", response_id=second.response_id, timeout=180)).response_done
        conv.end()
        await conv.rest()
    finally:
        await conv.close()
    assert conv.of("speech_started") and done.status in ("completed", "incomplete")  # not cancelled
    assert done2.status == "completed" and "paris" in words(conv.text(second.response_id, transcript=True))


async def _input_tokens(address: str, items: list[dict], deletes: list[str]) -> tuple[int, list]:
    """The input tokens of a text response after ``items`` are created and ``deletes`` deleted, and the events."""
    conv = Conversation(address, session(vad=False, modalities=["text"]))
    try:
        await conv.until("session_updated")
        for item in items:
            conv.send(item_create=item)
        for item_id in deletes:
            conv.send(item_delete={"item_id": item_id})
        conv.send(response_create={})
        done = (await conv.until("response_done")).response_done
    finally:
        await conv.close()
    return done.usage.input_tokens, [e for e in conv.events if e.WhichOneof("event") in ("item_deleted", "error")]


async def test_a_deleted_item_is_out_of_the_next_response_and_ids_are_the_clients(service_process):
    realtime = _serve(service_process)
    hello = {"item": {"role": "user", "content": "Say hello."}}
    question = {"item": {"role": "user", "content": QUESTION}, "item_id": "item_mine"}
    alone, _ = await _input_tokens(realtime.address, [hello], [])
    deleted, events = await _input_tokens(realtime.address, [question, hello, question], ["item_mine", "item_mine"])
    kept, _ = await _input_tokens(realtime.address, [question, hello], [])
    assert deleted == alone < kept, (alone, deleted, kept)
    kinds = [(e.WhichOneof("event"), e.item_deleted.item_id or e.error.detail.reason) for e in events]
    # the second create of item_mine is refused (the id is taken); the first delete frees it, the second finds none
    assert kinds == [("error", "ITEM_ID_TAKEN"), ("item_deleted", "item_mine"), ("error", "ITEM_NOT_FOUND")], kinds
