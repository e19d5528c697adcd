"""TLS for VoiceMesh channels: server credentials from settings, client credentials from env or arguments.

Servers take ``--tls-cert``/``--tls-key`` (PEM files; ``VOICEMESH_TLS_CERT``/``VOICEMESH_TLS_KEY``)
and, for mutual TLS, ``--tls-client-ca`` (``VOICEMESH_TLS_CLIENT_CA``): clients must then present a
certificate signed by that CA. Clients trust the CA in ``VOICEMESH_TLS_CA`` and, for mutual TLS,
present ``VOICEMESH_TLS_CERT``/``VOICEMESH_TLS_KEY``. A process that is both a server and a client
(the orchestrator) therefore uses one certificate for both roles: issue it for server and client auth.

``client_credentials()`` is None when nothing is configured: callers then use a plaintext channel.
``channel(address)`` and ``aio_channel(address)`` pick the right one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from voicemesh.errors import InvalidInput
from voicemesh.settings import environ

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

CA_ENV = "VOICEMESH_TLS_CA"
CERT_ENV = "VOICEMESH_TLS_CERT"
KEY_ENV = "VOICEMESH_TLS_KEY"


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the TLS {what} {path}: {exc.strerror}") from exc


@dataclass(frozen=True)
class ClientTls:
    """Where a client finds its trust anchor and (for mutual TLS) its own certificate and key."""

    ca: str = ""
    cert: str = ""
    key: str = ""

    @classmethod
    def from_env(cls) -> ClientTls:
        return cls(environ(CA_ENV), environ(CERT_ENV), environ(KEY_ENV))

    @property
    def enabled(self) -> bool:
        return bool(self.ca)

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert) != bool(self.key):
            raise InvalidInput("a TLS client certificate needs its key and the key its certificate")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "CA certificate"),
            private_key=_read(self.key, "client key") if self.key else None,
            certificate_chain=_read(self.cert, "client certificate") if self.cert else None,
        )


def client_credentials(ca: str = "", cert: str = "", key: str = "") -> grpc.ChannelCredentials | None:
    """Channel credentials from the arguments, else from ``VOICEMESH_TLS_*``; None when TLS is off."""
    config = ClientTls(ca, cert, key) if ca else ClientTls.from_env()
    return config.credentials() if config.enabled else None


def channel(address: str, *, credentials: grpc.ChannelCredentials | None = None,
            options: Sequence[tuple[str, object]] = ()) -> grpc.Channel:
    """A blocking channel to ``address``: TLS with ``credentials`` (or the environment's), else plaintext."""
    credentials = credentials or client_credentials()
    if credentials is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, credentials, options=list(options))


def aio_channel(address: str, *, credentials: grpc.ChannelCredentials | None = None,
                options: Sequence[tuple[str, object]] = ()) -> grpc.aio.Channel:
    """An asyncio channel to ``address``: TLS with ``credentials`` (or the environment's), else plaintext."""
    credentials = credentials or client_credentials()
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return grpc.aio.secure_channel(address, credentials, options=list(options))


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials:
    """Server credentials; with ``client_ca`` every client must present a certificate it signed."""
    if not cert or not key:
        raise InvalidInput("TLS needs both --tls-cert and --tls-key")
    return grpc.ssl_server_credentials(
        [(_read(key, "server key"), _read(cert, "server certificate"))],
        root_certificates=_read(client_ca, "client CA certificate") if client_ca else None,
        require_client_auth=bool(client_ca),
    )


def plaintext_warning(host: str, tls_enabled: bool) -> str | None:
    """What to tell the operator of a server on ``host`` without TLS, or None when it only listens on loopback
    or has TLS: beyond this machine, plaintext gRPC shows every key, transcript and word of audio to the network."""
    if tls_enabled or host in LOOPBACK_HOSTS or host.startswith("127."):
        return None
    return (f"serving plaintext gRPC on {host}: API keys, audio and transcripts cross the network unencrypted. "
            f"Turn TLS on with --tls-cert/--tls-key (or {CERT_ENV}/{KEY_ENV}; clients trust {CA_ENV}); "
            "see docs/security.md")
