"""Kafka helpers of the benchmark: consumers assigned to every partition, the producer that feeds
submissions, and the watcher that times each ticket's assignment and closing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

from tools.bench.config import TASK_ASSIGNED, TICKET_CLOSED
from tools.bench.hub import BenchHub
from tools.bench.measure import latency_summary
from tools.bench.workload import Submission

# ============================================================================================ kafka helpers


def header_value(headers: Iterable[tuple[str, bytes]], name: str) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


async def assigned_consumer(bootstrap: str, topics: Sequence[str], *, from_end: bool, **kw: Any) -> Any:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from services.common.kafka import kafka_access

    consumer = AIOKafkaConsumer(**kafka_access(bootstrap).options, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", **kw)
    await consumer.start()
    tps = []
    for topic in topics:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer._client.force_metadata_update()  # noqa: SLF001 (a topic created a moment ago)
            parts = consumer.partitions_for_topic(topic) or set()
        tps += [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    if from_end:
        await consumer.seek_to_end(*tps)
    else:
        await consumer.seek_to_beginning(*tps)
    for tp in tps:
        await consumer.position(tp)  # resolve now, before anything is fed
    return consumer


def make_producer(bootstrap: str, linger_ms: int) -> Any:
    from aiokafka import AIOKafkaProducer

    from services.common.kafka import kafka_access

    # The same settings the services' FastStream producer runs with (services.common.kafka.make_broker).
    return AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all", enable_idempotence=True, linger_ms=linger_ms)


async def total_end_offsets(consumer: Any, tps: list[Any]) -> int:
    ends = await consumer.end_offsets(tps)
    return sum(ends.values())


async def hub_lag(admin: Any, offsets: Any, group_prefix: str = "cityops-") -> dict[str, int]:
    """Per consumer group of the hub, records on its partitions past its committed offsets."""
    listed = await admin.list_consumer_groups()
    groups = sorted({g[0] for g in listed if str(g[0]).startswith(group_prefix)})
    lag: dict[str, int] = {}
    for group in groups:
        committed = {tp: om.offset for tp, om in (await admin.list_consumer_group_offsets(group)).items() if om.offset >= 0}
        ends = await offsets.end_offsets(list(committed)) if committed else {}
        lag[group] = sum(max(0, ends[tp] - offset) for tp, offset in committed.items())
    return lag


class LagWatch:
    """The lag of the hub's consumer groups, from one admin client and one consumer kept open for the run.

    The first query takes seconds (each group's coordinator and each partition's leader are looked up; 6.5 s
    measured on a running hub, later ones 60 ms), so `start` makes it before anything is timed."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._admin: Any = None
        self._offsets: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        from services.common.kafka import kafka_access

        options = kafka_access(self.bootstrap).options
        self._admin = AIOKafkaAdminClient(**options)
        self._offsets = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False)
        await self._admin.start()
        await self._offsets.start()
        await self.lag()

    async def stop(self) -> None:
        if self._offsets is not None:
            await self._offsets.stop()
        if self._admin is not None:
            await self._admin.close()

    async def lag(self) -> dict[str, int]:
        return await hub_lag(self._admin, self._offsets)

    async def wait_caught_up(self, timeout_s: float, every_s: float = 0.1) -> tuple[float | None, dict[str, int]]:
        """When every consumer group of the hub had read all it had been given (the read side included: sla,
        projections, archiver), else None after `timeout_s`; and the lag last seen per group. Offsets are committed
        behind the next fetch, so the moment seen is at most one commit (and one query, ~60 ms) late."""
        lag: dict[str, int] = {}
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            lag = await self.lag()
            if lag and not any(lag.values()):
                return time.time(), lag
            await asyncio.sleep(every_s)
        return None, lag


# ============================================================================================ watching the workflow


