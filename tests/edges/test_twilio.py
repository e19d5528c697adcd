"""Phone calls through the Twilio Media Streams edge, placed by a loopback double of Twilio (tests/edges/phone.py)
over a whole local mesh with API keys and a ledger."""

from __future__ import annotations

import asyncio
import json
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlparse

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.edges.conftest import start_twilio
from tests.edges.phone import RATE, Phone
from tests.orchestrator.conftest import transcribe
from tests.speech import speak, words
from voicemesh.edges.twilio.app import STREAM_PATH
from voicemesh.audio import convert
from voicemesh.metering.keys import split_key
from voicemesh.metering.ledger import open_store

pytestmark = pytest.mark.slow

START = {"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {
    "accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"], "customParameters": {},
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}


async def session_usage(url: str, key_id: str, known: set[str], need: tuple[str, ...] = ("stt", "llm", "tts"),
                        timeout_s: float = 20.0) -> dict[str, list]:
    """The key's one new session (not in ``known``): its usage records by service, once ``need`` are all in."""
    store = open_store(url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            new: dict[str, dict[str, list]] = {}
            for record in store.usage(key_id=key_id):
                if record.session_id not in known:
                    new.setdefault(record.session_id, {}).setdefault(record.service, []).append(record)
            if any(set(need) <= set(services) for services in new.values()) or time.monotonic() > deadline:
                assert len(new) == 1, f"expected one new session, got {new}"
                return next(iter(new.values()))
            await asyncio.sleep(0.2)
    finally:
        store.close()


def sessions(url: str, key_id: str) -> set[str]:
    store = open_store(url)
    try:
        return {r.session_id for r in store.usage(key_id=key_id)}
    finally:
        store.close()


async def test_a_call_is_answered_in_mulaw_and_metered_under_the_key(edge_mesh):
    key_id = split_key(edge_mesh.key)[0]
    known = sessions(edge_mesh.ledger_url, key_id)
    async with Phone(edge_mesh.stream_url()) as phone:
        phone.say(speak("What is the capital of France?", RATE))
        mark = await phone.wait_for(lambda m: m["event"] == "mark", timeout=180)
        heard, sent = bytes(phone.heard), phone.sent_seconds
        code, reason = await phone.hang_up()
    assert not phone.violations, phone.violations
    # The reply's audio, then a mark naming its turn.
    assert mark.message["mark"]["name"] == "turn-1"
    assert len(heard) / 2 / RATE > 0.5
    answer = transcribe(convert(heard, RATE, 16000))
    # The reply is speech about the question. Which fact SmolLM2-135M picks is not this test's subject: on CI's
    # machines it has answered "France is a European nation state..." three times running, here "Paris".
    assert {"paris", "france", "french"} & set(words(answer)), answer
    # stop ends the stream cleanly, and the session's usage is in the ledger under the edge's key.
    assert (code, reason) == (1000, "stream stopped")
    usage = await session_usage(edge_mesh.ledger_url, key_id, known)
    assert abs(sum(r.audio_seconds_in for r in usage["stt"]) - sent) < 1.5, (usage["stt"], sent)
    assert sum(r.output_tokens for r in usage["llm"]) > 0
    assert sum(r.characters for r in usage["tts"]) > 0


@pytest.mark.flaky(reruns=2)  # barge-in timing on two busy cores
async def test_talking_over_the_agent_sends_clear(edge_mesh):
    story = {"instructions": "You are a storyteller. Always answer with a long story of several sentences."}
    async with Phone(edge_mesh.stream_url(), parameters=story) as phone:
        phone.say(speak("Can you tell me a short story about a dog?", RATE))
        await phone.wait_for(lambda m: phone.media_seconds() >= 1.5, timeout=180)
        phone.say(speak("Stop, please stop talking now.", RATE))
        clear = await phone.wait_for(lambda m: m["event"] == "clear", timeout=60)
        events = [r.message for r in phone.received if r.at <= clear.at]
        await phone.hang_up()
    assert not phone.violations, phone.violations
    # The interrupted reply gets no end mark: the caller did not hear it to its end.
    assert not any(m["event"] == "mark" and m["mark"]["name"] == "turn-1" for m in events)


async def test_stop_while_the_agent_speaks_ends_the_session(edge_mesh):
    key_id = split_key(edge_mesh.key)[0]
    known = sessions(edge_mesh.ledger_url, key_id)
    async with Phone(edge_mesh.stream_url()) as phone:
        phone.say(speak("Can you tell me a short story about a dog?", RATE))
        await phone.wait_for(lambda m: m["event"] == "media", timeout=180)
        stopped, sent = time.monotonic(), phone.sent_seconds
        code, reason = await phone.hang_up()
        assert time.monotonic() - stopped < 8
    assert (code, reason) == (1000, "stream stopped")
    # The session's streams are closed: the STT stream's usage covers the whole call, and the TTS stream's is in.
    usage = await session_usage(edge_mesh.ledger_url, key_id, known, need=("stt", "tts", "llm"), timeout_s=15)
    assert abs(sum(r.audio_seconds_in for r in usage["stt"]) - sent) < 1.5, (usage, sent)
    assert sum(r.characters for r in usage["tts"]) > 0, usage


MALFORMED = {
    "not JSON": (["{nope"], 1007, "not JSON"),
    "not an object": (["[1, 2]"], 1007, "JSON object"),
    "binary frame": ([b"\x00\x01"], 1003, "binary"),
    "media before start": ([json.dumps({"event": "media", "media": {"payload": ""}})], 1008, "before 'start'"),
    "not mu-law": ([json.dumps({**START, "start": {**START["start"], "mediaFormat": {
        "encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}}})], 1003, "mediaFormat"),
    "start without streamSid": ([json.dumps({"event": "start", "start": {}})], 1007, "streamSid"),
    "payload not base64": ([json.dumps(START), json.dumps({"event": "media", "streamSid": "MZ1",
                                                           "media": {"payload": "***"}})], 1007, "base64"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_frames_get_a_clear_close(edge_mesh, case):
    frames, code, reason = MALFORMED[case]
    async with connect(edge_mesh.stream_url()) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        for frame in frames:
            await ws.send(frame)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 60)
    assert ws.close_code == code and reason in ws.close_reason, (ws.close_code, ws.close_reason)


async def test_a_wrong_token_or_key_gets_a_clear_close(edge_mesh, tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "key").write_text("vm_nokey_wrong\n")
    edge = start_twilio(tmp_path, edge_mesh.up.orchestrator, "--stream-token-file", str(tmp_path / "token"),
                        "--api-key-file", str(tmp_path / "key"), name="twilio-bad-key")
    try:
        closes = []
        for parameters in ({}, {"token": "guess"}, {"token": "s3cret"}):
            async with connect(edge_mesh.stream_url(edge)) as ws:
                await ws.send(json.dumps({**START, "start": {**START["start"], "customParameters": parameters}}))
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 60)
            closes.append((ws.close_code, ws.close_reason))
    finally:
        edge.stop()
    assert [c for c, _ in closes] == [1008, 1008, 1011], closes
    assert "token" in closes[0][1] and "UNAUTHENTICATED" in closes[2][1], closes


def test_the_docs_twiml_connects_the_call_to_the_stream_route():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "clients.md").read_text()
    (twiml,) = re.findall(r"```xml twilio\n(.*?)```", doc, flags=re.S)
    stream = ET.fromstring(twiml.encode()).find("./Connect/Stream")
    url = urlparse(stream.get("url"))
    assert url.scheme == "wss" and url.path == STREAM_PATH
    assert [p.get("name") for p in stream.findall("Parameter")] == ["token"]  # what --stream-token-file checks
