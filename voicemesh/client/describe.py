"""Describe and health queries against any VoiceMesh server."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from voicemesh import tls
from voicemesh.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    avatar_pb2,
    avatar_pb2_grpc,
    common_pb2,
    llm_pb2,
    llm_pb2_grpc,
    realtime_pb2,
    realtime_pb2_grpc,
    stt_pb2,
    stt_pb2_grpc,
    tts_pb2,
    tts_pb2_grpc,
)

# Full service name -> (stub class, Describe request class).
DESCRIBABLE = {
    "voicemesh.v1.SttService": (stt_pb2_grpc.SttServiceStub, stt_pb2.SttServiceDescribeRequest),
    "voicemesh.v1.LlmService": (llm_pb2_grpc.LlmServiceStub, llm_pb2.LlmServiceDescribeRequest),
    "voicemesh.v1.TtsService": (tts_pb2_grpc.TtsServiceStub, tts_pb2.TtsServiceDescribeRequest),
    "voicemesh.v1.RealtimeService": (realtime_pb2_grpc.RealtimeServiceStub, realtime_pb2.RealtimeServiceDescribeRequest),
    "voicemesh.v1.AgentService": (agent_pb2_grpc.AgentServiceStub, agent_pb2.AgentServiceDescribeRequest),
    "voicemesh.v1.AvatarService": (avatar_pb2_grpc.AvatarServiceStub, avatar_pb2.AvatarServiceDescribeRequest),
}


def list_services(channel: grpc.Channel, timeout: float) -> list[str]:
    """Service names the server lists through reflection."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: list[str] = []
    for response in stub.ServerReflectionInfo(iter([request]), timeout=timeout):
        names.extend(s.name for s in response.list_services_response.service)
    return names


def describe_address(address: str, timeout: float = 10.0, credentials: grpc.ChannelCredentials | None = None,
                     api_key: str | None = None) -> list[common_pb2.ServiceDescription]:
    """Describe every VoiceMesh service found at ``address`` (TLS as in ``voicemesh.tls.channel``).

    ``api_key`` (default: the client key of ``voicemesh.metering.keys.read_client_key``) is sent as a
    bearer token, for servers with auth on.
    """
    from voicemesh.metering.keys import read_client_key

    key = api_key if api_key is not None else read_client_key()
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    with tls.channel(address, credentials=credentials) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        found = [name for name in list_services(channel, timeout) if name in DESCRIBABLE]
        if not found:
            raise RuntimeError(f"no VoiceMesh service is registered at {address}")
        out = []
        for name in found:
            stub_cls, request_cls = DESCRIBABLE[name]
            out.append(stub_cls(channel).Describe(request_cls(), timeout=timeout, metadata=metadata).description)
        return out


def format_description(description: common_pb2.ServiceDescription) -> str:
    """A human-readable table of a service description."""
    lines = [
        f"service {description.service} (voicemesh {description.version}); "
        f"providers: {', '.join(description.providers) or '-'}; "
        f"sample rates {description.min_sample_rate_hz}-{description.max_sample_rate_hz} Hz"
    ]
    for model in description.models:
        caps = [f.name for f, value in model.capabilities.ListFields() if value]
        parts = [f"  {model.descriptor}"]
        if model.languages:
            parts.append(f"languages={','.join(model.languages)}")
        if model.voices:
            parts.append(f"voices={','.join(model.voices)}")
        if model.sample_rates_hz:
            parts.append(f"rates={','.join(map(str, model.sample_rates_hz))}")
        if model.context_tokens:
            parts.append(f"context={model.context_tokens}")
        parts.append(f"capabilities={','.join(caps) or '-'}")
        if model.size_bytes:  # a local model: its weights on disk and whether the service holds it now
            parts.append(f"size={model.size_bytes / 2**20:.1f}MiB {'loaded' if model.loaded else 'not-loaded'}")
        if model.description:
            parts.append(f"({model.description})")
        lines.append("  ".join(parts))
    return "\n".join(lines)


def health_status(address: str, service: str = "", timeout: float = 5.0,
                  credentials: grpc.ChannelCredentials | None = None) -> str:
    """The grpc.health.v1 status name of ``service`` at ``address`` (TLS as in ``voicemesh.tls.channel``)."""
    with tls.channel(address, credentials=credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout, wait_for_ready=True)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
