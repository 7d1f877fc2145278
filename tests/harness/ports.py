"""Free loopback ports for what a test starts itself (a hub's broker, an HTTP app, a fake issuer).

A test that starts its own broker must not take the session broker's port (CITYOPS_TEST_KAFKA_PORT) nor
another run's: it asks the kernel for free ones.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A port p with p + 1 free too: a local Kafka node listens on p and its controller on p + 1."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and _is_free(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
