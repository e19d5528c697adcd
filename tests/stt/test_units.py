"""Pure logic of the stt service: endpointing, stable interim prefixes, VAD frames, admission."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.speech import SENTENCES, noise, silence, speak
from tests.stt.helpers import speech_bounds
from voicemesh.audio import pcm_to_float
from voicemesh.errors import ResourceExhausted
from voicemesh.runtime.admission import Admission
from voicemesh.services.stt.stream import StablePrefix
from voicemesh.speech.vad import FRAME, FRAME_MS, Endpointer, shared_vad


def _feed(endpointer: Endpointer, probs: list[float]):
    return [(b.started, b.position // FRAME) for b in endpointer.feed(np.array(probs, dtype=np.float32))]


def test_endpointer_opens_after_min_speech_and_closes_after_min_silence():
    endpointer = Endpointer(threshold=0.5, min_silence_ms=320, min_speech_ms=90)  # 10 frames of silence
    assert _feed(endpointer, [0.1, 0.9, 0.8]) == []  # 64 ms of speech: not yet
    assert _feed(endpointer, [0.9]) == [(True, 1)]  # confirmed, dated from its first frame
    assert _feed(endpointer, [0.9] * 5 + [0.1] * 9) == []  # 288 ms of silence: still speaking
    assert _feed(endpointer, [0.1]) == [(False, 9)]  # ends after the last voiced frame (frame 8)
    assert not endpointer.in_speech


def test_endpointer_ignores_a_click_and_keeps_speech_through_dips_above_release():
    endpointer = Endpointer(threshold=0.5, min_silence_ms=200, min_speech_ms=90)
    assert _feed(endpointer, [0.9, 0.1, 0.1, 0.1]) == []  # one loud frame is not speech
    assert _feed(endpointer, [0.6, 0.6, 0.6]) == [(True, 4)]
    assert _feed(endpointer, [0.4] * 10) == []  # 0.4 >= release (0.35): still voiced
    assert _feed(endpointer, [0.0] * 7) == [(False, 17)]


def test_endpointer_cuts_an_utterance_at_its_maximum_length():
    endpointer = Endpointer(threshold=0.5, min_silence_ms=500, max_utterance_ms=20 * FRAME_MS)
    found = _feed(endpointer, [0.9] * 25)
    assert found[:2] == [(True, 0), (False, 20)]


def test_stable_prefix_only_grows_and_keeps_its_words():
    prefix = StablePrefix()
    assert prefix.update("the whether") == ("the whether", "")
    assert prefix.update("The weather is") == ("The weather is", "The")
    assert prefix.update("the weather is nice") == ("The weather is nice", "The weather is")
    # a later decode that rewrites stable words cannot change them
    text, stable = prefix.update("a feather is nice today.")
    assert stable.startswith("The weather is") and text.startswith("The weather is")


def test_vad_scores_speech_high_and_silence_and_noise_low():
    stream = shared_vad().stream()
    pcm = speak(SENTENCES[0])
    start, end = speech_bounds(pcm, 16000)
    audio = pcm_to_float(silence(1.0) + noise(1.0) + pcm)
    probs = np.concatenate([stream.process(audio[i:i + 700]) for i in range(0, len(audio), 700)] + [stream.flush()])
    assert len(probs) == -(-len(audio) // FRAME)
    times = np.arange(len(probs)) * FRAME / 16000
    assert probs[times < 2.0].max() < 0.3
    speaking = probs[(times > 2.0 + start + 0.1) & (times < 2.0 + end - 0.1)]
    assert np.mean(speaking > 0.5) > 0.7


def test_admission_refuses_beyond_capacity_without_waiting():
    admission = Admission(2)
    admission.acquire()
    admission.acquire()
    with pytest.raises(ResourceExhausted, match="2 of 2"):
        admission.acquire()
    admission.release()
    admission.acquire()
    assert admission.open == 2


@pytest.mark.parametrize("vocabulary", ["vocabulary.txt", "vocabulary.json"])
def test_a_whisper_folder_is_multilingual_when_its_vocabulary_is(tmp_path, vocabulary):
    """Converters write the vocabulary as text (one token a line) or as a JSON list: both are read."""
    from voicemesh.services.stt.backends.faster_whisper import MULTILINGUAL_VOCABULARY, _languages

    for name, size in (("multi", MULTILINGUAL_VOCABULARY), ("english", MULTILINGUAL_VOCABULARY - 1)):
        folder = tmp_path / name
        folder.mkdir()
        tokens = [f"t{i}" for i in range(size)]
        text = json.dumps(tokens) if vocabulary.endswith(".json") else "\n".join(tokens) + "\n"
        (folder / vocabulary).write_text(text, encoding="utf-8")
    assert {"en", "de", "fr"} <= set(_languages(tmp_path / "multi"))
    assert _languages(tmp_path / "english") == ("en",)


def test_audio_read_ahead_of_the_vad_is_bounded_and_the_reader_waits_for_room():
    import asyncio

    from voicemesh.services.stt.stream import MAX_UNSCORED, _Received

    async def scenario():
        received = _Received()
        chunk = np.zeros(MAX_UNSCORED // 4, dtype=np.float32)
        for _ in range(3):
            received.put(chunk)
            await asyncio.wait_for(received.room(), 1)  # under the bound: the reader goes on at once
        received.put(chunk)  # the bound is reached: the reader must wait for the scorer
        waiting = asyncio.ensure_future(received.room())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        samples, ended = await received.take()
        assert len(samples) == 4 * len(chunk) and not ended
        await asyncio.wait_for(waiting, 1)  # the scorer took it all: room again

    asyncio.run(scenario())


def test_the_speculative_final_starts_two_vad_frames_into_a_pause_and_becomes_the_final():
    """The speculative decode starts 64 ms (two VAD frames) after the last voiced frame, on the audio so far padded
    with zeros to the final clip's 200 ms tail; the final it becomes comes that much sooner than one started at the
    old 128 ms (bench/eager_final.py: the same WER, with the zeros)."""
    import asyncio

    from voicemesh.services.stt.backend import Hypothesis, RecognitionOptions, TranscriptEvent
    from voicemesh.services.stt.stream import POSTROLL_MS, RecognizeStream

    clips: list[tuple[int, int, bool]] = []  # (end of the audio heard, end of the clip, in stream ms; final?)

    async def decode(samples, offset_ms: int, final: bool) -> Hypothesis:
        heard = np.flatnonzero(samples)[-1] + 1  # the pause is low noise, the padding zeros
        clips.append((offset_ms + heard * 1000 // 16000, offset_ms + len(samples) * 1000 // 16000, final))
        return Hypothesis("The weather is nice today.")

    async def scenario():
        stream = RecognizeStream(options=RecognitionOptions(language="en", sample_rate_hz=16000, min_silence_ms=500),
                                 vad=shared_vad(), decode=decode, model="test")

        async def audio():
            pcm = noise(0.3, level=0.002) + speak(SENTENCES[1]) + noise(1.0, level=0.002, seed=1)
            for start in range(0, len(pcm), 640):
                yield pcm[start:start + 640]
                await asyncio.sleep(0.002)  # each 20 ms chunk scored on its own, as in real time

        return [event async for event in stream.events(audio()) if isinstance(event, TranscriptEvent)]

    finals = asyncio.run(scenario())
    assert len(finals) == 1 and finals[0].text == "The weather is nice today."
    assert [final for *_, final in clips] == [True], clips  # one decode, the speculative one, became the final
    heard_until, clip_end, _ = clips[0]
    end = finals[0].end_ms
    assert heard_until == pytest.approx(end + 2 * FRAME_MS, abs=4), (clips, end)
    assert clip_end == pytest.approx(end + POSTROLL_MS, abs=4), (clips, end)
