"""An OpenAI-compatible HTTP gateway in front of the mesh's model services."""
