"""Pure logic of the orchestrator: endpointing, barge-in, playout truncation, fallback order, config."""

from __future__ import annotations

import pytest

from voicemesh.errors import InvalidInput, ModelNotFound, ResourceExhausted
from voicemesh.mesh import MeshConfig
from voicemesh.orchestrator.config import validate
from voicemesh.orchestrator.fallback import Candidate, Target, order_from, targets
from voicemesh.orchestrator.outbox import AudioClock, Outbox
from voicemesh.orchestrator.turns import BargeIn, UserTurn
from voicemesh.services.llm.backend import ToolChoice
from voicemesh.speech.playout import Playout
from voicemesh.speech.turn import turn_detector
from voicemesh.speech.turn.text import completeness, looks_finished
from voicemesh.v1 import agent_pb2

MESH = MeshConfig({"stt": {"*": ["a:1"]}, "llm": {"*": ["b:1", "b:2"]}, "tts": {"piper": ["c:1"]},
                   "realtime": {"voicemesh": ["d:1"]}})


@pytest.mark.parametrize("text", ["What is the capital of France?", "Turn off the lights.", "Yes!", "ok. \"done.\"",
                                  "How do I learn it quickly and well?", "Who are you talking to?", "That is what it is."])
def test_finished_sentences(text):
    assert looks_finished(text)


@pytest.mark.parametrize("text", ["I would like to order", "I want a pizza and", "Well, the thing is,",
                                  "So I went to the...", "Book a table for", "", "   "])
def test_unfinished_sentences(text):
    assert not looks_finished(text)


def test_trailing_open_word_beats_period():
    assert completeness("I need to go to the.") == 0.0
    assert completeness("I need to go.") == 1.0


def test_a_trailing_comma_is_a_doubt_and_a_colon_or_an_open_word_is_not():
    """The STT writes a comma where a finished sentence was cut by a pause: a doubt a policy that hears the audio
    may overrule (0 < completeness < 0.5); a colon, a dash, an ellipsis or an open last word is not one."""
    assert 0.0 < completeness("When will I arrive in Lyon,") < completeness("When will I arrive in Lyon") < 0.5
    assert completeness("Here is my list:") == completeness("So I went to the...") == 0.0
    assert completeness("I want a pizza and,") == completeness("Well -") == 0.0


def test_endpoint_wait_extends_unfinished_turns():
    turns = turn_detector("transcript", min_delay_ms=500, max_delay_ms=3000)  # the live rule without the model
    finished = turns.wait_ms("What time is it?", silence_ms=500)
    unfinished = turns.wait_ms("What time is it and", silence_ms=500)
    assert finished == 0
    assert unfinished == 2500
    assert turns.wait_ms("and", silence_ms=4000) == 0


def test_user_turn_joins_utterances():
    turn = UserTurn()
    turn.speech_started()
    turn.interim_result("book a")
    assert turn.text == "book a" and turn.final_text == ""
    turn.final_result("Book a table for", 1500)
    turn.speech_started()
    turn.final_result("two people.", 3200)
    assert turn.final_text == "Book a table for two people."
    assert turn.speech_end_ms == 3200


def test_barge_in_needs_min_duration_and_words():
    barge = BargeIn(min_duration_ms=300)
    assert not barge.due(10_000)
    barge.start(1000)
    assert not barge.due(1299)
    assert barge.due(1300)
    assert not barge.heard_words
    assert not barge.words(" ... ")
    assert barge.words("stop")
    barge.end()
    assert not barge.due(5000)


def _playout() -> Playout:
    p = Playout(rate=1000)
    p.add_text("Paris is the capital. It is big and old.")
    p.chunk(segment_id=0, char_start=0, char_end=22, offset_samples=0, samples=1000)
    p.segment_done(segment_id=0, char_start=0, char_end=22, samples=1000)
    p.chunk(segment_id=1, char_start=22, char_end=41, offset_samples=1000, samples=600)
    p.chunk(segment_id=1, char_start=22, char_end=41, offset_samples=1600, samples=400)
    p.segment_done(segment_id=1, char_start=22, char_end=41, samples=1000)
    return p


def test_playout_keeps_whole_segments_played():
    p = _playout()
    assert p.spoken_text(0) == ""
    assert p.spoken_text(1000) == "Paris is the capital."
    assert p.spoken_text(2000) == "Paris is the capital. It is big and old."


def test_playout_cuts_the_segment_in_progress_at_a_word():
    p = _playout()
    half = p.spoken_text(1500)
    assert half.startswith("Paris is the capital. It")
    assert len(half) < len(p.text)
    assert p.spoken_text(1500).split()[-1] in {"It", "is", "big", "and"}
    assert len(p.spoken_text(1100)) <= len(p.spoken_text(1500))


