"""`cityops triage train --from-log` learns from what people confirmed on the log, not from the model's guesses."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from contracts import codec
from contracts.envelope import Envelope
from contracts.events import TicketClassified
from contracts.examples import build_example
from contracts.topics import TRIAGE
from services.common.kafka import ensure_topics, kafka_access
from services.triage.logdata import confirmed_examples
from tools.topics_cli import hub_topics


async def test_only_confirmed_categories_become_training_examples(kafka_bootstrap, unique):
    await ensure_topics(kafka_bootstrap, hub_topics())
    base = build_example(TicketClassified)
    rows = [("operator", "water.outage"), ("manual", "city-management.street-light"), ("model", "power.outage")]
    producer = AIOKafkaProducer(**kafka_access(kafka_bootstrap).options, acks="all")
    await producer.start()
    try:
        for i, (method, category) in enumerate(rows):
            ticket = base.ticket.model_copy(update={"text": f"{unique} complaint {i}"})
            data = base.model_copy(update={"method": method, "category": category, "ticket": ticket})
            rec = codec.encode(Envelope.origin(data, source="/test", ticket_id=f"T-{unique}-{i}"))
            await producer.send_and_wait(TRIAGE.name, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await producer.stop()
    texts, labels = await confirmed_examples(kafka_bootstrap)
    mine = {t: c for t, c in zip(texts, labels) if t.startswith(unique)}
    assert mine == {f"{unique} complaint 0": "water.outage", f"{unique} complaint 1": "city-management.street-light"}
