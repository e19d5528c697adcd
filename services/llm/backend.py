"""The interface every LLM backend implements, and the typed values it speaks.

A backend gets a whole ``GenerationRequest`` (the conversation so far, tools,
sampling) and yields ``TextDelta`` / ``ToolCallMade`` events, then exactly one
``Done``. The servicer keeps the conversation of a Chat stream and passes the
stream's ``session`` key so a local backend can keep that conversation's
prompt cache warm. Backends never import grpc.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from abc import abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields, replace
from typing import ClassVar

from voicemesh.backend import Backend, BackendSettings, RemoteOptions
from voicemesh.runtime.admission import Admission
from voicemesh.settings import setting
from voicemesh.tools import Tool, ToolCall, ToolChoice  # shared with the orchestrator; re-exported here

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Message:
    """One chat message; ``tool_calls`` on assistant messages, ``tool_call_id`` on tool messages."""

    role: str
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; ``None`` means "not set here"."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def over(self, base: Sampling) -> Sampling:
        """These settings, with unset ones taken from ``base``."""
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == ():
                changes[f.name] = getattr(base, f.name)
        return replace(self, **changes)


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one generation needs: the whole conversation, tools and sampling."""

    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = ToolChoice()
    sampling: Sampling = Sampling()


class FinishReason(enum.Enum):
    """Why a generation ended (mirrors ``voicemesh.v1.FinishReason``)."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class TokenUsage:
    """Tokens of one generation; ``input_tokens`` includes the ``cached_tokens``."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True)
class TextDelta:
    """A piece of the assistant's text."""

    text: str


@dataclass(frozen=True)
class ToolCallMade:
    """A complete tool call."""

    call: ToolCall


@dataclass(frozen=True)
class Done:
    """The last event of a generation."""

    reason: FinishReason
    usage: TokenUsage


LlmEvent = TextDelta | ToolCallMade | Done


class CancelToken:
    """Cancellation of one generation: set on the event loop, read by worker threads
    between tokens and awaited by async backends."""

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._event = asyncio.Event()

    def cancel(self) -> None:
        """Ask the generation to stop (call it on the event loop)."""
        self._flag.set()
        self._event.set()

    def is_set(self) -> bool:
        """Thread-safe: has cancel() been called?"""
        return self._flag.is_set()

    async def wait(self) -> None:
        """Return once cancel() was called."""
        await self._event.wait()


@dataclass(frozen=True)
class LlmSettings(BackendSettings):
    """What every LLM backend takes from the operator; a backend's own settings extend it."""

    max_generations: int = setting(
        2, "generations one model runs at once (one llama.cpp context each); more wait (with API keys) or get "
        "RESOURCE_EXHAUSTED"
    )
    max_generations_per_key: int = setting(
        0, "generations one API key may run at once per model (0: --max-generations minus one, so one slot is "
        "always left to other keys; at least 1)"
    )
    generation_queue: int = setting(16, "generations of API keys that may wait for a slot; more get RESOURCE_EXHAUSTED")
    generation_wait_s: float = setting(
        30.0, "longest a generation of an API key waits for a slot, in seconds; then RESOURCE_EXHAUSTED with a "
        "retry hint (0: no waiting)"
    )

    def __post_init__(self) -> None:
        if self.max_generations < 1:
            raise ValueError(f"max_generations must be at least 1, got {self.max_generations}")


class LlmBackend(Backend):
    """Base of the LLM backends.

    ``generate`` yields events and ends with one ``Done``; it raises
    ``voicemesh.errors`` exceptions for bad input or remote failures. When
    ``cancel`` is set it stops within one token and yields
    ``Done(FinishReason.CANCELLED, ...)``; the slot it took is free before that
    ``Done`` is yielded.
    """

    context_tokens: int = 0
    settings_type: ClassVar[type[BackendSettings]] = LlmSettings
    settings: LlmSettings

    def __init__(self, *, model: str, options: RemoteOptions, settings: LlmSettings):
        super().__init__(model=model, options=options, settings=settings)
        # Generation slots, shared fairly among API keys; a key's request waits (bounded) for its turn.
        self.admission = Admission(
            settings.max_generations, "generation slots", flag="--max-generations",
            per_key=settings.max_generations_per_key or None, key_flag="--max-generations-per-key",
            queue=settings.generation_queue, wait_s=settings.generation_wait_s, model=f"{self.provider}/{model}")

    @property
    def descriptor(self) -> str:
        return f"{self.provider}/{self.model}"

    async def slot(self, cancel: CancelToken):
        """A generation slot (a ``voicemesh.runtime.admission.Ticket``), or None when the client cancelled
        while waiting for one: the backend then yields ``Done(CANCELLED)`` at once, as a Cancel promises."""
        waiting = asyncio.ensure_future(self.admission.wait())
        cancelled = asyncio.ensure_future(cancel.wait())
        try:
            await asyncio.wait({waiting, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            waiting.cancel()  # a slot granted meanwhile goes back
            raise
        finally:
            cancelled.cancel()
        if waiting.done():
            return waiting.result()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return None

    @abstractmethod
    def generate(self, request: GenerationRequest, *, session: object, cancel: CancelToken) -> AsyncIterator[LlmEvent]:
        """Generate the assistant's next message for the conversation in ``request``.

        ``session`` identifies the Chat stream (one conversation); backends with a
        prompt cache use it to reuse the same context turn after turn.
        """
