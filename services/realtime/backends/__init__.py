"""Backends of the realtime service, one module per provider."""
