"""Twilio's request signature on the Media Streams WebSocket handshake.

Twilio signs every request it makes, the WebSocket upgrade of a media stream
included, with the account's auth token: ``X-Twilio-Signature`` is the base64
HMAC-SHA1 of the URL it called (for a stream: the ``<Stream url>``, which has no
query string, and no form parameters). Without this check anyone who learns the
stream's address can place "calls" that run agent sessions metered under the
edge's key. Behind a TLS proxy the URL this server sees is not the one Twilio
called, so the operator names it (``--public-url``); otherwise it is rebuilt from
the request's Host header as ``wss://host/path``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit, urlunsplit

HEADER = "x-twilio-signature"
DEFAULT_PORTS = {"wss": "443", "https": "443", "ws": "80", "http": "80"}


def signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """Twilio's signature of a request to ``url`` with form ``params``: the URL, then each name and value in name
    order, HMAC-SHA1 with the auth token, base64."""
    text = url + "".join(name + (params or {})[name] for name in sorted(params or {}))
    digest = hmac.new(auth_token.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _with_and_without_port(url: str) -> list[str]:
    """Twilio may sign the URL with or without its scheme's default port: both spellings are tried."""
    parts = urlsplit(url)
    default = DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is None and default:
        other = parts._replace(netloc=f"{host}:{default}")
    elif parts.port is not None and str(parts.port) == default:
        other = parts._replace(netloc=host)
    else:
        return [url]
    return [url, urlunsplit(other)]


def valid(auth_token: str, url: str, header: str | None) -> bool:
    """Whether ``header`` is Twilio's signature of a handshake to ``url`` (compared in constant time)."""
    if not header:
        return False
    return any(hmac.compare_digest(signature(auth_token, candidate).encode(), header.encode())
               for candidate in _with_and_without_port(url))
