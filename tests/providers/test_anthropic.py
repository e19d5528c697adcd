"""``anthropic/<model>``: the official ``anthropic`` SDK against the loopback Messages API double (so the
double is faithful), then the real LLM service process against the double: streamed text, a tool call
round trip, clear statuses for a bad key, overload, rate limits, malformed events and a dropped stream, usage in the ledger,
and the SDK's plugin instance ``anthropic.LLM``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import grpc
import pytest

from tests.llm.chat import Chat, user
from tests.metering.helpers import recorded_usage
from tests.providers.anthropic_server import AFTER_TOOL, REPLY, FakeAnthropicServer
from voicemesh.client import anthropic as anthropic_plugin
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.v1 import llm_pb2

KEY = "test-anthropic-key"
MODEL = "anthropic/claude-sonnet-4-5"
WEATHER = llm_pb2.Tool(
    name="get_weather", description="The weather in a city",
    parameters_json=json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}))


@pytest.fixture
def fake() -> Iterator[FakeAnthropicServer]:
    server = FakeAnthropicServer(KEY).start()
    yield server
    server.stop()


def env_for(fake: FakeAnthropicServer, key: str = KEY, **extra: str) -> dict[str, str]:
    return {"VOICEMESH_ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": key, "VOICEMESH_ANTHROPIC_API_KEY": "",
            **extra}


def test_the_official_sdk_streams_text_and_tool_use_from_the_double(fake):
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                messages=[{"role": "user", "content": "Capital of France?"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY and final.stop_reason == "end_turn" and final.usage.output_tokens > 0

    tools = [{"name": "get_weather", "description": "weather", "input_schema": {"type": "object"}}]
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, tools=tools,
                                messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream:
        final = stream.get_final_message()
    (use,) = final.content
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    assert fake.headers[-1]["anthropic-version"]

    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(api_key="wrong", base_url=fake.url, max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    fake.fail = "overloaded"
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 529


def test_a_streamed_answer_and_a_tool_call_round_trip(service_process, fake):
    llm = service_process("llm", env=env_for(fake))
    with Chat(llm.address, MODEL) as chat:
        first = chat.turn("t1", [llm_pb2.ChatMessage(role="system", content="Be brief."), user("Capital of France?")])
        assert first.text == REPLY and len(first.deltas) > 1 and first.reason == "FINISH_REASON_STOP"
        assert first.done.usage.model == MODEL
        assert first.done.usage.input_tokens > 0 and first.done.usage.output_tokens > 0
        assert fake.requests[-1]["system"] == "Be brief." and fake.requests[-1]["stream"] is True
        assert fake.headers[-1]["x-api-key"] == KEY and fake.headers[-1]["anthropic-version"] == "2023-06-01"

        call_turn = chat.turn("t2", [user("Weather in Paris?")], tools=[WEATHER])
        assert call_turn.reason == "FINISH_REASON_TOOL_CALLS"
        (call,) = call_turn.tool_calls
        assert call.name == "get_weather" and json.loads(call.arguments_json) == {"city": "Paris"}
        assert fake.requests[-1]["tools"][0]["input_schema"]["required"] == ["city"]

        # The result goes back as a tool_result block answering the tool_use (the double refuses anything else).
        result = llm_pb2.ChatMessage(role="tool", tool_call_id=call.id, content='{"sky": "sunny"}')
        answer = chat.turn("t3", [result], tools=[WEATHER])
        assert answer.text == AFTER_TOOL and answer.reason == "FINISH_REASON_STOP"
    sent = fake.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    assert sent[3]["content"][0] == {"type": "tool_use", "id": call.id, "name": "get_weather",
                                     "input": {"city": "Paris"}}
    assert sent[4]["content"][0]["type"] == "tool_result" and sent[4]["content"][0]["tool_use_id"] == call.id


def failure(address: str) -> grpc.RpcError:
    with Chat(address, MODEL) as chat:
        chat.generate("g", [user("Capital of France?")])
        with pytest.raises(grpc.RpcError) as info:
            while True:
                chat.next()
    return info.value


def test_provider_errors_get_clear_statuses(service_process, fake):
    wrong = service_process("llm", env=env_for(fake, key="wrong"))
    error = failure(wrong.address)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "401" in error.details()

    llm = service_process("llm", env=env_for(fake))
    for mode, code, words in [("overloaded", grpc.StatusCode.RESOURCE_EXHAUSTED, "529"),
                              ("rate_limit", grpc.StatusCode.RESOURCE_EXHAUSTED, "429"),
                              ("error_event", grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded_error"),
                              ("malformed", grpc.StatusCode.UNAVAILABLE, "malformed event"),
                              ("drop", grpc.StatusCode.UNAVAILABLE, "before message_stop")]:
        fake.fail = mode
        error = failure(llm.address)
        assert (error.code(), words in error.details()) == (code, True), (mode, error.details())
    fake.fail = ""
    with Chat(llm.address, MODEL) as chat:
        assert chat.turn("ok", [user("Capital of France?")]).text == REPLY  # the service is fine afterwards


async def test_token_usage_lands_in_the_ledger(service_process, fake, tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    llm = service_process("llm", env=env_for(fake, VOICEMESH_LEDGER=url))
    store = open_store(url)
    record, key = keys.create_key(store, "anthropic")

    def chat() -> llm_pb2.ChatDone:
        with Chat(llm.address, MODEL, metadata=[("authorization", f"Bearer {key}")]) as stream:
            return stream.turn("t1", [user("Capital of France?")]).done

    done = await asyncio.to_thread(chat)
    records = await recorded_usage(store, record.id)
    assert [(r.service, r.model, r.input_tokens, r.output_tokens) for r in records] == [
        ("llm", MODEL, done.usage.input_tokens, done.usage.output_tokens)]
    assert done.usage.output_tokens > 0
    store.close()


def test_the_plugin_instance_names_the_descriptor():
    model = anthropic_plugin.LLM(model="claude-haiku-4-5", api_key="k")
    assert model.descriptor == "anthropic/claude-haiku-4-5" and model.api_key == "k"
