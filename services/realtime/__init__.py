"""The realtime service."""
