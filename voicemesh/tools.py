"""Tools (function calling): the typed values, checking the schemas clients
send, describing tools to a local model, the JSON Schema that constrains a
forced call, and reading tool calls back out of generated text.

Shared by the LLM service and the orchestrator (which checks a session's
tools before any turn), so it lives beside the other shared modules.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voicemesh.errors import InvalidInput

TOOL_CHOICE_MODES = ("auto", "none", "required", "function")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


@dataclass(frozen=True)
class ToolCall:
    """A function call made by the model (OpenAI function-calling shape)."""

    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True)
class Tool:
    """A function the model may call; ``parameters`` is its (checked) JSON Schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolChoice:
    """``auto``, ``none``, ``required``, or ``function`` with ``name``."""

    mode: str = "auto"
    name: str = ""

    @property
    def forced(self) -> bool:
        return self.mode in ("required", "function")


def new_call_id() -> str:
    """A fresh tool-call id in the OpenAI style."""
    return "call_" + uuid.uuid4().hex[:24]


def parse_tool(name: str, description: str, parameters_json: str) -> Tool:
    """A Tool from its wire fields; INVALID_ARGUMENT naming what is wrong."""
    if not TOOL_NAME.match(name):
        raise InvalidInput(f"tool name {name!r} is invalid; use 1-64 characters from [A-Za-z0-9_-]")
    if not parameters_json.strip():
        return Tool(name=name, description=description, parameters={"type": "object", "properties": {}})
    try:
        schema = json.loads(parameters_json)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"tool {name!r}: parameters_json is not valid JSON: {exc}") from None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise InvalidInput(f"tool {name!r}: parameters_json must be a JSON Schema of type \"object\"")
    problem = schema_problem(schema, "$")
    if problem:
        raise InvalidInput(f"tool {name!r}: parameters_json is not a valid JSON Schema: {problem}")
    return Tool(name=name, description=description, parameters=schema)


def check_tools(tools: Sequence[Tool], choice: ToolChoice) -> ToolChoice:
    """Check the tool set and the choice against each other; returns the normalized choice."""
    names = [tool.name for tool in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"tool names must be unique; repeated: {', '.join(duplicates)}")
    mode = choice.mode or "auto"
    if mode not in ("auto", "none", "required", "function"):
        raise InvalidInput(f"tool_choice mode {mode!r} is invalid; use auto, none, required or function")
    if mode in ("required", "function") and not tools:
        raise InvalidInput(f"tool_choice {mode!r} needs at least one tool")
    if mode == "function" and choice.name not in names:
        raise InvalidInput(f"tool_choice names {choice.name!r}, which is not among the tools: {', '.join(names)}")
    if mode == "required" and len(tools) == 1:
        return ToolChoice("function", tools[0].name)
    return ToolChoice(mode, choice.name if mode == "function" else "")


def schema_problem(schema: Any, path: str) -> str:
    """The first structural problem of a JSON Schema, or "" when there is none."""
    if isinstance(schema, bool):
        return ""
    if not isinstance(schema, dict):
        return f"{path} must be an object or a boolean"
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for item in kinds:
        if item not in _TYPES:
            return f"{path}.type {item!r} is not one of {', '.join(sorted(_TYPES))}"
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return f"{path}.properties must be an object"
    for key, sub in properties.items():
        if problem := schema_problem(sub, f"{path}.properties.{key}"):
            return problem
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return f"{path}.required must be a list of property names"
    for key in ("items", "additionalProperties", "not"):
        if key in schema and (problem := schema_problem(schema[key], f"{path}.{key}")):
            return problem
    for key in _SCHEMA_LISTS:
        if key in schema:
            subs = schema[key]
            if not isinstance(subs, list) or not subs:
                return f"{path}.{key} must be a non-empty list of schemas"
            for index, sub in enumerate(subs):
                if problem := schema_problem(sub, f"{path}.{key}[{index}]"):
                    return problem
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        return f"{path}.enum must be a non-empty list"
    for key in _COUNTS:
        if key in schema and (not isinstance(schema[key], int) or isinstance(schema[key], bool) or schema[key] < 0):
            return f"{path}.{key} must be a non-negative integer"
    for key in _NUMBERS:
        if key in schema and (not isinstance(schema[key], int | float) or isinstance(schema[key], bool)):
            return f"{path}.{key} must be a number"
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except (re.error, TypeError):
            return f"{path}.pattern is not a valid regular expression"
    ref = schema.get("$ref")
    if ref is not None and (not isinstance(ref, str) or not ref.startswith("#")):
        return f"{path}.$ref must be a local reference starting with '#'"
    return ""


