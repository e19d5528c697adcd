"""Client-side helpers and the Python SDK.

``AgentSession`` talks to a VoiceMesh orchestrator; ``voicemesh.client.openai``
builds model objects for OpenAI-compatible APIs.
"""

from voicemesh.client import openai
from voicemesh.client.events import (
    AgentAudio,
    AgentState,
    AgentStateChanged,
    AgentText,
    Event,
    EventType,
    SessionDraining,
    SessionError,
    SessionStarted,
    ToolCall,
    TurnDone,
    TurnMetrics,
    Usage,
    UsageReport,
    UserTranscript,
)
from voicemesh.client.models import Model
from voicemesh.client.session import AgentSession, AgentSessionError, Interruption, Tool, TurnDetection

__all__ = [
    "AgentAudio", "AgentSession", "AgentSessionError", "AgentState", "AgentStateChanged", "AgentText", "Event",
    "EventType", "Interruption", "Model", "SessionDraining", "SessionError", "SessionStarted", "Tool", "ToolCall", "TurnDetection",
    "TurnDone", "TurnMetrics", "Usage", "UsageReport", "UserTranscript", "openai",
]
