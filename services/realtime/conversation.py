"""The conversation of one realtime session: items, and truncation at a heard position.

Pure logic, no I/O. Each assistant item remembers which of its text spans
each stretch of sent audio speaks, so ``truncate(item_id, audio_end_ms)``
can cut the item's text to what the listener heard: whole spans that ended
before the cut, and, inside the span playing at the cut, the words spoken by
then, by the same rule as the orchestrator's (``voicemesh.speech.playout``:
time spread over the characters, longer at punctuation, as the voice gives no
finer timing).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from voicemesh.errors import InvalidInput
from voicemesh.services.llm.backend import Message, ToolCall
from voicemesh.speech.playout import SpokenSpan, heard_chars


@dataclass
class Item:
    """One message of the conversation; assistant items carry their spoken spans."""

    id: str
    role: str
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    spans: list[SpokenSpan] = field(default_factory=list)

    @property
    def audio_ms(self) -> int:
        """Audio of this item sent to the client."""
        return self.spans[-1].end_ms if self.spans else 0

    def message(self) -> Message:
        return Message(role=self.role, content=self.text, tool_calls=self.tool_calls, tool_call_id=self.tool_call_id)


class Conversation:
    """Ordered items of a session, addressable by id."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self._by_id: dict[str, Item] = {}
        self._ids = itertools.count(1)

    def new_id(self, prefix: str = "item") -> str:
        return f"{prefix}_{next(self._ids):04d}"

    def add(self, item: Item) -> Item:
        self.items.append(item)
        self._by_id[item.id] = item
        return item

    def add_message(self, message: Message, item_id: str = "") -> Item:
        if item_id in self._by_id:
            raise InvalidInput(f"the conversation already has an item {item_id!r}", reason="ITEM_ID_TAKEN")
        return self.add(Item(id=item_id or self.new_id(), role=message.role, text=message.content,
                             tool_calls=message.tool_calls, tool_call_id=message.tool_call_id))

    def get(self, item_id: str) -> Item | None:
        return self._by_id.get(item_id)

    def messages(self, instructions: str) -> tuple[Message, ...]:
        """The chat history for the language model (empty items left out)."""
        system = (Message(role="system", content=instructions),) if instructions else ()
        return system + tuple(i.message() for i in self.items if i.text or i.tool_calls or i.role == "tool")

    def delete(self, item_id: str) -> Item:
        """Remove an item: later responses no longer see it."""
        item = self._by_id.pop(item_id, None)
        if item is None:
            raise InvalidInput(f"no item {item_id!r} in this conversation", reason="ITEM_NOT_FOUND")
        self.items.remove(item)
        return item

    def truncate(self, item_id: str, audio_end_ms: int) -> Item:
        """Cut an assistant item's text to what its audio up to ``audio_end_ms`` speaks."""
        item = self._by_id.get(item_id)
        if item is None:
            raise InvalidInput(f"no item {item_id!r} in this conversation", reason="ITEM_NOT_FOUND")
        if item.role != "assistant":
            raise InvalidInput(f"item {item_id!r} is a {item.role} item; only assistant items can be truncated",
                               reason="ITEM_NOT_ASSISTANT")
        if audio_end_ms > item.audio_ms:
            raise InvalidInput(f"audio_end_ms {audio_end_ms} is past the end of item {item_id!r}'s audio "
                               f"({item.audio_ms} ms)", reason="AUDIO_END_PAST_ITEM_AUDIO")
        item.text = item.text[:heard_chars(item.text, item.spans, audio_end_ms)].rstrip()
        item.spans = [s for s in item.spans if s.start_ms < audio_end_ms]
        if item.spans:
            last = item.spans[-1]
            item.spans[-1] = SpokenSpan(last.start_ms, min(last.end_ms, audio_end_ms), last.char_start,
                                        min(last.char_end, len(item.text)))
        return item
