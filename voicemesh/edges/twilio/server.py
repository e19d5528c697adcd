"""Phone calls through Twilio Media Streams: one agent session of the orchestrator per call.

Twilio opens a WebSocket to ``/twilio/media-stream`` (TwiML ``<Connect><Stream>``)
and streams the caller's μ-law audio; the agent's answer goes back on the same
socket. Every session is opened with this server's VoiceMesh key, so the calls'
usage is metered under it. Twilio needs ``wss://``: put a TLS proxy in front.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from voicemesh.client.session import DEFAULT_ADDRESS, DEFAULT_LLM, DEFAULT_STT, DEFAULT_TTS
from voicemesh.errors import InvalidInput, require_module
from voicemesh.runtime import logs
from voicemesh.settings import environ, setting

log = logging.getLogger(__name__)

DEFAULT_INSTRUCTIONS = ("You are a helpful assistant answering a phone call. Answer in one or two short, plain "
                        "sentences.")


@dataclass
class Settings:
    """Settings of the Twilio Media Streams server."""

    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 for all interfaces)")
    port: int = setting(8090, "HTTP/WebSocket port (Twilio reaches it as wss:// through a TLS proxy)")
    orchestrator: str = setting(DEFAULT_ADDRESS, "address of the orchestrator that runs the calls' sessions")
    api_key_file: str = setting("", "file with the VoiceMesh API key the calls are metered under; default "
                                "$VOICEMESH_API_KEY, else the key file of `voicemesh up`")
    stream_token_file: str = setting("", "file with a token each stream must send as the custom parameter "
                                     "'token' (<Parameter name=\"token\" value=\"...\"/>); empty: no token asked")
    twilio_auth_token_file: str = setting("", "file with the Twilio account's auth token: every stream's handshake "
                                          "must then carry Twilio's X-Twilio-Signature (else 403); default "
                                          "$TWILIO_AUTH_TOKEN when set, else no signature asked")
    public_url: str = setting("", "the wss:// URL of the <Stream> as Twilio calls it (the signature covers it); "
                              "default wss://<Host header>/twilio/media-stream")
    stt: str = setting(DEFAULT_STT, "speech-to-text model of the calls")
    llm: str = setting(DEFAULT_LLM, "language model of the calls")
    tts: str = setting(DEFAULT_TTS, "voice of the calls")
    instructions: str = setting(DEFAULT_INSTRUCTIONS, "the agent's instructions (a stream's 'instructions' "
                                "custom parameter overrides them)")
    log_level: str = setting("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = setting("text", "log format", choices=("text", "json"))


def _secret(path: str, what: str) -> str | None:
    """The stripped content of a secret's file, None when no file is named or it is empty."""
    if not path:
        return None
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise InvalidInput(f"cannot read the {what} file {path}: {exc}") from None


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT."""
    for module in ("starlette", "uvicorn", "websockets"):
        require_module(module, "twilio")
    import uvicorn

    from voicemesh.edges.link import load_key
    from voicemesh.edges.twilio.app import STREAM_PATH, create_app
    from voicemesh.edges.twilio.call import CallOptions

    logs.setup(settings.log_level, settings.log_format, "twilio")
    token = _secret(settings.stream_token_file, "stream token")
    auth_token = _secret(settings.twilio_auth_token_file, "Twilio auth token") or environ("TWILIO_AUTH_TOKEN") or None
    if settings.public_url and not settings.public_url.startswith("wss://"):
        raise InvalidInput(f"--public-url must be the wss:// URL Twilio calls, not {settings.public_url!r}")
    key = load_key(settings.api_key_file)
    options = CallOptions(orchestrator=settings.orchestrator, api_key=key, stt=settings.stt, llm=settings.llm,
                          tts=settings.tts, instructions=settings.instructions, stream_token=token,
                          auth_token=auth_token, public_url=settings.public_url)
    log.info("twilio media streams on ws://%s:%d%s for the orchestrator at %s (%s, %s, %s)", settings.host,
             settings.port, STREAM_PATH, settings.orchestrator, "with an API key" if key else "without an API key",
             "streams need a token" if token else "no stream token",
             f"Twilio's signature checked against {settings.public_url or 'wss://<Host>' + STREAM_PATH}"
             if auth_token else "Twilio's signature NOT checked (no auth token)")
    uvicorn.run(create_app(options), host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                log_config=None, ws="websockets")
    return 0
