"""Model objects for Google's APIs, as LiveKit's ``google`` plugin names them.

``google.realtime.RealtimeModel(...)`` is a Gemini Live model for the realtime mode of a session::

    from voicemesh.client import AgentSession, google

    AgentSession(realtime=google.realtime.RealtimeModel(model="gemini-live-2.5-flash-preview", voice="Puck"))
"""

from voicemesh.client.google import realtime

__all__ = ["realtime"]
