"""Pipecat's OpenAI services (pipecat-ai) with their defaults in a real pipecat pipeline against the gateway:
only base_url and api_key are set, so each service asks for its own default model (gpt-transcribe, gpt-4.1,
gpt-4o-mini-tts) and voice (alloy).

pipecat-ai is installed --no-deps with its runtime dependencies less protobuf listed in the dev extra: its
release pins protobuf<7, but the OpenAI services and the pipeline never import protobuf (only its protobuf
frame serializer and a few other providers do), so they run on the protobuf 7 VoiceMesh needs.
"""

from __future__ import annotations

import asyncio
import sys
import time
import wave

import openai
import pytest

from tests.speech import speak, word_errors

pytest.importorskip("pipecat.services.openai.llm", reason="pipecat-ai is a dev dependency (scripts/dev setup)")
from pipecat.frames.frames import (  # noqa: E402
    EndFrame,
    InputAudioRawFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import (  # noqa: E402
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.services.openai.llm import OpenAILLMService  # noqa: E402
from pipecat.services.openai.stt import OpenAISTTService  # noqa: E402
from pipecat.services.openai.tts import OpenAITTSService  # noqa: E402
from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import (  # noqa: E402
    SpeechTimeoutUserTurnStopStrategy,
)
from pipecat.turns.user_turn_strategies import UserTurnStrategies  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

RATE = 24000  # the pipeline's rate both ways: OpenAI's TTS speaks pcm at 24 kHz
QUESTION = "What is the capital of France?"


class Collect(FrameProcessor):
    """The pipeline's sink: keeps the reply's audio; ends the task when the reply has been spoken.

    The TTS service may speak a reply in several pieces, each ending with a TTSStoppedFrame, so the task ends
    only once no audio has come for QUIET_S after a stop (ending at the first stop kept a one-word piece)."""

    QUIET_S = 2.0

    def __init__(self):
        super().__init__()
        self.audio = bytearray()
        self.task: PipelineWorker | None = None
        self.last_audio = 0.0
        self.ending: asyncio.Task | None = None

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio += frame.audio
            self.last_audio = time.monotonic()
        elif isinstance(frame, TTSStoppedFrame) and self.audio and self.task is not None and self.ending is None:
            self.ending = asyncio.create_task(self._end_when_quiet())
        await self.push_frame(frame, direction)

    async def _end_when_quiet(self):
        while (wait := self.last_audio + self.QUIET_S - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        await self.task.queue_frame(EndFrame())


async def test_pipecat_stt_llm_tts_pipeline(openai_mesh, tmp_path):
    stt = OpenAISTTService(base_url=openai_mesh, api_key="unused")
    llm = OpenAILLMService(base_url=openai_mesh, api_key="unused")
    tts = OpenAITTSService(base_url=openai_mesh, api_key="unused")
    context = LLMContext()
    # The turn ends on the speech timeout after VAD's stop: the default Smart Turn analyzer needs the pipecat
    # wheel's model and audio features, which are not what this test is about.
    aggregators = LLMContextAggregatorPair(context, user_params=LLMUserAggregatorParams(
        user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy()])))
    sink = Collect()
    pipeline = Pipeline([stt, aggregators.user(), llm, tts, sink, aggregators.assistant()])
    task = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
                        idle_timeout_secs=None)
    sink.task = task

    async def speak_question():
        await asyncio.sleep(0.5)
        await task.queue_frame(VADUserStartedSpeakingFrame())
        audio = speak(QUESTION, RATE) + bytes(RATE // 5 * 2)
        for start in range(0, len(audio), RATE // 50 * 2):  # 20 ms frames, as a transport sends them
            await task.queue_frame(InputAudioRawFrame(audio=audio[start:start + RATE // 50 * 2], sample_rate=RATE,
                                                      num_channels=1))
        await task.queue_frame(VADUserStoppedSpeakingFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(task)
    await asyncio.wait_for(asyncio.gather(runner.run(), speak_question()), 180)

    heard = [m["content"] for m in context.get_messages() if m.get("role") == "user"]  # the STT's transcript
    errors, total = word_errors(QUESTION, " ".join(map(str, heard)))
    assert errors / total <= 0.25, heard
    assistant = [m for m in context.get_messages() if m.get("role") == "assistant"]
    assert assistant and str(assistant[-1].get("content", "")).strip(), context.get_messages()
    assert len(sink.audio) / 2 / RATE > 0.5, len(sink.audio)
    path = tmp_path / "reply.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(RATE), out.writeframes(bytes(sink.audio))
    with path.open("rb") as file:  # the reply's audio is speech, heard back through the gateway
        text = openai.OpenAI(base_url=openai_mesh, api_key="unused").audio.transcriptions.create(
            model="whisper-1", file=file).text
    assert len(text.split()) >= 2, (text, assistant[-1])
    print(f"pipecat heard {heard!r}, answered {assistant[-1]['content']!r}, spoken as {text!r}", file=sys.stderr)
