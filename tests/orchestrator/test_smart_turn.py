"""End of turn from Smart Turn v3 (the ONNX model in the pipecat-ai wheel) on piper speech, and the wait it sets."""

from __future__ import annotations

import numpy as np
import pytest

from tests.speech import espeak, silence, speak
from voicemesh.audio import pcm_to_float
from voicemesh.speech.turn import model as smart_turn
from voicemesh.speech.turn.model import RecentAudio
from voicemesh.speech.turn.smart import CONFIDENT, SPEAKING_AGAIN, UNLIKELY, WINDOW_SILENCE_MS, turn_target_ms
from voicemesh.v1 import stt_pb2

pytestmark = pytest.mark.skipif(not smart_turn.available(), reason="needs pipecat-ai (the turn extra) and the stt extra")

PAUSE_S = 0.3
QUESTION = "What is the capital of France?"
# What a speaker says before breaking off; the transcripts are what tiny.en writes for them.
UNFINISHED = "I would like to order a large pizza and"
CUT_SHORT = "I would like to order a"


def utterance(text: str, pause_s: float = PAUSE_S) -> np.ndarray:
    return pcm_to_float(speak(text) + silence(pause_s))


@pytest.fixture(scope="module")
def model():
    return smart_turn.shared_smart_turn()


def test_model_file_comes_from_the_wheel_and_its_input_is_8_s_of_log_mel(model):
    assert model.path.name.startswith("smart-turn-v3") and "pipecat" in model.path.parts
    assert (model.mel_bins, model.frames, model.samples) == (80, 800, 8 * 16000)
    short = model.features(utterance(QUESTION))
    assert short.shape == (80, 800)
    # The window is the end of the audio: longer audio is cut at the front, shorter is zero-padded there.
    long = np.concatenate([utterance("The weather is nice today.")] * 4 + [utterance(QUESTION)])
    assert len(long) > model.samples
    assert np.array_equal(model.features(long), model.features(long[-model.samples:]))
    assert not np.array_equal(model.features(long), model.features(long[:model.samples]))
    padded = np.concatenate([np.zeros(model.samples - len(utterance(QUESTION)), np.float32), utterance(QUESTION)])
    assert np.allclose(short, model.features(padded), atol=1e-5)


def test_a_finished_question_is_complete_and_a_clause_left_open_is_not(model):
    finished = model.probability(utterance(QUESTION))
    unfinished = model.probability(utterance(UNFINISHED))
    assert finished >= CONFIDENT
    assert unfinished < UNLIKELY
    assert model.probability(np.zeros(0, dtype=np.float32)) == 0.0


async def test_prediction_runs_off_the_loop(model):
    assert await model.predict(utterance(QUESTION)) == pytest.approx(model.probability(utterance(QUESTION)), abs=1e-5)


@pytest.mark.parametrize("unfinished, heard", [(UNFINISHED, "I would like to order a large pizza and"),
                                               (CUT_SHORT, "I would like to order a.")])
def test_a_finished_question_ends_the_turn_sooner_than_an_unfinished_clause_after_the_same_pause(model, unfinished, heard):
    delays = {"min_delay_ms": 500, "max_delay_ms": 3000, "quick_ms": 200}
    question = turn_target_ms(model.probability(utterance(QUESTION)), QUESTION, **delays)
    clause = turn_target_ms(model.probability(utterance(unfinished)), heard, **delays)
    assert question == 200  # shorter than the plain silence wait (min_delay_ms)
    assert clause > 500  # longer than it
    assert question < clause


def test_the_wait_follows_the_probability_and_the_transcript():
    delays = {"min_delay_ms": 500, "max_delay_ms": 3000, "quick_ms": 200}
    assert turn_target_ms(0.99, "Turn off the lights.", **delays) == 200
    assert turn_target_ms(0.99, "Turn off the lights in the", **delays) == 3000  # an open last word wins
    assert turn_target_ms(0.7, "Turn off the lights.", **delays) == 500
    assert turn_target_ms(None, "Turn off the lights.", **delays) == 500  # no model: the plain silence wait
    assert turn_target_ms(0.0, "Turn off the lights.", **delays) == 3000
    assert 500 < turn_target_ms(0.25, "Turn off the lights.", **delays) < 3000
    # A question the model doubts waits the plain silence, not longer (it misjudges some finished questions);
    # a question the user already goes on after waits the longest.
    assert turn_target_ms(0.01, "What is two plus two?", **delays) == 500
    assert turn_target_ms(0.99, "What is two plus two?", **delays) == 200
    assert turn_target_ms(SPEAKING_AGAIN, "What is two plus two?", **delays) == 3000
    assert turn_target_ms(SPEAKING_AGAIN, "Turn off the lights.", **delays) == 3000
    assert turn_target_ms(0.99, "Turn off the lights.", min_delay_ms=100, max_delay_ms=3000, quick_ms=200) == 100


