"""The unit inbox in a real browser (Debian's chromium) on a real broker: act's assignment is put on the unit's
task topic, the real bridge reads it, a unit user signs for and completes it from the pages, and the reports
are on the unit-reports topic; a grid worker on a phone sees their grid's task; another unit's task page is 403.
Screenshots of each page go to .state/screenshots/ (unit-*.png)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import build_example
from contracts.topics import ACT, AREA_TASKS, AUDIT, CONSULT, EVALUATE, SLA, TICKETS, TRIAGE, UNIT_REPORTS, unit_topic_spec
from domain.catalogue import load_catalogue
from services.bridge.app import create_app as create_bridge
from services.bridge.settings import BridgeSettings
from services.common.auth import Role
from services.common.kafka import ensure_topics, kafka_access
from services.console.app import create_app as create_console
from services.console.settings import ConsoleSettings
from tests.harness import browser
from tests.harness.auth import TEST_KEY, token, verifier
from tests.harness.bridge import GRID, assigned, consultation
from tests.harness.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def _realistic(ticket: Any, text: str, category: str) -> Any:
    location = ticket.location.model_copy(update={"district": "district-east", "street": "street-east-1", "community":
                                                  "community-east-1-a", "grid": GRID, "address": "文庙路 12 号 3 栋"})
    return ticket.model_copy(update={"text": text, "category": category, "location": location})


def _assignment(ticket_id: str, unit: str, role: ev.Role, at: datetime) -> Any:
    """A task of one joint dispatch (water leads, the grid helps) of a realistic request, as act assigns it."""
    envelope = assigned(ticket_id, unit, role=role, at=at)
    ticket = _realistic(envelope.data.ticket, "文庙路12号小区从早上停水到现在，楼里有老人，希望尽快恢复供水", "water.outage")
    data = envelope.data.model_copy(update={"ticket": ticket, "category": "water.outage",
                                            "joint_with": tuple(u for u in ("water", GRID) if u != unit)})
    return envelope.model_copy(update={"data": data})


def _consultation(ticket_id: str, at: datetime) -> Any:
    """consult convenes water and the grid: who leads on a leak inside an estate?"""
    envelope = consultation(ticket_id, ("water", GRID), at=at)
    ticket = _realistic(envelope.data.ticket, "3栋地下室管道漏水，积水越来越多", "water.pipe-burst")
    data = envelope.data.model_copy(update={
        "ticket": ticket, "category": "water.pipe-burst", "reason": "小区内部管网还是市政管网，需协商主办单位",
        "proposed": envelope.data.proposed.model_copy(update={"lead": "water", "co_units": (GRID,)})})
    return envelope.model_copy(update={"data": data})



class Served:
    """An ASGI app served by uvicorn on its own thread and event loop (the browser test itself is synchronous)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


