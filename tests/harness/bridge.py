"""The unit HTTP bridge as its app factory builds it, fed records without Kafka, served by a TestClient.

    bridge = BridgeHarness(tmp_path)
    await bridge.feed(assigned("T-1", "water"))       # through its real pipeline (dedup, parking)
    r = bridge.client.get("/tasks", headers=bridge.auth(Role.unit, unit="water"))
    bridge.sent                                       # what its HTTP routes published, decoded
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from fastapi.testclient import TestClient
from faststream.kafka import KafkaBroker

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import build_example
from contracts.topics import AUDIT, UNIT_REPORTS
from domain.catalogue import load_catalogue
from services.bridge.app import create_app
from services.bridge.handlers import TABLES
from services.bridge.settings import BridgeSettings
from services.common.auth import Principal, Role, mint_token
from services.common.store import create_tables, make_engine

from .pipeline import CapturingBroker, Clock, Record, record_of

KEY = b"bridge-tests-key-" + b"k" * 32
T0 = datetime(2026, 5, 6, 1, 0, tzinfo=UTC)  # a Wednesday, 09:00 in Shanghai
GRID = "grid-east-1-a-1"
OTHER_GRID = "grid-east-1-a-2"


def assigned(ticket_id: str, unit: str, *, role: ev.Role = ev.Role.lead, final: bool = False, at: datetime = T0,
             cause: str = "dispatch-1") -> Envelope[Any]:
    """A TaskAssigned for `unit`, as act dispatches it (caused by `cause`: tasks of one dispatch share it)."""
    example = build_example(ev.TaskAssigned)
    # A complaint, not a proactive visit (which a grid worker may not close on the spot).
    ticket = example.ticket.model_copy(update={"proactive_rule": None})
    data = example.model_copy(update={"task_id": f"{ticket_id}:{unit}:{cause}", "unit": unit, "role": role, "final": final,
                                      "round": 1, "resolution_due": None, "joint_with": (), "ticket": ticket})
    origin = Envelope.origin(build_example(ev.TicketClassified), source="/cityops/triage", ticket_id=ticket_id, time=at,
                             event_id=f"{ticket_id}-{cause}")
    return origin.caused(data, source="/cityops/act", time=at, id_extra=data.task_id)


def consultation(ticket_id: str, parties: tuple[str, ...], *, at: datetime = T0, due: timedelta = timedelta(hours=4)) -> Envelope[Any]:
    data = build_example(ev.ConsultationRequested).model_copy(update={
        "consultation_id": f"C-{ticket_id}", "parties": parties, "opinions_due": at + due})
    return Envelope.origin(data, source="/cityops/consult", ticket_id=ticket_id, time=at)


def notice(cause: Envelope[Any], data: ev.Event, *, at: datetime | None = None) -> Envelope[Any]:
    return cause.caused(data, source="/cityops/act", time=at or cause.time + timedelta(minutes=1))


class BridgeHarness:
    """The bridge's real app (routes, verifier, pipeline, store) with the broker replaced on both sides."""

    def __init__(self, directory: Path, *, units: tuple[str, ...] = ("water", "power", GRID, OTHER_GRID),
                 clock: Clock | None = None) -> None:
        self.clock = clock or Clock(T0 + timedelta(minutes=30))
        settings = BridgeSettings(kafka_bootstrap="127.0.0.1:1", state_dir=directory, units=list(units),
                                  db_url=f"sqlite:///{directory / 'bridge.db'}")
        self.engine = make_engine(settings.store_url())
        create_tables(self.engine, TABLES)
        self.broker = KafkaBroker("127.0.0.1:1")
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.audited: list[tuple[str, bytes, dict[str, str]]] = []  # the audit trail, kept apart from the reports

        async def publish(value: bytes, topic: str, *, key: bytes | None = None, headers: dict[str, str] | None = None,
                          **_: Any) -> None:
            (self.audited if topic == AUDIT.name else self.published).append((topic, value, headers or {}))

        self.broker.publish = publish  # type: ignore[method-assign]
        with mock.patch.dict(os.environ, {"CITYOPS_AUTH_KEY": KEY.decode()}):  # the hub key the verifier is built with
            self.app = create_app(settings, broker=self.broker, engine=self.engine, clock=self.clock)
        self.pipeline = self.app.state.pipelines["bridge"]
        self.pipeline.broker = CapturingBroker()
        self.client = TestClient(self.app)  # no `with`: the lifespan (broker start) does not run
        self._offsets: dict[str, int] = {}

    async def feed(self, *envelopes: Envelope[Any], topic: str | None = None) -> None:
        """Hand these events to the bridge's pipeline as one batch, each on the topic it travels on."""
        records = []
        for envelope in envelopes:
            unit = _unit_of(envelope)
            where = topic or (load_catalogue().task_topic_of(unit) if unit else UNIT_REPORTS.name)
            offset = self._offsets.get(where, 0)
            self._offsets[where] = offset + 1
            records.append(record_of(envelope, topic=where, offset=offset, key=unit))
        await self.pipeline.handle_records(records)

    async def read_back(self) -> None:
        """What the routes published, read back from the reports topic (as the running bridge does)."""
        records = [Record(topic, 0, i, None, value, [(k, v.encode()) for k, v in headers.items()])
                   for i, (topic, value, headers) in enumerate(self.published)]
        await self.pipeline.handle_records([_with_key(r) for r in records])

    @property
    def sent(self) -> list[Envelope[Any]]:
        return [codec.decode(None, value, [(k, v.encode()) for k, v in headers.items()]) for _, value, headers in self.published]

    def auth(self, role: Role, *, unit: str | None = None, grids: tuple[str, ...] = (), subject: str = "li.wei") -> dict[str, str]:
        token = mint_token(KEY, Principal(subject=subject, roles=frozenset({role}), unit=unit, grids=grids), timedelta(hours=1))
        return {"Authorization": f"Bearer {token}"}


def _with_key(record: Record) -> Record:
    ticket = record.header("ce_ticketid")
    return Record(record.topic, 0, record.offset, ticket.encode() if ticket else None, record.value, record.headers)


def _unit_of(envelope: Envelope[Any]) -> str | None:
    """The unit whose task topic the event travels on (as act sends it), None for a report."""
    d = envelope.data
    if isinstance(d, ev.TaskAssigned | ev.ExtensionDecided | ev.ReturnRejected | ev.SlaReminderSent):
        return d.unit
    if isinstance(d, ev.ConsultationRequested):
        return d.parties[0]
    return None
