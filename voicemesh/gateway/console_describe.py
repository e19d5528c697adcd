"""The console's model pickers: what each model service of the mesh says it serves (its ``Describe``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc

from voicemesh.client.session import AgentSessionError
from voicemesh.gateway.keys import DESCRIBED

if TYPE_CHECKING:
    from voicemesh.gateway.app import Gateway

log = logging.getLogger(__name__)

DESCRIBE_TIMEOUT_S = 10.0


async def models(gateway: Gateway, authorization: str) -> dict[str, list[dict]]:
    """Per modality the mesh routes, its models: descriptor, voices, languages, description.

    A service that does not answer is left out (and logged); a refused key is an ``AgentSessionError``,
    as the session itself would be refused.
    """
    from voicemesh.client.describe import DESCRIBABLE

    metadata = (("authorization", authorization),) if authorization else ()
    found: dict[str, list[dict]] = {}
    for modality, table in sorted(gateway.mesh.routes.items()):
        stub_cls, request_cls = DESCRIBABLE[DESCRIBED[modality]]
        seen: dict[str, dict] = {}
        for address in sorted({a for addresses in table.values() for a in addresses}):
            try:
                response = await stub_cls(gateway.clients.channel(address)).Describe(
                    request_cls(), timeout=DESCRIBE_TIMEOUT_S, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    raise AgentSessionError.from_rpc_error(exc) from None
                log.warning("%s service at %s did not answer Describe: %s", modality, address, exc.details())
                continue
            for model in response.description.models:
                seen.setdefault(model.descriptor, {"descriptor": model.descriptor, "voices": list(model.voices),
                                                   "languages": list(model.languages),
                                                   "description": model.description})
        found[modality] = list(seen.values())
    return found
