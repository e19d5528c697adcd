"""Run a VoiceMesh service: one grpc.aio server with health, reflection,
metrics, graceful shutdown and the shared interceptor.

A service hands ``serve`` a ``ServiceDefinition``: its name, the full proto
names it registers, a ``register`` that adds its servicer, and ``start`` /
``stop`` hooks (``start`` loads the default model; health stays NOT_SERVING
until it returns).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import _async as reflection_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from voicemesh import tls
from voicemesh.errors import VoiceMeshError
from voicemesh.process import PARENT_ENV
from voicemesh.runtime import auth, logs
from voicemesh.runtime.interceptor import ServiceInterceptor
from voicemesh.runtime.limits import Limits
from voicemesh.runtime.load import Gate
from voicemesh.runtime.metrics import serve_metrics
from voicemesh.settings import environ, setting

log = logging.getLogger(__name__)


@dataclass
class ServerSettings:
    """Settings every service has."""

    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 for all interfaces)")
    port: int = setting(50051, "gRPC port (0 picks a free one and logs it)")
    metrics_host: str = setting("127.0.0.1", "address of the Prometheus metrics HTTP server")
    metrics_port: int = setting(0, "Prometheus metrics port (0 picks a free one and logs it, -1 disables)")
    grace_s: float = setting(10.0, "on SIGTERM/SIGINT, seconds open streams may take to finish before they are closed "
                             "(health turns NOT_SERVING at once; new streams get UNAVAILABLE \"draining\")")
    drain_idle_s: float = setting(2.0, "while draining, a stream with no message either way for this long is closed at "
                                  "once with UNAVAILABLE, so its client reconnects elsewhere")
    max_loop_lag_ms: float = setting(200.0, "refuse new streams with RESOURCE_EXHAUSTED (\"overloaded, retry elsewhere\") "
                                     "while the event loop runs this late on average over the last second; "
                                     "admitted streams go on (0: no limit)")
    max_cpu: float = setting(0.0, "refuse new streams likewise while this process used more CPU than this, in cores, "
                             "over the last half second (0: no limit)")
    max_machine_cpu: float = setting(0.0, "refuse new streams likewise while more than this share (0-1) of the CPU "
                                     "this server may use is busy over the last half second, whatever process "
                                     "uses it: its container's cgroup quota when it has one, else all the "
                                     "machine's cores; with other work on the machine, 0.8 kept the admitted "
                                     "audio streams in real time (bench/load.py; 0: no limit)")
    max_message_bytes: int = setting(4 * 1024 * 1024, "largest gRPC message accepted or sent, in bytes")
    keepalive_time_s: float = setting(30.0, "seconds between keepalive pings on idle connections")
    keepalive_timeout_s: float = setting(10.0, "seconds to wait for a keepalive ack before closing the connection")
    log_level: str = setting("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = setting("text", "log format", choices=("text", "json"))
    ledger: str = setting("", "usage ledger URL (sqlite:///path/ledger.db); when set, RPCs need an API key "
                          "(authorization: Bearer <key>) and every Usage is recorded; empty: no auth, no metering")
    auth: bool = setting(True, "require API keys when a ledger is set (--no-auth: record usage without keys)")
    prices: str = setting("", "price table file (JSON or TOML) for cost quotas; see voicemesh/metering/prices.py")
    tls_cert: str = setting("", "PEM certificate (chain) of this server: serve TLS only (needs --tls-key); "
                            "also the client certificate this process presents to mutual-TLS servers")
    tls_key: str = setting("", "PEM private key of --tls-cert")
    tls_client_ca: str = setting("", "PEM CA certificate(s): with it, mutual TLS; clients must present a "
                                 "certificate this CA signed")
    max_streams: int = setting(0, "streaming RPCs open at once in this process; one more gets RESOURCE_EXHAUSTED "
                               "(0: no limit)")
    max_streams_per_key: int = setting(16, "streaming RPCs open at once per API key when keys are checked; "
                                       "one more gets RESOURCE_EXHAUSTED (0: no limit)")
    max_stream_s: float = setting(0.0, "longest a streaming RPC may last, in seconds; then it ends with "
                                  "RESOURCE_EXHAUSTED (0: no limit)")
    idle_timeout_s: float = setting(120.0, "a streaming RPC with no message in either direction for this many "
                                    "seconds ends with DEADLINE_EXCEEDED (0: never)")
    usage_interval_s: float = setting(2.0, "with a ledger, seconds between writes of an open stream's usage so far "
                                      "and re-checks of its key and quotas (a revoked key's streams end within "
                                      "about this; 0: only at the start and the end)")

    def __post_init__(self) -> None:
        if not 0 <= self.max_machine_cpu <= 1:
            raise ValueError(f"max_machine_cpu (--max-machine-cpu) is a share of the CPU, from 0 to 1 (0: no limit), "
                             f"not {self.max_machine_cpu:g}")


class ServiceDefinition(Protocol):
    """What a service gives the runtime."""

    name: str
    full_names: tuple[str, ...]

    def register(self, server: grpc.aio.Server) -> None:
        """Add the servicer(s) to ``server``."""

    async def start(self) -> None:
        """Load what must be loaded before the service reports SERVING."""

    async def stop(self) -> None:
        """Release backends after the server stopped."""

    # Optional: ``async def drain(self, grace_s: float) -> None``, called once health is NOT_SERVING and new
    # streams are refused, before the open streams are waited for (the orchestrator tells its sessions).


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """gRPC channel arguments of the server."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.so_reuseport", 0),
    ]


