"""Retries and error mapping of remote backends, against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from voicemesh import remote
from voicemesh.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from voicemesh.process import free_port


class Script:
    """Answers to give, in order: (status, headers, body); the last one repeats."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def next(self):
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


@pytest.fixture
def server():
    script = Script((200, {}, b"{}"))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            self.rfile.read(int(self.headers.get("content-length") or 0))
            status, headers, body = script.next()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, script
    httpd.shutdown()


async def call(url: str, policy: remote.RetryPolicy, delays: list[float]) -> httpx.Response:
    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    async with httpx.AsyncClient(timeout=5) as client:
        request = client.build_request("POST", url, json={"x": 1})
        response = await remote.send(client, request, endpoint="/test", model="openai/x", policy=policy, sleep=sleep)
        body = await response.aread()
        await response.aclose()
        return body


async def test_retries_a_retryable_status_with_backoff_then_succeeds(server):
    httpd, script = server
    script.answers = [(503, {}, b"busy"), (502, {}, b"bad gateway"), (200, {}, b'{"ok": true}')]
    delays: list[float] = []
    body = await call(f"http://127.0.0.1:{httpd.server_port}/v1", remote.RetryPolicy(attempts=3), delays)
    assert json.loads(body) == {"ok": True}
    assert script.calls == 3
    # exponential backoff with jitter: 0.25 s then 0.5 s, each times a factor in [0.5, 1]
    assert 0.125 <= delays[0] <= 0.25 <= delays[1] <= 0.5


async def test_honours_retry_after(server):
    httpd, script = server
    script.answers = [(429, {"retry-after": "2"}, b'{"error": {"message": "slow down"}}'), (200, {}, b"{}")]
    delays: list[float] = []
    await call(f"http://127.0.0.1:{httpd.server_port}/v1", remote.RetryPolicy(attempts=2), delays)
    assert delays == [2.0]


async def test_gives_up_after_the_last_attempt_with_the_mapped_error(server):
    httpd, script = server
    script.answers = [(429, {}, b'{"error": {"message": "quota exceeded for this key"}}')]
    delays: list[float] = []
    with pytest.raises(ResourceExhausted, match=r"HTTP 429 \(Too Many Requests\)") as info:
        await call(f"http://127.0.0.1:{httpd.server_port}/v1", remote.RetryPolicy(attempts=3), delays)
    assert script.calls == 3 and len(delays) == 2
    assert "quota exceeded" not in str(info.value)  # the remote's body is logged, not relayed


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(server, status):
    httpd, script = server
    script.answers = [(status, {}, b'{"error": {"message": "nope"}}')]
    with pytest.raises(Exception) as info:
        await call(f"http://127.0.0.1:{httpd.server_port}/v1", remote.RetryPolicy(attempts=3), [])
    assert script.calls == 1
    assert "HTTP %d" % status in str(info.value) and "nope" not in str(info.value)


async def test_connection_refused_is_retried_then_unavailable():
    delays: list[float] = []
    with pytest.raises(Unavailable, match="cannot reach"):
        await call(f"http://127.0.0.1:{free_port()}/v1", remote.RetryPolicy(attempts=2), delays)
    assert len(delays) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, Unauthenticated), (403, PermissionDenied), (404, ModelNotFound), (429, ResourceExhausted),
     (400, InvalidInput), (413, InvalidInput), (408, DeadlineExceeded), (504, DeadlineExceeded),
     (500, Unavailable), (503, Unavailable)],
)
def test_status_mapping(status, error):
    mapped = remote.status_error(status, endpoint="/chat/completions", model="openai/m")
    assert isinstance(mapped, error)
    assert mapped.message == f"remote /chat/completions answered HTTP {status} ({remote.reason(status)}) for openai/m"
    assert mapped.model == "openai/m"
    assert mapped.retryable == (error in (ResourceExhausted, DeadlineExceeded, Unavailable))


def test_error_detail_reads_openai_bodies():
    assert remote.error_detail(b'{"error": {"message": "bad key", "type": "x"}}') == "bad key"
    assert remote.error_detail("plain text failure\n") == "plain text failure"
    assert remote.error_detail(b'{"detail": "fastapi style"}') == '{"detail": "fastapi style"}'


def test_retry_after_as_an_http_date():
    import email.utils
    import time

    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    response = httpx.Response(429, headers={"retry-after": future})
    assert 25 < remote.retry_after_s(response) <= 30
    assert remote.retry_after_s(httpx.Response(429)) is None


async def test_a_remote_that_stalls_is_not_asked_twice():
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        delays: list[float] = []
        async with httpx.AsyncClient(timeout=0.5) as client:
            request = client.build_request("POST", f"http://127.0.0.1:{port}/v1", json={})
            with pytest.raises(DeadlineExceeded, match="did not answer within 0.5 s"):
                await remote.send(client, request, endpoint="/test", sleep=lambda s: delays.append(s))
        assert delays == []
