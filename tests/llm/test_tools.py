"""Pure logic of the LLM service (no model): tool schemas, tool-call scanning,
stop sequences, sampling defaults and the conversation history."""

from __future__ import annotations

import json

import pytest

from voicemesh.errors import InvalidInput
from voicemesh.services.llm.backend import (
    FinishReason,
    GenerationRequest,
    Message,
    Sampling,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallMade,
    ToolChoice,
)
from voicemesh.services.llm.backends.llama_cpp import _Output
from voicemesh.services.llm.conversation import Conversation
from voicemesh.tools import ToolCallScanner, call_schema, check_tools, forced_call, parse_tool

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = Tool("get_weather", "weather", SCHEMA)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[1, 2", "not valid JSON"),
        ('{"type": "string"}', 'of type "object"'),
        ('{"type": "object", "properties": {"a": {"type": "text"}}}', "$.properties.a.type 'text'"),
        ('{"type": "object", "properties": {"a": {"type": "array", "items": 3}}}', "$.properties.a.items"),
        ('{"type": "object", "required": [1]}', "$.required"),
        ('{"type": "object", "properties": {"a": {"enum": []}}}', "$.properties.a.enum"),
        ('{"type": "object", "properties": {"a": {"anyOf": []}}}', "$.properties.a.anyOf"),
        ('{"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}}', "pattern"),
        ('{"type": "object", "properties": {"a": {"type": "string", "maxLength": -1}}}', "maxLength"),
        ('{"type": "object", "properties": {"a": {"$ref": "http://example.com/s.json"}}}', "$ref"),
    ],
)
def test_invalid_tool_schemas_are_refused_with_the_place(text, fragment):
    with pytest.raises(InvalidInput) as info:
        parse_tool("f", "", text)
    assert fragment in str(info.value)


def test_valid_tool_schemas_and_names():
    assert parse_tool("f", "d", json.dumps(SCHEMA)).parameters == SCHEMA
    assert parse_tool("no_args", "", "").parameters == {"type": "object", "properties": {}}
    with pytest.raises(InvalidInput, match="tool name"):
        parse_tool("bad name!", "", "")


def test_tool_choice_checks():
    other = Tool("set_alarm", "", SCHEMA)
    assert check_tools([TOOL], ToolChoice("required")) == ToolChoice("function", "get_weather")
    assert check_tools([TOOL, other], ToolChoice("required")) == ToolChoice("required")
    assert check_tools([TOOL], ToolChoice("")) == ToolChoice("auto")
    for tools, choice, fragment in [
        ([TOOL, TOOL], ToolChoice("auto"), "unique"),
        ([], ToolChoice("required"), "at least one tool"),
        ([TOOL], ToolChoice("function", "nope"), "'nope'"),
        ([TOOL], ToolChoice("sometimes"), "'sometimes'"),
    ]:
        with pytest.raises(InvalidInput, match=fragment):
            check_tools(tools, choice)


def test_forced_call_schema_and_parsing():
    other = Tool("set_alarm", "", {"type": "object", "properties": {}})
    assert call_schema([TOOL, other], ToolChoice("function", "set_alarm")) == other.parameters
    both = call_schema([TOOL, other], ToolChoice("required"))
    assert [option["properties"]["name"]["const"] for option in both["anyOf"]] == ["get_weather", "set_alarm"]

    call = forced_call('{"city": "Par\nis"}', [TOOL], ToolChoice("function", "get_weather"))
    assert call.name == "get_weather" and json.loads(call.arguments_json) == {"city": "Par\nis"}
    call = forced_call('{"name": "set_alarm", "arguments": {}}', [TOOL, other], ToolChoice("required"))
    assert call.name == "set_alarm" and call.arguments_json == "{}"
    assert forced_call('{"city": "Par', [TOOL], ToolChoice("function", "get_weather")) is None


def test_scanner_streams_plain_text_and_takes_out_tool_calls():
    plain = ToolCallScanner([TOOL])
    assert plain.feed(" <to") == ""  # could still become a tool call
    assert plain.feed("day is sunny") == " <today is sunny"
    assert plain.feed(" and warm") == " and warm"
    assert plain.finish() == ("", [])

    calling = ToolCallScanner([TOOL])
    pieces = ["<tool", '_call>{"name": "get_weather", ', '"arguments": {"city": "Oslo"}}', "</tool_call>"]
    assert [calling.feed(p) for p in pieces] == ["", "", "", ""]
    text, calls = calling.finish()
    assert text == "" and [(c.name, json.loads(c.arguments_json)) for c in calls] == [("get_weather", {"city": "Oslo"})]

    listed = ToolCallScanner([TOOL])
    listed.feed('<tool_call>[{"name": "get_weather", "arguments": {"city": "A"}}, '
                '{"name": "get_weather", "arguments": "{\\"city\\": \\"B\\"}"}]</tool_call>')
    text, calls = listed.finish()
    assert text == "" and [json.loads(c.arguments_json)["city"] for c in calls] == ["A", "B"]
    assert len({c.id for c in calls}) == 2

    unknown = ToolCallScanner([TOOL])
    unknown.feed('<tool_call>{"name": "launch_rocket", "arguments": {}}</tool_call>')
    text, calls = unknown.finish()
    assert calls == [] and "launch_rocket" in text  # not a known tool: handed back as text