def test_played_is_bounded_by_sent_and_wall_time():
    p = _playout()
    assert p.played_samples(100.0) == 0
    p.sent(1500, now=100.0)
    assert p.played_samples(100.5) == 500  # only half a second of playback so far
    assert p.played_samples(103.0) == 1500  # never more than was sent
    p.sent(200, now=103.0)  # after an underrun the new audio plays from when it arrives
    assert p.played_samples(103.1) == 1600


def test_targets_rotate_addresses_then_next_candidate():
    a, b = Candidate("x/a", "x"), Candidate("y/b", "y")
    order = targets([a, b], [["1", "2", "3"], ["9"]], [1, 7])
    assert [(t.descriptor, t.address) for t in order] == [("x/a", "2"), ("x/a", "3"), ("x/a", "1"), ("y/b", "9")]
    assert order_from(order, order[3])[0] == order[3]
    assert order_from(order, Target(a, "gone")) == order


def _config(**overrides) -> agent_pb2.SessionConfig:
    config = agent_pb2.SessionConfig(
        stt=agent_pb2.ModelChoice(candidates=[agent_pb2.ModelSpec(descriptor="faster-whisper/tiny.en:en")]),
        llm=agent_pb2.ModelChoice(candidates=[agent_pb2.ModelSpec(descriptor="llama.cpp/smollm2-135m-instruct")]),
        tts=agent_pb2.ModelChoice(candidates=[agent_pb2.ModelSpec(descriptor="piper/en_US-joe-medium", speed=1.2)]),
        input_sample_rate_hz=16000,
    )
    for key, value in overrides.items():
        if isinstance(value, dict):
            getattr(config, key).MergeFrom(type(getattr(config, key))(**value))
        else:
            setattr(config, key, value)
    return config


def test_config_defaults():
    spec = validate(_config(), MESH)
    assert (spec.output_rate, spec.min_delay_ms, spec.max_delay_ms) == (24000, 500, 3000)
    assert spec.interruption_enabled and spec.min_interruption_ms == 300 and spec.first_result_ms == 3000
    assert spec.tts[0].speed == pytest.approx(1.2)


@pytest.mark.parametrize("overrides, words", [
    ({"input_sample_rate_hz": 0}, "input_sample_rate_hz"),
    ({"input_sample_rate_hz": 4000}, "input_sample_rate_hz"),
    ({"output_sample_rate_hz": 96000}, "output_sample_rate_hz"),
    ({"turn_detection": {"min_endpointing_delay_ms": 900, "max_endpointing_delay_ms": 400}}, "max_endpointing"),
    ({"interruption": {"min_duration_ms": -1}}, "min_duration_ms"),
    ({"first_result_timeout_ms": -5}, "first_result_timeout_ms"),
])
def test_config_rejects(overrides, words):
    with pytest.raises(InvalidInput, match=words):
        validate(_config(**overrides), MESH)


def test_config_rejects_missing_and_bad_models():
    config = _config()
    config.ClearField("llm")
    with pytest.raises(InvalidInput, match="llm"):
        validate(config, MESH)
    config = _config()
    config.tts.candidates[0].descriptor = "piper"
    with pytest.raises(InvalidInput, match="no '/'"):
        validate(config, MESH)
    config = _config()
    config.tts.candidates[0].descriptor = "openai/tts-1:alloy"
    with pytest.raises(ModelNotFound, match="provider 'openai'"):
        validate(config, MESH)
    config = _config()
    config.llm.candidates[0].speed = 2
    with pytest.raises(InvalidInput, match="tts only"):
        validate(config, MESH)
    config = _config()
    config.tools.add(name="bad name", parameters_json="{}")
    with pytest.raises(InvalidInput, match="tools"):
        validate(config, MESH)
    config = _config(tool_choice={"mode": "required"})
    with pytest.raises(InvalidInput, match="needs at least one tool"):
        validate(config, MESH)
    config.tools.add(name="get_weather", parameters_json="{}")
    config.tools.add(name="get_weather", parameters_json="{}")
    with pytest.raises(InvalidInput, match="unique"):
        validate(config, MESH)
    del config.tools[1]
    config.tool_choice.mode, config.tool_choice.name = "function", "get_time"
    with pytest.raises(InvalidInput, match="'get_time', which is not among the tools"):
        validate(config, MESH)
    config.tool_choice.mode = "sometimes"
    with pytest.raises(InvalidInput, match="mode 'sometimes' is invalid"):
        validate(config, MESH)
    config.tool_choice.mode = "required"  # one tool: required means that one
    assert validate(config, MESH).tool_choice == ToolChoice("function", "get_weather")


