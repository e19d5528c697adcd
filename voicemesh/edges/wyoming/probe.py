"""Is a Wyoming server answering? ``describe`` over a plain socket, for ``voicemesh up`` and container health.

``python -m voicemesh.edges.wyoming.probe HOST:PORT`` exits 0 once ``info``
comes back, 1 otherwise (the Wyoming protocol has no health check of its own).
"""

from __future__ import annotations

import socket
import sys


def describe(address: str, timeout: float = 5.0) -> dict | None:
    """The ``info`` data of the Wyoming server at ``host:port``, or None when it does not answer with one."""
    from wyoming.event import Event, read_event, write_event

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock, sock.makefile("rwb") as stream:
            write_event(Event(type="describe"), stream)
            while (event := read_event(stream)) is not None:
                if event.type == "info":
                    return event.data
                if event.type == "error":
                    return None
    except (OSError, ValueError):
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m voicemesh.edges.wyoming.probe HOST:PORT", file=sys.stderr)
        return 2
    info = describe(args[0])
    print("SERVING" if info is not None else "NOT ANSWERING")
    return 0 if info is not None else 1


if __name__ == "__main__":
    sys.exit(main())
