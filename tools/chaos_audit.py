"""What a chaos run (`cityops chaos`) checks once the hub has drained: read from the log as the admin,
from the services' own SQLite stores, and from a rebuild of the projections compared with the live ones.

Duplicated effects are told apart from harmless redeliveries by event id: the same event delivered twice
carries the same id and every consumer drops the copy; the same effect under two different ids is a
real duplicate that consumers cannot recognise.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import codec
from contracts.envelope import Envelope
from contracts.events.act import TaskAssigned
from contracts.events.discover import TicketSubmitted
from contracts.events.evaluate import TicketClosed
from contracts.events.sla import SlaReminderSent
from contracts.topics import ACT, EVALUATE, INTAKE, SLA
from services.common.kafka import kafka_access
from tools.supervisor import cityops_argv

AUDITED_TOPICS = (INTAKE.name, ACT.name, EVALUATE.name, SLA.name)
BOOKKEEPING_LEFT = ("outbox", "parked_events")


@dataclass
class LogFacts:
    """The effects found on the log, by what makes each one unique, with the event ids that carried it."""

    submitted: set[str] = field(default_factory=set)
    closed: dict[tuple[str, int], set[str]] = field(default_factory=lambda: defaultdict(set))
    assigned: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    reminders: dict[tuple[str, str, float], set[str]] = field(default_factory=lambda: defaultdict(set))
    undecodable: int = 0

    def add(self, event: Envelope[Any]) -> None:
        data = event.data
        if isinstance(data, TicketClosed):
            self.closed[(event.ticket_id, data.rounds)].add(event.id)
        elif isinstance(data, TaskAssigned):
            self.assigned[data.task_id].add(event.id)
        elif isinstance(data, SlaReminderSent):
            self.reminders[(data.task_id, data.clock, data.fraction)].add(event.id)
        elif isinstance(data, TicketSubmitted):
            self.submitted.add(event.ticket_id)

    def closed_tickets(self) -> set[str]:
        return {ticket for ticket, _ in self.closed}

    def duplicates(self) -> dict[str, list[str]]:
        """Each kind of effect that happened more than once under different event ids, by what it was."""
        return {
            "ticket closed twice in one round": sorted(f"{t} round {r}" for (t, r), ids in self.closed.items() if len(ids) > 1),
            "task assigned twice": sorted(task for task, ids in self.assigned.items() if len(ids) > 1),
            "reminder sent twice": sorted(f"{t} {c} {f:g}" for (t, c, f), ids in self.reminders.items() if len(ids) > 1),
        }


async def read_log_facts(bootstrap: str, topics: Sequence[str] = AUDITED_TOPICS) -> LogFacts:
    """Every record of `topics` from offset zero to their current end (as the admin)."""
    facts = LogFacts()
    consumer = AIOKafkaConsumer(**kafka_access(bootstrap).options, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topics)
        if not partitions:
            return facts
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=2000, max_records=5000)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    try:
                        facts.add(codec.decode(record.key, record.value, record.headers))
                    except Exception:  # noqa: BLE001 - counted, not fatal: the audit reports it
                        facts.undecodable += 1
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return facts


async def dead_letters(bootstrap: str) -> dict[str, int]:
    """Records on every dead-letter topic that has any, by topic."""
    consumer = AIOKafkaConsumer(**kafka_access(bootstrap).options, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, sorted(t for t in await consumer.topics() if t.endswith(".dlq")))
        if not partitions:
            return {}
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    counts: dict[str, int] = defaultdict(int)
    for tp in partitions:
        counts[tp.topic] += ends[tp] - starts[tp]
    return {topic: n for topic, n in counts.items() if n}


async def _partitions(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    if any(consumer.partitions_for_topic(t) is None for t in topics):
        await consumer._client.force_metadata_update()  # noqa: SLF001 - a consumer without subscription has none yet
    return [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]


def rows_left(state_dir: Path, services: Iterable[str]) -> dict[str, dict[str, int]]:
    """Outbox and parked rows still in each service's SQLite store (read only; a missing table counts nothing)."""
    left: dict[str, dict[str, int]] = {}
    for name in services:
        path = state_dir / f"{name}.db"
        if not path.exists():
            continue
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
            counts = {t: int(db.execute(f"select count(*) from {t}").fetchone()[0]) for t in BOOKKEEPING_LEFT if t in tables}  # noqa: S608 - fixed names
        if any(counts.values()):
            left[name] = counts
    return left


@dataclass
class ProjectionCheck:
    equal: bool | None  # None: could not be checked (no live store, rebuild failed)
    tables: dict[str, bool] = field(default_factory=dict)
    detail: str = ""


def check_projections(state_dir: Path, bootstrap: str, env: Mapping[str, str], attempts: int = 3) -> ProjectionCheck:
    """Rebuild every projection from the log into a fresh store and compare it with the live one.

    The live projections may still be folding the last records when the run ends, so an unequal result is
    checked again (the rebuild resumes where it stopped) before it counts."""
    live = state_dir / "projections.db"
    if not live.exists():
        return ProjectionCheck(None, detail="no live projections store (projections service not run)")
    rebuilt = state_dir / "projections-rebuilt.db"
    rebuilt.unlink(missing_ok=True)
    check = ProjectionCheck(None)
    for _ in range(attempts):
        run = _cityops(env, "replay", "rebuild", "--db", f"sqlite:///{rebuilt}", "--bootstrap", bootstrap, "--json", "--no-progress")
        if run.returncode != 0:
            return ProjectionCheck(None, detail=f"rebuild failed: {run.stderr[-500:]}")
        compared = _cityops(env, "replay", "checksum", "--db", f"sqlite:///{live}", "--against", f"sqlite:///{rebuilt}", "--json")
        try:
            digest = json.loads(compared.stdout)
        except ValueError:
            return ProjectionCheck(None, detail=f"checksum failed: {compared.stderr[-500:]}")
        mine, theirs = digest["checksum"]["tables"], digest["against"]["tables"]
        check = ProjectionCheck(bool(digest["equal"]), {name: mine[name] == theirs.get(name) for name in mine},
                                f"live {digest['checksum']['digest'][:16]} rebuilt {digest['against']['digest'][:16]}")
        if check.equal:
            return check
        time.sleep(10)
    return check


def _cityops(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cityops_argv(*args), env=dict(env), capture_output=True, text=True, timeout=600, check=False)
