"""Backends of the llm service, one module per provider."""
