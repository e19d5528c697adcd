"""A small synchronous client of LlmService.Chat for the tests and the benchmark."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field

import grpc

from voicemesh.v1 import common_pb2, llm_pb2, llm_pb2_grpc


def user(text: str) -> llm_pb2.ChatMessage:
    return llm_pb2.ChatMessage(role="user", content=text)


@dataclass
class Turn:
    """The responses of one generation."""

    id: str
    text: str = ""
    deltas: list[str] = field(default_factory=list)
    tool_calls: list[llm_pb2.ToolCall] = field(default_factory=list)
    done: llm_pb2.ChatDone | None = None
    first_delta_s: float | None = None
    seconds: float = 0.0

    @property
    def reason(self) -> str:
        return llm_pb2.FinishReason.Name(self.done.finish_reason) if self.done else "NONE"


class Chat:
    """One Chat stream: put requests with generate()/cancel(), read with turn()/next()."""

    def __init__(self, address: str, model: str, *, backend: common_pb2.BackendOptions | None = None,
                 sampling: llm_pb2.Sampling | None = None, first: llm_pb2.ChatRequest | None = None,
                 metadata: list[tuple[str, str]] | None = None):
        self.channel = grpc.insecure_channel(address)
        self._requests: queue.Queue = queue.Queue()
        config = llm_pb2.ChatConfig(model=model, backend=backend, sampling=sampling)
        self._requests.put(first if first is not None else llm_pb2.ChatRequest(config=config))
        self.responses = llm_pb2_grpc.LlmServiceStub(self.channel).Chat(iter(self._requests.get, None),
                                                                         metadata=metadata)

    def send(self, request: llm_pb2.ChatRequest) -> None:
        self._requests.put(request)

    def generate(self, id: str, messages, **fields) -> None:
        self.send(llm_pb2.ChatRequest(generate=llm_pb2.Generate(id=id, messages=messages, **fields)))

    def cancel(self) -> None:
        self.send(llm_pb2.ChatRequest(cancel=common_pb2.Cancel()))

    def next(self) -> llm_pb2.ChatResponse:
        return next(self.responses)

    def turn(self, id: str, messages=None, **fields) -> Turn:
        """Send a Generate (unless messages is None) and read its responses up to Done."""
        start = time.monotonic()
        if messages is not None:
            self.generate(id, messages, **fields)
        return self.read(id, start)

    def read(self, id: str, start: float | None = None) -> Turn:
        start = time.monotonic() if start is None else start
        turn = Turn(id)
        while turn.done is None:
            response = self.next()
            if response.generation_id != id:
                raise AssertionError(f"response for {response.generation_id!r} while reading {id!r}")
            kind = response.WhichOneof("event")
            if kind == "text_delta":
                if turn.first_delta_s is None:
                    turn.first_delta_s = time.monotonic() - start
                turn.deltas.append(response.text_delta)
            elif kind == "tool_call":
                turn.tool_calls.append(response.tool_call)
            else:
                turn.done = response.done
        turn.text = "".join(turn.deltas)
        turn.seconds = time.monotonic() - start
        return turn

    def close(self) -> None:
        self._requests.put(None)
        self.channel.close()

    def __enter__(self) -> Chat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
