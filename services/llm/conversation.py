"""The conversation one Chat stream keeps, and the checks on what a client adds to it."""

from __future__ import annotations

from collections.abc import Sequence

from voicemesh.errors import InvalidInput
from voicemesh.tools import check_tools

from .backend import ROLES, GenerationRequest, Message, Sampling, Tool, ToolCall, ToolChoice


def check_messages(messages: Sequence[Message]) -> None:
    """INVALID_ARGUMENT for an empty list or a malformed message."""
    if not messages:
        raise InvalidInput("Generate.messages is empty; send at least the new user message")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if message.role not in ROLES:
            raise InvalidInput(f"{where}.role {message.role!r} is unknown; use one of: {', '.join(ROLES)}")
        if message.role == "tool" and not message.tool_call_id:
            raise InvalidInput(f"{where} is a tool message without tool_call_id")
        if message.tool_calls and message.role != "assistant":
            raise InvalidInput(f"{where} has tool_calls but only assistant messages may carry them")
        if message.tool_call_id and message.role != "tool":
            raise InvalidInput(f"{where} has a tool_call_id but only tool messages may carry one")
        for call in message.tool_calls:
            if not call.name:
                raise InvalidInput(f"{where} has a tool call without a name")


def check_sampling(sampling: Sampling) -> None:
    """INVALID_ARGUMENT for out-of-range sampling values."""
    if sampling.temperature is not None and not 0.0 <= sampling.temperature <= 2.0:
        raise InvalidInput(f"temperature {sampling.temperature} is out of range [0, 2]")
    if sampling.top_p is not None and not 0.0 < sampling.top_p <= 1.0:
        raise InvalidInput(f"top_p {sampling.top_p} is out of range (0, 1]")
    if sampling.max_tokens is not None and sampling.max_tokens < 1:
        raise InvalidInput(f"max_tokens {sampling.max_tokens} must be at least 1")
    if any(not stop for stop in sampling.stop):
        raise InvalidInput("stop sequences must not be empty strings")


class Conversation:
    """The messages of one Chat stream: Generate appends to them (or replaces
    them), and each finished generation appends the assistant's reply."""

    def __init__(self, defaults: Sampling):
        check_sampling(defaults)
        self.defaults = defaults
        self.messages: list[Message] = []

    def begin(
        self,
        messages: Sequence[Message],
        *,
        replace_history: bool,
        tools: Sequence[Tool],
        tool_choice: ToolChoice,
        sampling: Sampling,
    ) -> GenerationRequest:
        """Check a Generate, add its messages, and return the request for the backend."""
        check_messages(messages)
        check_sampling(sampling)
        choice = check_tools(tools, tool_choice)
        if replace_history:
            self.messages = list(messages)
        else:
            self.messages.extend(messages)
        return GenerationRequest(
            messages=tuple(self.messages),
            tools=tuple(tools),
            tool_choice=choice,
            sampling=sampling.over(self.defaults),
        )

    def finish(self, text: str, calls: Sequence[ToolCall]) -> None:
        """Append the assistant's reply (after a cancel, the part generated so far;
        a client that played less sends replace_history with what was heard)."""
        if text or calls:
            self.messages.append(Message(role="assistant", content=text, tool_calls=tuple(calls)))
