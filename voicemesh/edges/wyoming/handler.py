"""One Wyoming connection: each event is dispatched in one ``match``.

A request that is wrong (a chunk before ``audio-start``, a missing field, an
unknown model) gets an ``error`` event and ends that request; the connection
stays open for the next one. Events of other Wyoming domains (wake word,
intent, …) are dropped, as the protocol asks of a server that does not serve
them.
"""

from __future__ import annotations

import logging

import grpc
from wyoming.asr import Transcribe, Transcript, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped, SynthesizeVoice

from voicemesh.descriptors import parse
from voicemesh.edges.link import MeshLink
from voicemesh.edges.pcm import check_format
from voicemesh.edges.wyoming.info import describe
from voicemesh.edges.wyoming.streams import Synthesis, Transcription, rpc_error
from voicemesh.errors import InvalidInput, VoiceMeshError

log = logging.getLogger(__name__)

# An event whose fields are missing or of the wrong type fails in the wyoming package's from_event.
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError)
# The largest data or payload one event may announce. The wyoming package reads whatever length the header names
# into memory; a Home Assistant audio chunk is a few KiB, so 1 MiB leaves room without letting one line claim gigabytes.
MAX_EVENT_BYTES = 1 << 20


class _BoundedReader:
    """The connection's reader, refusing an event whose announced data or payload exceeds ``MAX_EVENT_BYTES``.

    The wyoming package reads an event's body with ``readexactly(length)``; raising ``ValueError`` there ends its
    read loop (it treats that as the end of the stream), and ``refused`` says why for the error event we send."""

    def __init__(self, reader):
        self._reader = reader
        self.refused = ""

    async def readline(self) -> bytes:
        return await self._reader.readline()

    async def readexactly(self, n: int) -> bytes:
        if n > MAX_EVENT_BYTES:
            self.refused = f"an event announced {n} bytes of data or payload; the limit is {MAX_EVENT_BYTES}"
            raise ValueError(self.refused)
        return await self._reader.readexactly(n)

    def __getattr__(self, name: str):
        return getattr(self._reader, name)


class Defaults:
    """What a request that names no model gets, and the limits of every call."""

    def __init__(self, *, stt: str, tts: str, tts_rate_hz: int, timeout_s: float):
        self.stt, self.tts, self.tts_rate_hz, self.timeout_s = stt, tts, tts_rate_hz, timeout_s


