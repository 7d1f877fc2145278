"""The five steps end to end: the real broker, every service as its own OS process, tickets over
HTTP and Open311, and each branch of the lifecycle.

Simulated units answer for every unit except `housing`, which this test plays itself through the
unit SDK (as a department's own system would), so it can return a task and dispute a plan.
Callbacks and supervisor decisions go through the hotline API, as operators and supervisors do.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import codec
from contracts import events as ev
from contracts.topics import ACT, CHANNEL_INTAKE, CONSULT, EVALUATE, TRIAGE, UNIT_REPORTS
from domain.catalogue import load_catalogue
from domain.holders import bounds_for, check_tiles, ledger_for
from domain.statuses import TicketStatus
from services.common.kafka import kafka_access
from services.common.settings import REPO_ROOT, KafkaClientSettings
from services.intake.domain import ticket_id_for
from services.units.sdk import UnitClient
from tests.harness.auth import TEST_KEY, bearer, token
from tests.harness.http import wait_healthy
from tests.harness.topics import fresh_hub_topics
from tools.supervisor import Supervisor

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

SDK_UNIT = "housing"
RUN = uuid.uuid4().hex[:8]  # keeps this run's tickets apart from a previous run's on a reused broker
HTTP_PORT = int(os.environ.get("CITYOPS_TEST_HTTP_PORT", "18080"))
SERVICES = ["discover", "triage", "consult", "act", "evaluate"]
EAST = {"district": "district-east", "street": "street-east-1", "community": "community-east-1-a", "grid": "grid-east-1-a-1"}


class Hub:
    """Every service as its own OS process, through the one supervisor the hub and the benchmark use."""

    def __init__(self, bootstrap: str, state: Path, node: Any = None) -> None:
        self.bootstrap, self.state, self.node = bootstrap, state, node
        units = [u for u in load_catalogue().units_for_topics() if u != SDK_UNIT]
        # Never the test's own (admin) identity: each process is its own principal (kafka_env).
        inherited = {k: v for k, v in os.environ.items() if k not in ("CITYOPS_KAFKA_USERNAME", "CITYOPS_KAFKA_PASSWORD")}
        self.env = dict(inherited, CITYOPS_KAFKA_BOOTSTRAP=bootstrap, CITYOPS_STATE_DIR=str(state), CITYOPS_LOG_JSON="true",
                        CITYOPS_INTAKE_HTTP_PORT=str(HTTP_PORT), CITYOPS_BATCH_TIMEOUT_MS="20",
                        CITYOPS_UNIT_UNITS="[" + ",".join(f'"{u}"' for u in units) + "]",
                        CITYOPS_UNIT_P_RETURN="0", CITYOPS_UNIT_P_EXTENSION="0", CITYOPS_UNIT_P_DISAGREE="0",
                        CITYOPS_UNIT_SIGN_DELAY_S="0.05", CITYOPS_UNIT_WORK_DELAY_S="0.3",
                        CITYOPS_CONSULT_OPINION_WINDOW_S="60", PYTHONUNBUFFERED="1",
                        # every HTTP call carries a token; the simulated hotline staff post with their own
                        CITYOPS_AUTH_KEY=TEST_KEY, CITYOPS_UNIT_HOTLINE_TOKEN=token("operator", "simulated-callback-desk"),
                        CITYOPS_UNIT_SUPERVISOR_TOKEN=token("supervisor", "simulated-supervisor"))
        self.supervisor = Supervisor(state, env=self.env, cwd=REPO_ROOT, stop_timeout=20,
                                     kafka_env=node.client_env if node is not None else None)

    def kafka_login(self, principal: str) -> dict[str, str]:
        """Username and password of a principal of the session's broker (none on an external broker)."""
        if self.node is None:
            return {}
        return {"username": principal, "password": self.node.credentials.password(principal)}

    def start(self, name: str) -> None:
        self.supervisor.start_service(name)

    def kill(self, name: str) -> None:
        self.supervisor.kill(name)  # SIGKILL: a crash, not a clean stop

    def stop_all(self) -> None:
        self.supervisor.stop_all()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in sorted(self.state.glob("*.log")))


