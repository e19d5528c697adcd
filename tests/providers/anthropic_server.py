"""A loopback server that speaks Anthropic's documented Messages API (``POST /v1/messages``).

A test double for the paid cloud API. It checks what the API checks: the
key in ``x-api-key`` or as a bearer token (else HTTP 401 ``authentication_error``), the ``anthropic-version``
header, ``model``, ``max_tokens`` and alternating ``user``/``assistant`` turns,
and that every ``tool_result`` answers a ``tool_use`` of the turn before it
(HTTP 400 ``invalid_request_error``). With ``stream`` it answers in the
documented event order: ``message_start``, ``content_block_start``, ``ping``,
``content_block_delta`` (``text_delta`` or ``input_json_delta``),
``content_block_stop``, ``message_delta`` with ``stop_reason`` and usage,
``message_stop``. Without it, one Message object.

What it says: a tool call of the request's first tool (``{"city": "Paris"}``)
when tools are offered and the last turn is the user's text; after a tool
result, ``AFTER_TOOL``; otherwise ``REPLY``. ``fail`` makes the next requests
fail as the API does: ``"overloaded"`` (HTTP 529), ``"rate_limit"`` (HTTP 429),
``"error_event"`` (an ``error`` event mid-stream), ``"malformed"`` (a data line
that is not JSON), ``"drop"`` (the connection ends mid-stream).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "The capital of France is Paris."
AFTER_TOOL = "It is sunny in Paris."
_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
                 529: "overloaded_error"}


class FakeAnthropicServer:
    """Runs in its own thread; ``url`` is the base URL (the SDK's ``base_url``, without ``/v1``)."""

    def __init__(self, api_key: str = "test-anthropic-key"):
        self.api_key = api_key
        self.fail = ""
        self.requests: list[dict[str, Any]] = []  # bodies received
        self.headers: list[dict[str, str]] = []
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-anthropic", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeAnthropicServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def _problem(body: Any) -> str:
    """Why the API would refuse ``body`` (empty when it is a valid request)."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    previous_uses: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if index and messages[index - 1]["role"] == role:
            return f"messages.{index}: roles must alternate between 'user' and 'assistant'"
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return f"messages.{index}.content: must be a non-empty string or list"
        uses = set()
        for block in blocks:
            kind = block.get("type")
            if kind == "text" and not block.get("text"):
                return f"messages.{index}: text content blocks must be non-empty"
            if kind == "tool_use":
                uses.add(block.get("id"))
            if kind == "tool_result" and block.get("tool_use_id") not in previous_uses:
                return f"messages.{index}: tool_result block(s) provided when previous message does not " \
                       "have a corresponding tool_use block"
        previous_uses = uses
    return ""


def _answer(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The content blocks of the reply."""
    last = body["messages"][-1]
    blocks = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
    if any(b.get("type") == "tool_result" for b in blocks):
        return [{"type": "text", "text": AFTER_TOOL}]
    tools = body.get("tools") or []
    if tools and (body.get("tool_choice") or {}).get("type") != "none":
        return [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": tools[0]["name"],
                 "input": {"city": "Paris"}}]
    return [{"type": "text", "text": REPLY}]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAnthropicServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it so
        """Quiet: the tests read what they need from ``fake``."""

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_fake")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"type": "error", "error": {"type": _STATUS_TYPES.get(status, "api_error"),
                                                       "message": message}}, headers)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if self.path.split("?")[0] != "/v1/messages":
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}})
            return
        self.fake.headers.append({k.lower(): v for k, v in self.headers.items()})
        # The documented header is x-api-key; SDK 2.x (API version 2026-10-21) sends the key as a bearer token.
        bearer = (self.headers.get("authorization") or "").removeprefix("Bearer ")
        if self.fake.api_key not in (self.headers.get("x-api-key"), bearer):
            self._error(401, "invalid x-api-key")
            return
        if not self.headers.get("anthropic-version"):
            self._error(400, "anthropic-version: header is required")
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._error(400, "the request body is not valid JSON")
            return
        self.fake.requests.append(body)
        if problem := _problem(body):
            self._error(400, problem)
            return
        if self.fake.fail == "overloaded":
            self._error(529, "Overloaded")
            return
        if self.fake.fail == "rate_limit":
            self._error(429, "Number of request tokens has exceeded your per-minute rate limit", {"retry-after": "0"})
            return
        content = _answer(body)
        words = sum(len(json.dumps(m["content"]).split()) for m in body["messages"])
        output = sum(len(json.dumps(b).split()) for b in content)
        stop = "tool_use" if content[0]["type"] == "tool_use" else "end_turn"
        if not body.get("stream"):
            self._json(200, {"id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
                             "content": content, "stop_reason": stop, "stop_sequence": None,
                             "usage": {"input_tokens": words, "output_tokens": output}})
            return
        self._stream(body, content, words, output, stop)

    def _stream(self, body: dict[str, Any], content: list[dict[str, Any]], words: int, output: int,
                stop: str) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

        def event(kind: str, data: dict[str, Any] | str) -> None:
            text = data if isinstance(data, str) else json.dumps({"type": kind, **data})
            self.wfile.write(f"event: {kind}\ndata: {text}\n\n".encode())
            self.wfile.flush()

        event("message_start", {"message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": body["model"],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": words, "output_tokens": 1, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 0}}})
        for index, block in enumerate(content):
            if block["type"] == "text":
                event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
                event("ping", {})
                if self.fake.fail == "malformed":
                    event("content_block_delta", "{not json")
                    return
                if self.fake.fail == "drop":  # the connection ends mid-stream, without message_stop
                    return
                if self.fake.fail == "error_event":
                    event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
                    return
                for n, word in enumerate(block["text"].split(" ")):
                    event("content_block_delta", {"index": index, "delta": {
                        "type": "text_delta", "text": word if n == 0 else " " + word}})
            else:
                event("content_block_start", {"index": index, "content_block": {
                    "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
                arguments = json.dumps(block["input"])
                for start in range(0, len(arguments), 5):  # the API splits the JSON anywhere
                    event("content_block_delta", {"index": index, "delta": {
                        "type": "input_json_delta", "partial_json": arguments[start:start + 5]}})
            event("content_block_stop", {"index": index})
        event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": output}})
        event("message_stop", {})
