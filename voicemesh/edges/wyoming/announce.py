"""Zeroconf (mDNS) announcement of the Wyoming server, which Home Assistant discovers by itself.

The service is announced as ``<name>._wyoming._tcp.local.`` on the interface the
server listens on (every interface for 0.0.0.0), so a server bound to one
address is never announced elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket

from voicemesh.errors import InvalidInput, require_module

SERVICE_TYPE = "_wyoming._tcp.local."
_MDNS_GROUP = "224.0.0.251"


def _outgoing_address() -> str:
    """The IPv4 address this machine reaches the mDNS group from (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((_MDNS_GROUP, 5353))
        return sock.getsockname()[0]


async def announce(name: str, host: str, port: int):
    """Register the service; returns the ``AsyncZeroconf`` to close when the server stops."""
    require_module("zeroconf", "wyoming")
    from zeroconf import InterfaceChoice, IPVersion
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    if host in ("0.0.0.0", ""):
        interfaces, address = InterfaceChoice.All, _outgoing_address()
    else:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise InvalidInput(f"--zeroconf needs --host to be 0.0.0.0 or an IPv4 address, got {host!r}") from None
        interfaces, address = [host], host
    zeroconf = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo(SERVICE_TYPE, f"{name}.{SERVICE_TYPE}", addresses=[socket.inet_aton(address)],
                            port=port, server=f"{name}.local.")
    await zeroconf.async_register_service(info)
    return zeroconf
