"""The console's usage panel: what the mesh's ledger holds for the caller's key, per model, since it was made.

The gateway reads the same ledger the services record into (``VOICEMESH_LEDGER``; ``voicemesh up`` sets it);
a gateway without one answers that it has none. The key is verified against the ledger here too, so a page
only ever sees the usage of the key it holds.
"""

from __future__ import annotations

import asyncio

from voicemesh.metering.keys import verify
from voicemesh.metering.ledger import LEDGER_ENV, open_store
from voicemesh.settings import environ


async def key_usage(authorization: str) -> dict:
    """The ``key_usage`` message for the key in ``authorization`` (Unauthenticated/PermissionDenied if the
    ledger does not accept it)."""
    url = environ(LEDGER_ENV)
    if not url:
        return {"type": "key_usage", "available": False,
                "message": f"this gateway reads no ledger (set {LEDGER_ENV} to the mesh's)"}
    key = authorization.removeprefix("Bearer ").strip()
    if not key:  # a mesh with auth off: usage is recorded, but under no key this page could name
        return {"type": "key_usage", "available": False, "message": "no API key: the mesh runs without keys"}

    def read() -> dict:  # SQLite or PostgreSQL calls block: off the event loop
        store = open_store(url)
        try:
            record = verify(store, key)
            return {"type": "key_usage", "available": True, "key_id": record.id, "name": record.name,
                    "models": store.totals(record.id, None)}
        finally:
            store.close()

    return await asyncio.to_thread(read)
