"""What ``voicemesh talk`` prints, from a sequence of typed events (pure logic, no server)."""

from __future__ import annotations

import io

from voicemesh.client.events import AgentAudio, AgentText, SessionError, TurnDone, TurnMetrics, UserTranscript
from voicemesh.client.talk import Conversation, Printer, format_metrics


def metrics(turn_id: int = 1, **overrides) -> TurnMetrics:
    values = dict(turn_id=turn_id, end_of_utterance_delay_ms=310.4, stt_final_latency_ms=290, llm_ttft_ms=95,
                  tts_ttfb_ms=140, voice_to_voice_ms=612.7, stt_model="faster-whisper/tiny.en:en",
                  llm_model="llama.cpp/smollm2-135m-instruct", tts_model="piper/en_US-joe-medium", fallbacks=())
    values.update(overrides)
    return TurnMetrics(**values)


def run(events, *, live: bool = False) -> tuple[Conversation, str]:
    out = io.StringIO()
    conversation = Conversation(session=None, printer=Printer(out, live=live))
    for event in events:
        conversation.handle(event)
    conversation.printer.close()
    return conversation, out.getvalue()


def test_a_turn_prints_what_was_heard_the_streamed_reply_and_then_its_latency():
    conversation, text = run([
        UserTranscript(1, "what is the", final=False),
        UserTranscript(1, "What is the capital of France?", final=True),
        AgentText(1, " The capital"),
        metrics(),  # arrives while the agent is still talking: printed after its line
        AgentText(1, " is Paris."),
        AgentAudio(1, b"\0\0" * 2400, 24000),
        AgentAudio(1, b"\0\0" * 2400, 24000),
        TurnDone(1, "The capital is Paris.", interrupted=False),
    ])
    lines = text.splitlines()
    assert lines[0] == "you:   What is the capital of France?"
    assert lines[1] == "agent: The capital is Paris."
    assert lines[2].startswith("turn 1: voice-to-voice 613 ms (end of turn 310 ms, STT final 290 ms")
    assert "llama.cpp/smollm2-135m-instruct" in lines[3]
    assert "what is the" not in text  # interim hypotheses only show live on a terminal
    assert conversation.result.transcripts == ["What is the capital of France?"]
    assert conversation.result.replies == ["The capital is Paris."]
    assert len(conversation.result.audio) == 2 * 4800 and conversation.result.sample_rate == 24000
    assert conversation.settled()


def test_live_output_rewrites_the_interim_line_in_place():
    _, text = run([UserTranscript(1, "what is", final=False), UserTranscript(1, "What is it?", final=True)],
                  live=True)
    assert text == "you:   what is …\r\033[Kyou:   What is it?\n"


def test_settled_only_when_every_heard_turn_is_answered():
    conversation, _ = run([UserTranscript(1, "Hello.", final=True), TurnDone(1, "Hi.", False),
                           UserTranscript(2, "And you?", final=True)])
    assert not conversation.settled()
    conversation.handle(TurnDone(2, "Fine.", False))
    assert conversation.settled()


def test_errors_fallbacks_and_interruptions_are_shown():
    _, text = run([
        SessionError(1, "UNAVAILABLE", "no LLM answered"),
        AgentText(1, "Once upon"),
        TurnDone(1, "Once upon", interrupted=True),
    ])
    assert "error: UNAVAILABLE: no LLM answered" in text
    assert "(interrupted; kept: 'Once upon')" in text
    line = format_metrics(metrics(voice_to_voice_ms=0, fallbacks=("openai/x@127.0.0.1:1: UNAVAILABLE",)))
    assert "voice-to-voice -" in line and "fell back past: openai/x@127.0.0.1:1: UNAVAILABLE" in line
