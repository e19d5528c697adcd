"""Wyoming server over the mesh's STT and TTS services, for Home Assistant.

``describe`` lists the mesh's STT models and TTS voices (with their speakers);
``transcribe`` + ``audio-start/chunk/stop`` at any rate, width and channel
count give ``transcript`` (and ``transcript-start/chunk/stop`` from the
interims); ``synthesize`` and ``synthesize-start/chunk/stop`` give audio.
Wyoming has no authentication, so the server calls the mesh with its own
VoiceMesh key: keep its port on a trusted network.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from dataclasses import dataclass

from voicemesh.client.session import DEFAULT_STT, DEFAULT_TTS
from voicemesh.errors import require_module
from voicemesh.mesh import MeshConfig
from voicemesh.runtime import logs
from voicemesh.runtime.server import stop_when_orphaned
from voicemesh.settings import setting

log = logging.getLogger(__name__)

DEFAULT_PORT = 10300  # the port Home Assistant's Wyoming integration suggests for speech-to-text


@dataclass
class Settings:
    """Settings of the Wyoming server."""

    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 for all interfaces)")
    port: int = setting(DEFAULT_PORT, "TCP port of the Wyoming protocol")
    mesh: str = setting("", "mesh config file (provider -> service addresses); VOICEMESH_MESH_<MODALITY> also work")
    api_key_file: str = setting("", "file with the VoiceMesh API key this server calls the mesh with (Wyoming "
                                "clients send none); default $VOICEMESH_API_KEY, else the key file of `voicemesh up`")
    stt: str = setting(DEFAULT_STT, "speech-to-text model of a transcribe that names none")
    tts: str = setting(DEFAULT_TTS, "voice of a synthesize that names none")
    tts_rate_hz: int = setting(22050, "sample rate of the audio sent back (piper voices speak at 22050 Hz)")
    timeout_s: float = setting(120.0, "deadline of each call to the mesh, in seconds")
    zeroconf: str = setting("", "announce the server on mDNS under this name, for Home Assistant's discovery "
                            "(on the interface of --host); empty: no announcement")
    log_level: str = setting("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = setting("text", "log format", choices=("text", "json"))


def run(settings: Settings) -> int:
    """Serve Wyoming until SIGTERM/SIGINT."""
    require_module("wyoming", "wyoming")
    logs.setup(settings.log_level, settings.log_format, "wyoming")
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    return 0


async def serve(settings: Settings) -> None:
    from wyoming.server import AsyncTcpServer

    from voicemesh.audio import check_sample_rate
    from voicemesh.edges.link import MeshLink, load_key
    from voicemesh.edges.wyoming.handler import Defaults, WyomingHandler

    check_sample_rate(settings.tts_rate_hz, "--tts-rate-hz")
    mesh = MeshConfig.load(settings.mesh or None)
    key = load_key(settings.api_key_file)
    link = MeshLink(mesh, api_key=key, prefix="wyoming")
    defaults = Defaults(stt=settings.stt, tts=settings.tts, tts_rate_hz=settings.tts_rate_hz,
                        timeout_s=settings.timeout_s)
    server = AsyncTcpServer(settings.host, settings.port)
    await server.start(functools.partial(WyomingHandler, link=link, defaults=defaults))  # bound before announced
    announced = None
    if settings.zeroconf:
        from voicemesh.edges.wyoming.announce import announce

        announced = await announce(settings.zeroconf, settings.host, settings.port)
        log.info("announced on mDNS as %s", settings.zeroconf)
    stopped = asyncio.Event()
    watch = asyncio.create_task(stop_when_orphaned(stopped), name="parent-watch")
    log.info("wyoming server on tcp://%s:%d for mesh %s (%s)", settings.host, settings.port, mesh.routes,
             "with an API key" if key else "without an API key")
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    try:
        await stopped.wait()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await server.stop()
        if announced is not None:
            await announced.async_close()  # says goodbye on mDNS first
        watch.cancel()
        await link.close()
        log.info("wyoming server stopped")
