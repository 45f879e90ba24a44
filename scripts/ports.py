"""Free TCP ports for the processes tests, benchmarks and the chaos run start.

A port from ``bind(0)`` is inside the kernel's ephemeral range, so between choosing it and the
server binding it an outgoing connection (to PostgreSQL, RabbitMQ, the sandbox …) can be given the
same local port, and the server then fails with ``EADDRINUSE`` (CI saw the AirTM instance's web
process die that way). Ports below the range are never handed to outgoing connections; a port is
also never handed out twice by one process.
"""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

_given: set[int] = set()


def _ephemeral_low() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


def free_port() -> int:
    """A port below the ephemeral range that nothing listens on now (checked on every interface)."""
    low = _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(max(1024, low - 12000), low)
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")
