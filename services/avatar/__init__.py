"""The avatar service."""
