"""The project-managed Apache Kafka broker: fetched from Maven Central, run as a plain JVM process.

There is no Docker on our development and CI machines, so we run the real broker (KRaft, combined
broker+controller) straight from the jars Maven fetches. `LocalKafka` is one node on 127.0.0.1;
`LocalKafkaCluster` is n such nodes sharing one cluster id and one static controller quorum, so that
replication, min.insync.replicas and leader failover behave as in production.

Everything a node owns lives in `<state_dir>/<name>/`: its configuration, data, logs and pid file.
A node started by one process (e.g. `cityops kafka up`) can be inspected and stopped by another.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
STARTED_MESSAGE = "Kafka Server started"
BROKER_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"

# The flags Kafka's own kafka-run-class.sh gives the broker, plus: die on OOM rather than limp
# along half-working, which in a test run would look like a hang.
_BROKER_JVM_FLAGS = [
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]
# StorageTool runs for a second; the C1-only JIT and a small heap make that second shorter.
_TOOL_JVM_FLAGS = ["-Xms32m", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]


class KafkaLocalSettings(BaseSettings):
    """Where the local broker's jars and state live and how its JVM is sized (env: CITYOPS_KAFKA_*)."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_KAFKA_")

    version: str = "4.1.1"
    home: Path = REPO_ROOT / ".cache" / "kafka"
    state_dir: Path = REPO_ROOT / ".state" / "kafka"
    pom: Path = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
    heap: str = "-Xms128m -Xmx512m"
    port: int = 9092
    cluster_base_port: int = 9192
    cluster_size: int = 3
    start_timeout: float = 90.0

    @property
    def libs_dir(self) -> Path:
        return self.home / self.version / "libs"

    @property
    def fetched_stamp(self) -> Path:
        return self.home / self.version / "fetched.stamp"


class KafkaLocalError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says why."""


# --------------------------------------------------------------------------------------------
# fetching the jars


def fetch_kafka(settings: KafkaLocalSettings | None = None) -> Path:
    """Download the broker's jars once into `<home>/<version>/libs` and return that directory."""
    settings = settings or KafkaLocalSettings()
    if settings.fetched_stamp.exists():
        return settings.libs_dir
    mvn = _require_executable("mvn", "Maven (mvn) is needed to fetch Kafka; install it (apt-get install maven).")
    java_executable()
    version_dir = settings.fetched_stamp.parent
    version_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(version_dir / "fetch.lock"):
        if settings.fetched_stamp.exists():  # another process finished while we waited for the lock
            return settings.libs_dir
        partial = version_dir / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _copy_dependencies_with_maven(mvn, settings, partial)
        _check_broker_jar_present(partial, settings.version)
        shutil.rmtree(settings.libs_dir, ignore_errors=True)
        partial.rename(settings.libs_dir)
        _write_stamp(settings)
    return settings.libs_dir


def _copy_dependencies_with_maven(mvn: str, settings: KafkaLocalSettings, output_dir: Path) -> None:
    command = [
        mvn, "-q", "-B", "-f", str(settings.pom),
        f"-Dkafka.version={settings.version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output_dir}",
        "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise KafkaLocalError(
            f"Maven could not fetch Kafka {settings.version} (exit {result.returncode}):\n"
            + "\n".join(output[-40:])
        )


def _check_broker_jar_present(libs: Path, version: str) -> None:
    jar = libs / f"kafka_2.13-{version}.jar"
    if not jar.is_file():
        raise KafkaLocalError(f"Maven finished but {jar.name} is missing from {libs}")


def _write_stamp(settings: KafkaLocalSettings) -> None:
    jars = sorted(p.name for p in settings.libs_dir.glob("*.jar"))
    stamp = {"version": settings.version, "fetched_at": time.time(), "jars": len(jars)}
    settings.fetched_stamp.write_text(json.dumps(stamp) + "\n")


