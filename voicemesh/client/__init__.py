"""Client-side helpers and the Python SDK.

``AgentSession`` talks to a VoiceMesh orchestrator; ``voicemesh.client.openai``
builds model objects for OpenAI-compatible APIs, and one module per native provider
(``anthropic``, ``assemblyai``, ``cartesia``, ``deepgram``, ``elevenlabs``, ``google``) builds its own.
"""

from voicemesh.client import anthropic, assemblyai, cartesia, deepgram, elevenlabs, google, openai
from voicemesh.client.events import (
    AgentAudio,
    AgentState,
    AgentStateChanged,
    AgentText,
    AgentVideo,
    AvatarStopped,
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
from voicemesh.client.session import AgentSession, AgentSessionError, Avatar, Interruption, Tool, TurnDetection

__all__ = [
    "AgentAudio", "AgentSession", "AgentSessionError", "AgentState", "AgentStateChanged", "AgentText", "AgentVideo",
    "Avatar", "AvatarStopped", "Event",
    "EventType", "Interruption", "Model", "SessionDraining", "SessionError", "SessionStarted", "Tool", "ToolCall", "TurnDetection",
    "TurnDone", "TurnMetrics", "Usage", "UsageReport", "UserTranscript", "anthropic", "assemblyai", "cartesia",
    "deepgram", "elevenlabs", "google", "openai",
]
