"""Encodings, TTS phoneme timing and the second face style, unpaced so they run as fast as the CPU draws."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from PIL import Image

from tests.avatar.helpers import FPS, REPLY_END, STEP, chunks, config, phoneme, render
from tests.speech import speak

pytestmark = pytest.mark.slow


async def test_jpeg_and_h264_frames_decode_to_the_configured_size(service_process):
    server = service_process("avatar")
    pcm = speak("Please book a table for two people.")
    expected = -(-len(pcm) // 2 // STEP)  # frames that cover the reply
    jpeg = (await render(server.address, [config(size=(320, 240), encoding="jpeg", unpaced=True),
                                          *chunks(pcm), REPLY_END])).frames()
    assert len(jpeg) == expected
    sizes = {Image.open(io.BytesIO(f.data)).size for f in jpeg}
    assert sizes == {(320, 240)}

    h264 = (await render(server.address, [config(encoding="h264", unpaced=True), *chunks(pcm), REPLY_END])).frames()
    assert h264[0].keyframe and h264[0].data
    codec = av.CodecContext.create("h264", "r")
    packets = [packet for f in h264 for packet in codec.parse(f.data)] + list(codec.parse(None))  # None: flush
    decoded = [frame for packet in [*packets, None] for frame in codec.decode(packet)]
    assert len(decoded) == len(h264) == expected
    assert {(d.width, d.height) for d in decoded} == {(256, 256)}


async def test_phoneme_timing_shapes_the_mouth(service_process):
    """The same audio under /m/ (lips closed) and under /a/ (open): the phonemes decide the shape."""
    server = service_process("avatar")
    pcm = speak("Open the window because it is too warm in here.")
    samples = len(pcm) // 2

    async def openings(name: str) -> np.ndarray:
        requests = [config(unpaced=True), phoneme(name, 0, samples), *chunks(pcm), REPLY_END]
        return np.array([f.mouth_open for f in (await render(server.address, requests)).frames()])

    closed, wide, narrow, free = await openings("m"), await openings("AA1"), await openings("u"), await openings("")
    assert closed.max() == 0.0
    assert narrow.mean() < 0.6 * wide.mean()
    assert free.mean() > 0.0 and wide.mean() > free.mean()  # from the audio alone it moves, less than a held /a/


async def test_orb_style_pulses_with_speech_and_breathes_when_idle(service_process):
    server = service_process("avatar")
    pcm = speak("What is the capital of France?")
    frames = (await render(server.address, [config("orb/pulse:green", unpaced=True), *chunks(pcm),
                                            REPLY_END])).frames()
    assert len(frames) == -(-len(pcm) // 2 // STEP)
    lit = np.array([(np.frombuffer(f.data, np.uint8, 256 * 256) > 60).mean() for f in frames])
    loud = np.array([f.mouth_open for f in frames])
    assert lit.max() > 1.3 * lit.min()
    assert float(np.corrcoef(lit, loud)[0, 1]) > 0.8
    assert FPS == 25


async def test_replies_are_laid_one_after_another_with_a_mark_each(service_process):
    server = service_process("avatar")
    first, second = speak("Hi."), speak("The weather is nice today.")
    later = len(first) // 2 + 16000 * 5  # the second reply starts 5 s later on the audio clock
    received = await render(server.address, [config(unpaced=True), REPLY_END, *chunks(first), REPLY_END,
                                             *chunks(second, offset=later), REPLY_END])
    marks = [(m.audio_offset_samples, m.interrupted) for m in received.marks()]
    assert marks == [(0, False), (len(first) // 2, False), (later + len(second) // 2, False)]
    offsets = [f.audio_offset_samples for f in received.frames()]
    cut = -(-len(first) // 2 // STEP)
    # The gap between replies is not drawn: the second reply's frames start at its own first sample.
    assert offsets == [k * STEP for k in range(cut)] + [later + k * STEP for k in range(len(offsets) - cut)]
    assert len(offsets) - cut == -(-len(second) // 2 // STEP)
    assert [f.index for f in received.frames()] == list(range(len(offsets)))
