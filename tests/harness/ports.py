"""Free loopback ports for what a test starts itself (a hub's broker, an HTTP app, a fake issuer).

A test that starts its own broker must not take the session broker's port (CITYOPS_TEST_KAFKA_PORT) nor
another run's. The ports come from below the kernel's ephemeral range (see tools.kafka.probe.LISTEN_PORTS).
"""

from __future__ import annotations

from tools.kafka import free_listen_port


def free_port() -> int:
    """A port nothing listens on now, outside the range the kernel hands to outgoing connections."""
    return free_listen_port()


def free_port_pair() -> int:
    """A port p with p + 1 free too: a local Kafka node listens on p and its controller on p + 1."""
    return free_listen_port(2)
