"""gRPC channels from the orchestrator to the model services of the mesh.

One channel per service address, shared by every session (HTTP/2 carries
many streams); a session's streams stay on the address that opened them.
New sessions are spread over a provider's addresses round-robin.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections import defaultdict

import grpc

from voicemesh import tls
from voicemesh.mesh import MeshConfig
from voicemesh.orchestrator.fallback import Candidate, Target, targets
from voicemesh.v1 import common_pb2, llm_pb2_grpc, realtime_pb2_grpc, stt_pb2_grpc, tts_pb2_grpc

log = logging.getLogger(__name__)

# How long a name's resolved replicas are reused before it is resolved again (scaling is picked up).
RESOLVE_TTL_S = 5.0

_STUBS = {"stt": stt_pb2_grpc.SttServiceStub, "llm": llm_pb2_grpc.LlmServiceStub, "tts": tts_pb2_grpc.TtsServiceStub,
          "realtime": realtime_pb2_grpc.RealtimeServiceStub}


def backend_options(candidate: Candidate) -> common_pb2.BackendOptions:
    """The candidate's backend options as the message the model services take."""
    options = candidate.options or {}
    return common_pb2.BackendOptions(
        base_url=options.get("base_url", ""),
        api_key=options.get("api_key", ""),
        timeout_s=options.get("timeout_s", 0.0),
        extra=options.get("extra", {}),
    )


class MeshClients:
    """Channels and stubs to the model services named by a MeshConfig."""

    def __init__(self, mesh: MeshConfig, *, max_message_bytes: int = 4 * 1024 * 1024):
        self.mesh = mesh
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            # A dead address fails fast instead of waiting for a reconnect backoff.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._rotation: dict[tuple[str, str], itertools.count] = defaultdict(itertools.count)
        self._resolved: dict[str, tuple[float, list[str]]] = {}
        self._refreshing: set[str] = set()  # names being resolved again in a thread

    def targets(self, modality: str, candidates: list[Candidate]) -> list[Target]:
        """The targets of a session for ``modality``: a new session takes the next address of each provider.

        A name that resolves to several replicas (a docker-compose service scaled up, a Kubernetes
        headless Service) counts as one address per replica, so sessions spread over them while each
        session's streams stay on the replica that opened them.
        """
        addresses = [[a for address in self.mesh.addresses(modality, c.provider) for a in self._replicas(address)]
                     for c in candidates]
        rotation = [next(self._rotation[(modality, c.provider)]) for c in candidates]
        return targets(candidates, addresses, rotation)

    async def resolve_all(self) -> None:
        """Resolve every address of the mesh (off the event loop), so no session waits on DNS."""
        addresses = {a for table in self.mesh.routes.values() for addrs in table.values() for a in addrs}
        found = await asyncio.gather(*(asyncio.to_thread(replicas, a) for a in addresses))
        now = time.monotonic()
        self._resolved.update({a: (now, f) for a, f in zip(addresses, found, strict=True)})

    def _replicas(self, address: str) -> list[str]:
        """``host:port`` as one ``ip:port`` per address the host resolves to.

        The answer is reused for ``RESOLVE_TTL_S``; after that the last answer is still used while a
        thread resolves the name again, so a slow DNS server never stalls the event loop (and with it
        every session). Only an address never seen before is resolved in place.
        """
        now = time.monotonic()
        cached = self._resolved.get(address)
        if cached is None:
            found = replicas(address)
            self._resolved[address] = (now, found)
            return found
        if now - cached[0] >= RESOLVE_TTL_S and address not in self._refreshing:
            self._refresh(address)
        return cached[1]

    def _refresh(self, address: str) -> None:
        self._refreshing.add(address)
        future = asyncio.get_running_loop().run_in_executor(None, replicas, address)

        def done(result: asyncio.Future) -> None:
            self._refreshing.discard(address)
            if not result.cancelled() and result.exception() is None:
                self._resolved[address] = (time.monotonic(), result.result())

        future.add_done_callback(done)

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = tls.aio_channel(address, options=self._options)
            log.info("channel to %s", address)
        return channel

    def stub(self, modality: str, address: str):
        return _STUBS[modality](self.channel(address))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def replicas(address: str) -> list[str]:
    """The ``ip:port`` addresses ``host:port`` resolves to, sorted; the address itself when it does not
    resolve (the call then fails as UNAVAILABLE, naming it) or is a gRPC target such as ``dns:///…``."""
    host, sep, port = address.rpartition(":")
    if not sep or "/" in address or not port.isdigit():
        return [address]
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        log.warning("cannot resolve %s: %s", host, exc)
        return [address]
    found = {f"[{info[4][0]}]:{port}" if info[0] == socket.AF_INET6 else f"{info[4][0]}:{port}" for info in infos}
    return sorted(found) or [address]


def call_metadata(authorization: str | None, session_id: str, turn: int | None = None) -> tuple[tuple[str, str], ...]:
    """Metadata of every call a session makes: the client's credentials, the session id and (per turn) the turn.

    The same keys as ``voicemesh.runtime.auth.forward_metadata``, from the
    session's own values, so the client's key is passed on also when this
    orchestrator keeps no ledger itself.
    """
    metadata = [("x-session-id", session_id)]
    if authorization:
        metadata.append(("authorization", authorization))
    if turn is not None:
        metadata.append(("x-turn-id", str(turn)))
    return tuple(metadata)

