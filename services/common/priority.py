"""A service process's CPU priority, from its settings' `cpu_nice` (services/common/settings.py).

Set by the commands that run services (`cityops service run`, `cityops intake serve`) before the event loop
starts, never when an app is merely built: a test that builds an app in its own process keeps its priority.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .logs import get_logger
from .settings import ServiceSettings

log = get_logger(__name__)


def yield_cpu_as_configured(settings: Iterable[ServiceSettings]) -> int:
    """Lower this process's priority to the least niceness its services ask for; returns the niceness it runs at.

    The least, because in a process running several services the most urgent one must not wait behind the
    others' choice. Never raised: an unprivileged process cannot, and an operator's own `nice cityops ...` stays."""
    wanted = min((s.niceness() for s in settings), default=0)
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if wanted <= current:
        return current
    for thread in _own_threads():
        os.setpriority(os.PRIO_PROCESS, thread, wanted)
    log.info("cpu_priority_lowered", nice=wanted, was=current)
    return wanted


def _own_threads() -> list[int]:
    """This process's thread ids: on Linux a niceness belongs to one thread (threads started later inherit it)."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return [0]  # elsewhere the call with 0 sets the whole process
    return [int(entry.name) for entry in tasks.iterdir()]
