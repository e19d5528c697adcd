"""OpenAI-compatible HTTP gateway: /v1/models, /v1/chat/completions (streaming,
tools), /v1/audio/transcriptions and /v1/audio/speech (any common audio format in and
out, via PyAV) and the /v1/realtime WebSocket, forwarded to the mesh's
model services by model descriptor, with the caller's API key passed through
(so the services' keys, metering and quotas apply)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from voicemesh.errors import require_module
from voicemesh.mesh import MeshConfig
from voicemesh.runtime import logs
from voicemesh.settings import setting

log = logging.getLogger(__name__)


@dataclass
class Settings:
    """Settings of the gateway."""

    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 for all interfaces)")
    port: int = setting(8080, "HTTP port")
    mesh: str = setting("", "mesh config file (provider -> service addresses); VOICEMESH_MESH_<MODALITY> also work")
    orchestrator: str = setting("127.0.0.1:50060", "orchestrator address (host:port, comma-separated replicas) of the "
                                "browser console's sessions (/console)")
    timeout_s: float = setting(120.0, "deadline of each forwarded gRPC call, in seconds")
    max_body_bytes: int = setting(25 * 1024 * 1024, "largest request body accepted, in bytes, file uploads included "
                                  "(413 beyond it; counted as the body arrives, chunked bodies too)")
    max_audio_s: float = setting(600.0, "longest audio file /v1/audio/transcriptions accepts, in seconds")
    header_timeout_s: float = setting(10.0, "seconds a connection has to send its request headers, from when it "
                                      "opens or its previous response ends; then it is closed")
    body_timeout_s: float = setting(30.0, "seconds the gateway waits for the next part of a request body (408 beyond)")
    keep_alive_s: float = setting(5.0, "seconds an idle keep-alive connection stays open")
    max_connections: int = setting(512, "most connections open at once (503 beyond); keep it under the open-file "
                                   "limit (ulimit -n), which also covers gRPC channels and upload spool files")
    cors_origins: str = setting("", "origins a browser app may call the gateway from, comma-separated "
                                "(https://app.example.com; * for any); none by default")
    log_level: str = setting("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = setting("text", "log format", choices=("text", "json"))


def run(settings: Settings) -> int:
    """Serve the gateway until SIGTERM/SIGINT."""
    require_module("uvicorn", "gateway")
    require_module("multipart", "gateway")
    require_module("av", "gateway")
    import uvicorn

    from voicemesh.gateway.app import Gateway
    from voicemesh.gateway.connections import guarded_protocol

    logs.setup(settings.log_level, settings.log_format, "gateway")
    mesh = MeshConfig.load(settings.mesh or None)
    app = Gateway(mesh, timeout_s=settings.timeout_s, max_body_bytes=settings.max_body_bytes,
                  max_audio_s=settings.max_audio_s, body_timeout_s=settings.body_timeout_s,
                  cors_origins=tuple(o.strip() for o in settings.cors_origins.split(",") if o.strip()),
                  orchestrator=settings.orchestrator).app()
    log.info("gateway on http://%s:%d/v1 (console at /console) for mesh %s", settings.host, settings.port, mesh.routes)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                log_config=None, http=guarded_protocol(header_timeout_s=settings.header_timeout_s,
                                                          max_connections=settings.max_connections),
                timeout_keep_alive=settings.keep_alive_s)
    return 0