def test_a_realtime_config_needs_no_pipeline_but_keeps_one_given():
    config = _config()
    config.realtime.candidates.add(descriptor="voicemesh/cascade")
    spec = validate(config, MESH)
    assert [c.descriptor for c in spec.realtime] == ["voicemesh/cascade"] and spec.llm[0].descriptor
    for modality in ("stt", "llm", "tts"):
        config.ClearField(modality)
    spec = validate(config, MESH)
    assert spec.realtime and (spec.stt, spec.llm, spec.tts) == ([], [], [])
    config.realtime.candidates[0].descriptor = "nobody/model"
    with pytest.raises(ModelNotFound, match="provider 'nobody'"):
        validate(config, MESH)


async def test_outbox_drops_queued_audio_of_a_turn():
    box = Outbox()
    sent = []
    box.put(agent_pb2.SessionResponse(agent_audio=agent_pb2.AgentAudio(turn_id=1, audio=b"\0\0")),
            on_sent=lambda: sent.append(1))
    box.put(agent_pb2.SessionResponse(agent_text=agent_pb2.AgentText(turn_id=1, delta="hi")))
    box.put(agent_pb2.SessionResponse(agent_audio=agent_pb2.AgentAudio(turn_id=2, audio=b"\0\0")))
    assert box.drop_audio(1) == 1
    box.end()
    kinds = []
    while (message := await box.get()) is not None:
        kinds.append(message.WhichOneof("event"))
    assert kinds == ["agent_text", "agent_audio"] and sent == []


async def test_outbox_of_a_client_that_stops_reading_is_bounded_and_ends_the_stream():
    box = Outbox(max_unsent_bytes=10_000)
    chunk = agent_pb2.SessionResponse(agent_audio=agent_pb2.AgentAudio(turn_id=1, audio=bytes(960)))
    box.put(chunk)
    assert (await box.get()) == chunk and box.unsent_bytes == 0  # what was sent no longer counts
    for _ in range(12):  # ~11.8 kB: past the limit
        box.put(chunk)
    assert box.overflowed and box.unsent_bytes == 0
    box.put(chunk)  # dropped: nothing grows once the client is given up on
    with pytest.raises(ResourceExhausted, match="has not read"):
        await box.get()


def test_audio_clock_maps_positions_to_arrival():
    clock = AudioClock(rate=1000)
    clock.received(100, now=10.0)
    clock.received(100, now=10.5)
    assert clock.ms == 200
    assert clock.wall_at(50) == 10.0
    assert clock.wall_at(150) == 10.5


def test_voice_counter_needs_enough_voice_in_one_burst():
    from voicemesh.orchestrator.voice import VoiceCounter

    counter = VoiceCounter(frame_ms=32, min_speech_ms=150)
    assert counter.feed([0.1] * 10) is None
    assert counter.feed([0.9, 0.8, 0.6]) is None  # 96 ms of voice
    assert counter.feed([0.1] * 7) is None  # a 224 ms gap ends the burst
    assert counter.feed([0.9] * 4) is None  # a new burst: 128 ms
    assert counter.feed([0.4]) == 20 * 32  # 160 ms: reported with the burst's start
    assert counter.feed([0.9] * 10) is None  # once per burst


def test_a_segment_still_arriving_is_not_taken_as_whole():
    p = Playout(rate=1000, seconds_per_char=0.05)
    p.add_text("One day, in a small village nestled between hills, there lived a dog.")
    p.chunk(segment_id=0, char_start=0, char_end=71, offset_samples=0, samples=1000)  # 1 s of ~3.5 s arrived
    p.sent(1000, now=10.0)
    spoken = p.spoken_text(p.played_samples(11.0))
    assert spoken.startswith("One day") and "village" not in spoken


def test_a_turn_every_target_refused_alike_reports_their_code():
    from voicemesh.errors import InvalidInput, ResourceExhausted, Unauthenticated, Unavailable
    from voicemesh.orchestrator.fallback import Candidate, FallbackLog, Target

    first = Target(Candidate("piper/a", "piper"), "127.0.0.1:1")
    second = Target(Candidate("piper/b", "piper"), "127.0.0.1:2")
    refused = FallbackLog()
    refused.failed(first, Unauthenticated("missing API key"))
    refused.failed(second, Unauthenticated("missing API key"))
    error = refused.exhausted("no voice answered turn 3")
    assert isinstance(error, Unauthenticated) and "no voice answered turn 3" in error.message
    assert "missing API key" in error.message
    mixed = FallbackLog()
    mixed.failed(first, InvalidInput("bad text"))
    mixed.failed(second, Unavailable("connection refused"))
    assert isinstance(mixed.exhausted("no voice answered turn 1"), Unavailable)
    quota = FallbackLog()
    quota.failed(first, ResourceExhausted("quota audio_seconds_out=10/day reached"))
    assert isinstance(quota.exhausted("no voice answered turn 2"), ResourceExhausted)
    assert isinstance(FallbackLog().exhausted("no LLM answered turn 1"), Unavailable)
