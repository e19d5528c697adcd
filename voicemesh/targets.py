"""Where a remote backend may send requests, and with which key.

A client can name a ``base_url`` (and an ``api_key``) in ``BackendOptions``.
Left unchecked, that lets any client make a service fetch any URL, internal
addresses included, and receive the operator's own upstream key there. So:

- the operator's URL (``VOICEMESH_<PROVIDER>_BASE_URL``, then ``OPENAI_BASE_URL``
  for ``openai``, then the provider's public default) is always allowed;
- any other ``base_url`` must match the operator's allowlist
  (``--allowed-base-urls`` / ``VOICEMESH_ALLOWED_BASE_URLS``), else the stream is
  refused before any connection is made;
- the operator's key (``VOICEMESH_<PROVIDER>_API_KEY``, then the provider's own
  usual variable: ``OPENAI_API_KEY``, ``DEEPGRAM_API_KEY``, ``GROQ_API_KEY``, ...) only ever goes
  to the operator's URL; with a URL of its own a client must
  bring its own key.

An allowlist entry is a URL prefix: scheme, host, port and a path prefix that
matches whole segments. ``*`` as the port admits any port of that host
(``http://127.0.0.1:*``, for API doubles on loopback).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from voicemesh.backend import RemoteOptions
from voicemesh.errors import InvalidInput, PermissionDenied
from voicemesh.settings import environ

ALLOWLIST_FLAG = "--allowed-base-urls"
ALLOWLIST_ENV = "VOICEMESH_ALLOWED_BASE_URLS"
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}  # a websocket URL is its HTTP URL
_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """A URL split into what an allowlist compares; ``port`` None means any port."""

    scheme: str
    host: str
    port: int | None
    path: str

    def within(self, prefix: Target) -> bool:
        """Whether this URL lies under ``prefix`` (same origin, path below it at a segment boundary)."""
        if (self.scheme, self.host) != (prefix.scheme, prefix.host):
            return False
        if prefix.port is not None and self.port != prefix.port:
            return False
        return self.path == prefix.path or self.path.startswith(prefix.path + "/") or not prefix.path


def split(url: str, *, wildcard_port: bool = False) -> Target:
    """The parts of an http(s)/ws(s) URL; INVALID_ARGUMENT for anything else."""
    try:
        parts = urlsplit(url.strip())
        port_text = parts.netloc.rpartition(":")[2] if wildcard_port and parts.netloc.endswith(":*") else ""
        port = None if port_text == "*" else parts.port
    except ValueError as exc:
        raise InvalidInput(f"base_url {url!r} is not a valid URL: {exc}") from None
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise InvalidInput(f"base_url must be an http(s) or ws(s) URL with a host, got {url!r}")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise InvalidInput(f"base_url may not carry user info, a query or a fragment, got {url!r}")
    segments = unquote(parts.path).split("/")
    if any(s in (".", "..") for s in segments) or "\\" in unquote(parts.path):
        raise InvalidInput(f"base_url may not contain '.' or '..' path segments, got {url!r}")
    if port is None and port_text != "*":
        port = _PORTS[scheme]
    return Target(scheme, parts.hostname.lower(), port, parts.path.rstrip("/"))


@dataclass(frozen=True)
class Allowlist:
    """The base URLs an operator lets clients choose."""

    prefixes: tuple[Target, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Allowlist:
        """Comma-separated URL prefixes; a malformed entry raises ValueError (a settings error at start)."""
        prefixes = []
        for entry in filter(None, (part.strip() for part in text.split(","))):
            try:
                prefixes.append(split(entry, wildcard_port=True))
            except InvalidInput as exc:
                raise ValueError(f"{ALLOWLIST_ENV}: {exc.message}") from None
        return cls(tuple(prefixes))

    def allows(self, target: Target) -> bool:
        return any(target.within(prefix) for prefix in self.prefixes)


def _env_name(provider: str) -> str:
    return "VOICEMESH_" + provider.upper().replace(".", "_").replace("-", "_")


def operator_target(provider: str, default_base_url: str, key_env: tuple[str, ...] = ()) -> tuple[str, str]:
    """The operator's own base URL and key for ``provider`` (from the environment, then the default URL).

    ``key_env`` names the provider's own usual key variables (``DEEPGRAM_API_KEY``), read after
    ``VOICEMESH_<PROVIDER>_API_KEY``.
    """
    prefix = _env_name(provider)
    base_url = environ(prefix + "_BASE_URL")
    api_key = environ(prefix + "_API_KEY")
    if provider == "openai":
        base_url = base_url or environ("OPENAI_BASE_URL")
        api_key = api_key or environ("OPENAI_API_KEY")
    for name in key_env:
        api_key = api_key or environ(name)
    return (base_url or default_base_url).rstrip("/"), api_key


def resolve(options: RemoteOptions, *, provider: str, default_base_url: str, default_timeout_s: float,
            allowlist: Allowlist, key_env: tuple[str, ...] = ()) -> RemoteOptions:
    """The options a remote backend connects with, or PERMISSION_DENIED for a URL the operator did not allow.

    Nothing is sent anywhere here: the check runs before a backend exists.
    """
    base_url, api_key = operator_target(provider, default_base_url, key_env)
    if options.base_url:
        chosen = options.base_url.strip().rstrip("/")
        target = split(chosen)
        operators = _same(target, base_url)
        if not operators and not allowlist.allows(target):
            raise PermissionDenied(
                f"base_url {chosen!r} is not allowed on this service; the operator lists the URLs clients may "
                f"choose with {ALLOWLIST_FLAG} ({ALLOWLIST_ENV})", model=provider)
        # A URL the client named gets the client's key or none: the operator's key stays with the operator's URL.
        base_url, api_key = chosen, options.api_key
    elif options.api_key:
        api_key = options.api_key
    if options.timeout_s < 0 or options.timeout_s != options.timeout_s:
        raise InvalidInput(f"timeout_s must be 0 (the default) or a positive number of seconds, got {options.timeout_s}")
    return RemoteOptions(base_url=base_url, api_key=api_key, timeout_s=options.timeout_s or default_timeout_s,
                         extra=dict(options.extra))


def _same(target: Target, base_url: str) -> bool:
    try:
        return target == split(base_url)
    except InvalidInput:  # an operator URL that is not a URL cannot match a client's
        return False
