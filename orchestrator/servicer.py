"""The AgentService servicer: config in, one Session per stream, events out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from voicemesh import __version__
from voicemesh.audio import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ
from voicemesh.orchestrator.clients import MeshClients
from voicemesh.orchestrator.config import validate
from voicemesh.orchestrator.inbox import Draining
from voicemesh.orchestrator.session import Session
from voicemesh.runtime import logs
from voicemesh.runtime.streams import read_config
from voicemesh.v1 import agent_pb2, common_pb2, llm_pb2, realtime_pb2, stt_pb2, tts_pb2

log = logging.getLogger(__name__)

_DESCRIBE = {"stt": stt_pb2.SttServiceDescribeRequest, "llm": llm_pb2.LlmServiceDescribeRequest,
             "tts": tts_pb2.TtsServiceDescribeRequest, "realtime": realtime_pb2.RealtimeServiceDescribeRequest}


class AgentServicer:
    """voicemesh.v1.AgentService over the model services of a mesh."""

    def __init__(self, clients: MeshClients, *, max_tokens: int = 0, local_vad: bool = False,
                 describe_timeout_s: float = 2.0, turn_model=None, turn_policy: str | None = None,
                 preemptive: bool = False, speculative: bool = False, warm_tts: bool = False):
        self.clients = clients
        self.max_tokens = max_tokens
        self.local_vad = local_vad
        self.describe_timeout_s = describe_timeout_s
        self.turn_model, self.preemptive = turn_model, preemptive  # a SmartTurn or None; generate ahead
        self.speculative = speculative  # generate ahead from complete-looking interims too
        self.warm_tts = warm_tts  # each reply's TTS stream opened ahead of it
        self.turn_policy = turn_policy  # the end-of-turn policy's name (None: by the model)
        self.sessions: set[Session] = set()  # open ones, told when the server drains

    async def Session(self, requests: AsyncIterator[agent_pb2.SessionRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[agent_pb2.SessionResponse]:
        config = await read_config(requests)
        spec = validate(config, self.clients.mesh)
        metadata = dict(context.invocation_metadata() or ())
        session = Session(spec, self.clients, session_id=logs.session_id.get(),
                          authorization=metadata.get("authorization"), max_tokens=self.max_tokens,
                          local_vad=self.local_vad, turn_model=self.turn_model, turn_policy=self.turn_policy,
                          preemptive=self.preemptive, speculative=self.speculative, warm_tts=self.warm_tts)
        log.info("session: %s", f"realtime={spec.realtime[0].descriptor}" if spec.realtime else
                 f"stt={spec.stt[0].descriptor} llm={spec.llm[0].descriptor} tts={spec.tts[0].descriptor}")
        self.sessions.add(session)
        try:
            async with contextlib.aclosing(session.run(requests)) as events:  # closed here, not by the GC
                async for event in events:
                    yield event
        finally:
            self.sessions.discard(session)

    def drain(self, grace_s: float) -> None:
        """The server drains (SIGTERM): each open session says so to its client and ends once its turn is done."""
        for session in self.sessions:
            session.events.put_nowait(Draining(grace_s))

    async def Describe(self, request: agent_pb2.AgentServiceDescribeRequest,
                       context: grpc.aio.ServicerContext) -> agent_pb2.AgentServiceDescribeResponse:
        """The models of every model service the mesh names that answers within a short timeout."""
        # The caller's key goes along: with auth on, the services answer only a key they accept.
        metadata = tuple((k, v) for k, v in (context.invocation_metadata() or ()) if k == "authorization")
        calls = []
        for modality, table in self.clients.mesh.routes.items():
            if modality in _DESCRIBE:
                for address in {a for addresses in table.values() for a in addresses}:
                    stub = self.clients.stub(modality, address)
                    calls.append(stub.Describe(_DESCRIBE[modality](), timeout=self.describe_timeout_s,
                                               metadata=metadata))
        answers = await asyncio.gather(*calls, return_exceptions=True)
        models, seen = [], set()
        for answer in answers:
            if isinstance(answer, BaseException):
                log.info("describe: a mesh service did not answer: %s", answer)
                continue
            for model in answer.description.models:
                if model.descriptor not in seen:
                    seen.add(model.descriptor)
                    models.append(model)
        return agent_pb2.AgentServiceDescribeResponse(description=common_pb2.ServiceDescription(
            service="orchestrator", version=__version__, models=models,
            min_sample_rate_hz=MIN_SAMPLE_RATE_HZ, max_sample_rate_hz=MAX_SAMPLE_RATE_HZ,
        ))
