"""The stt service."""
