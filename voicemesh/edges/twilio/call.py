"""One phone call: a Twilio media stream on one side, one ``AgentService.Session`` on the other.

The caller's μ-law audio goes to the session as 8 kHz PCM; the agent's audio
(asked for at 8 kHz) comes back as μ-law ``media``. Each reply ends with a
``mark`` named ``turn-<id>``, which Twilio echoes once the caller has heard it.
When the caller talks over the agent the orchestrator stops the reply (its
state goes back to listening before the turn is done): the call then sends
``clear``, so Twilio drops the audio it holds but has not played.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from dataclasses import dataclass

from starlette.websockets import WebSocket

from voicemesh.audio import chunks, convert
from voicemesh.client.events import AgentState, EventType
from voicemesh.client.session import AgentSession, AgentSessionError
from voicemesh.edges.pcm import mulaw_to_pcm, pcm_to_mulaw
from voicemesh.edges.twilio import messages as msg

log = logging.getLogger(__name__)

HANG_UP_S = 5.0  # how long a hung-up call waits for the session to close cleanly (its usage recorded)


@dataclass(frozen=True)
class CallOptions:
    """What every call's agent session gets; a stream's ``instructions`` custom parameter overrides those."""

    orchestrator: str
    api_key: str | None
    stt: str
    llm: str
    tts: str
    instructions: str
    stream_token: str | None = None  # when set, start.customParameters.token must equal it
    auth_token: str | None = None  # when set, the handshake must carry Twilio's signature made with it
    public_url: str = ""  # the URL Twilio calls (its signature covers it); empty: wss://<Host header><path>
    start_timeout_s: float = 30.0


class Call:
    """Runs one stream until Twilio stops it, the caller hangs up or the session fails."""

    def __init__(self, ws: WebSocket, options: CallOptions):
        self.ws, self.options = ws, options
        self.stream_sid = ""
        self.session: AgentSession | None = None
        self.marks_played: list[str] = []
        self._spoken: set[int] = set()  # turns with audio sent since the last clear
        self._done: set[int] = set()

    async def run(self) -> tuple[int, str] | None:
        """Serve the call; the (code, reason) to close with, or None when the caller is already gone."""
        start = await self._wait_start()
        if start is None:
            return None
        self.stream_sid = start.stream_sid
        token = start.parameters.get("token", "")
        if self.options.stream_token and not hmac.compare_digest(token, self.options.stream_token):
            raise msg.ProtocolError(msg.POLICY, "start.customParameters.token is missing or wrong")
        session = AgentSession(
            stt=self.options.stt, llm=self.options.llm, tts=self.options.tts,
            instructions=start.parameters.get("instructions") or self.options.instructions,
            address=self.options.orchestrator, api_key=self.options.api_key or "",
            input_sample_rate=msg.RATE_HZ, output_sample_rate=msg.RATE_HZ,
            start_timeout_s=self.options.start_timeout_s)
        try:
            await session.start()
        except AgentSessionError as exc:
            raise msg.ProtocolError(msg.FAILED, f"the agent session failed: {exc.code}: {exc}") from None
        self.session = session
        log.info("call %s (stream %s): agent session %s", start.call_sid, start.stream_sid, session.session_id)
        listen = asyncio.create_task(self._listen(), name="twilio-listen")
        speak = asyncio.create_task(self._speak(), name="twilio-speak")
        try:
            done, _ = await asyncio.wait({listen, speak}, return_when=asyncio.FIRST_COMPLETED)
            if listen in done:
                ended = listen.result()  # a ProtocolError or AgentSessionError is raised here
                await self._hang_up(speak)
                return (msg.NORMAL, "stream stopped") if ended == "stop" else None
            listen.cancel()
            speak.result()
            return msg.NORMAL, "the agent session ended"
        except AgentSessionError as exc:
            raise msg.ProtocolError(msg.FAILED, f"the agent session failed: {exc.code}: {exc}") from None
        finally:
            for task in (listen, speak):
                task.cancel()
            await asyncio.gather(listen, speak, return_exceptions=True)
            await session.aclose()

    async def _receive(self) -> dict | None:
        """The next message, or None when the socket closed."""
        frame = await self.ws.receive()
        if frame["type"] == "websocket.disconnect":
            return None
        return msg.parse(frame.get("text") if frame.get("text") is not None else frame.get("bytes"))

    async def _wait_start(self) -> msg.Start | None:
        while (message := await self._receive()) is not None:
            match message["event"]:
                case "connected":
                    continue
                case "start":
                    return msg.start(message)
                case other:
                    raise msg.ProtocolError(msg.POLICY, f"'{other}' before 'start'")
        return None

    async def _listen(self) -> str:
        """The caller's side until ``stop`` ("stop") or a closed socket ("gone")."""
        assert self.session is not None
        while (message := await self._receive()) is not None:
            match message["event"]:
                case "media":
                    pcm = mulaw_to_pcm(msg.media_payload(message))
                    for piece in chunks(pcm, rate=msg.RATE_HZ, ms=100):
                        await self.session.send_audio(piece)
                case "mark":
                    self.marks_played.append(msg.mark_name(message))
                    log.debug("stream %s: mark %s played", self.stream_sid, self.marks_played[-1])
                case "stop":
                    return "stop"
                case "start":
                    raise msg.ProtocolError(msg.POLICY, "a second 'start' on one stream")
                case other:  # dtmf, and whatever Twilio adds later
                    log.debug("stream %s: %s message ignored", self.stream_sid, other)
        return "gone"

    async def _speak(self) -> None:
        """The agent's side: audio as media, a mark after each reply, clear on barge-in."""
        assert self.session is not None
        async for event in self.session.events():
            if event.type is EventType.AGENT_AUDIO:
                pcm = event.audio if event.sample_rate == msg.RATE_HZ else convert(event.audio, event.sample_rate,
                                                                                   msg.RATE_HZ)
                await self.ws.send_text(msg.media(self.stream_sid, pcm_to_mulaw(pcm)))
                self._spoken.add(event.turn_id)
            elif event.type is EventType.AGENT_STATE:
                if event.state is AgentState.LISTENING and event.turn_id not in self._done:
                    await self._clear(event.turn_id)  # stopped before its end: the caller barged in
            elif event.type is EventType.TURN_DONE:
                self._done.add(event.turn_id)
                if event.interrupted:
                    await self._clear(event.turn_id)
                elif event.turn_id in self._spoken:
                    await self.ws.send_text(msg.mark(self.stream_sid, f"turn-{event.turn_id}"))
            elif event.type is EventType.ERROR:
                log.warning("stream %s: turn %d: %s: %s", self.stream_sid, event.turn_id, event.code, event.message)

    async def _clear(self, turn_id: int) -> None:
        if turn_id in self._spoken:
            self._spoken.discard(turn_id)
            log.info("stream %s: barge-in on turn %d: clear", self.stream_sid, turn_id)
            await self.ws.send_text(msg.clear(self.stream_sid))

    async def _hang_up(self, speak: asyncio.Task) -> None:
        """The call is over: stop the agent, end the input, and give the session a moment to close."""
        assert self.session is not None
        with contextlib.suppress(AgentSessionError, RuntimeError):
            await self.session.interrupt()
            await self.session.end_input()
        await asyncio.wait({speak}, timeout=HANG_UP_S)
