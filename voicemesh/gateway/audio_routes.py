"""/v1/audio/transcriptions and /v1/audio/speech: OpenAI audio requests over the STT and TTS services.

Uploads in any common format are decoded by PyAV (voicemesh.audio_codecs) to 16 kHz PCM within
the gateway's duration limit; speech is encoded to the requested format chunk by chunk as the
TTS service synthesizes it, so the first bytes leave before the reply is whole. ``stream=true``
(transcription) and ``stream_format="sse"`` (speech) answer with OpenAI's server-sent events.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from voicemesh.audio import chunks
from voicemesh.audio_codecs import Encoder, decode
from voicemesh.errors import InvalidInput, VoiceMeshError
from voicemesh.gateway import openai_format as fmt
from voicemesh.gateway import subtitles
from voicemesh.gateway.errors import error_response, exception_error
from voicemesh.v1 import stt_pb2, tts_pb2

if TYPE_CHECKING:
    from voicemesh.gateway.app import Gateway

SPEECH_RATE_HZ = 24000  # OpenAI's "pcm" format: 24 kHz s16le mono
UPLOAD_RATE_HZ = 16000  # what the speech recognizers run at
TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
GRANULARITIES = ("segment", "word")


def _form_list(form, name: str) -> list[str]:
    # The SDKs send arrays in multipart as "name[]" repeated; plain "name" is accepted too.
    return [str(v) for v in form.getlist(f"{name}[]") + form.getlist(name)]


def _form_bool(form, name: str) -> bool:
    value = str(form.get(name) or "false").lower()
    if value not in ("true", "false"):
        raise InvalidInput(f"'{name}' must be true or false", reason=name)
    return value == "true"


async def transcribe(gateway: Gateway, request: Request) -> Response:
    try:
        form = await request.form(max_part_size=gateway.max_body_bytes)
        upload = form.get("file")
        requested = form.get("model")
        if upload is None or isinstance(upload, str):
            raise InvalidInput("missing required parameter: 'file' (an audio file: wav, mp3, m4a, ogg, webm, flac)",
                               reason="file")
        if not requested or not isinstance(requested, str):
            raise InvalidInput("missing required parameter: 'model'", reason="model")
        model = gateway.names.model(requested)
        response_format = str(form.get("response_format") or "json")
        if response_format not in TRANSCRIPTION_FORMATS:
            raise InvalidInput(f"response_format must be one of {', '.join(TRANSCRIPTION_FORMATS)}",
                               reason="response_format")
        granularities = _form_list(form, "timestamp_granularities") or ["segment"]
        if not set(granularities) <= set(GRANULARITIES):
            raise InvalidInput("timestamp_granularities may hold 'segment' and 'word'",
                               reason="timestamp_granularities")
        stream = _form_bool(form, "stream")
        data = await upload.read()  # AuthFirst bounds the upload's size
        # Decoding stops at the duration limit, so a small file that expands to hours costs no more.
        pcm, duration = await asyncio.to_thread(decode, data, rate=UPLOAD_RATE_HZ, max_seconds=gateway.max_audio_s)
        language = str(form.get("language") or "")
        config = stt_pb2.RecognitionConfig(model=model, language=language, sample_rate_hz=UPLOAD_RATE_HZ,
                                           interim_results=stream)
        requests = [stt_pb2.RecognizeRequest(config=config)]
        requests += [stt_pb2.RecognizeRequest(audio=c) for c in chunks(pcm, rate=UPLOAD_RATE_HZ, ms=100)]
        call = gateway.stub("stt", model).Recognize(iter(requests), timeout=gateway.timeout_s,
                                                    metadata=gateway.metadata(request))
        if stream:
            events = _recognized(call)
            first = await anext(events, None)  # errors before the first event become an HTTP error
            return StreamingResponse(_transcript_sse(first, events), media_type="text/event-stream")
        finals = [r.final async for r in call if r.WhichOneof("event") == "final"]
    except (VoiceMeshError, grpc.aio.AioRpcError) as exc:
        return error_response(exc)
    text = " ".join(f.text.strip() for f in finals if f.text.strip())
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "json":
        return JSONResponse({"text": text})
    if response_format in ("srt", "vtt"):
        cues = [(f.start_ms, f.end_ms, f.text.strip()) for f in finals if f.text.strip()]
        return PlainTextResponse(subtitles.srt(cues) if response_format == "srt" else subtitles.vtt(cues))
    verbose = {"task": "transcribe", "language": finals[0].language if finals and finals[0].language else language,
               "duration": duration, "text": text}
    if "segment" in granularities:
        verbose["segments"] = [{"id": i, "seek": 0, "start": f.start_ms / 1000, "end": f.end_ms / 1000,
                                "text": f.text, "tokens": [], "temperature": 0.0, "avg_logprob": 0.0,
                                "compression_ratio": 0.0, "no_speech_prob": 0.0}
                               for i, f in enumerate(finals)]
    if "word" in granularities:
        verbose["words"] = [{"word": w.word, "start": w.start_ms / 1000, "end": w.end_ms / 1000}
                            for f in finals for w in f.words]
    return JSONResponse(verbose)


async def _recognized(call) -> AsyncIterator[stt_pb2.RecognizeResponse]:
    async for response in call:
        if response.WhichOneof("event") in ("interim", "final"):
            yield response


async def _transcript_sse(first, events) -> AsyncIterator[str]:
    """OpenAI's transcription stream: append-only ``transcript.text.delta`` events, then the whole text.

    Interim hypotheses may be revised, and a delta cannot be taken back: a delta carries only words
    that two hypotheses in a row agree on (and a final's words), so the deltas add up to the text of
    the finals whenever the recognizer does not change its mind about words it already repeated.
    """
    finals: list[str] = []
    sent = ""  # text of the current utterance already sent as deltas
    previous: list[str] = []
    pending = [first] if first is not None else []
    try:
        async for response in _chain(pending, events):
            kind = response.WhichOneof("event")
            transcript = getattr(response, kind)
            words = transcript.text.split()
            if kind == "interim":
                stable = []
                for a, b in zip(previous, words):
                    if a != b:
                        break
                    stable.append(a)
                previous = words
                candidate = " ".join(stable)
            else:
                candidate = " ".join(words)
                previous = []
            prefix = (" " if finals and not sent else "")
            if candidate.startswith(sent) and len(candidate) > len(sent):
                yield fmt.sse({"type": "transcript.text.delta", "delta": prefix + candidate[len(sent):]})
                sent = candidate
            if kind == "final":
                if candidate:
                    finals.append(candidate)
                sent = ""
    except grpc.aio.AioRpcError as exc:  # after the headers went out, the error goes in band
        yield fmt.sse(exception_error(exc)[1])
        return
    yield fmt.sse({"type": "transcript.text.done", "text": " ".join(finals)})


async def _chain(first: list, rest: AsyncIterator) -> AsyncIterator:
    for item in first:
        yield item
    async for item in rest:
        yield item


async def speech(gateway: Gateway, request: Request) -> Response:
    try:
        body = await gateway.json(request)
        model = gateway.names.model(fmt.require(body, "model", str))
        text = fmt.require(body, "input", str)
        if not text.strip():
            raise InvalidInput("'input' is empty", reason="input")
        voice = fmt.optional(body, "voice", str, "")
        encoder = Encoder(fmt.optional(body, "response_format", str, "mp3"), SPEECH_RATE_HZ)
        stream_format = fmt.optional(body, "stream_format", str, "audio")
        if stream_format not in ("audio", "sse"):
            raise InvalidInput("stream_format must be 'audio' or 'sse'", reason="stream_format")
        speed = fmt.optional(body, "speed", (int, float), 1.0)
        descriptor = gateway.names.voice(model, voice)
        config = tts_pb2.SynthesisConfig(voice=descriptor, sample_rate_hz=SPEECH_RATE_HZ, speed=speed)
        requests = [tts_pb2.SynthesizeRequest(config=config), tts_pb2.SynthesizeRequest(text=text)]
        call = gateway.stub("tts", descriptor).Synthesize(iter(requests), timeout=gateway.timeout_s,
                                                         metadata=gateway.metadata(request))
        audio = _audio(call)
        first = await anext(audio, b"")  # errors before the first audio become an HTTP error
    except (VoiceMeshError, grpc.aio.AioRpcError) as exc:
        return error_response(exc)
    encoded = _encoded(encoder, first, audio)
    if stream_format == "sse":
        return StreamingResponse(_speech_sse(encoded, len(text)), media_type="text/event-stream")
    return StreamingResponse(encoded, media_type=encoder.media_type)


async def _audio(call) -> AsyncIterator[bytes]:
    async for response in call:
        if response.WhichOneof("event") == "audio":
            yield response.audio.audio


async def _encoded(encoder: Encoder, first: bytes, audio: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The audio encoded as it arrives (encoding off the event loop). A failure after the first bytes
    cannot change the status any more: the stream ends early and the error is logged."""
    try:
        async for pcm in _chain([first], audio):
            data = await asyncio.to_thread(encoder.encode, pcm)
            if data:
                yield data
    finally:
        tail = await asyncio.to_thread(encoder.close)
    if tail:
        yield tail


async def _speech_sse(encoded: AsyncIterator[bytes], characters: int) -> AsyncIterator[str]:
    try:
        async for data in encoded:
            yield fmt.sse({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    except grpc.aio.AioRpcError as exc:
        yield fmt.sse(exception_error(exc)[1])
        return
    # The mesh meters characters, not tokens: the usage says what it counted.
    yield fmt.sse({"type": "speech.audio.done", "usage": {"input_characters": characters}})
