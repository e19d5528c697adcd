"""A loopback double of Twilio's side of a Media Stream: it "places a call" to the Twilio edge.

It follows Twilio's documented messages: ``connected``, then ``start`` (with
``streamSid``, ``callSid``, ``mediaFormat`` audio/x-mulaw 8000 Hz mono and the
``customParameters``), then a ``media`` message every 20 ms (160 bytes of
μ-law, base64) with ``sequenceNumber``, ``media.chunk`` and
``media.timestamp`` counting up, and ``stop`` to hang up. Like Twilio it plays
the ``media`` it receives at real time, echoes each ``mark`` once the audio
before it has played, and on ``clear`` drops the unplayed audio and echoes the
pending marks at once. Any message from the server that is not a well-formed
``media``, ``mark`` or ``clear`` for this stream is recorded as a violation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voicemesh.edges.pcm import mulaw_to_pcm, pcm_to_mulaw

RATE = 8000
FRAME = 160  # 20 ms of μ-law at 8 kHz


@dataclass
class Received:
    at: float
    message: dict


@dataclass
class Phone:
    url: str
    parameters: dict[str, str] = field(default_factory=dict)
    stream_sid: str = field(default_factory=lambda: "MZ" + uuid.uuid4().hex)
    call_sid: str = field(default_factory=lambda: "CA" + uuid.uuid4().hex)
    account_sid: str = "AC" + "0" * 32
    received: list[Received] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    heard: bytearray = field(default_factory=bytearray)  # every media payload received, as 8 kHz PCM
    sent_seconds: float = 0.0

    async def __aenter__(self) -> Phone:
        self.ws = await connect(self.url)
        self._sequence = 0
        self._chunk = 0
        self._outgoing = bytearray()  # μ-law the caller still has to say
        self._played_until = 0.0  # monotonic time the audio received so far finishes playing
        self._marks: list[tuple[float, str]] = []
        self._new = asyncio.Event()
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self.send({"event": "start", "start": {
            "accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
            "tracks": ["inbound"], "customParameters": self.parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}}})
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._talk())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ws.close()

    async def send(self, message: dict) -> None:
        self._sequence += 1
        await self.ws.send(json.dumps({**message, "sequenceNumber": str(self._sequence), "streamSid": self.stream_sid}))

    def say(self, pcm: bytes) -> None:
        """Queue 8 kHz PCM speech; it goes out at real time, with silence whenever nothing is queued."""
        self._outgoing += pcm_to_mulaw(pcm)

    async def _talk(self) -> None:
        started = time.monotonic()
        while True:
            frame, self._outgoing[:FRAME] = bytes(self._outgoing[:FRAME]), b""
            frame = frame.ljust(FRAME, b"\xff")  # 0xff is μ-law silence
            await self.send({"event": "media", "media": {
                "track": "inbound", "chunk": str(self._chunk + 1), "timestamp": str(self._chunk * 20),
                "payload": base64.b64encode(frame).decode()}})
            self._chunk += 1
            self.sent_seconds = self._chunk * FRAME / RATE
            now = time.monotonic()
            while self._marks and self._marks[0][0] <= now:
                await self.send({"event": "mark", "mark": {"name": self._marks.pop(0)[1]}})
            await asyncio.sleep(max(0.0, started + self._chunk * 0.02 - time.monotonic()))

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                self._handle(text)
        except ConnectionClosed:
            pass
        finally:
            self._new.set()

    def _handle(self, text: str | bytes) -> None:
        now = time.monotonic()
        try:
            message = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            self.violations.append(f"not JSON: {text!r:.80}")
            return
        event = message.get("event")
        if message.get("streamSid") != self.stream_sid:
            self.violations.append(f"{event} without this stream's streamSid: {message!r:.120}")
        if event == "media":
            try:
                pcm = mulaw_to_pcm(base64.b64decode(message["media"]["payload"], validate=True))
            except (KeyError, TypeError, binascii.Error) as exc:
                self.violations.append(f"bad media: {exc!r}")
                return
            self.heard += pcm
            self._played_until = max(self._played_until, now) + len(pcm) / 2 / RATE
        elif event == "mark" and isinstance(message.get("mark", {}).get("name"), str):
            self._marks.append((max(self._played_until, now), message["mark"]["name"]))
        elif event == "clear":
            self._played_until = now
            self._marks = [(now, name) for _, name in self._marks]
        else:
            self.violations.append(f"unexpected message: {message!r:.120}")
        self.received.append(Received(now, message))
        self._new.set()

    async def wait_for(self, predicate, timeout: float = 120.0) -> Received:
        """The first received message matching ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for item in self.received[seen:]:
                if predicate(item.message):
                    return item
            seen = len(self.received)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching message in {timeout:.0f} s; got "
                                   f"{[r.message['event'] for r in self.received][-20:]}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), left)
            except TimeoutError:
                pass

    def media_seconds(self) -> float:
        return len(self.heard) / 2 / RATE

    async def hang_up(self) -> tuple[int | None, str]:
        """Send ``stop`` as Twilio does when the call ends; the code and reason the server closes with."""
        self._tasks[1].cancel()
        await self.send({"event": "stop", "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
        await asyncio.wait_for(self._tasks[0], 30)
        return self.ws.close_code, self.ws.close_reason or ""
