"""Client-side helpers and the Python SDK."""
