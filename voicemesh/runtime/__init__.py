"""The shared server runtime: every VoiceMesh service runs on it."""
