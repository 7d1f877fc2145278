"""Where the project-managed Kafka lives and how it is fetched: its settings, the jars from Maven
Central (once, under a lock), and the `java` that runs it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class KafkaLocalSettings(BaseSettings):
    """Where the local broker's jars and state live and how its JVM is sized (env: CITYOPS_KAFKA_*)."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_KAFKA_")

    version: str = "4.1.1"
    home: Path = REPO_ROOT / ".cache" / "kafka"
    state_dir: Path = REPO_ROOT / ".state" / "kafka"
    pom: Path = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
    heap: str = "-Xms128m -Xmx512m"
    # The collector and JIT flags, replaceable as a whole (two collectors on one command line is an error).
    jvm_flags: str = "-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent"
    # Server properties over the defaults node.py writes, e.g. CITYOPS_KAFKA_PROPERTIES='{"num.io.threads": 2}'.
    properties: dict[str, str | int] = {}
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
