"""What every remote (OpenAI-compatible HTTP) backend shares.

One mapping from HTTP statuses and transport failures to VoiceMesh errors,
and one way to send a request with retries: exponential backoff with jitter,
honouring ``Retry-After``, and only before any byte of the answer has been
used, so a retry never duplicates output or usage. The body of an error
answer is logged for the operator and never relayed: the client learns the
status and its reason phrase, not what a remote (perhaps one a client chose)
wrote back. ``RemoteBackend`` is the client lifecycle every remote backend shares.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from voicemesh import targets
from voicemesh.backend import Backend, BackendSettings, RemoteOptions
from voicemesh.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    VoiceMeshError,
)
from voicemesh.settings import setting

log = logging.getLogger(__name__)

# 529: "overloaded", as Anthropic's API answers when it has no capacity.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})


def client(options: RemoteOptions) -> httpx.AsyncClient:
    """An HTTP client for a remote API: its base URL, its key as a bearer token, its timeout."""
    headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
    return httpx.AsyncClient(base_url=options.base_url, headers=headers, timeout=httpx.Timeout(options.timeout_s))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a request that failed before it answered."""

    attempts: int = 3
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay_s)
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


NO_RETRY = RetryPolicy(attempts=1)


def error_detail(body: bytes | str) -> str:
    """The message of an OpenAI-style error body, or the body's start."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    error = data.get("error", data) if isinstance(data, dict) else data
    message = error.get("message") if isinstance(error, dict) else error
    return str(message or text)[:300]


def reason(status: int) -> str:
    """The standard reason phrase of an HTTP status ("Not Found"), or "error"."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "error"


def status_error(status: int, *, endpoint: str, model: str = "") -> VoiceMeshError:
    """The VoiceMesh error of an HTTP error status from ``endpoint``: the status and its reason, no body."""
    message = f"remote {endpoint} answered HTTP {status} ({reason(status)})" + (f" for {model}" if model else "")
    if status == 401:
        return Unauthenticated(message, model=model)
    if status == 403:
        return PermissionDenied(message, model=model)
    if status == 404:
        return ModelNotFound(message, model=model)
    if status in (429, 529):
        return ResourceExhausted(message, model=model)
    if status in (400, 413, 415, 422):
        return InvalidInput(message, model=model)
    if status in (408, 504):
        return DeadlineExceeded(message, model=model)
    return Unavailable(message, model=model)


def transport_error(exc: httpx.HTTPError, *, url: str, timeout_s: float, model: str = "") -> VoiceMeshError:
    """The VoiceMesh error of a request that got no (complete) answer."""
    if isinstance(exc, httpx.TimeoutException):
        return DeadlineExceeded(f"{url} did not answer within {timeout_s:g} s ({type(exc).__name__})", model=model)
    return Unavailable(f"cannot reach {url}: {exc or type(exc).__name__}", model=model)


def retry_after_s(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta or HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    endpoint: str,
    model: str = "",
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> httpx.Response:
    """Send ``request`` (streamed) and return a response with a success status.

    Connection failures and retryable statuses (429, 5xx, 408) are retried
    under ``policy`` before anything of the answer has been read; other statuses
    and the last failure raise the mapped VoiceMesh error. The caller closes
    the returned response.
    """
    url = str(request.url)
    timeout_s = (client.timeout.read or 0.0) if client.timeout else 0.0
    for attempt in range(1, policy.attempts + 1):
        last = attempt == policy.attempts
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            # Only a request that never reached the remote is retried: a read timeout means the remote is
            # working (or stalled) on it, and a voice turn cannot wait for it twice.
            if last or not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                raise transport_error(exc, url=url, timeout_s=timeout_s, model=model) from None
            delay = policy.delay(attempt)
            log.warning("%s failed (%s); retry %d/%d in %.2f s", url, exc or type(exc).__name__, attempt,
                        policy.attempts - 1, delay)
            await sleep(delay)
            continue
        if response.status_code < 400:
            return response
        body = await response.aread()
        await response.aclose()
        log.warning("%s answered HTTP %d: %s", url, response.status_code, error_detail(body) or "(no body)")
        if last or response.status_code not in RETRYABLE_STATUSES:
            raise status_error(response.status_code, endpoint=endpoint, model=model)
        delay = policy.delay(attempt, retry_after_s(response))
        log.warning("%s answered HTTP %d; retry %d/%d in %.2f s", url, response.status_code, attempt,
                    policy.attempts - 1, delay)
        await sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises on its last attempt


@dataclass(frozen=True)
class RemoteSettings(BackendSettings):
    """What every remote backend takes from the operator (one flag, whichever remote backends a service has)."""

    remote_timeout_s: float = setting(30.0, "default timeout of remote API requests, in seconds")


class RemoteBackend(Backend):
    """What every remote backend shares: options resolved against the operator's URL, key and
    allowlist before the backend exists, and one HTTP client from ``load`` to ``close``."""

    uses_remote_options = True
    settings_type: ClassVar[type[BackendSettings]] = RemoteSettings
    settings: RemoteSettings
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    #: The provider's own usual key variables, read after ``VOICEMESH_<PROVIDER>_API_KEY``.
    key_env: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_model(cls, model: str, settings: BackendSettings) -> None:
        """A remote serves what it serves; unknown models come back as its 404."""

    @classmethod
    def accept_options(cls, options: RemoteOptions, settings: RemoteSettings, allowlist: Any) -> RemoteOptions:
        return targets.resolve(options, provider=cls.provider, default_base_url=cls.default_base_url,
                               default_timeout_s=settings.remote_timeout_s, allowlist=allowlist or targets.Allowlist(),
                               key_env=cls.key_env)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._client: httpx.AsyncClient | None = None

    @property
    def descriptor(self) -> str:
        return f"{self.provider}/{self.model}"

    async def load(self) -> None:
        self._client = client(self.options)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def http_client(self) -> httpx.AsyncClient:
        """The open client; UNAVAILABLE once the backend is closed (evicted or shutting down)."""
        if self._client is None:
            raise Unavailable(f"the {self.descriptor} backend is closed", model=self.descriptor)
        return self._client
