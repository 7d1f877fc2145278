"""The simulated callback operator, as a running units service on the real broker, answers a callback
request through intake's HTTP API (served for the test), not by writing a step topic, with its own token."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlmodel import Session

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import AUDIT, COMMANDS, CONSULT, EVALUATE, unit_topic_spec
from domain.catalogue import load_catalogue
from services.common.kafka import ensure_topics, kafka_access
from services.common.store import create_tables, make_engine
from services.intake.api import build_api
from services.intake.models import TicketStatus
from services.units.app import create_app
from services.units.settings import UnitSettings
from tests.harness.auth import token, verifier
from tests.harness.ports import free_port


async def _records_of(bootstrap: str, topic: str, key: bytes) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, **kafka_access(bootstrap).options, auto_offset_reset="earliest", group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=2000)
        return [r for rs in batch.values() for r in rs if r.key == key]
    finally:
        await consumer.stop()


async def test_the_simulated_callback_operator_goes_through_intake(kafka_bootstrap, unique, tmp_path):
    await ensure_topics(kafka_bootstrap, [EVALUATE, CONSULT, COMMANDS, unit_topic_spec("water")])
    ticket_id = f"T-HOT-{unique}"
    now = datetime.now(UTC)
    published: list[tuple[str, Envelope[Any]]] = []

    async def publish(topic: str, envelope: Envelope[Any]) -> None:
        if topic != AUDIT.name:
            published.append((topic, envelope))

    intake_engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    create_tables(intake_engine, [TicketStatus.__table__])
    with Session(intake_engine) as s, s.begin():
        s.add(TicketStatus(ticket_id=ticket_id, status="awaiting-callback", requested_at=now, updated_at=now))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_api(publish=publish, engine=intake_engine, catalogue=load_catalogue(),
                                                     now=lambda: now, verifier=verifier()),
                                           host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())

    settings = UnitSettings(kafka_bootstrap=kafka_bootstrap, units=["water"], callbacks=True, sign_delay_s=0, tick_s=0.05,
                            consumer_group=f"units-{unique}", db_url=f"sqlite:///{tmp_path / 'units.db'}",
                            hotline_url=f"http://127.0.0.1:{port}", hotline_token=token("operator", "simulated-callback-desk"))
    app = create_app(settings)
    await app.start()
    request = Envelope.origin(ev.CallbackRequested(round=1, caller=ev.CallerRef(anonymous=True), units=("water",)),
                              source="/cityops/evaluate", ticket_id=ticket_id, time=now)
    try:
        producer = AIOKafkaProducer(**kafka_access(kafka_bootstrap).options)
        await producer.start()
        try:
            rec = codec.encode(request)
            await producer.send_and_wait(EVALUATE.name, rec.value, key=rec.key, headers=rec.headers)
        finally:
            await producer.stop()
        deadline = asyncio.get_running_loop().time() + 60
        while not [e for _, e in published if e.ticket_id == ticket_id]:
            assert asyncio.get_running_loop().time() < deadline, "the simulated callback never reached intake"
            await asyncio.sleep(0.1)
    finally:
        await app.stop()
        server.should_exit = True
        await serving

    (topic, command), = [(t, e) for t, e in published if e.ticket_id == ticket_id]
    assert topic == COMMANDS.name and isinstance(command.data, ev.CallbackSubmitted)
    assert command.data.operator == "simulated-callback-desk" and command.data.round == 1  # from its token
    # The units wrote nothing on evaluate's topic: only the request the test put there.
    on_evaluate = await _records_of(kafka_bootstrap, EVALUATE.name, ticket_id.encode())
    assert [codec.decode(r.key, r.value, r.headers).type for r in on_evaluate] == [ev.CallbackRequested.event_type]
