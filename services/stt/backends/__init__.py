"""Backends of the stt service, one module per provider."""
