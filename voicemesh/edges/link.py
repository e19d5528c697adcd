"""What an edge server shares between its connections: channels to the mesh and the key it calls with.

The edges reach the model services as the gateway does: the mesh config names
the addresses of each provider, ``MeshClients`` keeps one channel per address,
and new streams take the provider's addresses in turn. A Wyoming or Twilio
peer brings no VoiceMesh credentials, so the edge sends its own key.
"""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from pathlib import Path

from voicemesh.descriptors import parse
from voicemesh.errors import InvalidInput
from voicemesh.mesh import MeshConfig
from voicemesh.metering.keys import read_client_key
from voicemesh.orchestrator.clients import MeshClients


def load_key(key_file: str) -> str | None:
    """The key an edge sends: the content of ``key_file`` when given, else $VOICEMESH_API_KEY, else the key
    file of ``voicemesh up`` (None when there is none: a mesh without auth)."""
    if key_file:
        try:
            return Path(key_file).expanduser().read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise InvalidInput(f"cannot read the API key file {key_file}: {exc}") from None
    return read_client_key()


class MeshLink:
    """Stubs to the mesh's model services, with the edge's key on every call."""

    def __init__(self, mesh: MeshConfig, *, api_key: str | None, prefix: str):
        self.mesh = mesh
        self.clients = MeshClients(mesh)
        self.prefix = prefix  # of the session ids the edge's calls carry (seen in logs and the ledger)
        self._auth = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._rotation: dict[tuple[str, str], itertools.count] = defaultdict(itertools.count)

    def stub(self, modality: str, descriptor: str):
        """A stub for the next address that serves ``descriptor``'s provider."""
        provider = parse(descriptor).provider
        addresses = self.mesh.addresses(modality, provider)
        address = addresses[next(self._rotation[(modality, provider)]) % len(addresses)]
        return self.clients.stub(modality, address)

    def metadata(self, session_id: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("x-session-id", session_id or self.new_session_id()), *self._auth)

    def new_session_id(self) -> str:
        return f"{self.prefix}-{uuid.uuid4().hex[:12]}"

    async def close(self) -> None:
        await self.clients.close()