def java_executable() -> str:
    """The `java` to run the broker with: $JAVA_HOME/bin/java if set, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return _require_executable("java", "Java 17+ is needed to run Kafka; install a JDK or set JAVA_HOME.")


def _require_executable(name: str, advice: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KafkaLocalError(f"`{name}` not found on PATH. {advice}")
    return path


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    # Two test sessions may fetch at once; the second must wait, not download over the first.
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def _process_is_alive(pid: int) -> bool:
    # A zombie keeps its /proc entry but is dead for our purposes. While a multi-threaded JVM
    # exits, its main thread already shows "Z" while other threads still run, so every thread
    # must be a zombie before the process counts as gone.
    try:
        thread_ids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(_thread_state(pid, tid) not in ("Z", "X", None) for tid in thread_ids)


def _thread_state(pid: int, tid: str) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _tail(path: Path, lines: int = 40, offset: int = 0) -> str:
    if not path.exists():
        return f"({path.name} does not exist)"
    with open(path, "rb") as handle:
        handle.seek(offset if offset <= handle.seek(0, os.SEEK_END) else 0)
        text = handle.read().decode(errors="replace").splitlines()
    return "\n".join(text[-lines:]) if text else "(nothing written since launch)"


def _write_properties(path: Path, properties: Mapping[str, Any]) -> None:
    body = "".join(f"{key}={value}\n" for key, value in properties.items())
    path.write_text("# Written by services/ops/kafka_local.py; rewritten on every start.\n" + body)


def _read_properties(path: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip()
    return result


def _log4j2_properties(log_dir: Path) -> str:
    # The broker must never write to our stdout: pytest and the CLI own it. A size-capped rolling
    # file keeps a long-running dev broker from filling the disk. Log4j's own shutdown hook would
    # close the log while Kafka's hook is still logging its controlled shutdown, so it is off.
    return f"""\
