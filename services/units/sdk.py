"""The unit SDK: what a department's (a district branch's, a district centre's, the hotline's) own system
calls to take its work and report back. It speaks the contracts; the responsibility catalogue only tells it
the unit's level when the caller does not.

    async with UnitClient("127.0.0.1:9092", "water", username="unit-water", password=...) as unit:
        async for task in unit.tasks():
            await unit.sign_for(task)
            await unit.complete(task, "pipe repaired")

A unit authenticates as its own principal `unit-<unit id>` (`cityops kafka client-config --principal
unit-water` prints its password), which may read only its own task topic and write only the unit reports.

Area units (street offices, communities, grids) cannot use it: their tasks share one topic
(`cityops.area.tasks.v1`) that no unit may read, since it carries every other grid's tasks too. They take
their work from the unit HTTP bridge (GET /tasks, POST /tasks/{task_id}/sign-for, .../complete: README
"Unit HTTP bridge"), which filters the shared topic by their id; `UnitClient` refuses them with
`AreaUnitError` saying so.
Without username and password the client takes them from CITYOPS_KAFKA_USERNAME / CITYOPS_KAFKA_PASSWORD
(none: an unauthenticated broker).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

from contracts import codec
from contracts.envelope import Envelope
from contracts.topics import UNIT_REPORTS, is_area_level, own_task_topic
from contracts.unit_reports import (
    complete,
    escalate,
    opinion,
    progress,
    report,
    request_extension,
    resolve_on_the_spot,
    return_task,
    sign_for,
)
from services.common.kafka import kafka_access
from services.common.settings import KafkaClientSettings

# The report builders live in contracts/unit_reports.py (the unit HTTP bridge builds the same reports);
# re-exported here, where units' own code has always found them.
__all__ = ["AreaUnitError", "UnitClient", "complete", "escalate", "opinion", "progress", "report", "request_extension",
           "resolve_on_the_spot", "return_task", "sign_for"]


class AreaUnitError(ValueError):
    """A street office, community or grid tried to read its tasks from Kafka: they come through the bridge."""


def refuse_area_unit(unit: str, level: str | None) -> None:
    """Raise AreaUnitError when `unit` (of this level; None: look it up in the packaged catalogue) is an area unit."""
    if level is None:
        from domain.catalogue import load_catalogue

        level = load_catalogue().level_of(unit)
    if is_area_level(level):
        raise AreaUnitError(
            f"unit {unit!r} is a {level} unit: area units' tasks share the topic cityops.area.tasks.v1, which no "
            "unit may read; take them from the unit HTTP bridge instead (GET /tasks as the unit, README "
            '"Unit HTTP bridge")')


class UnitClient:
    """Async client for one unit with its own task topic: iterate its inbox, send reports (each awaited: a
    unit's report is a promise). `level` is the unit's catalogue level, looked up when not given."""

    def __init__(self, bootstrap: str, unit: str, group_id: str | None = None, *, username: str | None = None,
                 password: str | None = None, level: str | None = None) -> None:
        refuse_area_unit(unit, level)
        self.unit = unit
        settings = KafkaClientSettings(kafka_bootstrap=bootstrap)
        if username:
            settings = settings.model_copy(update={"kafka_username": username,
                                                   "kafka_password": SecretStr(password) if password else None})
        self._kafka = kafka_access(settings)
        # The unit principal's ACLs allow the groups starting with cityops-unit-<unit>.
        self._group = group_id or f"cityops-unit-{unit}-sdk"
        self._producer = AIOKafkaProducer(**self._kafka.options, acks="all", enable_idempotence=True)
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> UnitClient:
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(own_task_topic(self.unit), **self._kafka.options, group_id=self._group,
                                          auto_offset_reset="earliest", enable_auto_commit=False)
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        await self._producer.stop()

    async def tasks(self, timeout_s: float | None = None) -> AsyncIterator[Envelope[Any]]:
        """Everything on the unit's topic (tasks, consultations, decisions), committed after you handled it."""
        assert self._consumer is not None, "use `async with UnitClient(...)`"
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while deadline is None or loop.time() < deadline:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    yield codec.decode(r.key, r.value, r.headers)
                    await self._consumer.commit()

    async def send(self, envelope: Envelope[Any]) -> None:
        rec = codec.encode(envelope)
        await self._producer.send_and_wait(UNIT_REPORTS.name, rec.value, key=rec.key, headers=rec.headers)

    async def sign_for(self, task: Envelope[Any], handler: str | None = None) -> None:
        await self.send(sign_for(task, self.unit, handler))

    async def report_progress(self, task: Envelope[Any], note: str, waiting_on_resident: bool = False) -> None:
        await self.send(progress(task, self.unit, note, waiting_on_resident))

    async def request_extension(self, task: Envelope[Any], amount: int, time_unit: str, reason: str) -> None:
        await self.send(request_extension(task, self.unit, amount, time_unit, reason))

    async def return_task(self, task: Envelope[Any], reason: str, suggested_unit: str | None = None) -> None:
        await self.send(return_task(task, self.unit, reason, suggested_unit))

    async def complete(self, task: Envelope[Any], result: str) -> None:
        await self.send(complete(task, self.unit, result))

    async def give_opinion(self, consultation: Envelope[Any], agrees: bool, proposed_lead: str | None = None,
                           comment: str = "") -> None:
        await self.send(opinion(consultation, self.unit, agrees, proposed_lead, comment))
