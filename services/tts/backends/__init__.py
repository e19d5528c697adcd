"""Backends of the tts service, one module per provider."""
