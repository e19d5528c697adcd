"""VoiceMesh: a self-hostable mesh of gRPC model services for voice agents."""

__version__ = "0.1.0"
