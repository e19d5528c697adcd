"""gRPC channels from the orchestrator to the model services of the mesh.

One channel per service address, shared by every session (HTTP/2 carries
many streams); a session's streams stay on the address that opened them.
New sessions are spread over a provider's addresses round-robin.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict

import grpc

from voicemesh.mesh import MeshConfig
from voicemesh.orchestrator.fallback import Candidate, Target, targets
from voicemesh.v1 import common_pb2, llm_pb2_grpc, stt_pb2_grpc, tts_pb2_grpc

log = logging.getLogger(__name__)

_STUBS = {"stt": stt_pb2_grpc.SttServiceStub, "llm": llm_pb2_grpc.LlmServiceStub, "tts": tts_pb2_grpc.TtsServiceStub}


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

    def targets(self, modality: str, candidates: list[Candidate]) -> list[Target]:
        """The targets of a session for ``modality``: a new session takes the next address of each provider."""
        addresses = [self.mesh.addresses(modality, c.provider) for c in candidates]
        rotation = [next(self._rotation[(modality, c.provider)]) for c in candidates]
        return targets(candidates, addresses, rotation)

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address, options=self._options)
            log.info("channel to %s", address)
        return channel

    def stub(self, modality: str, address: str):
        return _STUBS[modality](self.channel(address))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


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

