"""What a session's core asks of the mode it is in: the pipeline (``pipeline.PipelineMode``) or a realtime model
(``realtime.RealtimeMode``). The core owns one of each and swaps them on UpdateModels."""

from __future__ import annotations

from typing import Protocol


class Mode(Protocol):
    """How a session hears and answers the user."""

    async def audio(self, pcm: bytes) -> None:
        """User audio (validated and counted by the core)."""

    async def text(self, text: str) -> None:
        """A typed user turn (not empty)."""

    async def say(self, text: str, add_to_history: bool) -> None:
        """Speak given text as an agent turn."""

    async def interrupt(self) -> None:
        """The client stops the agent."""

    async def instructions(self, instructions: str) -> None:
        """New instructions (the core already keeps them in the chat)."""

    def end_input(self) -> None:
        """The client sends no more: answer what was heard, then end."""

    def busy(self) -> bool:
        """Whether there is still something to hear or answer before the session may end."""

    async def leave(self) -> None:
        """The session goes on in the other mode."""

    def cancel(self) -> None:
        """The session ends: stop the streams at once."""