class Watcher:
    """Reads cityops.act.v1 and cityops.evaluate.v1 from their end: when each submission's first
    TaskAssigned (same correlation id) arrived, and when each ticket's TicketClosed did."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.sent: dict[str, float] = {}          # submitted event id -> wall time it was handed to the producer
        self.assigned: dict[str, tuple[float, float]] = {}  # event id -> (seen here, record timestamp)
        self.closed: dict[str, float] = {}        # ticket id -> seen here
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from contracts.topics import ACT, EVALUATE

        self._consumer = await assigned_consumer(self.bootstrap, [ACT.name, EVALUATE.name], from_end=True,
                                                  fetch_max_wait_ms=50)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                for r in records:
                    ce_type = header_value(r.headers, "ce_type")
                    if ce_type == TASK_ASSIGNED:
                        corr = (header_value(r.headers, "ce_correlationid") or b"").decode()
                        if corr not in self.assigned:
                            self.assigned[corr] = (now, r.timestamp / 1000)
                    elif ce_type == TICKET_CLOSED:
                        tid = (r.key or b"").decode()
                        self.closed.setdefault(tid, now)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    async def wait_closed(self, ticket_ids: Iterable[str], timeout_s: float, hub: BenchHub | None = None) -> int:
        ids = set(ticket_ids)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ids <= self.closed.keys():
                break
            if hub is not None and hub.dead(critical_only=True):
                raise RuntimeError(f"service(s) stopped: {hub.dead(critical_only=True)}")
            await asyncio.sleep(0.1)
        return len(ids & self.closed.keys())

    def latencies(self, subs: Sequence[Submission]) -> tuple[list[float], list[float], int]:
        seen, published, missing = [], [], 0
        for s in subs:
            got = self.assigned.get(s.event_id)
            if got is None or s.event_id not in self.sent:
                missing += 1
                continue
            seen.append(got[0] - self.sent[s.event_id])
            published.append(got[1] - self.sent[s.event_id])
        return seen, published, missing


def event_types_by_name() -> dict[str, bytes]:
    from contracts import events as ev

    return {name: model.event_type.encode() for name, model in (
        ("submitted", ev.TicketSubmitted), ("registered", ev.TicketRegistered), ("classified", ev.TicketClassified),
        ("consultation", ev.ConsultationRequested), ("assigned", ev.TaskAssigned))}


async def hop_breakdown(bootstrap: str, subs: Sequence[Submission]) -> dict[str, Any]:
    """Where intake -> assignment time goes: for each step, the time from its input record to its
    output record (record timestamps, set by their producers), for the tickets given. A ticket
    whose category needs a consultation is assigned only after the parties answered (consult ->
    simulated units -> consult -> act): that step is reported apart from the direct one."""
    from contracts.topics import ACT, CONSULT, INTAKE, TICKETS, TRIAGE

    keys = {s.key for s in subs}
    t = event_types_by_name()
    first: dict[tuple[bytes, bytes], int] = {}
    consumer = await assigned_consumer(bootstrap, [INTAKE.name, TICKETS.name, TRIAGE.name, CONSULT.name, ACT.name],
                                        from_end=False)
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        want, got = sum(ends.values()), 0
        while got < want:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                break
            for records in batch.values():
                got += len(records)
                for r in records:
                    if r.key in keys:
                        first.setdefault((r.key, header_value(r.headers, "ce_type") or b""), r.timestamp)
    finally:
        await consumer.stop()

    def gaps(before: str, after: str, consulted: bool | None = None) -> dict[str, Any]:
        out = []
        for k in keys:
            if (k, t[before]) in first and (k, t[after]) in first:
                if consulted is not None and ((k, t["consultation"]) in first) != consulted:
                    continue
                out.append((first[(k, t[after])] - first[(k, t[before])]) / 1000)
        return latency_summary(out)

    consulted = sum(1 for k in keys if (k, t["consultation"]) in first)
    return {"discover": gaps("submitted", "registered"), "triage": gaps("registered", "classified"),
            "act": gaps("classified", "assigned", consulted=False),
            "consult+act": gaps("classified", "assigned", consulted=True),
            "consulted_share": round(consulted / len(keys), 3) if keys else None}


async def unclosed_report(http_port: int, watcher: Watcher, ticket_ids: Sequence[str], limit: int = 50) -> dict[str, Any]:
    """Where the tickets that did not close in time are, by the intake's status view (a sample)."""
    import httpx

    open_ids = [t for t in ticket_ids if t not in watcher.closed]
    statuses: dict[str, int] = {}
    if not open_ids:
        return {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as client:
        for tid in open_ids[:limit]:
            try:
                r = await client.get(f"/tickets/{tid}")
                status = r.json().get("status", "?") if r.status_code == 200 else f"http {r.status_code}"
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            statuses[status] = statuses.get(status, 0) + 1
    return {"unclosed": len(open_ids), "sampled": min(limit, len(open_ids)), "status_of_sample": statuses}


async def feed(producer: Any, subs: Sequence[Submission], watcher: Watcher | None, topic: str) -> float:
    """Hand each submission to the producer at its offset from now; return the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    futures = []
    for s in subs:
        delay = start + s.at - loop.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        if watcher is not None:
            watcher.sent[s.event_id] = time.time()
        futures.append(await producer.send(topic, s.value, key=s.key, headers=s.headers))
    await asyncio.gather(*futures)
    return loop.time() - start
