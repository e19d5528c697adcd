"""The gateway as a hostile client meets it: the key is checked before any body is read, bodies and
audio stay within their limits, slow sockets are closed, and every refusal is an OpenAI JSON error.

Real services with API keys on (a ledger) and the real gateway process; raw sockets where the test
needs to control exactly what is sent and when.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.test_gateway import gateway_process
from voicemesh.audio import wav_bytes
from voicemesh.mesh import MeshConfig
from voicemesh.metering import keys
from voicemesh.process import ServiceProcess

MiB = 1024 * 1024
MAX_BODY = 2_000_000
MAX_AUDIO_S = 5
TIMEOUT_S = 2  # header and body timeouts of the gateway under test
MAX_CONNECTIONS = 40
STT = "faster-whisper/tiny.en:en"
LLM = "llama.cpp/smollm2-135m-instruct"
WRONG_KEY = "Bearer vm_000000000000_wrong"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    """Services with API keys on (no model loads: nothing here gets past the gateway), the gateway
    in front with small limits (new settings by environment, so the same test runs on older code)."""
    tmp = tmp_path_factory.mktemp("limits")
    ledger = f"sqlite:///{tmp / 'ledger.db'}"
    key = keys.ensure_local_key(ledger, tmp / "key")
    services = {m: ServiceProcess(m, args=["--metrics-port", "-1"], env={"VOICEMESH_LEDGER": ledger},
                                  log_path=tmp / f"{m}.log") for m in ("stt", "llm", "tts")}
    try:
        for proc in services.values():
            proc.start()
        for proc in services.values():
            proc.wait_serving()
        env = {"VOICEMESH_MAX_AUDIO_S": str(MAX_AUDIO_S), "VOICEMESH_HEADER_TIMEOUT_S": str(TIMEOUT_S),
               "VOICEMESH_BODY_TIMEOUT_S": str(TIMEOUT_S), "VOICEMESH_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}
        with gateway_process(MeshConfig({m: {"*": [p.address]} for m, p in services.items()}), tmp,
                             args=["--max-body-bytes", str(MAX_BODY)], env=env) as (base, proc):
            yield base, proc, key
    finally:
        for proc in services.values():
            proc.stop()


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def connect(base: str) -> socket.socket:
    url = httpx.URL(base)
    return socket.create_connection((url.host, url.port), timeout=10)


def head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST /v1{path} HTTP/1.1", "host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Status, headers and body of one HTTP response (read until its Content-Length or the close)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", 1 << 30)):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def assert_openai_error(status: int, body: bytes, expected: int, text: str) -> dict:
    assert status == expected, body
    error = json.loads(body)["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert text.lower() in error["message"].lower(), error
    return error


def send_body(sock: socket.socket, total: int, chunk: bytes = b" " * MiB, *, chunked: bool = False) -> int:
    """Send up to ``total`` bytes of body; stops when the server closes. Returns the bytes sent."""
    sent = 0
    try:
        while sent < total:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
            sent += len(chunk)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_200_mb_body_without_a_key_is_never_read(mesh, chunked):
    base, proc, _key = mesh
    before = peak_rss_mib(proc.pid)
    with connect(base) as sock:
        framing = {"transfer-encoding": "chunked"} if chunked else {"content-length": str(200 * MiB)}
        sock.sendall(head("/chat/completions", {"content-type": "application/json", **framing}))
        sent = send_body(sock, 200 * MiB, chunked=chunked)
        status, _headers, body = read_response(sock)
    peak = peak_rss_mib(proc.pid)
    print(f"gateway VmHWM: {before:.1f} MiB before, {peak:.1f} MiB after a 200 MB body without a key "
          f"({sent / MiB:.0f} MiB of it sent)")
    assert_openai_error(status, body, 401, "API key")
    assert sent < 50 * MiB  # the server closed the connection instead of reading on
    assert peak < 100, f"peak RSS {peak:.1f} MiB (before: {before:.1f} MiB)"


def test_a_wrong_key_with_a_huge_body_is_refused_at_once(mesh):
    base, _proc, _key = mesh
    with connect(base) as sock:
        sock.sendall(head("/audio/speech", {"content-type": "application/json", "authorization": WRONG_KEY,
                                            "content-length": str(200 * MiB)}))
        start = time.monotonic()
        status, headers, body = read_response(sock, timeout=5)  # not a byte of the body was sent
    assert_openai_error(status, body, 401, "unknown API key")
    assert time.monotonic() - start < 5
    assert headers.get("connection") == "close"


def test_a_content_length_over_the_limit_gets_413_before_the_body(mesh):
    base, _proc, key = mesh
    with connect(base) as sock:
        sock.sendall(head("/chat/completions", {"content-type": "application/json",
                                                "authorization": f"Bearer {key}",
                                                "content-length": str(MAX_BODY + 1)}))
        status, _headers, body = read_response(sock, timeout=5)  # not a byte of the body was sent
    assert_openai_error(status, body, 413, f"limit of {MAX_BODY} bytes")


def test_a_chunked_body_is_counted_and_stopped_at_the_limit(mesh):
    base, _proc, key = mesh
    with connect(base) as sock:
        sock.sendall(head("/chat/completions", {"content-type": "application/json",
                                                "authorization": f"Bearer {key}", "transfer-encoding": "chunked"}))
        sent = send_body(sock, 200 * MiB, chunk=b" " * 65536, chunked=True)
        status, _headers, body = read_response(sock)
    assert_openai_error(status, body, 413, f"limit of {MAX_BODY} bytes")
    assert sent < 50 * MiB


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversize_wav_upload_gets_413(mesh, chunked):
    base, _proc, key = mesh
    wav = wav_bytes(b"\0\0" * (MAX_BODY // 2), 48000)  # a file part alone over --max-body-bytes
    if not chunked:
        response = httpx.post(base + "/audio/transcriptions", headers={"authorization": f"Bearer {key}"},
                              data={"model": STT}, files={"file": ("big.wav", wav)}, timeout=30)
        assert_openai_error(response.status_code, response.content, 413, "limit")
        return
    body = (b"--b0undary\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\n" + STT.encode()
            + b"\r\n--b0undary\r\ncontent-disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
            + b"content-type: audio/wav\r\n\r\n" + wav + wav + b"\r\n--b0undary--\r\n")
    with connect(base) as sock:
        sock.sendall(head("/audio/transcriptions", {"content-type": "multipart/form-data; boundary=b0undary",
                                                    "authorization": f"Bearer {key}",
                                                    "transfer-encoding": "chunked"}))
        try:
            for start in range(0, len(body), 65536):
                piece = body[start:start + 65536]
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end
        status, _headers, response_body = read_response(sock)
    assert_openai_error(status, response_body, 413, "limit")


def test_a_malformed_multipart_body_gets_a_json_400(mesh):
    base, _proc, key = mesh
    response = httpx.post(base + "/audio/transcriptions", content=b"--x\r\n", timeout=30,
                          headers={"authorization": f"Bearer {key}", "content-type": "multipart/form-data"})
    assert_openai_error(response.status_code, response.content, 400, "boundary")


def test_audio_longer_than_the_limit_is_refused(mesh):
    base, _proc, key = mesh
    wav = wav_bytes(b"\0\0" * 8000 * (MAX_AUDIO_S + 1), 8000)  # well under the byte limit
    response = httpx.post(base + "/audio/transcriptions", headers={"authorization": f"Bearer {key}"},
                          data={"model": STT}, files={"file": ("long.wav", wav)}, timeout=30)
    assert_openai_error(response.status_code, response.content, 400, f"limit is {MAX_AUDIO_S} s")


def wav_claiming(rate: int, size: int = 10_000) -> bytes:
    wav = bytearray(wav_bytes(b"\x01\x00" * (size // 2), 16000))
    wav[24:28] = struct.pack("<I", rate)  # the fmt chunk's sample rate
    return bytes(wav)


@pytest.mark.parametrize("rate", [1, 0, 1_000_000])
def test_a_wav_rate_out_of_range_is_refused_not_resampled(mesh, rate):
    base, proc, key = mesh
    before = peak_rss_mib(proc.pid)  # the module's earlier requests set the process's peak; this one must not
    response = httpx.post(base + "/audio/transcriptions", headers={"authorization": f"Bearer {key}"},
                          data={"model": STT}, files={"file": ("odd.wav", wav_claiming(rate))}, timeout=60)
    assert_openai_error(response.status_code, response.content, 400, f"between 8000 and 48000 Hz, got {rate}")
    assert peak_rss_mib(proc.pid) - before < 20  # a 10 kB file resampled from 1 Hz would take hundreds of MiB


BAD_JSON = {
    "lone surrogate": (b'{"model": "x", "messages": [{"role": "user", "content": "\\ud800"}]}', "surrogate"),
    "deep nesting": (b'{"model": "x", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
    "moderate nesting": (b'{"model": "x", "tools": ' + b"[" * 100 + b"]" * 100 + b"}", "nested"),
    "malformed": (b'{"model": ', "not valid JSON"),
}


@pytest.mark.parametrize("name", list(BAD_JSON))
def test_bad_json_gets_a_json_400(mesh, name):
    base, _proc, key = mesh
    content, text = BAD_JSON[name]
    response = httpx.post(base + "/chat/completions", content=content, timeout=30,
                          headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    assert_openai_error(response.status_code, response.content, 400, text)


def test_malformed_http_gets_a_json_400(mesh):
    base, _proc, _key = mesh
    with connect(base) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: nope\r\n\r\n")
        status, _headers, body = read_response(sock)
    assert_openai_error(status, body, 400, "malformed HTTP request")


def test_slowloris_sockets_are_closed_within_the_header_timeout(mesh):
    base, _proc, _key = mesh
    silent = [connect(base) for _ in range(10)]
    dripping = [connect(base) for _ in range(10)]
    request = head("/chat/completions", {"content-type": "application/json", "content-length": "2"})
    start = time.monotonic()
    open_socks = set(silent + dripping)
    try:
        position = 0
        while open_socks and time.monotonic() - start < TIMEOUT_S + 8:
            for sock in list(open_socks):
                try:
                    if sock in dripping and position < len(request):
                        sock.sendall(request[position:position + 1])  # headers a byte at a time
                    sock.settimeout(0.01)
                    if sock.recv(1024) == b"":
                        open_socks.discard(sock)
                except (TimeoutError, BlockingIOError):
                    pass
                except (ConnectionResetError, BrokenPipeError):
                    open_socks.discard(sock)
            position += 1
            time.sleep(0.2)
        closed_after = time.monotonic() - start
    finally:
        for sock in silent + dripping:
            sock.close()
    assert not open_socks, f"{len(open_socks)} of 20 slow sockets still open after {closed_after:.1f} s"
    assert closed_after < TIMEOUT_S + 3


def test_a_kept_alive_connection_dripping_its_next_request_is_closed(mesh):
    base, _proc, _key = mesh
    with connect(base) as sock:
        sock.sendall(b"GET /v1/nowhere HTTP/1.1\r\nhost: x\r\n\r\n")
        status, _headers, _body = read_response(sock)
        assert status == 404
        start = time.monotonic()
        closed = False
        for byte in b"GET /v1/nowhere HTTP/1.1\r\nhost: x\r\n\r\n":  # each byte within the keep-alive wait
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(0.5)
                closed = sock.recv(1024) == b""
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = True
            if closed:
                break
    assert closed, "the connection was still open after its next request's headers were due"
    assert time.monotonic() - start < TIMEOUT_S + 3


def test_a_stalled_body_gets_408(mesh):
    base, _proc, key = mesh
    with connect(base) as sock:
        sock.sendall(head("/chat/completions", {"content-type": "application/json",
                                                "authorization": f"Bearer {key}", "content-length": "100"}))
        sock.sendall(b'{"model": ')  # then nothing
        start = time.monotonic()
        status, _headers, body = read_response(sock, timeout=TIMEOUT_S + 8)
    assert_openai_error(status, body, 408, "request body")
    assert time.monotonic() - start < TIMEOUT_S + 3


def test_a_key_grpc_cannot_carry_gets_401(mesh):
    base, _proc, _key = mesh
    with connect(base) as sock:
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vm_\xe9\r\n"
                     b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        status, _headers, body = read_response(sock)
    assert_openai_error(status, body, 401, "malformed Authorization header")


def test_an_http_client_streaming_a_huge_body_reads_the_refusal(mesh):
    base, _proc, _key = mesh

    def body():
        for _ in range(200):
            yield b" " * MiB

    start = time.monotonic()
    response = httpx.post(base + "/chat/completions", content=body(), timeout=30,
                          headers={"authorization": WRONG_KEY, "content-type": "application/json"})
    assert_openai_error(response.status_code, response.content, 401, "unknown API key")
    assert time.monotonic() - start < 5


def test_connections_over_the_cap_get_a_json_503(mesh):
    base, _proc, _key = mesh
    held = [connect(base) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)  # all accepted
        with connect(base) as sock:
            status, _headers, body = read_response(sock)
        assert_openai_error(status, body, 503, "--max-connections")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert httpx.get(base + "/nowhere", timeout=10).status_code == 404  # served again once they are gone


@pytest.mark.parametrize("authorization", [None, WRONG_KEY])
def test_key_errors_are_openais_and_name_the_authorization_header(mesh, authorization):
    base, _proc, _key = mesh
    headers = {"authorization": authorization} if authorization else {}
    response = httpx.post(base + "/chat/completions", headers=headers, timeout=30,
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    error = assert_openai_error(response.status_code, response.content, 401, "Authorization")
    assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"
    assert "metadata" not in error["message"]
