"""One response of a realtime model as a turn of the session: its text, its audio and what was heard of it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from voicemesh.errors import error_for_code
from voicemesh.orchestrator.events import TurnTiming
from voicemesh.orchestrator.reply import ReplyTimes
from voicemesh.speech.playout import Playout, cut
from voicemesh.v1 import realtime_pb2


@dataclass
class RealtimeTurn:
    """One response of the realtime model: an agent turn."""

    turn_id: int
    response_id: str
    item_id: str
    rate: int
    timing: TurnTiming
    times: ReplyTimes = field(default_factory=ReplyTimes)
    text: str = ""
    status: str = ""  # the response_done status, once done
    stopped: bool = False  # interrupted, cancelled or refused: no more audio goes out
    refused: bool = False  # the key may not start a turn: nothing of it is kept
    truncating: bool = False  # an item_truncate was sent; its item_truncated gives the heard text
    awaiting_tools: bool = False  # the response called tools: the turn goes on with the response to their results
    kept: str | None = None  # the heard text after a truncation
    audio: asyncio.Queue = field(default_factory=asyncio.Queue)  # PCM to play; None ends it
    player: asyncio.Task | None = None

    def __post_init__(self) -> None:
        self.playout = Playout(self.rate)  # what of the audio the client was sent and has played

    def heard_text(self, now: float) -> str:
        """The text of the audio the client has played: the whole text, or its share by audio played."""
        if not self.stopped:
            return self.text
        if self.kept is not None:
            return self.kept
        played, sent = self.playout.played_samples(now), self.playout.sent_samples
        if not sent:
            return ""
        # The service's text deltas run ahead of its audio: the share of text is of the audio it sent.
        return self.text[:cut(self.text, played / max(sent, 1))].strip()


def realtime_error(event: realtime_pb2.RealtimeError):
    """A realtime error event as the session's error (its code and message kept)."""
    return error_for_code(event.code or "UNKNOWN", f"realtime: {event.message}")
