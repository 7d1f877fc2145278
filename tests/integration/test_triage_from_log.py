"""`cityops triage train --from-log` learns from what people confirmed on the log, not from the model's guesses, on
top of the seed sentences; a running triage process takes a model `cityops triage publish` publishes, without a
restart, and names its version in the next tickets' classifications."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from typer.testing import CliRunner

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.events import TicketClassified
from contracts.examples import build_example
from contracts.topics import TICKETS, TRIAGE
from domain.catalogue import load_catalogue
from domain.classifier import ComplaintClassifier
from services.common.kafka import ensure_topics, kafka_access
from services.triage.cli import app as triage_cli
from services.triage.handlers import TOPICS as TRIAGE_TOPICS
from services.triage.logdata import confirmed_examples
from services.triage.modelfile import model_version, publish_model
from tests.harness.topics import start_group_at_the_end
from tools.topics_cli import hub_topics

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]


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


# ---------------------------------------------------------------------- train --from-log keeps the seed sentences


async def test_train_from_log_learns_the_confirmed_categories_on_top_of_the_seed_sentences(kafka_bootstrap, unique, tmp_path):
    await ensure_topics(kafka_bootstrap, hub_topics())
    # A made-up word only the log teaches: the seeds never saw it, so only the log can put it in gas.leak.
    word = f"zorbleflux{unique}"
    await _send(kafka_bootstrap, TRIAGE.name, [
        (f"T-{unique}-{i}", _classified(f"{word} again near block {i}", "gas.leak", method)) for i, method in
        enumerate(("operator", "manual", "operator", "manual"))])
    out = tmp_path / "from-log.model"
    result = await asyncio.to_thread(CliRunner().invoke, triage_cli, [
        "train", "--from-log", kafka_bootstrap, "--holdout", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = ComplaintClassifier.load(out)
    catalogue = load_catalogue()
    # every seed category is still there (a shared test broker may hold other tests' confirmed labels too)
    assert {c.code for c in catalogue.categories} <= set(model.labels)
    assert model.predict(f"{word} again").category == "gas.leak"
    assert "seeds + event log" in model.metadata["trained_on"]


# ---------------------------------------------------------------------- a running triage takes a published model


def _tiny_model(path: Path, beep_means: str) -> Path:
    """Two labels, trained in milliseconds: 'beep' means ``beep_means``, 'hum' the other one."""
    other = "city-management.street-light" if beep_means == "water.outage" else "water.outage"
    texts = ["beep beep", "a loud beep", "beep again", "hum hum", "a low hum", "hum again"]
    labels = [beep_means] * 3 + [other] * 3
    return ComplaintClassifier().fit(texts, labels).save(path)


def _registered(ticket_id: str, text: str) -> tuple[str, ev.TicketRegistered]:
    base = build_example(ev.TicketRegistered)
    ticket = base.ticket.model_copy(update={"text": text, "category": None, "proactive_rule": None})
    return ticket_id, base.model_copy(update={"ticket": ticket, "master_ticket_id": None})


def _classified(text: str, category: str, method: str) -> TicketClassified:
    base = build_example(TicketClassified)
    return base.model_copy(update={"method": method, "category": category,
                                   "ticket": base.ticket.model_copy(update={"text": text})})


async def _send(bootstrap: str, topic: str, events: list[tuple[str, ev.Event]]) -> None:
    producer = AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all")
    await producer.start()
    try:
        for ticket_id, data in events:
            rec = codec.encode(Envelope.origin(data, source="/test", ticket_id=ticket_id))
            await producer.send_and_wait(topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await producer.stop()


class TriageOut:
    """What triage wrote on cityops.triage.v1 for this test's tickets, read as it comes."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap, self.prefix = bootstrap, prefix
        self.seen: dict[str, Any] = {}

    async def __aenter__(self) -> TriageOut:
        self.consumer = AIOKafkaConsumer(TRIAGE.name, **kafka_access(self.bootstrap).options, group_id=None,
                                         enable_auto_commit=False, auto_offset_reset="latest")
        await self.consumer.start()
        while not self.consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in self.consumer.assignment():
            await self.consumer.position(tp)  # pin "latest" now, before anything of ours is written
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def wait_for(self, ticket_id: str, timeout: float = 90.0) -> Any:
        deadline = time.monotonic() + timeout
        while ticket_id not in self.seen:
            assert time.monotonic() < deadline, f"triage wrote nothing for {ticket_id} in {timeout} s"
            for records in (await self.consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.key and r.key.decode().startswith(self.prefix):
                        self.seen[r.key.decode()] = codec.decode(r.key, r.value, r.headers).data
        return self.seen[ticket_id]


async def test_a_running_triage_switches_to_a_published_model_without_a_restart(kafka_bootstrap, kafka_node, unique, tmp_path):
    await ensure_topics(kafka_bootstrap, hub_topics())
    prefix = f"T-RELOAD-{unique}"
    state = tmp_path / "state"
    watched = state / "triage.model"
    first = publish_model(_tiny_model(tmp_path / "a.model", "water.outage"), watched, ComplaintClassifier.load)
    group = f"cityops-triage-{unique}"
    await start_group_at_the_end(kafka_bootstrap, group, TRIAGE_TOPICS)
    env = {**os.environ, **(kafka_node.client_env("triage") if kafka_node is not None else {}),
           "CITYOPS_TRIAGE_KAFKA_BOOTSTRAP": kafka_bootstrap, "CITYOPS_TRIAGE_CONSUMER_GROUP": group,
           "CITYOPS_TRIAGE_STATE_DIR": str(state), "CITYOPS_TRIAGE_DB_URL": f"sqlite:///{tmp_path / 'triage.db'}",
           "CITYOPS_TRIAGE_MODEL_CHECK_S": "0.2", "CITYOPS_TRIAGE_BATCH_TIMEOUT_MS": "50",
           "CITYOPS_TRIAGE_LOG_LEVEL": "INFO", "CITYOPS_TRIAGE_LOG_JSON": "true"}
    log = tmp_path / "triage.log"
    code = "import asyncio; from services.triage.app import create_app; asyncio.run(create_app().run())"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=log.open("ab"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        async with TriageOut(kafka_bootstrap, prefix) as out:
            await _send(kafka_bootstrap, TICKETS.name, [_registered(f"{prefix}-1", "beep beep all night")])
            before = await out.wait_for(f"{prefix}-1")
            assert isinstance(before, TicketClassified), log.read_text()[-3000:]
            assert (before.category, before.method, before.model_version) == ("water.outage", "model", first)

            result = await asyncio.to_thread(CliRunner().invoke, triage_cli, [
                "publish", str(_tiny_model(tmp_path / "b.model", "city-management.street-light")), "--to", str(watched)])
            assert result.exit_code == 0, result.output
            second = model_version(watched)
            assert second != first and second in result.output
            await asyncio.sleep(0.6)  # three check intervals: the next batch is classified by the new model

            await _send(kafka_bootstrap, TICKETS.name, [_registered(f"{prefix}-{i}", "beep beep all night") for i in (2, 3)]
                        + [_registered(f"{prefix}-lift", "我们单元加装电梯，住户意见不一，一直谈不拢")])
            after = [await out.wait_for(f"{prefix}-{i}") for i in (2, 3)]
            assert [(a.category, a.model_version) for a in after] == [("city-management.street-light", second)] * 2
            assert not any(a.needs_consultation for a in after)
            lift = await out.wait_for(f"{prefix}-lift")  # the text, not the category, convenes the parties
            assert isinstance(lift, TicketClassified) and lift.needs_consultation and lift.model_version == second
            assert "加装电梯" in (lift.consultation_reason or "") and "意见不一" in (lift.consultation_reason or "")
        assert process.poll() is None, "triage restarted or died: " + log.read_text()[-3000:]
        # The swap is logged by the running process (the first load happened before it configured JSON logs).
        loaded = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{") and '"model_loaded"' in line]
        assert [(entry["previous"], entry["version"]) for entry in loaded] == [(first, second)]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
