"""Several consumer services in one OS process: `cityops service run discover triage consult`.

On a small machine every process costs its interpreter, its imports and its share of the scheduler; a
packed process shares the event loop and those costs while each service stays what it is alone:

* its own FastStream app, hence its own consumer group, store, offsets, metrics endpoint and ticks;
* its own Kafka client (producer and consumers) as its own principal: the broker's ACLs
  (tools/kafka/acls.py) give each service WRITE only on the topics it owns, and `check_writer`
  (contracts/topics.py) refuses a wrong topic before the broker does. One producer shared by several
  services would have to be one principal holding the union of their rights, so a bug in triage could
  then write act's topic; one client per service keeps the least-privilege boundary and costs one
  connection more per service;
* its own settings, read from `CITYOPS_<SERVICE>_*` first: the packed process gets each member's Kafka
  identity and metrics port under that member's prefix (`member_env`), since the hub-wide names can
  hold only one;
* its own log context: each app is started and stopped in its own `contextvars.Context`, so the
  `service=` field every service binds at start stays on its own lines (and its consumers' tasks,
  created inside that context, inherit it).

All start, in the order named, before any is considered up; SIGTERM or SIGINT stops all (each finishes
its current batch), in reverse order. A member that fails to start, or a member's background task
(ticks, upkeep) that dies, stops the whole process with exit code 1: the supervisor (systemd, compose,
`cityops up`) restarts all of it, rather than half a process running on without one of its steps.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faststream import FastStream

from services.common.logs import get_logger

log = get_logger(__name__)

# How often the watch looks at the members' background tasks; a dead one stops the process within this.
WATCH_EVERY_S = 0.5


class MemberCrashed(RuntimeError):
    """A member of a packed process failed to start or lost a background task: the process must go down."""


@dataclass
class Member:
    name: str
    app: FastStream
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    started: bool = False

    async def in_own_context(self, call: Callable[[], Any]) -> Any:
        return await asyncio.create_task(call(), context=self.context)

    def crashed_task(self) -> BaseException | None:
        """The exception of a background task (tick, upkeep) that ended with one, if any."""
        for task in self.app.context.get("service_tasks") or ():
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None


def settings_prefix(name: str) -> str:
    """The environment prefix of service `name`'s own settings (e.g. CITYOPS_UNIT_ for units)."""
    from services.common.settings import ServiceSettings

    module = importlib.import_module(f"services.{name.replace('-', '_')}.settings")
    for value in vars(module).values():
        if (isinstance(value, type) and issubclass(value, ServiceSettings) and value is not ServiceSettings
                and value.service_name == name):
            return str(value.model_config.get("env_prefix", ""))
    raise LookupError(f"services.{name}.settings has no settings class for {name}")


def member_env(name: str, hub_wide: Mapping[str, str]) -> dict[str, str]:
    """`hub_wide` settings (CITYOPS_KAFKA_USERNAME=...) as service `name`'s own (CITYOPS_TRIAGE_KAFKA_USERNAME=...)."""
    prefix = settings_prefix(name)
    return {prefix + key.removeprefix("CITYOPS_"): value for key, value in hub_wide.items() if key.startswith("CITYOPS_")}


async def run_together(apps: Mapping[str, FastStream], stop: asyncio.Event | None = None,
                       watch_every_s: float = WATCH_EVERY_S) -> None:
    """Run `apps` (service name -> FastStream app) on this loop until `stop` is set, a signal arrives or
    a member crashes (then MemberCrashed is raised, after every started member was stopped)."""
    stop = stop or asyncio.Event()
    members = [Member(name, app) for name, app in apps.items()]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for member in members:
            try:
                await member.in_own_context(member.app.start)
            except Exception as exc:
                raise MemberCrashed(f"{member.name} failed to start: {exc!r}") from exc
            member.started = True
        log.info("packed_process_started", services=[m.name for m in members])
        await _watch(members, stop, watch_every_s)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await _stop_all(members)


async def _watch(members: Sequence[Member], stop: asyncio.Event, every_s: float) -> None:
    while not stop.is_set():
        for member in members:
            exc = member.crashed_task()
            if exc is not None:
                log.error("packed_member_crashed", service=member.name, error=repr(exc))
                raise MemberCrashed(f"{member.name} lost a background task: {exc!r}") from exc
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except TimeoutError:
            continue


async def _stop_all(members: Sequence[Member]) -> None:
    # Reverse start order; one member failing to stop must not leave the others running.
    for member in reversed(members):
        if not member.started:
            continue
        try:
            await member.in_own_context(member.app.stop)
        except Exception as exc:  # noqa: BLE001 - logged; the others still stop
            log.error("packed_member_stop_failed", service=member.name, error=repr(exc))


# ---------------------------------------------------------------------------------------------- process plans

# `cityops up --packed` / `cityops bench --packed`: the workflow in three processes instead of eight. The
# five steps in two (so the two cores can both work on the pipeline), the read side in a third.
PACKED_GROUPS = "discover+triage+consult,act+evaluate,sla+projections+archiver"
# HTTP services serve a port each with uvicorn; they keep a process of their own.
HTTP_SERVICES = frozenset({"intake", "bridge", "console"})
# At or below this many cores `cityops up` and `cityops bench` pack by default: on two cores the bench measured
# -36 % memory (the only plan under 2 GiB) and a lower latency at moderate load, for about the same CPU per ticket;
# a burst is absorbed more slowly (the read side shares one process). docs/performance.md, "The last stop".
PACK_AT_MOST_CORES = 2


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which a container or taskset narrows), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def chosen_groups(groups: str, packed: bool | None, cores: int | None = None) -> str:
    """The process groups a hub runs: `--groups` when given, else `--packed` / `--separate`, else packed on a
    machine of at most PACK_AT_MOST_CORES cores and separate on a larger one."""
    if groups:
        return groups
    if packed is None:
        packed = (usable_cores() if cores is None else cores) <= PACK_AT_MOST_CORES
    return PACKED_GROUPS if packed else ""


def parse_groups(text: str) -> list[tuple[str, ...]]:
    """`a+b,c+d` -> [(a, b), (c, d)]; refuses a service named twice or an HTTP service in a group."""
    groups = [tuple(m.strip() for m in part.split("+") if m.strip()) for part in text.split(",") if part.strip()]
    seen: set[str] = set()
    for group in groups:
        for name in group:
            if name in seen:
                raise ValueError(f"{name} is in two process groups: {text!r}")
            if name in HTTP_SERVICES and len(group) > 1:
                raise ValueError(f"{name} serves HTTP and runs in a process of its own; remove it from {'+'.join(group)}")
            seen.add(name)
    return groups


def process_plan(names: Sequence[str], groups: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The processes that run `names`, in start order: a group (of its members in `names`) at its first member's
    place, every other name alone. Members `names` lacks (an optional service not installed) are left out."""
    group_of = {name: tuple(m for m in group if m in names) for group in groups for name in group}
    plan: list[tuple[str, ...]] = []
    for name in names:
        members = group_of.get(name, (name,))
        if members not in plan:
            plan.append(members)
    return plan


def process_name(members: Sequence[str]) -> str:
    """A process's name in the supervisor and its log file: its services joined by '+'."""
    return "+".join(members)
