"""One Chat stream as plain values: a conversation, at most one generation at a
time, Cancel, and the order of the events sent back.

Contract with clients (the orchestrator relies on it):
- Generate appends its messages to the stream's conversation (or replaces it
  with ``replace_history``); when the generation ends, the assistant's reply as
  the client received it (text and tool calls) is appended too, so the next
  turn needs only the new messages.
- Cancel stops the running generation: nothing of it follows but its Done
  (finish reason cancelled), and only the text sent before the Cancel stays in
  the conversation. A Generate sent right after a Cancel starts once that Done
  is out; a Generate sent while a generation runs waits for it to end.
- An error (bad input, admission refused, remote failure) ends the stream with
  its status; other streams are untouched.

The reader task owns the running generation task; ``run`` owns the reader and
stops both when the client goes away, so an abandoned stream frees its slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from .backend import (
    CancelToken,
    Done,
    LlmBackend,
    LlmEvent,
    Message,
    Sampling,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallMade,
    ToolChoice,
)
from .conversation import Conversation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerateInput:
    """A Generate request in plain values."""

    id: str
    messages: Sequence[Message]
    replace_history: bool = False
    tools: Sequence[Tool] = ()
    tool_choice: ToolChoice = ToolChoice()
    sampling: Sampling = Sampling()


@dataclass(frozen=True)
class CancelInput:
    """Cancel the running generation."""


@dataclass(frozen=True)
class Tagged:
    """An event of the generation ``generation_id``."""

    generation_id: str
    event: LlmEvent


_END = object()
# How long a stream whose client left waits for its generation to stop before cancelling it.
STOP_WAIT_S = 5.0


class ChatStream:
    """Drives one conversation over ``backend``.

    ``on_unsent`` gets the ``Done`` of a generation that ended after its client
    left, so the work it did can still be metered.
    """

    def __init__(self, backend: LlmBackend, conversation: Conversation,
                 on_unsent: Callable[[Done], None] | None = None):
        self.backend = backend
        self.conversation = conversation
        self.on_unsent = on_unsent
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._token: CancelToken | None = None

    async def run(self, inputs: AsyncIterator[GenerateInput | CancelInput]) -> AsyncIterator[Tagged]:
        """Events to send, in order; raises the first error (which ends the stream)."""
        reader = asyncio.create_task(self._read(inputs), name="llm-chat-reader")
        try:
            while True:
                item = await self._outbox.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await self._stop_generation()
            self._report_unsent()

    async def _read(self, inputs: AsyncIterator[GenerateInput | CancelInput]) -> None:
        try:
            async for item in inputs:
                if isinstance(item, CancelInput):
                    if self._token is not None:
                        self._token.cancel()
                    continue
                # One generation at a time: a Generate sent while one runs waits for it
                # (after a Cancel that is at most one token).
                await self._wait_generation()
                self._start(item)
            await self._wait_generation()
            self._outbox.put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to run(), which ends the stream with its status
            self._outbox.put_nowait(exc)

    def _start(self, item: GenerateInput) -> None:
        request = self.conversation.begin(
            item.messages,
            replace_history=item.replace_history,
            tools=item.tools,
            tool_choice=item.tool_choice,
            sampling=item.sampling,
        )
        self._token = CancelToken()
        self._task = asyncio.create_task(self._generate(item.id, request, self._token), name=f"llm-gen-{item.id}")

    async def _generate(self, generation_id: str, request, token: CancelToken) -> None:
        text: list[str] = []
        calls: list[ToolCall] = []
        events = self.backend.generate(request, session=self, cancel=token)
        try:
            async for event in events:
                if isinstance(event, Done):
                    log.info("generation %s of %s ended (%s): %d prompt tokens (%d cached), %d generated",
                             generation_id, self.backend.descriptor, event.reason.value, event.usage.input_tokens,
                             event.usage.cached_tokens, event.usage.output_tokens)
                    self.conversation.finish("".join(text), calls)
                    self._outbox.put_nowait(Tagged(generation_id, event))
                    return
                if token.is_set():
                    continue  # the client asked to stop: nothing more but Done
                if isinstance(event, TextDelta):
                    text.append(event.text)
                elif isinstance(event, ToolCallMade):
                    calls.append(event.call)
                self._outbox.put_nowait(Tagged(generation_id, event))
            raise RuntimeError(f"{self.backend.descriptor} ended a generation without Done")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._outbox.put_nowait(exc)
        finally:
            await events.aclose()

    async def _wait_generation(self) -> None:
        task = self._task
        if task is not None:
            # asyncio.wait, not gather: a waiter that is cancelled must not cancel the generation,
            # which has to end with its Done (and free its slot) on its own.
            await asyncio.wait({task})
            self._task = self._token = None

    async def _stop_generation(self) -> None:
        """Cancel the running generation and let it end with its Done (cancel the task if it hangs)."""
        task = self._task
        if task is None:
            return
        if self._token is not None:
            self._token.cancel()
        _, pending = await asyncio.wait({task}, timeout=STOP_WAIT_S)
        if pending:
            log.warning("generation of %s did not stop within %.0f s; cancelling it", self.backend.descriptor,
                        STOP_WAIT_S)
            task.cancel()
        await self._wait_generation()

    def _report_unsent(self) -> None:
        while not self._outbox.empty():
            item = self._outbox.get_nowait()
            if isinstance(item, Tagged) and isinstance(item.event, Done) and self.on_unsent is not None:
                self.on_unsent(item.event)

