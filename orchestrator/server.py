"""Orchestrator: spoken conversations chained over the STT, LLM and TTS services of a mesh.

Serves voicemesh.v1.AgentService. One Session stream is one conversation: one
STT stream and one LLM chat stream per session, a TTS stream per reply,
turn-taking, barge-in, fallback and per-turn metrics. Where the model services
are comes from the mesh config (--mesh or VOICEMESH_MESH, and the
VOICEMESH_MESH_<MODALITY> overrides).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
import numpy as np

from voicemesh.errors import InvalidInput
from voicemesh.mesh import MeshConfig
from voicemesh.orchestrator import voice
from voicemesh.orchestrator.clients import MeshClients
from voicemesh.orchestrator.servicer import AgentServicer
from voicemesh.runtime.server import ServerSettings
from voicemesh.settings import setting
from voicemesh.speech.turn import POLICIES
from voicemesh.speech.turn import model as smart_turn
from voicemesh.v1 import agent_pb2_grpc

log = logging.getLogger(__name__)


@dataclass
class Settings(ServerSettings):
    """Settings of the orchestrator."""

    port: int = setting(50060, "gRPC port (0 picks a free one and logs it)")
    mesh: str = setting("", "path of the mesh config (JSON: modality -> provider -> addresses); "
                            "empty: the local mesh of `voicemesh up` on the default ports")
    max_tokens: int = setting(256, "most tokens the LLM may generate per reply (0: the LLM service's default)")
    barge_in_vad: bool = setting(True, "also run a Silero VAD on the user's audio while the agent talks, so barge-in "
                                       "does not wait for the STT service's speech events (needs the stt extra)")
    turn_policy: str = setting("smart-turn", "when a user's turn ends: smart-turn (the Smart Turn v3 model on the "
                                             "user's audio and the transcript: sooner when clearly complete, later "
                                             "when not; needs the turn extra, else transcript), transcript (sooner "
                                             "when the transcript looks finished), silence (after a fixed silence)",
                               choices=POLICIES)
    preemptive_generation: bool = setting(True, "start the reply while the end of the turn is still uncertain; it "
                                                "is spoken only if the turn ends with the same words")
    # A session takes its next audio message only once the loop came round to it (grpc.aio): a busy loop
    # running ~10 ms late (half a 20 ms chunk) already lets sessions fall behind real time (bench/load.py).
    busy_loop_lag_ms: float = setting(10.0, "refuse new sessions with RESOURCE_EXHAUSTED (\"overloaded, retry "
                                            "elsewhere\") while the event loop runs this late on average over the "
                                            "last second, or the last 0.3 s when worse, and its thread is busy "
                                            "(--busy-loop-cpu); 0: no limit")
    busy_loop_cpu: float = setting(0.3, "CPU of the event loop's thread, in cores over the last half second, past "
                                        "which it counts as busy with its own sessions for --busy-loop-lag-ms")
    # The STT sends its speculative final 64 ms into a pause as an interim marked end_candidate; a held reply
    # to it starts ~240 ms before a 300 ms endpointing silence is over. Only those interims start one, so a reply is
    # dropped only when the user goes on after such a pause (its LLM and TTS usage is still billed, under the
    # turn it anticipated). Figures: docs/models.md, bench/conversation.py.
    speculate_on_interims: bool = setting(True, "with preemptive generation, start that reply already on the "
                                                "STT's end-candidate interim (its final decode at a pause), before "
                                                "the endpointing silence is over")
    warm_tts_stream: bool = setting(True, "open a voice turn's TTS stream when the user starts speaking, so its "
                                          "reply does not wait for the stream's open, key check and voice lookup")


class Orchestrator:
    """The ServiceDefinition of ``voicemesh serve orchestrator``."""

    name = "orchestrator"
    full_names = ("voicemesh.v1.AgentService",)

    def __init__(self, settings: Settings):
        self.settings = settings
        mesh = MeshConfig.load(settings.mesh) if settings.mesh else MeshConfig.load()
        if not mesh.routes:
            mesh = MeshConfig.local()
        self.clients = MeshClients(mesh, max_message_bytes=settings.max_message_bytes)
        local_vad = settings.barge_in_vad and voice.available()
        if settings.barge_in_vad and not local_vad:
            log.warning("barge-in waits for the STT service's speech events: the stt extra is not installed")
        policy, turn_model = turn_policy(settings)
        self.servicer = AgentServicer(self.clients, max_tokens=settings.max_tokens, local_vad=local_vad,
                                      turn_model=turn_model, turn_policy=policy,
                                      preemptive=settings.preemptive_generation,
                                      speculative=settings.preemptive_generation and settings.speculate_on_interims,
                                      warm_tts=settings.warm_tts_stream)

    def register(self, server: grpc.aio.Server) -> None:
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        log.info("mesh: %s", self.clients.mesh.to_json().replace("\n", " "))
        await self.clients.resolve_all()
        if self.servicer.turn_model is not None:  # warm-up: the first turn does not pay onnxruntime's first run
            await self.servicer.turn_model.predict(np.zeros(smart_turn.RATE, dtype=np.float32))

    async def drain(self, grace_s: float) -> None:
        """SIGTERM: every open session gets a ``draining`` event with the time left, then ends cleanly."""
        log.info("draining: %d open session(s) told they have %.1f s", len(self.servicer.sessions), grace_s)
        self.servicer.drain(grace_s)

    async def stop(self) -> None:
        await self.clients.close()


def turn_policy(settings: Settings):
    """The end-of-turn policy of the settings, and the Smart Turn model it runs (or None)."""
    if settings.turn_policy not in POLICIES:
        raise InvalidInput(f"unknown turn policy {settings.turn_policy!r}; known: {', '.join(POLICIES)}")
    if settings.turn_policy != "smart-turn":
        return settings.turn_policy, None
    if not smart_turn.available():
        log.warning("turns end on silence and the transcript only: the turn extra (pipecat-ai) is not installed")
        return "transcript", None
    return "smart-turn", smart_turn.shared_smart_turn()


def create(settings: Settings) -> Orchestrator:
    """The orchestrator service definition."""
    return Orchestrator(settings)
