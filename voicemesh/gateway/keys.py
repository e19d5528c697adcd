"""The gateway's key check: the mesh, not the gateway, says whether a key is good.

Before a route reads a request body, ``KeyCheck`` sends the request's
``Authorization`` header on a Describe call (cheap, no body, no quota) to a
service of the route's modality: that service's API keys decide, as they do
for the forwarded call that follows. A refusal becomes the service's 401/403
without the body being read; a mesh with auth off accepts every caller.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time

import grpc

from voicemesh.gateway.errors import exception_error
from voicemesh.gateway.limits import Refused
from voicemesh.mesh import MeshConfig
from voicemesh.orchestrator.clients import MeshClients

log = logging.getLogger(__name__)

DESCRIBED = {"stt": "voicemesh.v1.SttService", "llm": "voicemesh.v1.LlmService", "tts": "voicemesh.v1.TtsService",
             "realtime": "voicemesh.v1.RealtimeService", "avatar": "voicemesh.v1.AvatarService"}
# A key the mesh accepted is not asked about again for this long: the service still checks it on the
# forwarded call, so a key revoked meanwhile is refused there. Bounded, so a flood of keys cannot grow it.
ACCEPTED_S = 5.0
ACCEPTED_MAX = 1024
CHECK_TIMEOUT_S = 10.0


class KeyCheck:
    """Asks the mesh whether an ``Authorization`` header may use a modality."""

    def __init__(self, mesh: MeshConfig, clients: MeshClients):
        self.mesh = mesh
        self.clients = clients
        self._next = itertools.count()
        self._accepted: dict[tuple[str, str], float] = {}  # (modality, header digest) -> trusted until

    async def check(self, modality: str, authorization: str) -> None:
        """Return if a service of ``modality`` accepts the header; else raise ``Refused``
        (the service's 401/403, or 503 when none of them answers)."""
        addresses = sorted({a for route in self.mesh.routes.get(modality, {}).values() for a in route})
        if not addresses:
            return  # the route itself answers that the mesh has no such service
        if not all(" " <= c <= "~" for c in authorization):  # gRPC metadata takes printable ASCII only
            raise Refused(401, "malformed Authorization header: send 'Authorization: Bearer <key>'",
                          "authentication_error", "invalid_api_key")
        entry = (modality, hashlib.sha256(authorization.encode()).hexdigest())
        now = time.monotonic()
        if self._accepted.get(entry, 0.0) > now:
            return
        from voicemesh.client.describe import DESCRIBABLE

        stub_cls, request_cls = DESCRIBABLE[DESCRIBED[modality]]
        metadata = (("authorization", authorization),) if authorization else ()
        start = next(self._next)
        failure = "no address"
        for i in range(len(addresses)):
            address = addresses[(start + i) % len(addresses)]
            try:
                await stub_cls(self.clients.channel(address)).Describe(request_cls(), timeout=CHECK_TIMEOUT_S,
                                                                        metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    status, body, headers = exception_error(exc)
                    raise Refused(status, body["error"]["message"], body["error"]["type"], body["error"]["code"],
                                  headers) from None
                log.warning("%s service at %s could not check a key: %s", modality, address, exc.details())
                failure = exc.details() or exc.code().name
                continue
            self._remember(entry, now)
            return
        raise Refused(503, f"no {modality} service could check the API key: {failure}", "server_error",
                      "unavailable")

    def _remember(self, entry: tuple[str, str], now: float) -> None:
        if len(self._accepted) >= ACCEPTED_MAX:
            self._accepted = {e: t for e, t in self._accepted.items() if t > now}
            if len(self._accepted) >= ACCEPTED_MAX:
                self._accepted.pop(next(iter(self._accepted)))
        self._accepted[entry] = now + ACCEPTED_S