@pytest.mark.parametrize("heard", ["When will I arrive in Lyon,", "Turn off my life, Sin"])
def test_a_transcript_in_doubt_waits_less_the_surer_the_model_is_of_the_end(heard):
    """No closing mark, or a trailing comma: the model's verdict sets the wait, from the longest down to the plain
    wait; a higher probability never waits longer (a transcript without a mark at 0.6 waited the full 3 s, at
    0.4 about 1 s)."""
    delays = {"min_delay_ms": 500, "max_delay_ms": 3000, "quick_ms": 200}
    waits = [turn_target_ms(p, heard, **delays) for p in (0.0, 0.1, 0.3, 0.45, 0.5, 0.6, 0.8, CONFIDENT, 0.99)]
    assert waits == sorted(waits, reverse=True) and len(set(waits)) > 5, waits
    assert waits[0] == 3000 and waits[-1] == 500  # sure of the end: the plain wait, not the quick one
    assert turn_target_ms(None, heard, **delays) == 3000  # no model: the transcript alone
    assert turn_target_ms(SPEAKING_AGAIN, heard, **delays) == 3000
    # A finished-looking transcript never waits longer than one in doubt at the same verdict.
    for p in (0.1, 0.4, 0.6, 0.9):
        assert turn_target_ms(p, "Turn off the lights.", **delays) <= turn_target_ms(p, heard, **delays)


def test_a_question_heard_with_a_trailing_comma_waits_less_than_a_comma_pause(model):
    """espeak-ng pauses at a comma as a speaker does (piper's fragments all sound finished to the model: "If I
    leave Paris at noon by train," at 0.99). A finished question the STT wrote with a trailing comma waited 3 s
    in bench/conversation.py; the model now shortens that wait, and still holds a real comma pause long."""
    delays = {"min_delay_ms": 500, "max_delay_ms": 3000, "quick_ms": 300}
    clause = "If I leave Paris at noon by train,"

    def verdict(text: str) -> float:
        return model.probability(pcm_to_float(espeak(text) + silence(WINDOW_SILENCE_MS / 1000)))

    question = turn_target_ms(verdict(clause + " when will I arrive in Lyon?"), "When will I arrive in Lyon,", **delays)
    pause = turn_target_ms(verdict(clause), clause, **delays)
    assert question < 2000 < pause < 3000, (question, pause)


def test_recent_audio_cuts_at_a_timeline_position_and_resamples():
    audio = RecentAudio(48000, seconds=1.0)
    tone = (np.sin(np.arange(48000 * 2) / 10) * 8000).astype("<i2").tobytes()
    for start in range(0, len(tone), 960 * 2):
        audio.feed(tone[start:start + 960 * 2])
    assert audio.end == pytest.approx(2 * 16000, abs=320)  # the streaming resampler holds back a few ms
    assert len(audio.until(2000)) == pytest.approx(16000, abs=320)  # the streaming resampler holds back a few ms  # only the last second is kept
    assert len(audio.until(1500)) == pytest.approx(8000, abs=700)  # kept in whole chunks
    assert len(audio.until(500)) == 0
    assert len(audio.until(2000, since_ms=1750)) == pytest.approx(4000, abs=320)  # from a position on


@pytest.mark.parametrize("said, heard, complete", [(QUESTION, QUESTION, True),
                                                   (UNFINISHED, "I would like to order a large pizza", False),
                                                   (CUT_SHORT, "I would like to order a.", False)])
