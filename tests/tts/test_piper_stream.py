"""A piper voice cut at its decoder: each sentence's audio starts with a short chunk, and the chunks add up to
what the voice's own graph says (real en_US-joe-medium voice, in process)."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from tests.speech import wer
from tests.tts.helpers import transcribe
from voicemesh.audio import resample
from voicemesh.services.tts.backend import VoiceOptions
from voicemesh.services.tts.backends import piper_stream
from voicemesh.services.tts.backends.piper import PiperBackend, PiperSettings, _load_voice, discover_voices
from voicemesh.services.tts.backends.piper_stream import (CHECK_SENTENCE, CHUNK_ENDS, CONTEXT_FRAMES, FIRST_FRAMES,
                                                          WIDE_CONTEXT, chunk_bounds, parts_folder)

pytestmark = pytest.mark.slow

SENTENCE = "The old lighthouse keeper walked slowly along the rocky shore every morning."


def _voice_files():
    return discover_voices(PiperSettings())["en_US-joe-medium"]


def _inputs(voice, text: str) -> dict[str, np.ndarray]:
    ids = voice.piper.phonemes_to_ids(voice.piper.phonemize(text)[0])
    # No noise: the graph's random draws are scaled to zero, so two runs of the same text agree.
    return {"input": np.array([ids], dtype=np.int64), "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32)}


def test_the_two_halves_decoded_in_chunks_say_what_the_whole_graph_says():
    files = _voice_files()
    voice = _load_voice(files, threads=1)
    assert voice.split is not None, "the joe voice's graph was not cut at its decoder"
    inputs = _inputs(voice, SENTENCE)
    whole = onnxruntime.InferenceSession(str(files.model), providers=["CPUExecutionProvider"])
    expected = np.asarray(whole.run(None, inputs)[0], dtype=np.float32).reshape(-1)
    frames = voice.split.frames(inputs)
    assert (voice.split.context, voice.split.flow_context) == (CONTEXT_FRAMES, 24)  # the narrow ones passed the check
    bounds = voice.split.chunks(frames[0].shape[2])
    ends = [*CHUNK_ENDS, frames[0].shape[2]]
    assert bounds == list(zip([0, *CHUNK_ENDS], ends, strict=True))
    chunked = np.concatenate([voice.split.decode(frames, start, end) for start, end in bounds])
    assert len(chunked) == len(expected)
    assert float(np.max(np.abs(chunked - expected))) < 1e-4
    assert float(np.max(np.abs(chunked - expected))) < 3.05e-5  # under one step of 16-bit PCM
    # Smaller chunks with the same context agree too: the context, not the chunk size, makes the borders exact.
    total = frames[0].shape[2]
    small = np.concatenate([voice.split.decode(frames, s, min(s + 5, total)) for s in range(0, total, 5)])
    assert float(np.max(np.abs(small - expected))) < 1e-4


def test_a_chunk_boundary_is_kept_only_when_more_than_the_context_follows_it():
    first, second, third = CHUNK_ENDS
    assert chunk_bounds(first + CONTEXT_FRAMES) == [(0, first + CONTEXT_FRAMES)]
    assert chunk_bounds(first + CONTEXT_FRAMES + 1) == [(0, first), (first, first + CONTEXT_FRAMES + 1)]
    assert chunk_bounds(second + CONTEXT_FRAMES) == [(0, first), (first, second + CONTEXT_FRAMES)]
    assert chunk_bounds(500) == [(0, first), (first, second), (second, third), (third, 500)]
    assert chunk_bounds(first + 16, context=16) == [(0, first + 16)]  # a voice's own context decides


def test_a_voice_whose_chunks_do_not_match_with_the_narrow_context_borrows_the_wide_one():
    voice = _load_voice(_voice_files(), threads=1)
    inputs = _inputs(voice, CHECK_SENTENCE)
    assert voice.split.checked(inputs, "joe") is voice.split  # within the default tolerance: kept as is
    # A stricter tolerance than the narrow context meets stands in for a voice whose decoder looks further.
    wide = voice.split.checked(inputs, "joe", tolerance=voice.split.error(inputs) / 2)
    assert (wide.context, wide.flow_context) == WIDE_CONTEXT
    assert wide.error(inputs) < 3.05e-5


async def _pieces(backend: PiperBackend, text: str) -> list[bytes]:
    return [piece async for piece in backend.stream(text, VoiceOptions(sample_rate_hz=backend.native_rate("")))]


async def test_a_sentence_starts_with_a_short_chunk_and_still_says_the_sentence():
    backend = PiperBackend(model="en_US-joe-medium", settings=PiperSettings(), options=None)
    await backend.load()
    try:
        pieces = await _pieces(backend, SENTENCE)
        rate = backend.native_rate("")
    finally:
        await backend.close()
    # The first piece is FIRST_FRAMES frames of 256 samples (93 ms): it goes out before the rest is decoded.
    assert len(pieces) == len(CHUNK_ENDS) + 1 and len(pieces[0]) == FIRST_FRAMES * 256 * 2, [len(p) for p in pieces]
    audio = b"".join(pieces)
    samples = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768
    assert 0.3 < float(np.max(np.abs(samples))) <= 1.0
    at_16k = (resample(samples, rate, 16000) * 32767).astype("<i2").tobytes()
    assert wer([(SENTENCE, transcribe(at_16k))]) <= 0.15


async def test_without_onnx_the_voice_runs_whole(monkeypatch):
    find_spec = piper_stream.importlib.util.find_spec
    monkeypatch.setattr(piper_stream.importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnx" else find_spec(name, *args))
    backend = PiperBackend(model="en_US-joe-medium", settings=PiperSettings(), options=None)
    await backend.load()
    try:
        assert backend._voice.split is None
        pieces = await _pieces(backend, SENTENCE)
    finally:
        await backend.close()
    assert len(pieces) == 1 and len(pieces[0]) > FIRST_FRAMES * 256 * 4


def test_the_cut_parts_are_cached_and_a_second_load_does_not_cut_again(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    files = _voice_files()
    assert _load_voice(files, threads=1).split is not None
    folder = parts_folder(files.model)
    assert folder.parent == tmp_path / "voicemesh" / "piper-parts"
    assert sorted(p.name for p in folder.iterdir()) == ["decoder.onnx", "encoder.onnx", "flow.onnx", "names.json"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no work folder left behind
    monkeypatch.setattr(piper_stream.subprocess, "run", lambda *args, **kwargs: pytest.fail("the voice was cut again"))
    assert _load_voice(files, threads=1).split is not None


def test_a_graph_that_is_not_laid_out_as_piper_exports_it_is_not_cut(tmp_path, monkeypatch):
    files = _voice_files()
    monkeypatch.setattr(piper_stream, "DECODER_ENTRY", "/no/such/node")
    with pytest.raises(piper_stream.CannotCut, match="not laid out"):
        piper_stream.cut(files.model, tmp_path)


def test_without_a_writable_cache_the_voice_is_cut_into_a_temporary_folder(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder would be")  # the cache folder cannot be made
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setattr(piper_stream.tempfile, "tempdir", str(tmp_path))
    assert _load_voice(_voice_files(), threads=1).split is not None
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]  # the temporary parts were removed once loaded