@pytest.fixture(scope="module")
def hub(kafka_bootstrap: str, kafka_node: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    asyncio.run(fresh_hub_topics(kafka_bootstrap))  # as the admin, who alone may create topics; a clean log
    h = Hub(kafka_bootstrap, tmp_path_factory.mktemp("hub"), kafka_node)
    try:
        for name in [*SERVICES, "units", "intake"]:
            h.start(name)
        asyncio.run(wait_healthy(HTTP_PORT))
        # Every step consuming before the first complaint: a step still training its model at start would read a
        # backlog across partitions out of submission order (a repeat registered before the ticket it repeats).
        for name in SERVICES:
            h.supervisor.wait_started(name)
        yield h
    finally:
        h.stop_all()



class Story:
    """Every event of the workflow topics, read back from Kafka once, grouped by ticket (duplicates by id dropped)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._by_ticket: dict[str, dict[str, Any]] | None = None

    async def _load(self) -> dict[str, dict[str, Any]]:
        consumer = AIOKafkaConsumer(TRIAGE.name, CONSULT.name, ACT.name, EVALUATE.name, "cityops.tickets.v1", UNIT_REPORTS.name,
                                    **kafka_access(self.bootstrap).options, auto_offset_reset="earliest", group_id=None,
                                    enable_auto_commit=False)
        await consumer.start()
        by_ticket: dict[str, dict[str, Any]] = {}
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1500, max_records=5000)
                if not batch:
                    break
                for rs in batch.values():
                    for r in rs:
                        e = codec.decode(r.key, r.value, r.headers)
                        by_ticket.setdefault(e.ticket_id, {})[e.id] = e
        finally:
            await consumer.stop()
        return by_ticket

    async def events(self, ticket_id: str) -> list[Any]:
        if self._by_ticket is None:
            self._by_ticket = await self._load()
        return sorted(self._by_ticket.get(ticket_id, {}).values(), key=lambda e: e.time)


async def _status(client: httpx.AsyncClient, ticket_id: str) -> dict[str, Any] | None:
    r = await client.get(f"/tickets/{ticket_id}")
    return r.json() if r.status_code == 200 else None


async def wait_status(client: httpx.AsyncClient, ticket_id: str, wanted: set[str], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await _status(client, ticket_id)
        if last and last["status"] in wanted:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{ticket_id} never reached {wanted}; last seen {last}")


async def callback_operator(client: httpx.AsyncClient, unsatisfied_once: set[str], stop: asyncio.Event) -> None:
    """Plays the hotline's callback desk: satisfied, except the first call of the tickets named."""
    called: set[tuple[str, int]] = set()
    while not stop.is_set():
        try:
            handled = (await client.get("/tickets", params={"status": "handled", "limit": 1000})).json()
        except httpx.HTTPError:  # intake is being restarted by the test
            await asyncio.sleep(0.3)
            continue
        for row in handled:
            key = (row["ticket_id"], row["round"])
            if key in called:
                continue
            called.add(key)
            unhappy = row["ticket_id"] in unsatisfied_once and row["round"] == 1
            try:
                await client.post("/callbacks", json={"ticket_id": row["ticket_id"], "round": row["round"], "resolved": not unhappy,
                                                      "satisfaction": "unsatisfied" if unhappy else "satisfied"})
            except httpx.HTTPError:
                called.discard(key)
        await asyncio.sleep(0.2)


async def housing_department(hub: Hub, returns: set[str], disputes: set[str], stop: asyncio.Event,
                             seen: list[Any]) -> None:
    """The housing bureau's own system, through the SDK: returns or disputes the named tickets, does the rest."""
    async with UnitClient(hub.bootstrap, SDK_UNIT, **hub.kafka_login(f"unit-{SDK_UNIT}")) as unit:  # its own principal
        async for item in unit.tasks():
            seen.append(item)
            match item.data:
                case ev.TaskAssigned(role=ev.Role.lead, final=False) if item.ticket_id in returns:
                    await unit.sign_for(item)
                    await unit.return_task(item, "not a housing matter: a market supervision case", "market-supervision")
                case ev.TaskAssigned():
                    await unit.sign_for(item)
                    await unit.complete(item, "housing bureau inspected and fixed it")
                case ev.ConsultationRequested():
                    disagree = item.ticket_id in disputes
                    await unit.give_opinion(item, agrees=not disagree, proposed_lead="street-east-1" if disagree else None)
            if stop.is_set():
                return


async def produce_channel(hub: Hub, records: list[tuple[bytes, bytes]]) -> None:
    """A partner system on the machine channel, as the channels' principal."""
    login = hub.kafka_login("channels")
    settings = KafkaClientSettings(kafka_bootstrap=hub.bootstrap, **{f"kafka_{k}": v for k, v in login.items()})
    producer = AIOKafkaProducer(**kafka_access(settings).options, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(CHANNEL_INTAKE.name, value, key=key)
    finally:
        await producer.stop()


async def read_dlq(bootstrap: str, topic: str, key_prefix: bytes, timeout: float = 30) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, **kafka_access(bootstrap).options, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            found += [r for rs in batch.values() for r in rs if (r.key or b"").startswith(key_prefix)]
            if found and not batch:
                break
    finally:
        await consumer.stop()
    return found


async def wait_for_text(client: httpx.AsyncClient, fragment: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in (await client.get("/tickets", params={"limit": 1000})).json():
            if fragment in row["text"]:
                return row
        await asyncio.sleep(0.3)
    raise AssertionError(f"no ticket with {fragment!r}")


def submit(client: httpx.AsyncClient, text: str, **extra: Any) -> Any:
    body = {"text": text, "caller_name": "张三", "caller_phone": "13812345678", **extra}
    return client.post("/tickets", json=body, headers={"Idempotency-Key": f"e2e-{RUN}-" + hashlib.sha1(f"{text}|{extra.get('category')}".encode()).hexdigest()})


async def _run_scenarios(hub: Hub) -> None:
    story = Story(hub.bootstrap)
    stop = asyncio.Event()
    housing_seen: list[Any] = []
    base = f"http://127.0.0.1:{HTTP_PORT}"
    ids: dict[str, str] = {}
    batch: list[str] = []
    # The test plays an operator (submits, follows, decides); the supervisor and the register post with their own tokens.
    async with httpx.AsyncClient(base_url=base, timeout=10, headers=bearer("operator", "op-7")) as client:

        async def new(name: str, text: str, **extra: Any) -> str:
            r = await submit(client, text, **extra)
            assert r.status_code == 202, r.text
            ids[name] = r.json()["ticket_id"]
            return ids[name]

        # Submitting twice with the same Idempotency-Key is one ticket.
        first = await new("light", "小区门口的路灯坏了好几天了，晚上很黑", location=EAST, category="city-management.street-light")
        again = await submit(client, "小区门口的路灯坏了好几天了，晚上很黑", location=EAST, category="city-management.street-light")
        assert again.json()["ticket_id"] == first
        # Bad input: 422 naming the field, nothing published.
        bad = await client.post("/tickets", json={"text": "x", "caller_phone": "not-a-phone", "category": "no.such"})
        assert bad.status_code == 422 and {tuple(e["loc"])[-1] for e in bad.json()["detail"]} >= {"text", "caller_phone"}

        await new("repeat", "小区门口的路灯坏了好几天了，晚上黑乎乎的", location=EAST)
        await new("gibberish", "xyzzy plugh qwerty 42", location=EAST)
        await new("returned", "新买的商品房墙体开裂，开发商不管", location=EAST, category="housing.new-home-quality")
        await new("consulted", "化工厂往河里排污水，河水发黑发臭", location=EAST, category="environment.water-pollution")
        await new("disputed", "小区物业和业主委员会因为停车位归属闹矛盾", location=EAST, category="housing.property-dispute")
        o311 = await client.post("/open311/v2/requests.json", data={
            "service_code": "market-supervision.price", "description": "Shop charging far above the posted price",
            "lat": "31.23", "long": "121.47", "first_name": "Li", "phone": "13900001111"})
        assert o311.status_code == 201, o311.text
        ids["open311"] = o311.json()[0]["service_request_id"]

        # A grid worker's app on the machine channel: one good record, one malformed (dead-lettered).
        await produce_channel(hub, [(f"patrol-{RUN}:1".encode(), json.dumps({"text": "井盖丢失，行人容易掉下去", "channel": "grid-patrol",
                                                                          "location": EAST}).encode()),
                                              (f"patrol-{RUN}:2".encode(), b'{"text": 42')])
        ids["channel"] = ticket_id_for(f"channel:patrol-{RUN}:1")
        # A register reports a resident turning 70: the city reaches out first.
        r = await client.post("/residents/events", json={"resident_ref": f"R-{RUN}", "kind": "birthday", "age": 70,
                                                         "occurred_on": "2026-05-06T08:00:00+08:00", "location": EAST},
                              headers=bearer("app", "civil-register", client_id="civil-register"))
        assert r.status_code == 202, r.text

        workers = [asyncio.create_task(housing_department(hub, {ids["returned"]}, {ids["disputed"]}, stop, housing_seen))]
        try:
            # Repeat merged into its master, then split again: handled on its own. The callback desk starts only
            # after the split: the master closes at its callback, and a repeat still merged then closes with it.
            await wait_status(client, ids["repeat"], {"merged"})
            assert (await _status(client, ids["repeat"]))["master_ticket_id"] == ids["light"]
            assert (await client.post(f"/tickets/{ids['repeat']}/split", json={"reason": "different lamp"})).status_code == 202
            await wait_status(client, ids["repeat"], {s.value for s in TicketStatus} - {"merged", "closed"})
            workers.append(asyncio.create_task(callback_operator(client, {ids["light"]}, stop)))
            # Low confidence -> manual triage -> an operator decides.
            await wait_status(client, ids["gibberish"], {"manual-triage"})
            r = await client.post(f"/triage/{ids['gibberish']}/resolve", json={"category": "hotline.policy-inquiry"})
            assert r.status_code == 202, r.text
            # Disagreement -> supervisor review -> a final decision.
            row = await wait_status(client, ids["disputed"], {"supervisor-review"})
            r = await client.post("/supervisor/decisions", json={"ticket_id": ids["disputed"], "lead": "street-east-1",
                                                                  "co_units": ["housing"], "level": "street",
                                                                  "consultation_id": row["consultation_id"]},
                                 headers=bearer("supervisor", "sup-1"))
            assert r.status_code == 202, r.text

            proactive = await wait_for_text(client, "年满70周岁")
            ids["proactive"] = proactive["ticket_id"]
            closed = {name: await wait_status(client, tid, {"closed"}, timeout=120) for name, tid in ids.items()}
            assert {n: c["outcome"] for n, c in closed.items()} == {n: "resolved" for n in ids}

            # Kill each service in turn (SIGKILL, mid-run) and restart it: no ticket is lost.
            for name in [*SERVICES, "units", "intake"]:
                batch += [await new(f"{name}-{i}", f"Garbage not collected on lane {i} near {name} road") for i in range(3)]
                hub.kill(name)
                await asyncio.sleep(1)
                hub.start(name)
                if name == "intake":
                    await wait_healthy(HTTP_PORT)
            for tid in batch:
                await wait_status(client, tid, {"closed"}, timeout=180)
        finally:
            stop.set()
            for w in workers:
                w.cancel()

    # What each branch left on the log.
    light = await story.events(ids["light"])
    assert [e.data.round for e in light if isinstance(e.data, ev.TicketReopened)] == [2]
    assert [e.data.rounds for e in light if isinstance(e.data, ev.TicketClosed)] == [2]
    handled_light = [e.data for e in light if isinstance(e.data, ev.TicketHandled)]
    assert len(handled_light) == 2 and set(handled_light[0].units) == {"city-management", "power"}  # co-handled

    repeat = await story.events(ids["repeat"])
    assert [type(e.data).__name__ for e in repeat][:3] == ["TicketRegistered", "TicketMerged", "SplitRequested"]
    assert any(isinstance(e.data, ev.TicketSplit) for e in repeat)

    gib = await story.events(ids["gibberish"])
    assert any(isinstance(e.data, ev.ManualTriageRequested) for e in gib)
    assert [e.data.method for e in gib if isinstance(e.data, ev.TicketClassified)] == ["manual"]

    returned = await story.events(ids["returned"])
    reroutes = [e.data for e in returned if isinstance(e.data, ev.RerouteRequested)]
    assert reroutes and reroutes[0].excluded_units == (SDK_UNIT,)
    second = [e.data for e in returned if isinstance(e.data, ev.TicketClassified)][-1]
    assert second.method == "reroute" and SDK_UNIT not in (second.routing.lead, *second.routing.co_units)
    assert all(e.data.unit != SDK_UNIT for e in returned if isinstance(e.data, ev.TaskAssigned) and e.data.task_id.endswith(":2"))

    consulted = await story.events(ids["consulted"])
    assert any(isinstance(e.data, ev.PlanAgreed) for e in consulted)
    handled = [e.data for e in consulted if isinstance(e.data, ev.TicketHandled)][0]
    assert handled.units[0] == "environment" and set(handled.units) == {"environment", "water", "city-management"}

    disputed = await story.events(ids["disputed"])
    review = [e.data for e in disputed if isinstance(e.data, ev.SupervisorReviewRequested)]
    assert review and ("housing", False, "street-east-1") in review[0].opinions
    finals = [e.data for e in disputed if isinstance(e.data, ev.TaskAssigned)]
    assert finals and all(t.final for t in finals) and finals[0].unit == "street-east-1"

    dead = await read_dlq(hub.bootstrap, CHANNEL_INTAKE.dlq, f"patrol-{RUN}".encode())
    assert [r.key for r in dead] == [f"patrol-{RUN}:2".encode()] and b"invalid channel submission" in dict(dead[0].headers)["dlq_error"]
    channel = await story.events(ids["channel"])
    assert channel[0].data.ticket.channel == "grid-patrol"
    proactive = await story.events(ids["proactive"])
    assert proactive[0].data.ticket.proactive_rule == "old-age-allowance-70"
    assert [e.data.category for e in proactive if isinstance(e.data, ev.TicketClassified)] == ["civil-affairs.elderly-services"]

    o311 = await story.events(ids["open311"])
    assert any(isinstance(e.data, ev.TicketClosed) for e in o311)
    # Whose clock was running: for every ticket, the ledger's spans tile its whole life exactly.
    for tid in [*ids.values(), *batch]:
        events = await story.events(tid)
        check_tiles(ledger_for(events), *bounds_for(events))

    # Privacy: nothing the housing bureau received carries the caller's number.
    assert housing_seen and all("13812345678" not in item.model_dump_json() for item in housing_seen)


def test_every_branch_of_the_five_steps(hub: Hub) -> None:
    try:
        asyncio.run(asyncio.wait_for(_run_scenarios(hub), timeout=540))
    except BaseException:
        print(hub.logs())
        raise
