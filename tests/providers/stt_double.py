"""A loopback server speaking Deepgram's live ``/v1/listen`` and AssemblyAI's v3 ``/v3/ws`` protocols.

It stands in for the paid APIs in tests and really transcribes (faster-whisper
tiny.en with the Silero VAD, through VoiceMesh's local backend). What it follows
of each documented protocol:

- Deepgram: ``Authorization: Token <key>`` (else HTTP 401 with a ``dg-error``
  header; an account out of credit gets HTTP 402), the query parameters
  ``model``, ``language``, ``encoding=linear16``, ``sample_rate``, ``interim_results``,
  ``endpointing``, ``utterance_end_ms``, ``vad_events``; binary audio, ``KeepAlive``,
  ``Finalize`` and ``CloseStream``; ``SpeechStarted``, ``Results`` (``is_final``,
  ``speech_final``), ``UtteranceEnd``, a ``Metadata`` summary and close 1000;
  close 1011 ``NET-0001`` after ``--idle-timeout`` seconds without audio or KeepAlive,
  1008 ``DATA-0000`` for a text frame it cannot read.
- AssemblyAI: the key as the raw ``Authorization`` header, ``sample_rate``,
  ``encoding=pcm_s16le``, ``format_turns``, ``speech_model``; ``Begin``; ``Turn``
  messages (``transcript`` of the finalized words, ``words`` with ``word_is_final``,
  ``end_of_turn``, then the formatted copy with ``turn_is_formatted``); ``ForceEndpoint``,
  ``Terminate`` -> ``Termination`` and close 1000. Errors are an ``Error`` frame and a
  close with the same code: 1008 for a bad key, 3009 for too many sessions, 3006 for
  an unreadable message, 3007 for an audio message outside 50-1000 ms.

Special keys make it misbehave: ``malformed`` sends a frame that is not JSON in
place of its first transcript, ``drop`` drops the TCP connection without a close
frame after a second of audio, ``stall`` takes the audio and never answers;
``quota`` is refused as an account over its limits. Run:
``python -m tests.providers.stt_double --port 8080 --api-key KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from voicemesh.backend import RemoteOptions
from voicemesh.services.stt.backend import RecognitionOptions, SpeechStartedEvent, TranscriptEvent, UsageEvent
from voicemesh.services.stt.backends.faster_whisper import FasterWhisperBackend, FasterWhisperSettings

MISBEHAVING = ("malformed", "drop", "stall")
DROP_AFTER_S = 1.0  # the "drop" key loses the connection once this much audio came


class Double:
    """The two protocols over one recognizer."""

    def __init__(self, recognizer: FasterWhisperBackend, api_key: str, idle_timeout: float):
        self.recognizer, self.api_key, self.idle_timeout = recognizer, api_key, idle_timeout
        self.deepgram_models = ("nova-3", "nova-2", "nova-3-medical", "enhanced", "base")

    def keys(self) -> set[str]:
        return {self.api_key, "quota", *MISBEHAVING}

    # Handshake: Deepgram refuses with an HTTP status; AssemblyAI upgrades, then errors in-band.
    def process_request(self, connection: ServerConnection, request: Any) -> Any:
        path = urlsplit(request.path).path
        if path == "/v1/listen":
            auth = request.headers.get("Authorization", "")
            key = auth[len("Token "):] if auth.startswith("Token ") else ""
            query = _query(request.path)
            if key not in self.keys():
                return _refuse(connection, HTTPStatus.UNAUTHORIZED, "INVALID_AUTH", "Invalid credentials.")
            if key == "quota":
                return _refuse(connection, HTTPStatus.PAYMENT_REQUIRED, "ASR_PAYMENT_REQUIRED",
                               "Project does not have enough credits for an API request.")
            if query.get("model", "nova-3") not in self.deepgram_models or query.get("encoding") != "linear16" \
                    or not query.get("sample_rate", "").isdigit():
                return _refuse(connection, HTTPStatus.BAD_REQUEST, "Bad Request", "unsupported model or encoding")
            return None
        if path == "/v3/ws":
            return None
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")

    async def handle(self, socket: ServerConnection) -> None:
        path = urlsplit(socket.request.path).path
        if path == "/v1/listen":
            await self.deepgram(socket)
        else:
            await self.assemblyai(socket)

    async def _recognize(self, socket: ServerConnection, options: RecognitionOptions, audio: asyncio.Queue,
                         emit: Any, key: str) -> UsageEvent | None:
        """Run the recognizer over the queued audio; ``emit`` turns each event into provider messages."""
        async def chunks():
            while (chunk := await audio.get()) is not None:
                yield chunk

        usage = None
        async for event in self.recognizer.recognize(options, chunks()):
            if isinstance(event, UsageEvent):
                usage = event
            elif key == "stall":
                continue  # takes the audio, never answers
            elif key == "malformed" and isinstance(event, TranscriptEvent):
                await socket.send('{"type": "Results", "channel": ')  # cut off mid-object
                return None
            else:
                await emit(event)
        return usage

    async def deepgram(self, socket: ServerConnection) -> None:
        query = _query(socket.request.path)
        key = socket.request.headers["Authorization"][len("Token "):]
        rate = int(query["sample_rate"])
        interim = _true(query, "interim_results")
        vad_events = _true(query, "vad_events")
        utterance_end = query.get("utterance_end_ms", "").isdigit() and interim  # it reads the interims
        options = RecognitionOptions(language=query.get("language", "en"), sample_rate_hz=rate,
                                     interim_results=interim, min_silence_ms=int(query.get("endpointing") or 300))
        request_id, model = str(uuid.uuid4()), query.get("model", "nova-3")
        audio: asyncio.Queue = asyncio.Queue()
        started: dict[int, int] = {}

        async def emit(event: Any) -> None:
            if isinstance(event, SpeechStartedEvent):
                started[event.utterance_id] = event.time_ms
                if vad_events:
                    await socket.send(json.dumps({"type": "SpeechStarted", "channel": [0],
                                                  "timestamp": event.time_ms / 1000}))
            elif isinstance(event, TranscriptEvent) and (event.final or interim):
                start = started.get(event.utterance_id, event.start_ms)
                await socket.send(json.dumps(_results(event, start, request_id, model)))
                if event.final and utterance_end:
                    await socket.send(json.dumps({"type": "UtteranceEnd", "channel": [0, 1],
                                                  "last_word_end": event.end_ms / 1000}))

        last = [time.monotonic()]
        recognize = asyncio.create_task(self._recognize(socket, options, audio, emit, key))
        watchdog = asyncio.create_task(_idle(socket, last, self.idle_timeout))
        try:
            async for message in socket:
                last[0] = time.monotonic()
                if isinstance(message, bytes):
                    if _dropped(socket, key, audio, message, rate):
                        return
                    continue
                kind = _type(message)
                if kind == "CloseStream":
                    break
                if kind not in ("KeepAlive", "Finalize"):
                    await socket.close(1008, "DATA-0000")
                    return
            audio.put_nowait(None)
            usage = await recognize
            if usage is None:
                return
            created = datetime.now(timezone.utc).isoformat()
            model_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, model))
            await socket.send(json.dumps({
                "type": "Metadata", "transaction_key": "deprecated", "request_id": request_id, "sha256": "0" * 64,
                "created": created, "duration": usage.audio_seconds_in, "channels": 1, "models": [model_uuid],
                "model_info": {model_uuid: {"name": model, "version": "2026-01-01", "arch": "double"}}}))
            await socket.close(1000)
        except ConnectionClosed:
            pass
        finally:
            watchdog.cancel()
            recognize.cancel()

    async def assemblyai(self, socket: ServerConnection) -> None:
        key = socket.request.headers.get("Authorization", "")
        query = _query(socket.request.path)
        if key not in self.keys():
            return await _error(socket, 1008, "Unauthorized Connection: Invalid API key")
        if key == "quota":
            return await _error(socket, 3009, "Unauthorized Connection: Too many concurrent sessions")
        if query.get("encoding", "pcm_s16le") != "pcm_s16le" or not query.get("sample_rate", "").isdigit():
            return await _error(socket, 3006, "Input validation error: sample_rate and encoding=pcm_s16le")
        rate = int(query["sample_rate"])
        formatted = _true(query, "format_turns")
        options = RecognitionOptions(language="en", sample_rate_hz=rate, interim_results=True,
                                     min_silence_ms=int(query.get("min_turn_silence") or 400))
        begun = time.time()
        await socket.send(json.dumps({"type": "Begin", "id": str(uuid.uuid4()), "expires_at": int(begun) + 3600}))
        audio: asyncio.Queue = asyncio.Queue()
        turns = [-1]

        async def emit(event: Any) -> None:
            if isinstance(event, SpeechStartedEvent):
                turns[0] += 1
            elif isinstance(event, TranscriptEvent):
                for message in _turns(event, turns[0], formatted):
                    await socket.send(json.dumps(message))

        recognize = asyncio.create_task(self._recognize(socket, options, audio, emit, key))
        try:
            async for message in socket:
                if isinstance(message, bytes):
                    ms = len(message) / 2 / rate * 1000
                    if not 50 <= ms <= 1000:
                        return await _error(socket, 3007, f"Input duration violation: {ms:.0f} ms. "
                                                          "Expected between 50 and 1000 ms")
                    if _dropped(socket, key, audio, message, rate):
                        return
                    continue
                kind = _type(message)
                if kind == "Terminate":
                    break
                if kind not in ("ForceEndpoint", "KeepAlive", "UpdateConfiguration"):
                    return await _error(socket, 3006, f"Invalid Message Type: {message[:60]}")
            audio.put_nowait(None)
            usage = await recognize
            if usage is None:
                return
            await socket.send(json.dumps({"type": "Termination",
                                          "audio_duration_seconds": round(usage.audio_seconds_in),
                                          "session_duration_seconds": round(time.time() - begun)}))
            await socket.close(1000)
        except ConnectionClosed:
            pass
        finally:
            recognize.cancel()


def _dropped(socket: ServerConnection, key: str, audio: asyncio.Queue, pcm: bytes, rate: int) -> bool:
    """Queue ``pcm`` for recognition; for the "drop" key, lose the TCP connection (no close frame) once
    DROP_AFTER_S of audio came."""
    audio.put_nowait(pcm)
    received = getattr(audio, "received", 0) + len(pcm)
    audio.received = received  # type: ignore[attr-defined]
    if key == "drop" and received >= DROP_AFTER_S * rate * 2:
        socket.transport.abort()
        return True
    return False


def _query(path: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(path).query).items()}


def _true(query: dict[str, str], name: str) -> bool:
    """A boolean query parameter; AssemblyAI's own SDK spells it ``True``."""
    return query.get(name, "").lower() == "true"