def _output(stops=(), tools=(), mode="auto"):
    events = []
    request = GenerationRequest(messages=(Message("user", "hi"),), tools=tuple(tools),
                                tool_choice=ToolChoice(mode, "get_weather" if mode == "function" else ""),
                                sampling=Sampling(stop=tuple(stops)))
    return _Output(request, events.append, forced=mode in ("function", "required")), events


def test_stop_sequences_cut_the_text_even_across_pieces():
    output, events = _output(stops=["END", "\n\n"])
    assert output.feed("Hello E") is False
    assert output.feed("N") is False
    assert output.feed("D and more") is True
    assert output.finish("", FinishReason.STOP) is FinishReason.STOP
    assert "".join(e.text for e in events) == "Hello "

    output, events = _output(stops=["END"])
    output.feed("Hello EN")
    assert output.finish("", FinishReason.LENGTH) is FinishReason.LENGTH
    assert "".join(e.text for e in events) == "Hello EN"  # a partial stop at the end is text after all


def test_output_of_forced_and_auto_tool_calls():
    output, events = _output(tools=[TOOL], mode="function")
    output.feed('{"city": ')
    output.feed('"Rome"}')
    assert output.finish("", FinishReason.STOP) is FinishReason.TOOL_CALLS
    (made,) = events
    assert isinstance(made, ToolCallMade) and json.loads(made.call.arguments_json) == {"city": "Rome"}

    output, events = _output(tools=[TOOL], mode="function")
    output.feed('{"city": "Ro')
    assert output.finish("", FinishReason.LENGTH) is FinishReason.LENGTH and events == []

    output, events = _output(tools=[TOOL], mode="auto")
    output.feed('<tool_call>{"name": "get_weather", "arguments": {"city": "Lima"}}</tool_call>')
    assert output.finish("", FinishReason.STOP) is FinishReason.TOOL_CALLS
    assert [type(e) for e in events] == [ToolCallMade]

    output, events = _output(tools=[TOOL], mode="none")
    output.feed("<tool_call>not parsed when tools are off")
    output.finish("", FinishReason.STOP)
    assert all(isinstance(e, TextDelta) for e in events) and events


def test_conversation_appends_replaces_and_keeps_replies():
    conversation = Conversation(Sampling(temperature=0.2, max_tokens=50))
    request = conversation.begin([Message("user", "one")], replace_history=False, tools=(), tool_choice=ToolChoice(),
                                 sampling=Sampling(max_tokens=9))
    assert request.sampling == Sampling(temperature=0.2, max_tokens=9)
    conversation.finish("reply", [])
    call = ToolCall("call_1", "get_weather", "{}")
    conversation.finish("", [call])
    request = conversation.begin([Message("tool", "{}", tool_call_id="call_1")], replace_history=False, tools=(),
                                 tool_choice=ToolChoice(), sampling=Sampling())
    assert [m.role for m in request.messages] == ["user", "assistant", "assistant", "tool"]
    assert request.messages[2].tool_calls == (call,)
    request = conversation.begin([Message("user", "fresh")], replace_history=True, tools=(), tool_choice=ToolChoice(),
                                 sampling=Sampling())
    assert request.messages == (Message("user", "fresh"),)

    for messages, fragment in [
        ([], "empty"),
        ([Message("robot", "x")], "'robot'"),
        ([Message("tool", "x")], "tool_call_id"),
        ([Message("user", "x", tool_calls=(call,))], "only assistant"),
    ]:
        with pytest.raises(InvalidInput, match=fragment):
            conversation.begin(messages, replace_history=False, tools=(), tool_choice=ToolChoice(), sampling=Sampling())
    with pytest.raises(InvalidInput, match="temperature"):
        Conversation(Sampling(temperature=5))


def test_openai_stream_chunks_text_tool_call_deltas_usage_and_errors():
    from voicemesh.errors import Unavailable
    from voicemesh.services.llm.backends.openai import _chunk_events, _normalized, _Reply

    reply = _Reply()
    chunks = [  # shapes from OpenAI's chat.completion.chunk documentation
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 1, "id": "call_b", "function": {"name": "set_alarm", "arguments": "{}"}},
            {"index": 0, "function": {"arguments": ' "Oslo"}'}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 12,
                                  "prompt_tokens_details": {"cached_tokens": 32}}},
    ]
    texts = [event.text for chunk in chunks for event in _chunk_events(chunk, reply, "openai/x")]
    assert texts == ["Hel", "lo"]
    assert reply.reason is FinishReason.TOOL_CALLS
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.cached_tokens) == (50, 12, 32)
    assert [(c["id"], c["name"], "".join(c["arguments"])) for _, c in sorted(reply.calls.items())] == [
        ("call_a", "get_weather", '{"city": "Oslo"}'), ("call_b", "set_alarm", "{}")]
    assert _normalized('{"a": "x\ny"}') == '{"a": "x\\ny"}' and _normalized("{broken") == "{broken"

    with pytest.raises(Unavailable, match="mid-stream"):
        _chunk_events({"error": {"message": "overloaded"}}, _Reply(), "openai/x")
