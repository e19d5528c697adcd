"""The orchestrator: one spoken conversation per session."""
