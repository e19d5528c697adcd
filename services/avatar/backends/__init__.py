"""Backends of the avatar service, one module per provider (or face style)."""
