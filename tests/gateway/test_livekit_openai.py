"""LiveKit's OpenAI plugin (livekit-plugins-openai) with its defaults against the gateway: only
base_url and api_key are set, so each plugin asks for its own default model and voice."""

from __future__ import annotations

import json

import openai
import pytest

from tests.speech import speak, word_errors

rtc = pytest.importorskip("livekit.rtc", reason="livekit-plugins-openai is a dev dependency (scripts/dev setup)")
from livekit.agents import function_tool, llm  # noqa: E402
from livekit.plugins import openai as lk_openai  # noqa: E402

SENTENCE = "Please book a table for two people."


def frame_of(pcm: bytes, rate: int):
    return rtc.AudioFrame(data=pcm, sample_rate=rate, num_channels=1, samples_per_channel=len(pcm) // 2)


async def test_stt_recognize(openai_mesh):
    stt = lk_openai.STT(base_url=openai_mesh, api_key="unused")  # model gpt-4o-mini-transcribe
    try:
        event = await stt.recognize(frame_of(speak(SENTENCE, 24000), 24000))
    finally:
        await stt.aclose()
    errors, total = word_errors(SENTENCE, event.alternatives[0].text)
    assert errors / total <= 0.25, event.alternatives[0].text


async def test_tts_with_its_defaults_speaks_the_text(openai_mesh, tmp_path):
    tts = lk_openai.TTS(base_url=openai_mesh, api_key="unused")  # gpt-4o-mini-tts, voice ash, mp3 over sse
    try:
        frames = [event.frame async for event in tts.synthesize(SENTENCE)]
    finally:
        await tts.aclose()
    pcm = b"".join(bytes(f.data) for f in frames)
    rate = frames[0].sample_rate
    assert len(pcm) / 2 / rate > 1.0
    path = tmp_path / "spoken.wav"
    path.write_bytes(rtc.combine_audio_frames(frames).to_wav_bytes())
    with path.open("rb") as file:  # what it said, heard back through the gateway
        text = openai.OpenAI(base_url=openai_mesh, api_key="unused").audio.transcriptions.create(
            model="whisper-1", file=file).text
    errors, total = word_errors(SENTENCE, text)
    assert errors / total <= 0.25, text


@function_tool
async def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: the city's name
    """
    return "sunny"


async def test_llm_calls_a_function_tool(openai_mesh):
    model = lk_openai.LLM(base_url=openai_mesh, api_key="unused")  # model gpt-4.1
    chat = llm.ChatContext()
    chat.add_message(role="user", content="What's the weather like in Berlin?")
    try:
        async with model.chat(chat_ctx=chat, tools=[get_weather], tool_choice="required") as stream:
            calls = [call async for chunk in stream if chunk.delta and chunk.delta.tool_calls
                     for call in chunk.delta.tool_calls]
    finally:
        await model.aclose()
    assert calls and calls[0].name == "get_weather", calls
    assert isinstance(json.loads(calls[0].arguments)["city"], str)


async def test_realtime_stt_stream(realtime_gateway):
    from livekit.agents import stt as lk_stt
    from livekit.agents.utils import http_context

    audio = speak(SENTENCE, 24000) + bytes(24000 * 2 * 2)  # then 2 s of silence
    finals = []
    async with http_context.open():  # what a LiveKit job provides: the plugin's websocket session
        stt = lk_openai.STT(base_url=realtime_gateway, api_key="unused", use_realtime=True)
        await _stream_finals(stt, audio, finals, lk_stt)
    errors, total = word_errors(SENTENCE, " ".join(finals))
    assert errors / total <= 0.25, finals


async def _stream_finals(stt, audio: bytes, finals: list, lk_stt) -> None:
    try:
        stream = stt.stream()
        for i in range(0, len(audio), 4800):
            stream.push_frame(frame_of(audio[i:i + 4800], 24000))
        stream.end_input()
        async for event in stream:
            if event.type == lk_stt.SpeechEventType.FINAL_TRANSCRIPT:
                finals.append(event.alternatives[0].text)
                break
        await stream.aclose()
    finally:
        await stt.aclose()


async def test_realtime_model_one_spoken_turn(realtime_gateway):
    import asyncio

    from livekit.agents.utils import http_context

    audio = speak("What is the capital of France?", 24000) + bytes(24000 * 2 * 2)
    async with http_context.open():
        model = lk_openai.realtime.RealtimeModel(base_url=realtime_gateway, api_key="unused")  # gpt-realtime
        session = model.session()
        generations: asyncio.Queue = asyncio.Queue()
        session.on("generation_created", generations.put_nowait)
        try:
            for i in range(0, len(audio), 4800):
                session.push_audio(frame_of(audio[i:i + 4800], 24000))
            generation = await asyncio.wait_for(generations.get(), 120)
            samples, text = 0, ""
            async for message in generation.message_stream:
                async for frame in message.audio_stream:
                    samples += frame.samples_per_channel
                async for piece in message.text_stream:
                    text += str(piece)
        finally:
            await session.aclose()
            await model.aclose()
    assert samples / 24000 > 0.5 and text.strip(), (samples, text)