async def _produce(bootstrap: str, *envelopes: Any) -> None:
    producer = AIOKafkaProducer(**kafka_access(bootstrap).options)
    await producer.start()
    try:
        for envelope in envelopes:
            if isinstance(envelope.data, ev.TicketRegistered):
                topic, rec = TICKETS.name, codec.encode(envelope)
            else:  # as act sends it: on the unit's task topic, keyed by the unit
                unit = envelope.data.unit if isinstance(envelope.data, ev.TaskAssigned) else envelope.data.parties[0]
                topic, rec = load_catalogue().task_topic_of(unit), codec.encode(envelope, unit)
            await producer.send_and_wait(topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await producer.stop()


async def _reports(bootstrap: str, ticket_id: str) -> list[Any]:
    consumer = AIOKafkaConsumer(UNIT_REPORTS.name, **kafka_access(bootstrap).options, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
        return [codec.decode(r.key, r.value, r.headers) for rs in batch.values() for r in rs if r.key == ticket_id.encode()]
    finally:
        await consumer.stop()


@pytest.fixture
def hub(kafka_bootstrap: str, unique: str, tmp_path) -> Iterator[tuple[str, str, Any]]:
    """The real bridge on the broker and the console in front of it: (console URL, bridge URL, console app)."""
    # The units' topics the bridge reads, the lifecycle topics the console's live feed follows, the audit trail.
    lifecycle = [TICKETS, TRIAGE, CONSULT, ACT, UNIT_REPORTS, EVALUATE, SLA, AUDIT]
    asyncio.run(ensure_topics(kafka_bootstrap, [unit_topic_spec("water"), AREA_TASKS, *lifecycle]))
    with mock.patch.dict(os.environ, {"CITYOPS_AUTH_KEY": TEST_KEY}):
        bridge = create_bridge(BridgeSettings(kafka_bootstrap=kafka_bootstrap, units=["water", GRID], state_dir=tmp_path,
                                              consumer_group=f"bridge-{unique}", db_url=f"sqlite:///{tmp_path / 'bridge.db'}"))
    with Served(bridge) as served_bridge:
        console = create_console(ConsoleSettings(mode="demo", bridge_url=served_bridge.url, state_dir=tmp_path,
                                                 kafka_bootstrap=kafka_bootstrap),
                                 verifier=verifier())
        with Served(console) as served_console:
            yield served_console.url, served_bridge.url, console


def _live_feed_positioned(console: Any, bootstrap: str, timeout_s: float = 60) -> None:
    """The console's live feed reads from the end of the topics: wait until it has read a record (a ticket
    registered elsewhere, which no unit sees), so the report the test makes next is not before its start."""
    feed, deadline = console.state.deps.live, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = feed.published
        warm_up = Envelope.origin(build_example(ev.TicketRegistered), source="/cityops/discover", ticket_id=f"T-WARM-{time.monotonic_ns()}")
        # Playwright's sync API runs an event loop on this thread: the producer gets a thread of its own.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _produce(bootstrap, warm_up)).result()
        until = time.monotonic() + 3
        while time.monotonic() < until:
            if feed.published > seen:
                return
            time.sleep(0.1)
    raise AssertionError("the console's live feed never read a record")


def _wait_for(page: Any, base: str, path: str, selector: str, timeout_s: float = 60) -> None:
    """Reload `path` until `selector` shows (the bridge reads the topic in its own time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.goto(base + path)
        if page.locator(selector).count():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} never showed on {path}")
        time.sleep(0.5)


@pytest.mark.skipif(browser.available() is not None, reason=str(browser.available()))
def test_a_unit_signs_for_and_completes_a_task_and_a_grid_worker_sees_theirs_on_a_phone(hub, kafka_bootstrap, unique) -> None:
    base, bridge_url, console = hub
    now = datetime.now(UTC)
    ticket_id = f"T-UI-{unique}"
    water_task, grid_task = _assignment(ticket_id, "water", ev.Role.lead, now), _assignment(ticket_id, GRID, ev.Role.co, now)
    asked = _consultation(f"T-UIC-{unique}", now)
    # Signed for by water's own system while the page is open.
    elsewhere = assigned(f"T-UIL-{unique}", "water", at=now)
    elsewhere = elsewhere.model_copy(update={"data": elsewhere.data.model_copy(update={
        "category": "water.meter-billing", "ticket": _realistic(elsewhere.data.ticket, "水表读数明显不对，这个月水费是平时的三倍",
                                                                "water.meter-billing")})})
    asyncio.run(_produce(kafka_bootstrap, water_task, grid_task, asked, elsewhere))
    task_path = f"/console/unit/tasks/{water_task.data.task_id}"
    from playwright.sync_api import expect  # only once the browser is known to be there (the skip above)

    with browser.chromium() as chromium:
        desk = chromium.new_context(**(browser.DESKTOP | {"locale": "zh-CN"})).new_page()
        browser.login(desk, base, "unit:water")
        _wait_for(desk, base, "/console/unit/", f"[data-task='{water_task.data.task_id}']")
        assert desk.locator(f"[data-task='{grid_task.data.task_id}']").count() == 0
        assert desk.locator(f"[data-task='{water_task.data.task_id}'] .countdown").count() >= 1
        browser.shoot(desk, "unit-inbox-desktop")
        # Live: a report made elsewhere reaches the open inbox over SSE and the list refreshes itself, no reload.
        card = f"[data-task='{elsewhere.data.task_id}']"
        _wait_for(desk, base, "/console/unit/", card)
        desk.wait_for_selector("#live-dot.on", timeout=15000)
        desk.evaluate("() => { window.notReloaded = true; }")
        _live_feed_positioned(console, kafka_bootstrap)
        signed = httpx.post(f"{bridge_url}/tasks/{elsewhere.data.task_id}/sign-for", timeout=10,
                            headers={"Authorization": f"Bearer {token(Role.unit, 'water-system', unit='water')}"})
        assert signed.status_code == 202, signed.text
        desk.wait_for_selector(f"{card}.status-signed-for", timeout=30000)
        assert desk.evaluate("() => window.notReloaded === true")
        # unit.js counts a running clock down between refreshes and leaves a stopped one alone (the bridge's
        # clocks may stand still now, at night in Shanghai: the two are planted to see both behaviours).
        desk.evaluate("""() => {
            for (const [id, running] of [["planted-run", "1"], ["planted-still", "0"]]) {
                const el = document.createElement("span");
                Object.assign(el, {id, className: "countdown"});
                el.dataset.left = "3600"; el.dataset.running = running; el.textContent = "start";
                document.body.appendChild(el);
            }
        }""")
        expect(desk.locator("#planted-run")).to_have_text("0小时59分", timeout=5000)
        assert desk.locator("#planted-still").inner_text() == "start"
        desk.click(f"[data-task='{water_task.data.task_id}'] a")
        desk.wait_for_url(f"**{task_path}")
        browser.shoot(desk, "unit-task-assigned")
        desk.click("#sign-for")
        desk.wait_for_selector("#task-status[data-status='signed-for']", timeout=15000)
        desk.click("#form-complete summary")
        desk.fill("#complete-result", "管道已修复，14:00 恢复供水")
        desk.click("#complete")
        desk.wait_for_selector("#task-status[data-status='completed']", timeout=15000)
        assert "管道已修复" in desk.locator("#result").inner_text()
        browser.shoot(desk, "unit-task-completed")
        # A consultation water is party to: its opinion from the page, then shown as water's.
        consultation_path = f"/console/unit/consultations/{asked.data.consultation_id}"
        _wait_for(desk, base, "/console/unit/", f"a[href='{consultation_path}']")
        desk.click(f"a[href='{consultation_path}']")
        desk.wait_for_selector("#opinion-form")
        desk.check("input[name=agrees][value=no]")
        desk.select_option("#opinion-lead", GRID)
        desk.fill("#opinion-comment", "小区内部管网，建议由网格先行核实")
        browser.shoot(desk, "unit-consultation-form")
        desk.click("#opinion-form button[type=submit]")
        desk.wait_for_selector("#my-opinion", timeout=15000)
        assert "小区内部管网" in desk.locator("#my-opinion").inner_text()
        assert desk.locator("#opinion-form").count() == 0
        # Another unit's task: the bridge refuses, the page is a 403.
        refused = desk.goto(f"{base}/console/unit/tasks/{grid_task.data.task_id}")
        assert refused is not None and refused.status == 403

        phone = browser.phone(chromium).new_page()
        browser.login(phone, base, f"grid-worker:{GRID}")
        _wait_for(phone, base, "/console/unit/", f"[data-task='{grid_task.data.task_id}']")
        assert phone.locator(f"[data-task='{water_task.data.task_id}']").count() == 0
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the inbox is {width}px wide on a 390px phone"
        browser.shoot(phone, "unit-inbox-phone")
        phone.click(f"[data-task='{grid_task.data.task_id}'] a")
        phone.wait_for_selector("#sign-for")
        joint = phone.locator("#joint").inner_text()
        names = {u.id: u.name for u in load_catalogue().units}  # the page names units as the catalogue does
        assert names["water"] in joint and names[GRID] in joint and joint.count("✓") == 1  # the lead completed, the grid not yet
        browser.shoot(phone, "unit-task-phone")
        assert phone.goto(base + task_path).status == 403  # type: ignore[union-attr]

    reports = asyncio.run(_reports(kafka_bootstrap, water_task.ticket_id))
    kinds = {type(r.data) for r in reports if r.data.task_id == water_task.data.task_id}
    assert {ev.TaskSignedFor, ev.TaskCompleted} <= kinds
    [signed] = [r for r in reports if isinstance(r.data, ev.TaskSignedFor)]
    assert signed.data.handler == "water" and signed.data.unit == "water"  # the demo unit user's subject
    assert not any(r.data.unit == GRID for r in reports)  # the grid worker only looked
    [opinion] = [r for r in asyncio.run(_reports(kafka_bootstrap, asked.ticket_id)) if isinstance(r.data, ev.OpinionGiven)]
    assert (opinion.data.unit, opinion.data.agrees, opinion.data.proposed_lead) == ("water", False, GRID)

