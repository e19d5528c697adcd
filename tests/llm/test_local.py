"""The LLM service on the local llama.cpp backend, through a real `voicemesh serve llm` process."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from tests.llm.chat import Chat, user
from tests.llm.schema_check import problems
from voicemesh.v1 import llm_pb2, llm_pb2_grpc

pytestmark = pytest.mark.slow

MODEL = "llama.cpp/smollm2-135m-instruct"
PRELOAD = ["--preload", MODEL]
GREEDY = llm_pb2.Sampling(temperature=0)
QUESTION = "What is the capital of France? Answer in one word."
COUNTING = "Count from 1 to 1000, separated by commas."

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
ALARM = {
    "type": "object",
    "properties": {"time": {"type": "string", "maxLength": 10}, "label": {"type": "string"}, "loud": {"type": "boolean"}},
    "required": ["time", "loud"],
    "additionalProperties": False,
}
WEATHER_TOOL = llm_pb2.Tool(name="get_weather", description="Weather forecast for a city.",
                            parameters_json=json.dumps(WEATHER))
ALARM_TOOL = llm_pb2.Tool(name="set_alarm", description="Set an alarm clock.", parameters_json=json.dumps(ALARM))
PROMPTS = [
    "What's the weather in Paris for the next 3 days, in celsius?",
    "Tell me the forecast for Tokyo tomorrow in fahrenheit.",
    "Will it rain in London this week?",
    "Weather for Berlin, 5 days please.",
    "How hot will it be in Cairo over the weekend?",
    "I am flying to New York on Monday, what weather should I expect?",
    "Forecast for Sydney, one week, metric units.",
    "Is it snowing in Oslo?",
    "Give me the weather for Lima for 2 days in fahrenheit.",
    "Should I take an umbrella in Seattle today?",
]


def test_paris_then_second_turn_uses_the_prompt_cache(service_process):
    llm = service_process("llm", args=PRELOAD)
    with Chat(llm.address, MODEL, sampling=GREEDY) as chat:
        first = chat.turn("t1", [user(QUESTION)])
        assert "paris" in first.text.lower()
        assert first.reason == "FINISH_REASON_STOP"
        assert first.done.usage.model == MODEL
        assert first.done.usage.cached_tokens == 0
        assert first.done.usage.output_tokens >= len(first.deltas) > 0

        follow_up = "And the capital of Germany?"
        second = chat.turn("t2", [user(follow_up)])  # sent as soon as turn 1's Done is read
        usage = second.done.usage
        assert second.reason == "FINISH_REASON_STOP" and second.text
        # The server kept turn 1 (question and answer): the prompt grew and its start came from the cache.
        assert usage.input_tokens > first.done.usage.input_tokens + first.done.usage.output_tokens
        assert usage.cached_tokens > first.done.usage.input_tokens // 2
        # After turn 1's Done its slot evaluated the reply's end and the next user header, and turn 2 waited for
        # that slot (not the other one, without the cache): only the new words and ChatML's end of the user
        # message and assistant header were evaluated. Before, the five tokens of "<|im_end|>\n<|im_start|>user\n"
        # too.
        vocabulary = _vocabulary()
        words = len(vocabulary.tokenize(follow_up.encode(), add_bos=False, special=False))
        header = len(vocabulary.tokenize(b"<|im_end|>\n<|im_start|>assistant\n", add_bos=False, special=True))
        assert usage.input_tokens - usage.cached_tokens == words + header, (usage, words, header)


def _vocabulary():
    from llama_cpp import Llama

    from voicemesh.services.llm.backends.gguf import MODELS

    return Llama(str(MODELS[MODEL.split("/")[1]].path()), vocab_only=True, verbose=False)


def test_replace_history_stop_sequences_and_max_tokens(service_process):
    llm = service_process("llm", args=PRELOAD)
    with Chat(llm.address, MODEL, sampling=GREEDY) as fresh:
        baseline = fresh.turn("only", [user(QUESTION)])
    with Chat(llm.address, MODEL, sampling=GREEDY) as chat:
        chat.turn("a", [user("Tell me a short fact about owls.")])
        chat.turn("b", [user("And one about cats.")])
        replaced = chat.turn("c", [user(QUESTION)], replace_history=True)
        assert replaced.done.usage.input_tokens == baseline.done.usage.input_tokens
        assert replaced.done.usage.cached_tokens > 0  # the system prompt is still in the context
        assert replaced.text == baseline.text

        stopped = chat.turn("d", [user(QUESTION)], replace_history=True,
                            sampling=llm_pb2.Sampling(stop=["Paris"]))
        assert stopped.reason == "FINISH_REASON_STOP"
        assert "Paris" not in stopped.text and stopped.text == baseline.text.split("Paris")[0]

        short = chat.turn("e", [user(COUNTING)], sampling=llm_pb2.Sampling(max_tokens=5))
        assert short.reason == "FINISH_REASON_LENGTH"
        assert short.done.usage.output_tokens == 5


@pytest.mark.flaky(reruns=2)  # sampled at 0.7: once in a full CI run one of the ten ran to max_tokens with no call
def test_forced_tool_call_arguments_validate_ten_times_out_of_ten(service_process):
    llm = service_process("llm", args=PRELOAD)
    valid = 0
    with Chat(llm.address, MODEL) as chat:  # default temperature: sampled, not greedy
        for index, prompt in enumerate(PROMPTS):
            turn = chat.turn(f"w{index}", [user(prompt)], replace_history=True, tools=[WEATHER_TOOL, ALARM_TOOL],
                             tool_choice=llm_pb2.ToolChoice(mode="function", name="get_weather"))
            assert turn.reason == "FINISH_REASON_TOOL_CALLS", turn
            (call,) = turn.tool_calls
            assert call.name == "get_weather" and call.id.startswith("call_")
            arguments = json.loads(call.arguments_json)
            assert problems(WEATHER, arguments) == [], (prompt, call.arguments_json)
            valid += 1
        assert valid == len(PROMPTS)

        # "required" with two tools: the model picks one, and its arguments fit that tool.
        turn = chat.turn("any", [user("Wake me up at 7:00, loudly.")], replace_history=True,
                         tools=[WEATHER_TOOL, ALARM_TOOL], tool_choice=llm_pb2.ToolChoice(mode="required"))
        (call,) = turn.tool_calls
        schema = {"get_weather": WEATHER, "set_alarm": ALARM}[call.name]
        assert problems(schema, json.loads(call.arguments_json)) == []

        # The call stays in the conversation; the tool result continues it.
        result = llm_pb2.ChatMessage(role="tool", tool_call_id=call.id, content='{"ok": true}')
        after = chat.turn("after", [result], sampling=llm_pb2.Sampling(max_tokens=40))
        assert after.reason in ("FINISH_REASON_STOP", "FINISH_REASON_LENGTH", "FINISH_REASON_TOOL_CALLS")
    with Chat(llm.address, MODEL) as fresh:
        alone = fresh.turn("alone", [user("Wake me up at 7:00, loudly.")], sampling=llm_pb2.Sampling(max_tokens=1))
    assert after.done.usage.input_tokens > alone.done.usage.input_tokens + turn.done.usage.output_tokens


def test_cancel_stops_at_once_and_frees_the_slot(service_process):
    # No queue: a generation past the one slot is refused at once rather than waiting for it.
    llm = service_process("llm", args=[*PRELOAD, "--max-generations", "1", "--generation-wait-s", "0"])
    with Chat(llm.address, MODEL, sampling=GREEDY) as chat:
        chat.generate("long", [user(COUNTING)], sampling=llm_pb2.Sampling(max_tokens=1500))
        first = chat.next()
        assert first.generation_id == "long" and first.WhichOneof("event") == "text_delta"

        # The one slot is taken: another stream is refused.
        with Chat(llm.address, MODEL) as other:
            other.generate("refused", [user("Hello")])
            with pytest.raises(grpc.RpcError) as refused:
                other.next()
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit" in refused.value.details()

        chat.cancel()
        cancelled = chat.read("long")
        assert cancelled.reason == "FINISH_REASON_CANCELLED"
        assert 0 < cancelled.done.usage.output_tokens < 1500

        # Right after Done the slot is free: a new stream is admitted and answered.
        with Chat(llm.address, MODEL, sampling=GREEDY) as next_stream:
            answer = next_stream.turn("next", [user(QUESTION)])
            assert "paris" in answer.text.lower()

        # Nothing more of the cancelled generation: every later response belongs to the new one.
        again = chat.turn("again", [user(QUESTION)])
        assert again.reason == "FINISH_REASON_STOP" and "paris" in again.text.lower()

        # Barge-in as the orchestrator does it: Cancel and the next Generate at once, with a
        # history cut to what was heard. The cancelled Done comes first, then the new generation.
        chat.generate("long2", [user(COUNTING)], sampling=llm_pb2.Sampling(max_tokens=1500))
        assert chat.next().generation_id == "long2"
        chat.cancel()
        heard = [user(COUNTING), llm_pb2.ChatMessage(role="assistant", content="1, 2, 3"), user(QUESTION)]
        chat.generate("resume", heard, replace_history=True)
        assert chat.read("long2").reason == "FINISH_REASON_CANCELLED"
        resumed = chat.read("resume")
        assert "paris" in resumed.text.lower() and resumed.done.usage.cached_tokens > 0


def test_a_client_that_goes_away_frees_its_slot(service_process):
    llm = service_process("llm", args=[*PRELOAD, "--max-generations", "1"])
    gone = Chat(llm.address, MODEL, sampling=GREEDY)
    gone.generate("long", [user(COUNTING)], sampling=llm_pb2.Sampling(max_tokens=1500))
    assert gone.next().WhichOneof("event") == "text_delta"
    gone.responses.cancel()  # the client disappears mid-generation
    gone.close()

    # The 1500-token generation would run for many seconds; the slot frees long before.
    for _ in range(50):
        with Chat(llm.address, MODEL, sampling=GREEDY) as chat:
            try:
                turn = chat.turn("after", [user(QUESTION)])
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                time.sleep(0.05)
                continue
        assert "paris" in turn.text.lower()
        break
    else:
        pytest.fail("the slot of the abandoned stream was never freed")


def test_a_generation_whose_client_left_is_still_metered(service_process, tmp_path):
    from voicemesh.metering import keys
    from voicemesh.metering.ledger import open_store

    url = f"sqlite:///{tmp_path}/ledger.db"
    store = open_store(url)
    record, key = keys.create_key(store, "llm-test")
    store.close()
    llm = service_process("llm", args=PRELOAD, env={"VOICEMESH_LEDGER": url})
    auth = [("authorization", f"Bearer {key}")]
    with Chat(llm.address, MODEL, sampling=GREEDY, metadata=auth) as chat:
        finished = chat.turn("whole", [user(QUESTION)])
    gone = Chat(llm.address, MODEL, sampling=GREEDY, metadata=auth)
    gone.generate("left", [user(COUNTING)], sampling=llm_pb2.Sampling(max_tokens=1500))
    assert gone.next().WhichOneof("event") == "text_delta"
    gone.responses.cancel()
    gone.close()

    for _ in range(100):
        store = open_store(url)
        records = store.usage(key_id=record.id)
        store.close()
        if len(records) == 2:
            break
        time.sleep(0.1)
    assert [r.output_tokens for r in records][0] == finished.done.usage.output_tokens
    unsent = records[1]
    assert unsent.model == MODEL and unsent.service == "llm"
    assert 0 < unsent.output_tokens < 1500 and unsent.input_tokens > 0


def _error(address: str, model: str = MODEL, *, first=None, then=()) -> grpc.RpcError:
    with Chat(address, model, first=first) as chat:
        for request in then:
            chat.send(request)
        with pytest.raises(grpc.RpcError) as info:
            while True:
                chat.next()
        return info.value


def _generate(**fields) -> llm_pb2.ChatRequest:
    fields.setdefault("messages", [user("Hello")])
    return llm_pb2.ChatRequest(generate=llm_pb2.Generate(id="g", **fields))


def test_bad_input_gets_clear_errors_and_other_streams_keep_working(service_process):
    from voicemesh.runtime.status import detail_of

    llm = service_process("llm", args=PRELOAD)
    address = llm.address
    bystander = Chat(address, MODEL, sampling=GREEDY)
    bystander.turn("before", [user(QUESTION)])

    error = _error(address, first=_generate())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "config" in error.details()

    error = _error(address, then=[llm_pb2.ChatRequest(config=llm_pb2.ChatConfig(model=MODEL))])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "only the first" in error.details()

    error = _error(address, then=[_generate(messages=[])])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty" in error.details()

    error = _error(address, then=[_generate(messages=[llm_pb2.ChatMessage(role="wizard", content="hi")])])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "'wizard'" in error.details()

    error = _error(address, then=[_generate(messages=[user(QUESTION)], turn_id=-1)])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "turn_id" in error.details()

    bad_schemas = ["{not json", '{"type": "array"}', '{"type": "object", "properties": {"a": {"type": "strnig"}}}',
                   '{"type": "object", "required": "a"}']
    for text in bad_schemas:
        tool = llm_pb2.Tool(name="f", parameters_json=text)
        error = _error(address, then=[_generate(tools=[tool])])
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "parameters_json" in error.details(), text

    error = _error(address, then=[_generate(tools=[WEATHER_TOOL], tool_choice=llm_pb2.ToolChoice(mode="function",
                                                                                                 name="nope"))])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "'nope'" in error.details()

    error = _error(address, then=[_generate(messages=[user("word " * 3000)])])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "2048" in error.details() and "context" in error.details()

    error = _error(address, "llama.cpp/no-such-model")
    assert error.code() == grpc.StatusCode.NOT_FOUND and MODEL in error.details()
    assert MODEL in detail_of(error).known

    error = _error(address, "nobody/model")
    assert error.code() == grpc.StatusCode.NOT_FOUND and "llama.cpp" in error.details()

    error = _error(address, "")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    # The stream opened before all this still works, and keeps its conversation.
    after = bystander.turn("after", [user(QUESTION)])
    assert "paris" in after.text.lower() and after.done.usage.cached_tokens > 0
    bystander.close()


def test_describe_lists_models_context_and_capabilities(service_process):
    llm = service_process("llm", args=["--llama-context", "1024"])
    with grpc.insecure_channel(llm.address) as channel:
        description = llm_pb2_grpc.LlmServiceStub(channel).Describe(llm_pb2.LlmServiceDescribeRequest()).description
    assert description.service == "llm"
    assert {"llama.cpp", "openai"} <= set(description.providers)
    models = {m.descriptor: m for m in description.models}
    local = models[MODEL]
    assert local.context_tokens == 1024
    assert local.capabilities.streaming and local.capabilities.tool_calls
    assert any(d.startswith("openai/") for d in models)