class WyomingHandler(AsyncEventHandler):
    """Serves describe, transcribe and synthesize (one-shot and streaming) on one connection."""

    def __init__(self, reader, writer, *, link: MeshLink, defaults: Defaults):
        super().__init__(_BoundedReader(reader), writer)
        self.link, self.defaults = link, defaults
        self.transcribe: Transcribe | None = None
        self.transcription: Transcription | None = None
        self.synthesis: Synthesis | None = None  # a synthesize-start stream

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._dispatch(event)
        except VoiceMeshError as exc:
            await self._fail(Error(text=exc.message, code=exc.code), event)
        except grpc.aio.AioRpcError as exc:
            await self._fail(rpc_error(exc, event.type), event)
        except _MALFORMED as exc:
            await self._fail(Error(text=f"malformed {event.type!r} event: {type(exc).__name__}: {exc}",
                                   code="INVALID_ARGUMENT"), event)
        return True

    async def _fail(self, error: Error, event: Event) -> None:
        log.info("wyoming %s refused: %s", event.type, error.text)
        await self.write_event(error.event())
        await self._drop_requests()

    async def _drop_requests(self) -> None:
        self.transcribe = None
        for stream in (self.transcription, self.synthesis):
            if stream is not None:
                await stream.cancel()
        self.transcription = self.synthesis = None

    async def disconnect(self) -> None:
        if self.reader.refused:  # the client is still there: say why the server hangs up
            log.info("wyoming connection closed: %s", self.reader.refused)
            try:
                await self.write_event(Error(text=self.reader.refused, code="PAYLOAD_TOO_LARGE").event())
            except (ConnectionError, RuntimeError):
                pass
        await self._drop_requests()

    async def _dispatch(self, event: Event) -> None:
        match event.type:
            case t if Describe.is_type(t):
                await self.write_event((await describe(self.link)).event())
            case t if Ping.is_type(t):
                await self.write_event(Pong(text=Ping.from_event(event).text).event())
            case t if Transcribe.is_type(t):
                if self.transcription is not None:
                    raise InvalidInput("transcribe while audio of the previous one is still streaming")
                self.transcribe = Transcribe.from_event(event)
            case t if AudioStart.is_type(t):
                await self._audio_start(AudioStart.from_event(event))
            case t if AudioChunk.is_type(t):
                if self.transcription is None:
                    raise InvalidInput("audio-chunk before audio-start")
                self.transcription.audio(AudioChunk.from_event(event))
            case t if AudioStop.is_type(t):
                await self._audio_stop()
            case t if Synthesize.is_type(t):
                request = Synthesize.from_event(event)
                if self.synthesis is None:  # inside a stream it only repeats the text, for older servers
                    await self._synthesize(request)
            case t if SynthesizeStart.is_type(t):
                await self._synthesize_start(SynthesizeStart.from_event(event))
            case t if SynthesizeChunk.is_type(t):
                if self.synthesis is None:
                    raise InvalidInput("synthesize-chunk before synthesize-start")
                self.synthesis.text(_text(SynthesizeChunk.from_event(event).text))
            case t if SynthesizeStop.is_type(t):
                await self._synthesize_stop()
            case _:
                log.debug("wyoming event %r is not served here: dropped", event.type)

    # -- speech to text ---------------------------------------------------------------------------

    async def _audio_start(self, start: AudioStart) -> None:
        if self.transcription is not None:
            raise InvalidInput("audio-start while the previous audio is still streaming")
        check_format(start.rate, start.width, start.channels)
        request, self.transcribe = self.transcribe or Transcribe(), None
        model = request.name or self.defaults.stt
        language = request.language or ""
        if not isinstance(model, str) or not isinstance(language, str):
            raise InvalidInput("transcribe: name and language must be strings")
        parse(model)
        self.transcription = Transcription(self.link, self.write_event, model=model, language=language,
                                           timeout_s=self.defaults.timeout_s)

    async def _audio_stop(self) -> None:
        transcription, self.transcription = self.transcription, None
        if transcription is None:
            raise InvalidInput("audio-stop before audio-start")
        text = await transcription.finish()
        if text is None:
            return  # the failure went out as an error event
        await self.write_event(Transcript(text=text, language=transcription.language or None).event())
        await self.write_event(TranscriptStop().event())

    # -- text to speech ---------------------------------------------------------------------------

    def _voice(self, voice: SynthesizeVoice | None) -> str:
        """The descriptor of a Wyoming voice: its name (a descriptor from ``info``) with the speaker as variant."""
        if voice is None or not voice.name:
            return self.defaults.tts
        if not isinstance(voice.name, str) or (voice.speaker is not None and not isinstance(voice.speaker, str)):
            raise InvalidInput("synthesize: voice name and speaker must be strings")
        descriptor = parse(voice.name)
        return str(descriptor.with_variant(voice.speaker)) if voice.speaker else str(descriptor)

    def _synthesis(self, voice: SynthesizeVoice | None) -> Synthesis:
        return Synthesis(self.link, self.write_event, voice=self._voice(voice), rate=self.defaults.tts_rate_hz,
                         timeout_s=self.defaults.timeout_s)

    async def _synthesize(self, request: Synthesize) -> None:
        text = _text(request.text)
        if not text.strip():
            raise InvalidInput("synthesize: the text is empty")
        synthesis = self._synthesis(request.voice)
        synthesis.text(text)
        await synthesis.finish()

    async def _synthesize_start(self, start: SynthesizeStart) -> None:
        if self.synthesis is not None:
            raise InvalidInput("synthesize-start while the previous synthesis stream is open")
        self.synthesis = self._synthesis(start.voice)

    async def _synthesize_stop(self) -> None:
        synthesis, self.synthesis = self.synthesis, None
        if synthesis is None:
            raise InvalidInput("synthesize-stop before synthesize-start")
        if await synthesis.finish():
            await self.write_event(SynthesizeStopped().event())


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"text must be a string, got {type(value).__name__}")
    return value