def call_schema(tools: Sequence[Tool], choice: ToolChoice) -> dict:
    """The JSON Schema of what a forced call generates: the arguments of the named
    function, or ``{"name": ..., "arguments": ...}`` for one of several tools."""
    if choice.mode == "function":
        return dict(next(tool.parameters for tool in tools if tool.name == choice.name))
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": dict(tool.parameters)},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for tool in tools
        ]
    }


def tools_prompt(tools: Sequence[Tool], choice: ToolChoice) -> str:
    """The tools for the system message of a model without native tool support
    (the ``<tools>`` block SmolLM2 and similar chat models know)."""
    listed = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]
    lines = ["You have access to the following tools:", f"<tools>{json.dumps(listed)}</tools>"]
    if choice.mode == "function":
        lines.append(f"Call the tool {choice.name} now: answer with only its arguments as a JSON object.")
    elif choice.mode == "required":
        lines.append('Call one of the tools now: answer with only {"name": <tool>, "arguments": {...}}.')
    else:
        lines.append(
            f'If a tool helps, answer with {CALL_OPEN}{{"name": <tool>, "arguments": {{...}}}}{CALL_CLOSE}; '
            "otherwise answer the user directly."
        )
    return "\n".join(lines)


def render_tool_calls(calls: Sequence[ToolCall]) -> str:
    """Assistant tool calls as text in the format ``tools_prompt`` teaches."""
    parts = []
    for call in calls:
        try:
            arguments = json.loads(call.arguments_json or "{}")
        except json.JSONDecodeError:
            arguments = call.arguments_json
        parts.append(CALL_OPEN + json.dumps({"name": call.name, "arguments": arguments}) + CALL_CLOSE)
    return "".join(parts)


def forced_call(text: str, tools: Sequence[Tool], choice: ToolChoice) -> ToolCall | None:
    """The tool call in the output of a grammar-constrained generation (None if cut short)."""
    try:
        value = json.loads(text, strict=False)  # the grammar lets raw control characters into strings
    except json.JSONDecodeError:
        return None
    if choice.mode == "function":
        return ToolCall(new_call_id(), choice.name, json.dumps(value))
    if not isinstance(value, dict) or value.get("name") not in {tool.name for tool in tools}:
        return None
    return ToolCall(new_call_id(), value["name"], json.dumps(value.get("arguments", {})))


class ToolCallScanner:
    """Splits free generated text into plain text and ``<tool_call>`` blocks.

    Text is passed on as soon as it cannot be the start of a tool call, so
    ordinary answers still stream token by token.
    """

    def __init__(self, tools: Sequence[Tool]):
        self.names = {tool.name for tool in tools}
        self._held = ""
        self._capturing = False
        self._decided = not tools

    def feed(self, piece: str) -> str:
        """Text that can be emitted now."""
        if self._decided and not self._capturing:
            return piece
        self._held += piece
        if self._capturing:
            return ""
        head = self._held.lstrip()
        if head.startswith(CALL_OPEN):
            self._capturing = True
            return ""
        if CALL_OPEN.startswith(head):
            return ""
        self._decided = True
        text, self._held = self._held, ""
        return text

    def finish(self) -> tuple[str, list[ToolCall]]:
        """At the end: remaining text, and the parsed calls (none if any block is malformed)."""
        held, self._held = self._held, ""
        if not self._capturing:
            return held, []
        calls = []
        for block in re.findall(re.escape(CALL_OPEN) + r"(.*?)(?:" + re.escape(CALL_CLOSE) + r"|$)", held, re.S):
            found = _parse_calls(block.strip(), self.names)
            if found is None:
                return held, []
            calls.extend(found)
        return ("", calls) if calls else (held, [])


def _parse_calls(text: str, names: set[str]) -> list[ToolCall] | None:
    """The calls in one ``<tool_call>`` block (an object or a list of them); None if malformed."""
    try:
        value = json.loads(text, strict=False)
    except json.JSONDecodeError:
        return None
    calls = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, Mapping) or item.get("name") not in names:
            return None
        arguments = item.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                return None
        if not isinstance(arguments, dict):
            return None
        calls.append(ToolCall(new_call_id(), item["name"], json.dumps(arguments)))
    return calls or None
