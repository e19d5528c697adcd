"""Model descriptors: ``provider/model[:variant]``.

The single parser of the project. The provider ends at the first ``/``; the
variant (an STT language or a TTS voice) starts after the last ``:``.
``parse`` checks a descriptor a client sent; ``split`` only cuts one that is
already known to be good (a catalog entry, a usage record's model).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voicemesh.errors import InvalidInput

_PROVIDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Descriptor:
    """A parsed model descriptor."""

    provider: str
    model: str
    variant: str | None = None

    def __str__(self) -> str:
        base = f"{self.provider}/{self.model}"
        return f"{base}:{self.variant}" if self.variant else base

    def with_variant(self, variant: str | None) -> Descriptor:
        """The same model with another variant (``None`` drops it)."""
        return Descriptor(self.provider, self.model, variant or None)


def split(text: str) -> Descriptor:
    """The parts of ``text`` as ``parse`` cuts them, unchecked (never raises).

    ``variant`` is None without a ``:`` after the provider and ``""`` after a trailing one.
    """
    provider, slash, rest = text.partition("/")
    model, colon, variant = (rest if slash else text).rpartition(":")
    if not colon:
        return Descriptor(provider, rest, None)
    return Descriptor(provider, model, variant)


def parse(text: str) -> Descriptor:
    """Parse ``provider/model[:variant]``; raise ``InvalidInput`` saying what is wrong."""
    if not isinstance(text, str) or not text:
        raise InvalidInput("model descriptor is empty; expected provider/model[:variant]")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidInput(f"model descriptor {text!r} contains whitespace; expected provider/model[:variant]")
    if "/" not in text:
        raise InvalidInput(f"model descriptor {text!r} has no '/'; expected provider/model[:variant]")
    provider, model, variant = (parts := split(text)).provider, parts.model, parts.variant
    if not _PROVIDER.match(provider):
        raise InvalidInput(f"model descriptor {text!r} has an invalid provider {provider!r}")
    if variant == "":
        raise InvalidInput(f"model descriptor {text!r} ends with ':' but names no variant")
    if not model:
        raise InvalidInput(f"model descriptor {text!r} names no model after '{provider}/'")
    return Descriptor(provider, model, variant or None)
