"""kcat, as an operator would run it: `kcat -F <file from cityops kafka client-config>`.

kcat is a librdkafka program. librdkafka before 2.6.1 fails SCRAM against Kafka 4 brokers ("invalid
credentials" whatever the password; kcat issue #462), and Debian 12 ships 2.0.2. When the installed kcat
links such a librdkafka, it is run with the librdkafka of the `confluent-kafka` wheel (a test dependency,
2.6.1 or later) put first on its library path. Nothing else about kcat changes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

MIN_LIBRDKAFKA = (2, 6, 1)


def _version(text: str) -> tuple[int, ...]:
    found = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(n) for n in found.groups()) if found else (0, 0, 0)


def _kcat_version(env: dict[str, str] | None = None) -> tuple[int, ...]:
    kcat = shutil.which("kcat")
    if kcat is None:
        return (0, 0, 0)
    result = subprocess.run([kcat, "-V"], capture_output=True, text=True, timeout=30, env=env)
    return _version(result.stdout + result.stderr)


@cache
def kcat_env(library_dir: Path) -> dict[str, str]:
    """The environment kcat runs in: unchanged if its librdkafka speaks SCRAM to Kafka 4, else the wheel's."""
    if _kcat_version() >= MIN_LIBRDKAFKA:
        return dict(os.environ)
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    assert found, f"no librdkafka in {libs}; install confluent-kafka>=2.6.1 (pip install -e .[test])"
    library_dir.mkdir(parents=True, exist_ok=True)
    link = library_dir / "librdkafka.so.1"
    link.unlink(missing_ok=True)
    link.symlink_to(found[0])
    env = {**os.environ, "LD_LIBRARY_PATH": f"{library_dir}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    assert _kcat_version(env) >= MIN_LIBRDKAFKA, "kcat still links an old librdkafka"
    return env


def kcat(*args: str, library_dir: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    path = shutil.which("kcat")
    assert path, "kcat is needed (deploy/system-deps.sh installs it)"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=timeout, env=kcat_env(library_dir),
                          stdin=subprocess.DEVNULL)