status = warn
name = cityops-kafka
shutdownHook = disable
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = {log_dir}/server.log
appender.server.filePattern = {log_dir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 50MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = server
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""


# StorageTool would otherwise dump its whole configuration at INFO; warnings and errors go to
# its stderr, which we capture and show if formatting fails.
_TOOL_LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = console
"""


# --------------------------------------------------------------------------------------------
# asking the broker whether it answers


def broker_ids_seen_by(bootstrap: str, timeout: float = 5.0) -> set[int]:
    """The broker ids in the metadata that `bootstrap` returns; raises if it does not answer."""
    return _run_in_own_loop(_fetch_broker_ids(bootstrap, timeout))


async def _fetch_broker_ids(bootstrap: str, timeout: float) -> set[int]:
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return {broker.nodeId for broker in client.cluster.brokers()}
    finally:
        await client.close()


def _coordinators_answer(bootstrap: str, timeout: float = 5.0) -> bool:
    try:
        _run_in_own_loop(_find_coordinators(bootstrap, timeout))
    except Exception:  # noqa: BLE001 - any failure just means "not yet"
        return False
    return True


async def _find_coordinators(bootstrap: str, timeout: float) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        for coordinator_type in (0, 1):  # 0 = consumer group, 1 = transaction
            await admin.find_coordinator("cityops-readiness-probe", coordinator_type)
    finally:
        await admin.close()


def _run_in_own_loop(coroutine: Any) -> Any:
    # Works from plain code and from inside a running event loop (an async pytest fixture).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _broker_answers(bootstrap: str, expected_ids: set[int]) -> bool:
    try:
        return expected_ids <= broker_ids_seen_by(bootstrap)
    except Exception:  # noqa: BLE001 - any failure just means "not yet"
        return False


# --------------------------------------------------------------------------------------------
# one node


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


class LocalKafka:
    """One Kafka node (broker + controller in one JVM) on 127.0.0.1, its files under state_dir/name.

    Used alone it is a one-node cluster with replication factor 1. `LocalKafkaCluster` builds
    several with a shared `cluster_id` and `voters` list.
    """

    def __init__(
        self,
        settings: KafkaLocalSettings | None = None,
        *,
        name: str = "single",
        port: int | None = None,
        controller_port: int | None = None,
        node_id: int = 1,
        cluster_id: str | None = None,
        voters: Mapping[int, int] | None = None,
        replication_factor: int = 1,
        extra_properties: Mapping[str, Any] | None = None,
        fresh: bool = False,
        abandon: threading.Event | None = None,
    ) -> None:
        self.settings = settings or KafkaLocalSettings()
        self.name = name
        # Set by a cluster when another node failed, so this one stops waiting for a quorum
        # that will never form instead of sitting out its whole start timeout.
        self.abandon = abandon or threading.Event()
        self.node_dir = self.settings.state_dir / name
        self.port = port or self._remembered_port() or self.settings.port
        self.controller_port = controller_port or self.port + 1
        self.node_id = node_id
        self.voters = dict(voters) if voters else {node_id: self.controller_port}
        self.replication_factor = replication_factor
        self.extra_properties = dict(extra_properties or {})
        self.fresh = fresh
        self._given_cluster_id = cluster_id
        self._cluster_id = cluster_id
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping_pid: int | None = None
        self._log_offset = 0
        self._launched_at = 0.0
        self.timings: dict[str, float] = {}

    # -- paths ---------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.node_dir / "data"

    @property
    def log_dir(self) -> Path:
        return self.node_dir / "logs"

    @property
    def server_log(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def console_log(self) -> Path:
        return self.log_dir / "console.out"

    @property
    def properties_file(self) -> Path:
        return self.node_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.node_dir / "log4j2.properties"

    @property
    def tool_log4j_file(self) -> Path:
        return self.node_dir / "log4j2-tool.properties"

    @property
    def pid_file(self) -> Path:
        return self.node_dir / "kafka.pid"

    @property
    def node_file(self) -> Path:
        return self.node_dir / "node.json"

    # -- configuration -------------------------------------------------------------------

    def server_properties(self) -> dict[str, Any]:
        """The broker configuration this node is started with."""
        voters = ",".join(f"{nid}@{HOST}:{cport}" for nid, cport in sorted(self.voters.items()))
        rf = self.replication_factor
        min_isr = 1 if rf == 1 else 2
        # One coordinator partition per node: a single node starts its first consumer group and
        # first transaction fastest with 1 (the default 50 means 50 partitions created on first
        # use); in a cluster, one per node spreads coordinators so a node failure moves some.
        # Fixed at first use: changing it on an existing data dir would remap groups, so don't.
        internal_partitions = len(self.voters)
        properties: dict[str, Any] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            # Static quorum: every node knows all voters; never combined with
            # controller.quorum.bootstrap.servers (that is the dynamic-quorum alternative).
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": self.data_dir,
            "num.partitions": 3,
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            # Topics come from our topic catalogue; a typo in a topic name must fail, not create one.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": internal_partitions,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": internal_partitions,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "share.coordinator.state.topic.num.partitions": internal_partitions,
            # Tests start consumer groups constantly; the default 3 s wait for more members is dead time.
            "group.initial.rebalance.delay.ms": 0,
            # The cleaner's 128 MB default dedupe buffer alone would eat a quarter of a 512 MB heap.
            "log.cleaner.dedupe.buffer.size": 8 * 1024 * 1024,
        }
        properties.update(self.extra_properties)
        return properties

    def _write_config_files(self) -> None:
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        _write_properties(self.properties_file, self.server_properties())
        self.log4j_file.write_text(_log4j2_properties(self.log_dir))
        self.tool_log4j_file.write_text(_TOOL_LOG4J2_PROPERTIES)
        self.node_file.write_text(json.dumps({"name": self.name, "node_id": self.node_id, "port": self.port}) + "\n")

    def _remembered_port(self) -> int | None:
        # Lets `cityops kafka down` find a broker that `up --port N` started in another process.
        try:
            return int(json.loads(self.node_file.read_text())["port"])
        except (OSError, ValueError, KeyError):
            return None

    # -- storage -------------------------------------------------------------------------

    @property
    def cluster_id(self) -> str:
        """The id this node's storage is (or will be) formatted with."""
        if self._cluster_id is None:
            self._cluster_id = self._formatted_cluster_id() or new_cluster_id()
        return self._cluster_id

    def _formatted_cluster_id(self) -> str | None:
        meta = self.data_dir / "meta.properties"
        return _read_properties(meta).get("cluster.id") if meta.exists() else None

    def is_formatted(self) -> bool:
        return (self.data_dir / "meta.properties").exists()

    def wipe(self) -> None:
        """Delete this node's data (topics, offsets, metadata); refuses while the node runs."""
        if self.running_pid() is not None:
            raise KafkaLocalError(f"{self.name} is running; stop it before wiping its data")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _format_storage(self) -> None:
        formatted_id = self._formatted_cluster_id()
        if formatted_id is not None:
            if formatted_id != self.cluster_id:
                raise KafkaLocalError(
                    f"{self.data_dir} belongs to cluster {formatted_id}, not {self.cluster_id}; start with fresh=True"
                )
            return
        command = [
            java_executable(), *_TOOL_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.tool_log4j_file}",
            "-cp", self._classpath(), STORAGE_TOOL_CLASS,
            # "=" form: a random id may start with "-", which argparse would take for an option.
            "format", f"--cluster-id={self.cluster_id}", "-c", str(self.properties_file),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise KafkaLocalError(
                f"formatting {self.data_dir} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def _classpath(self) -> str:
        libs = self.settings.libs_dir
        if not self.settings.fetched_stamp.exists():
            raise KafkaLocalError(f"Kafka {self.settings.version} is not fetched; run `cityops kafka fetch`")
        return f"{libs}/*"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> str:
        """Start the node and return its bootstrap address once consumers and producers can use it.

        Fetches the jars if needed, formats storage on first use (or after fresh=True wiped it),
        and stops the JVM again if it does not come up within `timeout` seconds.
        """
        deadline = time.monotonic() + (timeout or self.settings.start_timeout)
        self.bring_up(deadline)
        try:
            self.wait_until_coordinators_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def bring_up(self, deadline: float) -> None:
        """Format if needed, launch the JVM and wait until it answers metadata requests."""
        self.check_can_start()
        fetch_kafka(self.settings)
        if self.fresh:
            self.wipe()
            self._cluster_id = self._given_cluster_id
            self.fresh = False  # a later restart of this object must keep the data
        self._write_config_files()
        began = time.monotonic()
        self._format_storage()
        self.timings["format"] = time.monotonic() - began
        self._raise_if_died()  # a cluster may have given up while we were formatting
        self.launch()
        try:
            self.wait_until_started(deadline)
            self.wait_until_answering(deadline)
        except BaseException:
            self.stop()
            raise

    async def start_async(self, timeout: float | None = None) -> str:
        """`start` without blocking the running event loop."""
        return await asyncio.to_thread(self.start, timeout)

    def launch(self) -> int:
        """Start the broker JVM in its own process group and record its pid; does not wait."""
        self._log_offset = self.server_log.stat().st_size if self.server_log.exists() else 0
        if self.console_log.exists():
            self.console_log.replace(self.console_log.with_suffix(".out.previous"))
        command = [
            java_executable(), *shlex.split(self.settings.heap), *_BROKER_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp", self._classpath(), BROKER_MAIN_CLASS, str(self.properties_file),
        ]  # fmt: skip
        with open(self.console_log, "wb") as console:
            # Own session: Ctrl-C in the terminal that ran `cityops kafka up` must not kill the
            # broker, and our signals go to exactly this JVM.
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                cwd=self.node_dir, start_new_session=True,
            )  # fmt: skip
        self._launched_at = time.monotonic()
        self.pid_file.write_text(f"{self._process.pid}\n")
        return self._process.pid

    def wait_until_started(self, deadline: float) -> None:
        """Wait for the broker's own "Kafka Server started" log line; raise if the JVM dies."""
        while not self._log_mentions_started():
            self._raise_if_died()
            if time.monotonic() > deadline:
                raise KafkaLocalError(f"{self.name} did not log '{STARTED_MESSAGE}' in time\n{self.log_tails()}")
            time.sleep(0.2)
        self.timings["launch_to_started_log"] = time.monotonic() - self._launched_at

    def wait_until_answering(self, deadline: float, expected_broker_ids: set[int] | None = None) -> None:
        """Wait until a metadata request to this node lists the expected brokers (default: itself)."""
        expected = expected_broker_ids or {self.node_id}
        while not _broker_answers(self.bootstrap, expected):
            self._raise_if_died()
            if time.monotonic() > deadline:
                raise KafkaLocalError(f"{self.name} logged started but does not answer on {self.bootstrap}")
            time.sleep(0.2)
        self.timings["launch_to_answering"] = time.monotonic() - self._launched_at

    def wait_until_coordinators_ready(self, deadline: float) -> None:
        """Wait until the group and transaction coordinators answer, creating their internal topics.

        Kafka creates __consumer_offsets and __transaction_state on first use; doing it here means
        the first consumer group of a test session joins at once instead of logging
        GroupCoordinatorNotAvailable errors while it waits.
        """
        began = time.monotonic()
        while not _coordinators_answer(self.bootstrap):
            self._raise_if_died()
            if time.monotonic() > deadline:
                raise KafkaLocalError(f"{self.name}: group/transaction coordinators did not become available")
            time.sleep(0.2)
        self.timings["coordinators"] = time.monotonic() - began

    def _log_mentions_started(self) -> bool:
        if not self.server_log.exists():
            return False
        with open(self.server_log, "rb") as log:
            if log.seek(0, os.SEEK_END) < self._log_offset:
                self._log_offset = 0  # the log rolled over; its new file is all ours
            log.seek(self._log_offset)
            return STARTED_MESSAGE.encode() in log.read()

    def _raise_if_died(self) -> None:
        if self.abandon.is_set():
            raise KafkaLocalError(f"{self.name}: start abandoned because another node failed")
        if self._process is not None and self._process.poll() is not None:
            self.pid_file.unlink(missing_ok=True)
            raise KafkaLocalError(
                f"{self.name} exited with code {self._process.returncode} while starting\n{self.log_tails()}"
            )

    def log_tails(self, lines: int = 40) -> str:
        """The last lines of the JVM's console output and of the broker log, for error messages."""
        return (
            f"--- {self.console_log} ---\n{_tail(self.console_log, lines)}\n"
            f"--- {self.server_log} (this start) ---\n{_tail(self.server_log, lines, self._log_offset)}"
        )

    def check_can_start(self) -> None:
        """Raise if this node already runs or something else listens on its ports."""
        pid = self.running_pid()
        if pid is not None:
            raise KafkaLocalError(f"{self.name} is already running (pid {pid}, {self.bootstrap})")
        for port in (self.port, self.controller_port):
            if not port_is_free(port):
                raise KafkaLocalError(f"port {port} on {HOST} is in use; choose another port for {self.name}")

    def running_pid(self) -> int | None:
        """The pid from our pid file, if that process is alive and really is this node's broker."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _process_is_alive(pid):
            return None
        command = _command_line(pid)
        # A recycled pid could now belong to anything, even another engineer's broker: only a
        # kafka.Kafka JVM started with *our* properties file is ours.
        if BROKER_MAIN_CLASS not in command or str(self.properties_file) not in command:
            return None
        return pid

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the broker (a clean controlled shutdown), SIGKILL it if still alive after `timeout` s."""
        self.request_stop()
        self.wait_stopped(timeout)

    def request_stop(self) -> int | None:
        """Send SIGTERM to this node's broker, if running; returns the pid signalled."""
        pid = self.running_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self._stopping_pid = pid
        return pid

    def wait_stopped(self, timeout: float = 30) -> None:
        """Wait for the pid signalled by `request_stop` to exit; SIGKILL it after `timeout` s."""
        pid = self._stopping_pid
        if pid is not None and not self._wait_for_exit(pid, timeout):
            if self.running_pid() == pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not self._wait_for_exit(pid, 10):
                # Keep the pid file: it is the only record of a JVM that still needs killing.
                raise KafkaLocalError(f"{self.name}: pid {pid} survived SIGKILL for 10 s")
        if self._process is not None:
            self._process.poll()  # reaps our child even if it had died on its own before stop()
        self.pid_file.unlink(missing_ok=True)

    def _wait_for_exit(self, pid: int, timeout: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            # Our own child: only waitpid says for sure it is gone, and it also reaps the zombie.
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _process_is_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def status(self, probe: bool = True) -> NodeStatus:
        """Whether the node's JVM runs and (if `probe`) whether it answers a metadata request."""
        pid = self.running_pid()
        answering = _broker_answers(self.bootstrap, {self.node_id}) if (probe and pid) else None
        return NodeStatus(self.name, self.node_id, self.bootstrap, pid, pid is not None, answering, self.node_dir)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalKafka(name={self.name!r}, bootstrap={self.bootstrap!r}, node_id={self.node_id})"


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
        self.fresh = False
        self._abandon.clear()
        began = time.monotonic()
        try:
            self._on_every_node(lambda node: node.bring_up(deadline))
            everyone = {node.node_id for node in self.nodes}
            self._on_every_node(lambda node: node.wait_until_answering(deadline, everyone))
            self.nodes[0].wait_until_coordinators_ready(deadline)
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