async def serve(service: ServiceDefinition, settings: ServerSettings) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code."""
    try:
        guard = auth.from_settings(settings, service.name)
        if guard is not None:
            await guard.open()
    except Exception as exc:  # a bad ledger URL or price file: say so and exit
        log.error("cannot open the ledger or price table: %s", exc)
        return 1
    try:
        return await _serve(service, settings, guard)
    finally:
        if guard is not None:
            await guard.close()


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _add_reflection(server: grpc.aio.Server, names: tuple[str, ...]) -> None:
    """Server reflection v1alpha and v1 (grpcurl and Postman ask for v1 first). grpcio-reflection ships
    only v1alpha; v1's messages are the same on the wire, so one servicer answers both."""
    servicer = reflection_aio.ReflectionServicer((*names, reflection.SERVICE_NAME, REFLECTION_V1))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo, request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)}),))


async def _serve(service: ServiceDefinition, settings: ServerSettings, guard: auth.Guard | None) -> int:
    gate = Gate.from_settings(settings, service.name)
    interceptor = ServiceInterceptor(service.name, guard, Limits.from_settings(settings), gate)
    server = grpc.aio.server(interceptors=[interceptor], options=server_options(settings))
    service.register(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    _add_reflection(server, (*service.full_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name))
    for name in ("", *service.full_names):
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    address = f"{settings.host}:{settings.port}"
    try:
        port = _listen(server, address, settings)
    except (VoiceMeshError, ValueError, RuntimeError) as exc:  # an unreadable or bad certificate: say so and exit
        log.error("cannot set up TLS: %s", exc)
        return 1
    if port == 0:
        log.error("cannot listen on %s", address)
        return 1
    await server.start()
    log.info("%s service listening on %s:%d (%s)", service.name, settings.host, port, _transport(settings))
    warning = tls.plaintext_warning(settings.host, bool(settings.tls_cert))
    if warning:
        log.warning("%s", warning)
    serve_metrics(settings.metrics_host, settings.metrics_port)
    gate.monitor.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    orphan_watch = asyncio.create_task(stop_when_orphaned(stop), name="parent-watch")

    exit_code = 0
    starting = asyncio.create_task(service.start(), name=f"{service.name}-start")
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting in done:
        if starting.exception() is not None:
            log.error("%s service failed to start: %s", service.name, starting.exception(), exc_info=starting.exception())
            exit_code = 1
            stop.set()
        else:
            for name in ("", *service.full_names):
                await health.set(name, health_pb2.HealthCheckResponse.SERVING)
            log.info("%s service is SERVING", service.name)
        await stopping
    else:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)

    orphan_watch.cancel()
    # Drain: NOT_SERVING first (balancers and probes move away), then new streams are refused with
    # UNAVAILABLE "draining" on a port that stays open, while the open ones finish (voicemesh.runtime.drain).
    await health.enter_graceful_shutdown()
    gate.draining = True
    log.info("draining: NOT_SERVING, no new streams; %d open stream(s) have %.1f s to finish (idle ones are "
             "closed after %.1f s)", len(gate.open.calls), settings.grace_s, settings.drain_idle_s)
    drain = getattr(service, "drain", None)
    if drain is not None:
        await drain(settings.grace_s)
    await gate.open.drain(settings.grace_s, settings.drain_idle_s)
    await gate.monitor.stop()
    await server.stop(1.0)  # unary calls still in flight (Describe, health) get a moment
    await service.stop()
    log.info("%s service stopped", service.name)
    return exit_code


async def stop_when_orphaned(stop: asyncio.Event, every_s: float = 1.0) -> None:
    """A service started by another VoiceMesh process (``voicemesh up``, a benchmark, a test) stops as on
    SIGTERM when that process is gone, even killed without a chance to stop it: no service is left behind."""
    parent = environ(PARENT_ENV)
    if not parent.isdigit():
        return
    while os.getppid() == int(parent):
        await asyncio.sleep(every_s)
    log.warning("the process that started this service (pid %s) is gone: stopping", parent)
    stop.set()


def _transport(settings: ServerSettings) -> str:
    if not settings.tls_cert:
        return "plaintext"
    return "mutual TLS" if settings.tls_client_ca else "TLS"


def _listen(server: grpc.aio.Server, address: str, settings: ServerSettings) -> int:
    """Bind ``address``: TLS when a certificate is configured, plaintext otherwise; returns the port."""
    if settings.tls_cert or settings.tls_key or settings.tls_client_ca:
        credentials = tls.server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        return server.add_secure_port(address, credentials)
    return server.add_insecure_port(address)


def run(service: ServiceDefinition, settings: ServerSettings) -> int:
    """Set up logging and serve (the entry of ``voicemesh serve``)."""
    logs.setup(settings.log_level, settings.log_format, service.name)
    return asyncio.run(serve(service, settings))