async def test_the_session_ends_a_finished_question_at_the_verdict_and_waits_on_an_unfinished_clause(
        mesh, model, said, heard, complete):
    """Through the session's turn logic: the same pause after each; the STT events are scripted, the audio is real."""
    from tests.orchestrator.test_preemptive import Scripted

    async with Scripted(mesh, preemptive=False, turn_model=model, min_delay_ms=500) as s:
        session = s.session
        pcm = speak(said) + silence(0.35)  # the STT's final came before the plain 500 ms wait was over
        session.clock.received(len(pcm) // 2)
        session.recent.feed(pcm)
        end_ms = round(len(speak(said)) / 2 / 16)
        s.stt(speech_started=stt_pb2.SpeechStarted(time_ms=0))
        s.stt(final=stt_pb2.Transcript(text=heard, end_ms=end_ms))
        s.stt(speech_ended=stt_pb2.SpeechEnded(time_ms=end_ms))
        if complete:
            await s.until(lambda: s.user_messages())  # the verdict ended the turn, before the plain 500 ms wait
            assert session.verdict[0] >= CONFIDENT and session.verdict[1] < 500
            assert s.user_messages() == [QUESTION]
        else:
            # The model's verdict, or the transcript's alone when its last word opens a clause.
            await s.until(lambda: s.user_messages() or (session.verdict is not None and (
                session.verdict[0] is not None or heard.endswith("a."))))
            assert session.verdict[1] > 500  # it waits longer than the plain wait
            assert "eot" in session._timers and not s.user_messages()


@pytest.mark.parametrize("goes_on", [False, True])
async def test_a_late_final_ends_the_turn_at_once_unless_the_user_already_speaks_again(mesh, model, goes_on):
    """The STT's final arrives after the plain wait (a slow decode): only voice after the end of speech holds the turn."""
    from tests.orchestrator.test_preemptive import Scripted

    first = "If I leave Paris at noon by train,"
    async with Scripted(mesh, preemptive=False, turn_model=model, min_delay_ms=500) as s:
        session = s.session
        end_ms = round(len(speak(first)) / 2 / 16)
        pcm = speak(first) + silence(0.35) + (speak("when will I arrive in Lyon?") if goes_on else silence(0.6))
        session.clock.received(len(pcm) // 2)
        session.recent.feed(pcm)
        s.stt(speech_started=stt_pb2.SpeechStarted(time_ms=0))
        s.stt(final=stt_pb2.Transcript(text="If I leave Paris at noon by train.", end_ms=end_ms))
        s.stt(speech_ended=stt_pb2.SpeechEnded(time_ms=end_ms))
        await s.until(lambda: s.user_messages() or session.verdict is not None)
        if goes_on:
            assert session.verdict[0] == SPEAKING_AGAIN and session.verdict[1] == 3000
            assert "eot" in session._timers and not s.user_messages()
        else:
            await s.until(lambda: s.user_messages())
            assert session.verdict == (None, 500)


async def test_the_verdict_judges_the_users_turn_alone_not_the_speech_before_it(mesh, model):
    """The model's window starts 500 ms before the turn's first speech start, as Smart Turn is run: earlier speech
    in the window (here a clause left open, 2 s before) would change its verdict on the finished question."""
    from tests.orchestrator.test_preemptive import Scripted

    async with Scripted(mesh, preemptive=False, turn_model=model, min_delay_ms=500) as s:
        session = s.session
        before = speak(UNFINISHED) + silence(2.0)
        pcm = before + speak(QUESTION) + silence(0.35)
        session.clock.received(len(pcm) // 2)
        session.recent.feed(pcm)
        start_ms = round(len(before) / 2 / 16)
        end_ms = start_ms + round(len(speak(QUESTION)) / 2 / 16)
        s.stt(speech_started=stt_pb2.SpeechStarted(time_ms=start_ms))
        s.stt(final=stt_pb2.Transcript(text=QUESTION, end_ms=end_ms))
        s.stt(speech_ended=stt_pb2.SpeechEnded(time_ms=end_ms))
        await s.until(lambda: session.verdict is not None and session.verdict[0] is not None)
        samples = pcm_to_float(pcm)
        turn_alone = samples[(start_ms - 500) * 16: (end_ms + 300) * 16]
        whole = samples[: (end_ms + 300) * 16]
        assert model.probability(turn_alone) != pytest.approx(model.probability(whole), abs=0.02)  # it matters
        assert session.verdict[0] == pytest.approx(model.probability(turn_alone), abs=0.02)


class CountingModel:
    """The real model, counting its runs and the audio each judged."""

    def __init__(self, model):
        self.model, self.runs = model, []

    async def predict(self, samples):
        self.runs.append(len(samples))
        return await self.model.predict(samples)


async def test_the_verdict_is_made_at_the_stts_end_candidate_so_the_turn_ends_when_the_utterance_closes(mesh, model):
    """The STT's end candidate (its final decode at a pause) lets the model judge the turn 200 ms into the
    pause, while the STT still waits out its endpointing silence; the final then needs no second run."""
    from tests.orchestrator.test_preemptive import Scripted

    counting = CountingModel(model)
    async with Scripted(mesh, preemptive=False, turn_model=counting, min_delay_ms=500) as s:
        session = s.session
        pcm = silence(0.5) + speak(QUESTION) + silence(0.35)
        session.clock.received(len(pcm) // 2)
        session.recent.feed(pcm)
        start_ms, end_ms = 500, 500 + round(len(speak(QUESTION)) / 2 / 16)
        s.stt(speech_started=stt_pb2.SpeechStarted(time_ms=start_ms))
        s.stt(interim=stt_pb2.Transcript(text=QUESTION, end_ms=end_ms, end_candidate=True))
        await s.until(lambda: counting.runs)
        assert counting.runs == [(end_ms + 200) * 16]  # from 500 ms before the speech to 200 ms past its end
        s.stt(final=stt_pb2.Transcript(text=QUESTION, end_ms=end_ms))
        s.stt(speech_ended=stt_pb2.SpeechEnded(time_ms=end_ms))
        await s.until(lambda: s.user_messages())  # a confident verdict: the turn ended without the plain wait
        window = pcm_to_float(pcm)[: (end_ms + 200) * 16]
        assert session.verdict[0] == pytest.approx(model.probability(window), abs=1e-4)
        assert session.verdict[0] >= CONFIDENT and len(counting.runs) == 1  # the final reused the early verdict
