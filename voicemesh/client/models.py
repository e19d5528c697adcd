"""Model choices of a session: descriptors, model objects with options, fallback lists.

Wherever a session takes a model it accepts a descriptor string
(``"piper/en_US-joe-medium"``), a ``Model`` (a descriptor with backend
options, such as ``voicemesh.client.openai.LLM(...)``), or a list of either:
an ordered fallback list whose first answering entry serves the turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from voicemesh.descriptors import parse
from voicemesh.v1 import agent_pb2, common_pb2


@dataclass(frozen=True)
class Model:
    """One model choice: a descriptor plus options for its backend."""

    descriptor: str
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    timeout_s: float = 0.0
    speed: float = 0.0
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parse(self.descriptor)  # raises InvalidInput with a clear message on a malformed descriptor

    def to_proto(self) -> agent_pb2.ModelSpec:
        spec = agent_pb2.ModelSpec(descriptor=self.descriptor, speed=self.speed)
        if self.base_url or self.api_key or self.timeout_s or self.extra:
            spec.backend.CopyFrom(common_pb2.BackendOptions(
                base_url=self.base_url, api_key=self.api_key, timeout_s=self.timeout_s,
                extra={str(k): str(v) for k, v in self.extra.items()},
            ))
        return spec


ModelLike = str | Model
Choice = ModelLike | Sequence[ModelLike]


def as_model(value: ModelLike) -> Model:
    """A descriptor string or a Model as a Model."""
    if isinstance(value, Model):
        return value
    if isinstance(value, str):
        return Model(value.strip())
    raise TypeError(f"a model is a descriptor string or a voicemesh.client Model, not {type(value).__name__}")


def to_choice(value: Choice) -> agent_pb2.ModelChoice:
    """A model or an ordered fallback list as a ModelChoice message."""
    items = [value] if isinstance(value, (str, Model)) else list(value)
    if not items:
        raise ValueError("a fallback list needs at least one model")
    return agent_pb2.ModelChoice(candidates=[as_model(item).to_proto() for item in items])
