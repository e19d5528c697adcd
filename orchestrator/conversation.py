"""The chat history of a session and the LLM Chat streams that hold a copy of it.

The LLM service keeps the messages of each Chat stream, so a session sends
only what a stream lacks: the new messages of a turn, or, when the stream's
copy differs from the session's (a new stream after a fallback or an
UpdateModels, a reply cut by a barge-in), the whole history with
replace_history.
"""

from __future__ import annotations

import time

from voicemesh.orchestrator.clients import MeshClients
from voicemesh.orchestrator.config import Tool, ToolChoice
from voicemesh.orchestrator.fallback import Target
from voicemesh.orchestrator.lanes import LlmLane
from voicemesh.v1 import llm_pb2


class Conversation:
    """History, LLM targets and one Chat stream per target in use."""

    def __init__(self, clients: MeshClients, metadata, *, instructions: str, targets: list[Target],
                 tools: list[Tool], max_tokens: int, on_usage, tool_choice: ToolChoice | None = None):
        self.clients, self.metadata = clients, metadata
        self.history: list[llm_pb2.ChatMessage] = []
        if instructions:
            self.history.append(llm_pb2.ChatMessage(role="system", content=instructions))
        self.targets = targets
        self.current: Target | None = None  # the target that served last
        self.tools = [llm_pb2.Tool(name=t.name, description=t.description, parameters_json=t.parameters_json)
                      for t in tools]
        # How the first generation of a turn may use them (later ones, after tool results, are "auto").
        self.tool_choice = llm_pb2.ToolChoice(mode=tool_choice.mode, name=tool_choice.name) if tool_choice else None
        self.max_tokens = max_tokens
        self._on_usage = on_usage  # callback(turn_id, Usage)
        self._lanes: dict[Target, LlmLane] = {}
        self._generations: dict[str, int] = {}
        self._count = 0

    async def lane(self, target: Target) -> LlmLane:
        """The Chat stream to ``target`` (opened on first use)."""
        lane = self._lanes.get(target)
        if lane is None or lane.call.done():
            lane = await LlmLane.open(self.clients, target, self.metadata, max_tokens=self.max_tokens)
            lane.on_done = lambda generation, done: self._on_usage(self._generations.pop(generation, 0), done.usage)
            self._lanes[target] = lane
        return lane

    async def drop(self, target: Target) -> None:
        """Close the stream to ``target`` (it failed, or the model was switched)."""
        lane = self._lanes.pop(target, None)
        if lane is not None:
            await lane.close()
        if self.current == target:
            self.current = None

    async def switch(self, targets: list[Target], keep: Target | None) -> None:
        """New LLM targets; every stream but ``keep`` (a reply still uses it) closes now."""
        self.targets, self.current = targets, None
        for target in [t for t in self._lanes if t != keep]:
            await self.drop(target)

    def pending(self, lane: LlmLane) -> tuple[list[llm_pb2.ChatMessage], bool]:
        """What ``lane``'s server lacks of the history, and whether it replaces the server's copy."""
        if lane.synced is None or lane.synced > len(self.history):
            return list(self.history), True
        return self.history[lane.synced:], False

    def generation_id(self, session_id: str, turn_id: int) -> str:
        self._count += 1
        generation = f"{session_id}-{turn_id}-{self._count}-{time.monotonic_ns() % 10**6}"
        self._generations[generation] = turn_id
        return generation

    @property
    def instructions(self) -> str:
        """The system message in force ("" when there is none)."""
        return self.history[0].content if self.history and self.history[0].role == "system" else ""

    def set_instructions(self, instructions: str) -> None:
        system = llm_pb2.ChatMessage(role="system", content=instructions)
        if self.history and self.history[0].role == "system":
            self.history[0] = system
        else:
            self.history.insert(0, system)
        self.unsync()

    def unsync(self, target: Target | None = None) -> None:
        """The server copy of ``target`` (or of every stream) no longer matches the history."""
        for key, lane in self._lanes.items():
            if target is None or key == target:
                lane.synced = None

    def add_reply(self, text: str, *, target: Target | None, in_sync: bool) -> None:
        """Append the assistant's reply as kept; ``in_sync`` when the server appended exactly the same."""
        if text:
            self.history.append(llm_pb2.ChatMessage(role="assistant", content=text))
        lane = self._lanes.get(target) if target is not None else None
        if lane is not None:
            lane.synced = len(self.history) if in_sync and lane.synced is not None else None

    async def close(self) -> None:
        for target in list(self._lanes):
            await self.drop(target)
