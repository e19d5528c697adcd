"""Twilio's X-Twilio-Signature on the Media Streams handshake, made by Twilio's official SDK (``twilio``).

No mesh is needed: a refused handshake never reaches a session, and an accepted one is shown by the stream's
own protocol check (a frame that is not JSON is closed 1007), which runs only after the handshake."""

from __future__ import annotations

import asyncio
import json

import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.edges.conftest import start_twilio
from voicemesh.edges.twilio.signature import signature, valid
from voicemesh.process import free_port

AUTH_TOKEN = "12345678901234567890123456789012"
PUBLIC_URL = "wss://voice.example.com/twilio/media-stream"


@pytest.fixture(scope="module")
def signed_edge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("twilio-signature")
    token_file = folder / "auth_token"
    token_file.write_text(AUTH_TOKEN + "\n")
    # No orchestrator listens there: these tests never get as far as a session.
    edge = start_twilio(folder, f"127.0.0.1:{free_port()}", "--twilio-auth-token-file", str(token_file),
                        "--public-url", PUBLIC_URL)
    yield edge
    edge.stop()


async def _handshake(edge, headers: dict[str, str]) -> tuple[int, str]:
    """Open the stream with ``headers``, send a frame that is not JSON; the close (code, reason) that follows."""
    async with connect(f"ws://{edge.address}/twilio/media-stream", additional_headers=headers) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send("{nope")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
    return ws.close_code, ws.close_reason


async def test_a_handshake_signed_by_twilios_sdk_is_accepted(signed_edge):
    header = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL, {})
    code, reason = await _handshake(signed_edge, {"X-Twilio-Signature": header})
    assert (code, "not JSON" in reason) == (1007, True), (code, reason)


@pytest.mark.parametrize("headers", [
    {},
    {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
    {"X-Twilio-Signature": RequestValidator("another account's token").compute_signature(PUBLIC_URL, {})},
    {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature("wss://elsewhere.example/x", {})},
], ids=["none", "garbage", "other token", "other url"])
async def test_a_handshake_without_a_valid_signature_is_refused_403(signed_edge, headers):
    with pytest.raises(InvalidStatus) as refused:
        await _handshake(signed_edge, headers)
    assert refused.value.response.status_code == 403
    assert "refused a stream" in signed_edge.log_tail()


def test_the_signature_matches_twilios_sdk_with_and_without_form_parameters():
    sdk = RequestValidator(AUTH_TOKEN)
    params = {"CallSid": "CA1", "From": "+15551234567", "To": "+15557654321", "Digits": "1"}
    assert signature(AUTH_TOKEN, PUBLIC_URL) == sdk.compute_signature(PUBLIC_URL, {})
    url = "https://voice.example.com/twilio/voice"
    assert signature(AUTH_TOKEN, url, params) == sdk.compute_signature(url, params)


def test_a_signature_made_over_the_url_with_its_default_port_is_valid_too():
    with_port = RequestValidator(AUTH_TOKEN).compute_signature("wss://voice.example.com:443/twilio/media-stream", {})
    assert valid(AUTH_TOKEN, PUBLIC_URL, with_port)
    assert not valid(AUTH_TOKEN, PUBLIC_URL, None) and not valid("other", PUBLIC_URL, with_port)


async def test_without_a_public_url_the_signature_covers_the_host_the_request_names(tmp_path, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)  # the token from the environment, as Twilio's SDKs read it
    edge = start_twilio(tmp_path, f"127.0.0.1:{free_port()}")
    try:
        here = f"wss://{edge.address}/twilio/media-stream"
        code, _ = await _handshake(edge, {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(here, {})})
        assert code == 1007
        with pytest.raises(InvalidStatus):
            await _handshake(edge, {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL, {})})
    finally:
        edge.stop()
