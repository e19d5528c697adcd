"""Prometheus metrics shared by every service, served over HTTP."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

STREAMS_OPEN = Gauge("voicemesh_streams_open", "RPCs in progress", ["service", "method"])
RPCS = Counter("voicemesh_rpcs_total", "RPCs finished, by status code", ["service", "method", "code"])
ERRORS = Counter("voicemesh_errors_total", "RPCs that ended with a status other than OK", ["service", "method", "code"])
MESSAGES_IN = Counter("voicemesh_messages_received_total", "Messages received from clients", ["service", "method"])
MESSAGES_OUT = Counter("voicemesh_messages_sent_total", "Messages sent to clients", ["service", "method"])
RPC_SECONDS = Histogram(
    "voicemesh_rpc_duration_seconds",
    "Duration of RPCs",
    ["service", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
FIRST_RESPONSE_SECONDS = Histogram(
    "voicemesh_first_response_seconds",
    "Time from the start of an RPC to its first response",
    ["service", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10),
)
AUDIO_DROPPED_SECONDS = Counter(
    "voicemesh_audio_dropped_seconds_total",
    "Client audio dropped for arriving faster than the server takes it (AudioIntake), in seconds",
    ["service"],
)


def serve_metrics(host: str, port: int) -> int | None:
    """Start the metrics HTTP server; returns its port (None when disabled by a negative port)."""
    if port < 0:
        return None
    server, _thread = start_http_server(port, addr=host)
    bound = server.server_port
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound
