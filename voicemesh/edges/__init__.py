"""Edges: servers that translate a foreign protocol (Wyoming, Twilio Media Streams) onto the mesh's RPCs.

An edge adds no conversation logic of its own and is a client of the mesh like
any other: keys, metering and limits stay in the services it calls.
"""
