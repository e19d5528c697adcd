"""``google/<live-model>``: the official ``google-genai`` SDK's live client against the loopback Live API
double (so the double is faithful), then the real realtime service process against the double: one spoken
turn, a text turn with a tool call round trip, clear statuses for a bad key, an exhausted quota, a malformed
frame and a dropped socket, and the SDK's plugin instance ``google.realtime.RealtimeModel``."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator

import grpc
import pytest

from tests.providers.google_live_server import AFTER_TOOL, OUT_RATE, REPLY, FakeLiveServer
from tests.realtime.helpers import Conversation, session, status_of
from tests.reliability.certs import issue, make_ca
from tests.speech import silence, speak
from voicemesh.client import google
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.v1 import llm_pb2, realtime_pb2, realtime_pb2_grpc

KEY = "test-google-key"
MODEL = "google/gemini-live-2.5-flash-preview"
WEATHER = llm_pb2.Tool(name="get_weather", description="The weather in a city", parameters_json=json.dumps(
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}))
QUESTION = silence(0.3) + speak("What is the capital of France?") + silence(1.0)


@pytest.fixture
def fake() -> Iterator[FakeLiveServer]:
    server = FakeLiveServer(KEY, pace_s=0.01).start()
    yield server
    server.stop()


@pytest.fixture
def realtime(service_process, fake):
    return service_process("realtime", args=["--preload", ""], env={
        "VOICEMESH_GOOGLE_BASE_URL": fake.url, "GOOGLE_API_KEY": KEY, "VOICEMESH_GOOGLE_API_KEY": ""})


async def test_the_official_sdk_runs_a_spoken_turn_and_a_tool_call_on_the_double(tmp_path):
    genai = pytest.importorskip("google.genai")
    from google.genai import errors, types

    ca = make_ca(tmp_path)
    leaf = issue(ca, tmp_path, "live")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(leaf.cert, leaf.key)
    fake = FakeLiveServer(KEY, pace_s=0.0, tls=server_tls).start()  # the SDK always connects with wss://

    def client(key: str):
        options = types.HttpOptions(base_url=fake.url,
                                    async_client_args={"ssl": ssl.create_default_context(cafile=str(ca.cert))})
        return genai.Client(api_key=key, http_options=options)

    try:
        config = types.LiveConnectConfig(response_modalities=["AUDIO"], input_audio_transcription={},
                                         output_audio_transcription={})
        async with client(KEY).aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as live:
            await live.send_realtime_input(audio=types.Blob(data=QUESTION, mime_type="audio/pcm;rate=16000"))
            audio, said, heard, usage = b"", "", "", None
            async for message in live.receive():  # one turn, up to turnComplete
                content = message.server_content
                heard += (content.input_transcription.text or "") if content and content.input_transcription else ""
                said += (content.output_transcription.text or "") if content and content.output_transcription else ""
                audio += message.data or b""
                usage = message.usage_metadata or usage
        assert said == REPLY and heard == f"{len(QUESTION) * 1000 // 2 // 16000} ms of audio"
        assert len(audio) == len(fake.audio[REPLY]) and usage.response_token_count > 0

        tools = [types.Tool(function_declarations=[types.FunctionDeclaration(
            name="get_weather", description="weather", parameters={"type": "OBJECT"})])]
        config = types.LiveConnectConfig(response_modalities=["TEXT"], tools=tools)
        async with client(KEY).aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as live:
            await live.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="Weather?")]),
                                           turn_complete=True)
            async for message in live.receive():  # a tool call ends no turn: the model waits for the result
                if message.tool_call:
                    (call,) = message.tool_call.function_calls
                    break
            assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
            await live.send_tool_response(function_responses=[types.FunctionResponse(
                id=call.id, name=call.name, response={"sky": "sunny"})])
            text = "".join([m.text or "" async for m in live.receive()])
        assert text == AFTER_TOOL

        with pytest.raises(errors.APIError) as info:
            async with client("wrong").aio.live.connect(model="gemini-live-2.5-flash-preview") as live:
                pass
        assert info.value.code == 1007 and "API key not valid" in str(info.value)
    finally:
        fake.stop()


async def test_one_spoken_turn_through_the_realtime_service(fake, realtime):
    conv = Conversation(realtime.address, session(f"{MODEL}:Puck", silence_ms=500))
    try:
        assert (await conv.until("session_updated")).session_updated.session.model == f"{MODEL}:Puck"
        conv.send_audio(QUESTION)
        final = (await conv.until("input_transcription", final=True)).input_transcription
        created = (await conv.until("response_created")).response_created
        done = (await conv.until("response_done")).response_done
    finally:
        await conv.close()
    assert done.response_id == created.response_id and done.status == "completed"
    assert final.text.endswith("ms of audio") and int(final.text.split()[0]) > 1000  # 16 kHz audio arrived
    assert conv.text(created.response_id, transcript=True) == REPLY
    audio = conv.audio(created.response_id)
    expected_s = len(fake.audio[REPLY]) / 2 / OUT_RATE
    assert abs(len(audio) / 2 / 16000 - expected_s) < 0.02  # resampled from 24 kHz to the 16 kHz asked for
    assert done.usage.model == MODEL and done.usage.input_tokens == 30 and done.usage.output_tokens > 0
    assert abs(done.usage.audio_seconds_out - expected_s) < 0.02 and done.usage.audio_seconds_in > 2
    setup = fake.messages[0]["setup"]
    assert setup["model"] == "models/gemini-live-2.5-flash-preview"
    assert setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Puck"
    assert setup["realtimeInputConfig"]["automaticActivityDetection"]["silenceDurationMs"] == 500
    assert fake.handshakes[-1]["x-goog-api-key"] == KEY
    assert fake.handshakes[-1]["path"].endswith("v1beta.GenerativeService.BidiGenerateContent")


async def test_a_text_turn_and_a_setting_the_api_fixes_at_setup(fake, realtime):
    conv = Conversation(realtime.address, session(MODEL, vad=False, modalities=["text"]))
    try:
        await conv.until("session_updated")
        conv.send(item_create={"item": {"role": "user", "content": "What is the capital of France?"}})
        conv.send(response_create={})
        created = (await conv.until("response_created")).response_created
        done = (await conv.until("response_done")).response_done
        changed = session(MODEL, vad=False, modalities=["text"], instructions="Speak like a pirate.")
        conv.send(session_update=changed.session_update)
        error = (await conv.until("error")).error
        conv.send(item_delete={"item_id": created.item_id})  # the Live API keeps its context: nothing to delete
        undeletable = (await conv.until("error")).error
    finally:
        await conv.close()
    assert undeletable.code == "FAILED_PRECONDITION" and undeletable.detail.reason == "ITEM_DELETE_UNSUPPORTED"
    assert done.status == "completed" and conv.text(created.response_id, transcript=False) == REPLY
    assert fake.messages[1] == {"clientContent": {"turns": [
        {"role": "user", "parts": [{"text": "What is the capital of France?"}]}], "turnComplete": False}}
    assert fake.messages[2] == {"clientContent": {"turnComplete": True}}
    assert error.code == "FAILED_PRECONDITION" and "instructions" in error.message


async def test_tool_results_go_back_as_a_tool_response(fake, service_process):
    realtime = service_process("realtime", args=["--preload", ""], env={
        "VOICEMESH_GOOGLE_BASE_URL": fake.url, "GOOGLE_API_KEY": KEY})
    first = session(MODEL, vad=False, modalities=["text"])
    first.session_update.tools.append(WEATHER)
    conv = Conversation(realtime.address, first)
    try:
        await conv.until("session_updated")
        conv.send(item_create={"item": {"role": "user", "content": "Weather in Paris?"}})
        conv.send(response_create={})
        (call,) = (await conv.until("response_done")).response_done.tool_calls
        conv.send(item_create={"item": {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'}})
        conv.send(response_create={})  # the answer is already due after a tool response: nothing more is asked
        created = (await conv.until("response_created")).response_created
        done = (await conv.until("response_done")).response_done
    finally:
        await conv.close()
    assert done.status == "completed" and conv.text(created.response_id, transcript=False) == AFTER_TOOL
    sent = [m for m in fake.messages if "toolResponse" in m]
    assert sent == [{"toolResponse": {"functionResponses": [
        {"id": call.id, "name": "get_weather", "response": {"sky": "sunny"}}]}}]
    asked = [m for m in fake.messages if (m.get("clientContent") or {}).get("turnComplete")]
    assert len(asked) == 1
    assert fake.messages[0]["setup"]["tools"][0]["functionDeclarations"][0]["parameters"]["required"] == ["city"]


@pytest.mark.parametrize("fail, code, words", [
    ("key", grpc.StatusCode.UNAUTHENTICATED, "API key not valid"),
    ("quota", grpc.StatusCode.RESOURCE_EXHAUSTED, "quota"),
    ("malformed", grpc.StatusCode.UNAVAILABLE, "malformed"),
    ("drop", grpc.StatusCode.UNAVAILABLE, "1006"),
    ("goaway", grpc.StatusCode.UNAVAILABLE, "closed the session"),
])
async def test_provider_failures_get_clear_statuses(fake, service_process, fail, code, words):
    env = {"VOICEMESH_GOOGLE_BASE_URL": fake.url, "GOOGLE_API_KEY": "wrong" if fail == "key" else KEY}
    realtime = service_process("realtime", args=["--preload", ""], env=env)
    fake.fail = fail
    conv = Conversation(realtime.address, session(MODEL, silence_ms=500))
    try:
        conv.send_audio(QUESTION)
        got, details = await status_of(conv, timeout=60)
    finally:
        await conv.close()
    assert (got, words in details) == (code, True), details


async def test_speech_during_a_reply_interrupts_it_and_no_audio_follows(service_process):
    slow = FakeLiveServer(KEY, pace_s=0.1).start()  # 100 ms of audio every 100 ms: a reply to talk over
    try:
        realtime = service_process("realtime", args=["--preload", ""], env={
            "VOICEMESH_GOOGLE_BASE_URL": slow.url, "GOOGLE_API_KEY": KEY})
        conv = Conversation(realtime.address, session(MODEL, silence_ms=500))
        try:
            conv.send_audio(QUESTION)
            first = (await conv.until("response_created")).response_created
            await conv.until("audio_delta", timeout=15)
            conv.send_audio(speak("Stop, please.") + silence(1.0))
            cut = (await conv.until("response_done", timeout=15, response_id=first.response_id)).response_done
            index = len(conv.events)
            second = (await conv.until("response_created", timeout=15)).response_created
            done = (await conv.until("response_done", response_id=second.response_id)).response_done
        finally:
            await conv.close()
    finally:
        slow.stop()
    assert cut.status == "cancelled" and done.status == "completed"
    assert len(conv.audio(first.response_id)) / 2 / 16000 < len(slow.audio[REPLY]) / 2 / OUT_RATE - 0.5
    later = [e for e in conv.events[index:] if e.WhichOneof("event") == "audio_delta"]
    assert later and all(e.audio_delta.response_id == second.response_id for e in later)


async def test_a_client_cancel_ends_the_response_at_once_and_drops_the_rest_of_its_turn(service_process):
    slow = FakeLiveServer(KEY, pace_s=0.2).start()
    try:
        realtime = service_process("realtime", args=["--preload", ""], env={
            "VOICEMESH_GOOGLE_BASE_URL": slow.url, "GOOGLE_API_KEY": KEY})
        conv = Conversation(realtime.address, session(MODEL, vad=False, modalities=["text"]))
        try:
            conv.send(item_create={"item": {"role": "user", "content": "What is the capital of France?"}})
            conv.send(response_create={})
            first = (await conv.until("response_created", timeout=15)).response_created
            conv.send(response_cancel={})
            cut = (await conv.until("response_done", timeout=15)).response_done
            await asyncio.sleep(1.5)  # the rest of the double's turn arrives meanwhile, and is dropped
            conv.send(item_create={"item": {"role": "user", "content": "Again?"}})
            conv.send(response_create={})
            second = (await conv.until("response_created", timeout=15)).response_created
            done = (await conv.until("response_done", timeout=15)).response_done
        finally:
            await conv.close()
    finally:
        slow.stop()
    assert cut.response_id == first.response_id and cut.status == "cancelled"
    assert len(conv.text(first.response_id, transcript=False)) < len(REPLY)
    assert done.response_id == second.response_id and conv.text(second.response_id, transcript=False) == REPLY


def test_the_plugin_instance_names_the_descriptor():
    model = google.realtime.RealtimeModel(model="gemini-live-2.5-flash-preview", voice="Kore", api_key="k")
    assert model.descriptor == "google/gemini-live-2.5-flash-preview:Kore" and model.api_key == "k"


def test_describe_lists_the_live_models_with_their_capabilities(realtime):
    with grpc.insecure_channel(realtime.address) as channel:
        description = realtime_pb2_grpc.RealtimeServiceStub(channel).Describe(
            realtime_pb2.RealtimeServiceDescribeRequest()).description
    (card,) = [m for m in description.models if m.descriptor == MODEL]
    assert card.capabilities.streaming and card.capabilities.server_vad and card.capabilities.tool_calls
    assert not card.capabilities.truncate and "Puck" in card.voices  # the Live API cuts turns itself


async def test_an_agent_session_on_gemini_live_through_the_orchestrator(realtime, tmp_path):
    from tests.orchestrator.client import AgentClient, choice
    from voicemesh.mesh import MeshConfig
    from voicemesh.process import ServiceProcess
    from voicemesh.v1 import agent_pb2

    path = tmp_path / "mesh.json"
    MeshConfig({"realtime": {"*": [realtime.address]}}).write(path)
    orchestrator = ServiceProcess("orchestrator", args=["--metrics-port", "-1", "--mesh", str(path)],
                                  log_path=tmp_path / "orchestrator.log").start()
    try:
        orchestrator.wait_serving()
        config = agent_pb2.SessionConfig(realtime=choice(google.realtime.RealtimeModel(voice="Puck").descriptor),
                                         input_sample_rate_hz=16000, output_sample_rate_hz=16000)
        async with AgentClient(orchestrator.address, config) as s:
            s.start_audio()
            s.say(QUESTION)
            done = await s.turn_done(1, timeout=60)
            assert done.text == REPLY and s.agent_text(1).strip() == REPLY
            assert len(s.agent_audio(1)) > 16000  # over half a second of the reply's audio
            usage = [u.usage for u in s.of("usage", 1) if u.service == "realtime"]
            assert usage and usage[0].model == MODEL and usage[0].output_tokens > 0
    finally:
        orchestrator.stop()


async def test_gemini_usage_lands_in_the_ledger_in_tokens_and_audio_seconds(fake, service_process, tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    store = open_store(url)
    record, key = keys.create_key(store, "gemini")
    realtime = service_process("realtime", args=["--preload", ""], env={
        "VOICEMESH_GOOGLE_BASE_URL": fake.url, "GOOGLE_API_KEY": KEY, "VOICEMESH_GOOGLE_API_KEY": "",
        "VOICEMESH_LEDGER": url})
    conv = Conversation(realtime.address, session(f"{MODEL}:Puck", silence_ms=500),
                        metadata=[("authorization", f"Bearer {key}"), ("x-session-id", "gemini-1")])
    try:
        await conv.until("session_updated")
        conv.send_audio(QUESTION)
        done = (await conv.until("response_done")).response_done
    finally:
        await conv.close()
    for _ in range(50):  # the record is committed before the client gets response_done; read it settled
        rows = store.usage(key_id=record.id)
        if rows:
            break
        await asyncio.sleep(0.1)
    store.close()
    assert [(r.session_id, r.service, r.model) for r in rows] == [("gemini-1", "realtime", MODEL)]
    assert (rows[0].input_tokens, rows[0].output_tokens) == (done.usage.input_tokens, done.usage.output_tokens)
    assert rows[0].input_tokens == 30 and rows[0].output_tokens > 0
    assert abs(rows[0].audio_seconds_out - done.usage.audio_seconds_out) < 1e-6