def _type(text: str) -> str | None:
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message.get("type") if isinstance(message, dict) else None


def _refuse(connection: ServerConnection, status: HTTPStatus, code: str, message: str) -> Any:
    body = json.dumps({"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())})
    response = connection.respond(status, body)
    response.headers["dg-error"] = message
    response.headers["Content-Type"] = "application/json"
    return response


async def _error(socket: ServerConnection, code: int, message: str) -> None:
    await socket.send(json.dumps({"type": "Error", "error_code": code, "error": message}))
    await socket.close(code, message[:123])


async def _idle(socket: ServerConnection, last: list[float], timeout: float) -> None:
    while True:
        await asyncio.sleep(0.2)
        if time.monotonic() - last[0] > timeout:
            await socket.close(1011, "NET-0001")
            return


def _results(event: TranscriptEvent, start_ms: int, request_id: str, model: str) -> dict[str, Any]:
    words = [{"word": w.word.strip(".,?!").lower(), "start": w.start_ms / 1000, "end": w.end_ms / 1000,
              "confidence": w.confidence, "punctuated_word": w.word} for w in event.words]
    end_ms = max(event.end_ms, start_ms)
    return {"type": "Results", "channel_index": [0, 1], "duration": (end_ms - start_ms) / 1000,
            "start": start_ms / 1000, "is_final": event.final, "speech_final": event.final,
            "from_finalize": False,
            "channel": {"alternatives": [{"transcript": event.text, "confidence": event.confidence, "words": words}]},
            "metadata": {"request_id": request_id, "model_uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, model)),
                         "model_info": {"name": model, "version": "2026-01-01", "arch": "double"}}}


def _turns(event: TranscriptEvent, turn: int, formatted: bool) -> list[dict[str, Any]]:
    """The Turn messages of one hypothesis: a partial, or the end of turn (then its formatted copy)."""
    plain = [w.word.strip(".,?!").lower() for w in event.words] or event.text.lower().strip(".,?!").split()
    times = [(w.start_ms, w.end_ms, w.confidence) for w in event.words] or [
        (event.start_ms, event.end_ms, event.confidence)] * len(plain)
    words = [{"start": s, "end": e, "confidence": c, "text": t, "word_is_final": event.final or i < len(plain) - 1}
             for i, (t, (s, e, c)) in enumerate(zip(plain, times))]
    settled = " ".join(w["text"] for w in words if w["word_is_final"])
    base = {"type": "Turn", "turn_order": max(turn, 0), "turn_is_formatted": False, "end_of_turn": event.final,
            "transcript": settled, "end_of_turn_confidence": 0.9 if event.final else 0.1, "words": words,
            "utterance": " ".join(plain) if not event.final else ""}
    if not (event.final and formatted):
        return [base]
    return [base, {**base, "turn_is_formatted": True, "transcript": event.text,
                   "words": [{**w, "text": f} for w, f in zip(words, [x.word for x in event.words] or plain)]}]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--idle-timeout", type=float, default=10.0, help="Deepgram's NET-0001 wait, seconds")
    args = parser.parse_args()
    recognizer = FasterWhisperBackend(model="tiny.en", options=RemoteOptions(),
                                      settings=FasterWhisperSettings(workers=1, threads=1, interim_interval_ms=300))
    await recognizer.load()
    double = Double(recognizer, args.api_key, args.idle_timeout)
    async with serve(double.handle, args.host, args.port, process_request=double.process_request,
                     max_size=1 << 20):
        print("READY", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
