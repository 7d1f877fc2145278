"""Several local Kafka nodes sharing one cluster id and one static controller quorum, so replication,
min.insync.replicas and leader failover behave as in production."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.common.settings import KafkaClientSettings
from tools.kafka.acls import ADMIN
from tools.kafka.install import KafkaLocalSettings, fetch_kafka
from tools.kafka.node import LocalKafka
from tools.kafka.probe import NodeStatus, new_cluster_id
from tools.kafka.security import Credentials, client_env, client_settings

# --------------------------------------------------------------------------------------------
# several nodes


class LocalKafkaCluster:
    """n combined broker+controller nodes on one host: a real replicated cluster for tests.

    Node i (1-based) listens on base_port + 2(i-1) for clients and the next port for the quorum.
    Internal and default topics get replication factor 3 with min.insync.replicas 2, as in
    production, so acks=all and leader failover can be tested.
    """

    def __init__(
        self,
        settings: KafkaLocalSettings | None = None,
        *,
        n: int | None = None,
        base_port: int | None = None,
        name: str = "cluster",
        extra_properties: Mapping[str, Any] | None = None,
        fresh: bool = False,
    ) -> None:
        self.settings = settings or KafkaLocalSettings()
        self.name = name
        self.cluster_dir = self.settings.state_dir / name
        remembered = self._remembered_layout()
        self.n = n or remembered.get("n") or self.settings.cluster_size
        self.base_port = base_port or remembered.get("base_port") or self.settings.cluster_base_port
        self.fresh = fresh
        self.extra_properties = dict(extra_properties or {})
        self._abandon = threading.Event()
        self.nodes = self._make_nodes(remembered.get("cluster_id"))
        self.timings: dict[str, float] = {}

    @property
    def cluster_file(self) -> Path:
        return self.cluster_dir / "cluster.json"

    @property
    def credentials_file(self) -> Path:
        """One set of users for every node (tools/kafka/security.py)."""
        return self.cluster_dir / "credentials.json"

    @property
    def credentials(self) -> Credentials:
        return self.nodes[0].credentials

    def client_env(self, principal: str) -> dict[str, str]:
        """The environment of a child process that is a client of this cluster as `principal`."""
        return client_env(self.bootstrap, self.credentials, principal)

    def client_settings(self, principal: str = ADMIN) -> KafkaClientSettings:
        """Settings of an in-process client of this cluster as `principal` (default: the admin)."""
        return client_settings(self.bootstrap, self.credentials, principal)

    def _remembered_layout(self) -> dict[str, Any]:
        try:
            return json.loads(self.cluster_file.read_text())
        except (OSError, ValueError):
            return {}

    def _make_nodes(self, cluster_id: str | None) -> list[LocalKafka]:
        ids = range(1, self.n + 1)
        ports = {nid: self.base_port + 2 * (nid - 1) for nid in ids}
        voters = {nid: port + 1 for nid, port in ports.items()}
        cluster_id = None if self.fresh else cluster_id
        cluster_id = cluster_id or new_cluster_id()
        return [
            LocalKafka(
                self.settings, name=f"{self.name}/node-{nid}", port=ports[nid], controller_port=voters[nid],
                node_id=nid, cluster_id=cluster_id, voters=voters, replication_factor=min(3, self.n),
                extra_properties=self.extra_properties, fresh=self.fresh, abandon=self._abandon,
                credentials_file=self.credentials_file,
            )  # fmt: skip
            for nid in ids
        ]

    @property
    def cluster_id(self) -> str:
        return self.nodes[0].cluster_id

    @property
    def bootstrap(self) -> str:
        """All nodes' client addresses, comma-separated, as a client's bootstrap_servers."""
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, timeout: float | None = None) -> str:
        """Start all nodes at once and return the bootstrap string once every node sees all brokers.

        In parallel because a quorum of 3 needs 2 controllers up before any broker can register,
        and because each JVM takes seconds to start. If any node fails, all are stopped.
        """
        deadline = time.monotonic() + (timeout or self.settings.start_timeout)
        fetch_kafka(self.settings)  # once, before the threads race for the lock
        for node in self.nodes:
            node.check_can_start()  # fail before any node formats or launches
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        self._remember_layout()  # before formatting, so a failed first start keeps its cluster id
        self.credentials  # noqa: B018 - made once here, before the nodes' threads read the file
        self.fresh = False
        self._abandon.clear()
        began = time.monotonic()
        try:
            self._on_every_node(lambda node: node.bring_up(deadline))
            everyone = {node.node_id for node in self.nodes}
            self._on_every_node(lambda node: node.wait_until_answering(deadline, everyone))
            self.nodes[0].wait_until_coordinators_ready(deadline)
            self.nodes[0].apply_acls(deadline)
        except BaseException:
            self._abandon.set()  # e.g. Ctrl-C: node threads still waiting must give up too
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - began
        return self.bootstrap

    async def start_async(self, timeout: float | None = None) -> str:
        """`start` without blocking the running event loop."""
        return await asyncio.to_thread(self.start, timeout)

    def _remember_layout(self) -> None:
        layout = {"n": self.n, "base_port": self.base_port, "cluster_id": self.cluster_id}
        self.cluster_file.write_text(json.dumps(layout) + "\n")

    def stop(self, timeout: float = 30) -> None:
        """Stop all nodes together: SIGTERM to all first, so each broker's controlled shutdown
        still finds a controller quorum, then wait, then SIGKILL whatever remains."""
        for node in self.nodes:
            node.request_stop()
        self._on_every_node(lambda node: node.wait_stopped(timeout))

    def pids(self) -> list[int]:
        """The pids of the nodes' running JVMs."""
        return [pid for pid in (node.running_pid() for node in self.nodes) if pid is not None]

    def status(self, probe: bool = True) -> list[NodeStatus]:
        """Every node's status (see `LocalKafka.status`)."""
        return [node.status(probe) for node in self.nodes]

    def _on_every_node(self, action: Any) -> None:
        errors: list[BaseException] = []
        lock = threading.Lock()

        def run(node: LocalKafka) -> None:
            try:
                action(node)
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
                with lock:
                    errors.append(exc)
                self._abandon.set()

        threads = [threading.Thread(target=run, args=(node,), name=f"kafka-{node.name}") for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            self._abandon.clear()
            # The first error is the cause; the others are nodes that gave up because of it.
            raise errors[0]

    def __enter__(self) -> LocalKafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalKafkaCluster(name={self.name!r}, bootstrap={self.bootstrap!r})"
