"""Validation of a Session's config into plain settings.

Every problem becomes INVALID_ARGUMENT (or NOT_FOUND when the mesh has no
address for a model's provider) with a message that names the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from voicemesh.audio import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ
from voicemesh.descriptors import parse
from voicemesh.errors import InvalidInput
from voicemesh.mesh import MeshConfig
from voicemesh.orchestrator.avatar import AvatarSpec, avatar_spec
from voicemesh.orchestrator.fallback import Candidate
from voicemesh.orchestrator.reply_guard import DEFAULT_MAX_SECONDS, ReplyLimits
from voicemesh.services.llm.backend import Tool as LlmTool
from voicemesh.services.llm.backend import ToolChoice
from voicemesh.tools import check_tools
from voicemesh.v1 import agent_pb2

DEFAULT_OUTPUT_RATE = 24000
DEFAULT_MIN_DELAY_MS = 500
DEFAULT_MAX_DELAY_MS = 3000
DEFAULT_MIN_INTERRUPTION_MS = 300
DEFAULT_FALSE_INTERRUPTION_MS = 1500
DEFAULT_FIRST_RESULT_MS = 3000
MAX_CANDIDATES = 8
MAX_DELAY_MS = 60_000
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class Tool:
    name: str
    description: str
    parameters_json: str


@dataclass
class SessionSpec:
    """A validated SessionConfig."""

    instructions: str
    stt: list[Candidate]
    llm: list[Candidate]
    tts: list[Candidate]
    input_rate: int
    output_rate: int
    min_delay_ms: int
    max_delay_ms: int
    interruption_enabled: bool
    min_interruption_ms: int
    false_interruption_ms: int
    first_result_ms: int
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)  # of the first generation of a turn
    realtime: list[Candidate] = field(default_factory=list)  # set: the session starts on a realtime model
    avatar: AvatarSpec | None = None  # the agent's face, rendered from its audio
    reply_limits: ReplyLimits = field(default_factory=ReplyLimits)  # the reply-length guard


def _rate(value: int, name: str) -> int:
    if not MIN_SAMPLE_RATE_HZ <= value <= MAX_SAMPLE_RATE_HZ:
        raise InvalidInput(f"{name} must be {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz, got {value}")
    return value


def _ms(value: int, default: int, name: str) -> int:
    if value < 0 or value > MAX_DELAY_MS:
        raise InvalidInput(f"{name} must be 0..{MAX_DELAY_MS} ms (0 for the default), got {value}")
    return value or default


def candidates(choice: agent_pb2.ModelChoice, modality: str, mesh: MeshConfig, *, speech: bool = False) -> list[Candidate]:
    """The candidates of a ModelChoice, checked: descriptors parse and the mesh can route them."""
    field_name = f"{modality}.candidates"
    if not choice.candidates:
        raise InvalidInput(f"{modality}: name at least one model (ModelChoice.candidates is empty)")
    if len(choice.candidates) > MAX_CANDIDATES:
        raise InvalidInput(f"{field_name}: at most {MAX_CANDIDATES} candidates, got {len(choice.candidates)}")
    found = []
    for i, spec in enumerate(choice.candidates):
        if not spec.descriptor:
            raise InvalidInput(f"{field_name}[{i}].descriptor is empty; expected provider/model[:variant]")
        descriptor = parse(spec.descriptor)
        mesh.addresses(modality, descriptor.provider)  # NOT_FOUND when nothing serves the provider
        if spec.speed and not (speech and 0.25 <= spec.speed <= 4.0):
            raise InvalidInput(
                f"{field_name}[{i}].speed must be 0.25..4.0 (0 for normal)" if speech
                else f"{field_name}[{i}].speed applies to tts only"
            )
        options = {
            "base_url": spec.backend.base_url,
            "api_key": spec.backend.api_key,
            "timeout_s": spec.backend.timeout_s,
            "extra": dict(spec.backend.extra),
        }
        found.append(Candidate(str(descriptor), descriptor.provider, options, spec.speed))
    return found


def validate(config: agent_pb2.SessionConfig, mesh: MeshConfig) -> SessionSpec:
    """Check a SessionConfig against the mesh; raise InvalidInput / ModelNotFound."""
    realtime = config.HasField("realtime")
    if not realtime:
        for modality in ("stt", "llm", "tts"):
            if not config.HasField(modality):
                raise InvalidInput(f"SessionConfig.{modality} is required (a ModelChoice with at least one "
                                   "candidate), unless realtime names a speech-to-speech model")
    if not config.input_sample_rate_hz:
        raise InvalidInput("SessionConfig.input_sample_rate_hz is required (the rate of the user's audio)")
    min_delay = _ms(config.turn_detection.min_endpointing_delay_ms, DEFAULT_MIN_DELAY_MS,
                    "turn_detection.min_endpointing_delay_ms")
    max_delay = _ms(config.turn_detection.max_endpointing_delay_ms, DEFAULT_MAX_DELAY_MS,
                    "turn_detection.max_endpointing_delay_ms")
    if max_delay < min_delay:
        raise InvalidInput(f"turn_detection: max_endpointing_delay_ms ({max_delay}) is below "
                           f"min_endpointing_delay_ms ({min_delay})")
    interruption = config.interruption
    tools = []
    for i, tool in enumerate(config.tools):
        if not _TOOL_NAME.match(tool.name):
            raise InvalidInput(f"tools[{i}].name {tool.name!r} must match [a-zA-Z0-9_-]{{1,64}}")
        if tool.parameters_json:
            try:
                schema = json.loads(tool.parameters_json)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"tools[{i}].parameters_json is not JSON: {exc}") from None
            if not isinstance(schema, dict):
                raise InvalidInput(f"tools[{i}].parameters_json must be a JSON object (a JSON Schema)")
        tools.append(Tool(tool.name, tool.description, tool.parameters_json))
    # The LLM service's own check of a tool set against a choice (unique names, a named function among them).
    tool_choice = check_tools([LlmTool(t.name, t.description) for t in tools],
                              ToolChoice(config.tool_choice.mode or "auto", config.tool_choice.name))
    return SessionSpec(
        instructions=config.instructions,
        # With realtime, pipeline models are optional: they are what the session switches back to.
        stt=candidates(config.stt, "stt", mesh) if config.HasField("stt") or not realtime else [],
        llm=candidates(config.llm, "llm", mesh) if config.HasField("llm") or not realtime else [],
        tts=candidates(config.tts, "tts", mesh, speech=True) if config.HasField("tts") or not realtime else [],
        realtime=candidates(config.realtime, "realtime", mesh) if realtime else [],
        input_rate=_rate(config.input_sample_rate_hz, "input_sample_rate_hz"),
        output_rate=_rate(config.output_sample_rate_hz or DEFAULT_OUTPUT_RATE, "output_sample_rate_hz"),
        min_delay_ms=min_delay,
        max_delay_ms=max_delay,
        interruption_enabled=interruption.enabled if interruption.HasField("enabled") else True,
        min_interruption_ms=_ms(interruption.min_duration_ms, DEFAULT_MIN_INTERRUPTION_MS,
                                "interruption.min_duration_ms"),
        false_interruption_ms=_ms(interruption.false_interruption_timeout_ms, DEFAULT_FALSE_INTERRUPTION_MS,
                                  "interruption.false_interruption_timeout_ms"),
        first_result_ms=_ms(config.first_result_timeout_ms, DEFAULT_FIRST_RESULT_MS, "first_result_timeout_ms"),
        tools=tools,
        tool_choice=tool_choice,
        avatar=avatar_spec(config.avatar, mesh),
        reply_limits=reply_limits(config.reply_limits),
    )


def reply_limits(limits: agent_pb2.ReplyLimits) -> ReplyLimits:
    """The reply-length guard's limits of a session, checked (0 and unset take the defaults)."""
    if limits.max_tokens < 0 or limits.max_seconds < 0:
        raise InvalidInput("reply_limits.max_tokens and reply_limits.max_seconds must not be negative")
    return ReplyLimits(max_tokens=limits.max_tokens, max_seconds=limits.max_seconds or DEFAULT_MAX_SECONDS,
                       stop_repetition=not limits.allow_repetition)
