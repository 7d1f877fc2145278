"""Small questions about ports, processes and a broker: is the port free, is the pid alive (zombies
count as dead), does the broker answer metadata and coordinator requests."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import random
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.kafka.install import KafkaLocalError

HOST = "127.0.0.1"


# --------------------------------------------------------------------------------------------
# small helpers


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID as 22 characters of URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


def port_is_free(port: int, host: str = HOST) -> bool:
    """True if nothing listens on host:port (ports in TIME_WAIT after a restart count as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the JVM sets on its server sockets, so a just-stopped broker's port is usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_free_ports(count: int, low: int = 29000, high: int = 29999) -> int:
    """The first port of `count` consecutive free ports in [low, high], picked at random.

    Random so that parallel test sessions rarely race for the same block.
    """
    starts = list(range(low, high - count + 2))
    random.shuffle(starts)
    for start in starts:
        if all(port_is_free(p) for p in range(start, start + count)):
            return start
    raise KafkaLocalError(f"no {count} consecutive free ports in {low}-{high}")


# For a server a test or the bench starts on a port it picks: below Linux's ephemeral range (32768-60999),
# where a port found free can still be taken by an outgoing connection (a Kafka client's, PostgreSQL's)
# before the server binds it ("address already in use" failed a CI run at 58464). Clear of the local-Kafka
# tests' 29000-29999 and of the fixed ports (19092, 25432, 27080, 27092).
LISTEN_PORTS = (30000, 32767)


def free_listen_port(count: int = 1) -> int:
    """The first of `count` consecutive free ports in LISTEN_PORTS."""
    return find_free_ports(count, *LISTEN_PORTS)


def process_is_alive(pid: int) -> bool:
    # A zombie keeps its /proc entry but is dead for our purposes. While a multi-threaded JVM
    # exits, its main thread already shows "Z" while other threads still run, so every thread
    # must be a zombie before the process counts as gone.
    try:
        thread_ids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(thread_state(pid, tid) not in ("Z", "X", None) for tid in thread_ids)


def thread_state(pid: int, tid: str) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def tail(path: Path, lines: int = 40, offset: int = 0) -> str:
    if not path.exists():
        return f"({path.name} does not exist)"
    with open(path, "rb") as handle:
        handle.seek(offset if offset <= handle.seek(0, os.SEEK_END) else 0)
        text = handle.read().decode(errors="replace").splitlines()
    return "\n".join(text[-lines:]) if text else "(nothing written since launch)"


# --------------------------------------------------------------------------------------------
# asking the broker whether it answers


def broker_ids_seen_by(bootstrap: str, security: Mapping[str, Any] | None = None, timeout: float = 5.0) -> set[int]:
    """The broker ids in the metadata that `bootstrap` returns; raises if it does not answer.

    `security`: aiokafka keyword arguments that authenticate (the launcher passes its admin's)."""
    return run_in_own_loop(_fetch_broker_ids(bootstrap, dict(security or {}), timeout))


async def _fetch_broker_ids(bootstrap: str, security: dict[str, Any], timeout: float) -> set[int]:
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **security)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return {broker.nodeId for broker in client.cluster.brokers()}
    finally:
        await client.close()


def coordinators_answer(bootstrap: str, security: Mapping[str, Any] | None = None, timeout: float = 5.0) -> bool:
    try:
        run_in_own_loop(_find_coordinators(bootstrap, dict(security or {}), timeout))
    except Exception:  # noqa: BLE001 - any failure just means "not yet"
        return False
    return True


async def _find_coordinators(bootstrap: str, security: dict[str, Any], timeout: float) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **security)
    try:
        await asyncio.wait_for(admin.start(), timeout)
        for coordinator_type in (0, 1):  # 0 = consumer group, 1 = transaction
            await admin.find_coordinator("cityops-readiness-probe", coordinator_type)
    finally:
        await admin.close()


def run_in_own_loop(coroutine: Any) -> Any:
    # Works from plain code and from inside a running event loop (an async pytest fixture).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def broker_answers(bootstrap: str, expected_ids: set[int], security: Mapping[str, Any] | None = None) -> bool:
    try:
        return expected_ids <= broker_ids_seen_by(bootstrap, security)
    except Exception:  # noqa: BLE001 - any failure just means "not yet"
        return False


@dataclass(frozen=True)
class NodeStatus:
    name: str
    node_id: int
    bootstrap: str
    pid: int | None
    running: bool
    answering: bool | None  # None when not asked (probe=False) or not running
    node_dir: Path

    def describe(self) -> str:
        if not self.running:
            return f"{self.name}: stopped ({self.bootstrap}, {self.node_dir})"
        answering = {True: "answering", False: "NOT answering", None: "not probed"}[self.answering]
        return f"{self.name}: running pid {self.pid}, {self.bootstrap}, {answering}"
