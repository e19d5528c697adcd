"""The console's session socket (/console/session) spoken to directly: the wire format of docs/console.md."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.speech import silence, speak

pytestmark = pytest.mark.slow


def socket_url(console_mesh) -> str:
    return console_mesh.console_url.replace("http://", "ws://") + "/session"


async def next_of(ws, kind: str, timeout: float = 30.0) -> dict:
    """The next JSON message of ``kind`` (binary frames and other messages are skipped)."""
    async def find():
        while True:
            frame = await ws.recv()
            if isinstance(frame, str) and (message := json.loads(frame))["type"] == kind:
                return message
    return await asyncio.wait_for(find(), timeout)


async def test_bad_frames_get_clear_errors_and_the_socket_stays_usable(console_mesh):
    key = console_mesh.key
    async with websockets.connect(socket_url(console_mesh), subprotocols=["voicemesh.console", f"voicemesh-key.{key}"],
                                  max_size=2**22) as ws:
        assert ws.subprotocol == "voicemesh.console"
        for frame, expected in [
            ("not json", "a text frame is a JSON control message"),
            ("[1, 2]", "a JSON object with a string 'type'"),
            (json.dumps({"type": "dance"}), "unknown control message type 'dance'"),
            (json.dumps({"type": "text", "text": "hi"}), "'text' before a session"),
            (b"\x00\x01", "audio before a session"),
            (json.dumps({"type": "start", "stt": 7}), "'stt' must be a model descriptor"),
            (json.dumps({"type": "start", "input_sample_rate": -1}), "'input_sample_rate' must be a whole number"),
            (json.dumps({"type": "start", "llm": "no-slash"}), "provider/model"),
        ]:
            await (ws.send(frame))
            error = await next_of(ws, "error")
            assert error["code"] == "INVALID_ARGUMENT" and expected in error["message"], (frame, error)
        # The same socket then carries a whole session: a model that does not exist is refused by the mesh.
        await ws.send(json.dumps({"type": "start", "llm": "llama.cpp/no-such-model"}))
        assert (await next_of(ws, "session_started"))["session_id"]
        await ws.send(json.dumps({"type": "text", "text": "Hello"}))
        error = await next_of(ws, "error", 60)
        assert error["code"] == "NOT_FOUND" and "no-such-model" in error["message"], error
        await ws.send(json.dumps({"type": "stop"}))
        await next_of(ws, "session_ended")
        # ... and another session, spoken to in PCM, with odd-length audio refused in between.
        await ws.send(json.dumps({"type": "start", "instructions": "Answer in one short sentence."}))
        await next_of(ws, "session_started")
        await ws.send(b"\x00\x00\x00")
        assert "even number of bytes" in (await next_of(ws, "error"))["message"]
        pcm = silence(0.3) + speak("What is the capital of France?") + silence(1.5)
        for i in range(0, len(pcm), 640):
            await ws.send(pcm[i:i + 640])
        final = await next_of(ws, "user_transcript", 60)
        while not final["final"]:
            final = await next_of(ws, "user_transcript", 60)
        assert "france" in final["text"].lower()
        header = await next_of(ws, "agent_audio", 60)
        audio = await ws.recv()  # the binary frame that belongs to the header
        assert isinstance(audio, bytes) and len(audio) == header["bytes"] > 0 and header["sample_rate"] > 0
        metrics = await next_of(ws, "metrics", 60)
        assert metrics["voice_to_voice_ms"] > 0 and metrics["stt_model"] == "faster-whisper/tiny.en:en"


async def test_a_refused_key_gets_an_error_message_then_close_1008(console_mesh):
    async with websockets.connect(socket_url(console_mesh),
                                  subprotocols=["voicemesh.console", "voicemesh-key.vm_wrong"]) as ws:
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["code"] == "UNAUTHENTICATED" and error["fatal"]
        assert error["message"].startswith("the mesh refused the API key"), error
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1008 and ws.close_reason.startswith("the mesh refused the API key")
    # The header works as on every other route.
    async with websockets.connect(socket_url(console_mesh),
                                  additional_headers={"Authorization": f"Bearer {console_mesh.key}"}) as ws:
        await ws.send(json.dumps({"type": "describe"}))
        models = await next_of(ws, "models")
        assert "piper/en_US-joe-medium" in [m["descriptor"] for m in models["tts"]]
        await ws.send(json.dumps({"type": "usage"}))  # the ledger's totals of this key
        usage = await next_of(ws, "key_usage")
        assert usage["available"] and usage["name"] == "local" and isinstance(usage["models"], dict), usage


async def test_a_page_of_another_origin_may_not_open_a_session(console_mesh):
    # A web site the user visits must not reach the mesh through the user's browser; the console's own page may.
    async with websockets.connect(socket_url(console_mesh), origin="http://elsewhere.example",
                                  subprotocols=["voicemesh.console", f"voicemesh-key.{console_mesh.key}"]) as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["code"] == "PERMISSION_DENIED" and "http://elsewhere.example" in error["message"], error
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1008
    own = console_mesh.console_url.removesuffix("/console")
    async with websockets.connect(socket_url(console_mesh), origin=own,
                                  subprotocols=["voicemesh.console", f"voicemesh-key.{console_mesh.key}"]) as ws:
        await ws.send(json.dumps({"type": "describe"}))
        assert (await next_of(ws, "models"))["stt"]
