"""Optional py-spy profiles of every service during the pipeline phase (`--profile`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# ============================================================================================ profiling (optional)


class Profiler:
    """py-spy on every service process during one phase, if py-spy is installed (`--profile`)."""

    def __init__(self, out_dir: Path, pids: dict[str, int], seconds: float) -> None:
        self.out_dir, self.pids, self.seconds = out_dir, pids, seconds
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: dict[str, str] = {}

    def __enter__(self) -> Profiler:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            if name == "kafka-broker":
                continue
            path = self.out_dir / f"{name}.collapsed.txt"
            self.files[name] = str(path)
            self.procs.append(subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(int(self.seconds)),
                                                "--rate", "50", "--format", "raw", "--output", str(path), "--nonblocking"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self

    def __exit__(self, *_: Any) -> None:
        for p in self.procs:
            try:
                p.wait(timeout=self.seconds + 30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
