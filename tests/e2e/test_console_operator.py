"""The operator's desk in a real browser (Debian's chromium via Playwright) on a real hub: the broker, the workflow
services, simulated units, intake and the console, each its own OS process.

An operator signs in, takes a call with the classifier's suggestions and the cascading area selects, watches the
ticket move in "my tickets" without reloading (the live feed), calls the resident back from the callback queue
(two clicks); decides a ticket in the manual-triage queue (one click); splits a repeat. That the caller's number
shows on no page but the callback queue is test_console_story.py's (every page of every role). Screenshots of
every page, desktop and phone, go to .state/screenshots/ (console-operator-*.png).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from domain.catalogue import load_catalogue
from services.common.settings import REPO_ROOT
from tests.harness import browser as b
from tests.harness.auth import TEST_KEY, bearer
from tests.harness.http import wait_healthy
from tests.harness.ports import free_port
from tests.harness.topics import fresh_hub_topics
from tools.supervisor import Supervisor

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

HTTP_PORT = int(os.environ.get("CITYOPS_TEST_HTTP_PORT", "18080"))
RUN = uuid.uuid4().hex[:6]
SERVICES = ["discover", "triage", "consult", "act", "evaluate", "units", "intake", "console"]
EAST = {"district": "district-east", "street": "street-east-1", "community": "community-east-1-a", "grid": "grid-east-1-a-1"}
WEST = {"district": "district-west", "street": "street-west-1", "community": "community-west-1-a", "grid": "grid-west-1-a-1"}
PHONE = "13955501234"  # the caller of the call the operator takes; must appear only on the callback queue



class Hub:
    def __init__(self, bootstrap: str, state: Any, node: Any) -> None:
        self.console_port = free_port()
        units = load_catalogue().units_for_topics()
        inherited = {k: v for k, v in os.environ.items() if k not in ("CITYOPS_KAFKA_USERNAME", "CITYOPS_KAFKA_PASSWORD")}
        self.env = dict(inherited, CITYOPS_KAFKA_BOOTSTRAP=bootstrap, CITYOPS_STATE_DIR=str(state), CITYOPS_LOG_JSON="true",
                        CITYOPS_INTAKE_HTTP_PORT=str(HTTP_PORT), CITYOPS_BATCH_TIMEOUT_MS="20", PYTHONUNBUFFERED="1",
                        CITYOPS_UNIT_UNITS="[" + ",".join(f'"{u}"' for u in units) + "]",
                        CITYOPS_UNIT_P_RETURN="0", CITYOPS_UNIT_P_EXTENSION="0", CITYOPS_UNIT_P_DISAGREE="0",
                        CITYOPS_UNIT_SIGN_DELAY_S="0.05", CITYOPS_UNIT_WORK_DELAY_S="0.3", CITYOPS_CONSULT_OPINION_WINDOW_S="60",
                        # no simulated callback desk: the operator in the browser calls back
                        CITYOPS_UNIT_CALLBACKS="false", CITYOPS_AUTH_KEY=TEST_KEY,
                        CITYOPS_CONSOLE_HTTP_PORT=str(self.console_port), CITYOPS_CONSOLE_INTAKE_URL=f"http://127.0.0.1:{HTTP_PORT}")
        self.supervisor = Supervisor(state, env=self.env, cwd=REPO_ROOT, stop_timeout=20,
                                     kafka_env=node.client_env if node is not None else None)
        self.base = f"http://127.0.0.1:{self.console_port}"

    def intake(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{HTTP_PORT}", timeout=10, headers=bearer("operator", "e2e-operator"))


@pytest.fixture(scope="module")
def hub(kafka_bootstrap: str, kafka_node: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    why = b.available()
    if why:
        pytest.skip(why)
    asyncio.run(fresh_hub_topics(kafka_bootstrap))
    state = REPO_ROOT / ".state" / "console-e2e" / RUN  # kept (gitignored): the processes' logs after a failure
    state.mkdir(parents=True)
    h = Hub(kafka_bootstrap, state, kafka_node)
    try:
        for name in SERVICES:
            h.supervisor.start_service(name)
        asyncio.run(wait_healthy(HTTP_PORT))
        h.supervisor.wait_ready("console", lambda: httpx.get(f"{h.base}/console/health", timeout=2).status_code == 200, timeout=90)
        yield h
    finally:
        h.supervisor.stop_all()


@pytest.fixture(scope="module")
def chromium(hub: Hub) -> Iterator[Any]:
    with b.chromium() as browser:
        yield browser


def until(check: Callable[[], Any], what: str, timeout: float = 90.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def status_of(hub: Hub, ticket_id: str) -> str | None:
    with hub.intake() as c:
        r = c.get(f"/tickets/{ticket_id}")
        return r.json()["status"] if r.status_code == 200 else None


def operator_page(browser: Any, hub: Hub, phone: bool = False) -> Any:
    context = b.phone(browser) if phone else b.desktop(browser)
    page = context.new_page()
    b.login(page, hub.base, "operator")
    return page


def done(page: Any, ticket_id: str) -> None:
    """The acted-on item turned into its confirmation; otherwise the screenshot and the page's problem say why."""
    try:  # (the queue itself may have been refreshed by then, the ticket gone from it: the list of actions keeps it)
        page.wait_for_selector(f"#actions li[data-ticket='{ticket_id}']", timeout=15000)
    except Exception as exc:  # noqa: BLE001
        shot = b.shoot(page, f"console-operator-failed-{ticket_id}")
        raise AssertionError(f"no confirmation for {ticket_id}: problems {page.inner_text('#problems')!r}; see {shot}") from exc


def choose_area(page: Any, area: dict[str, str]) -> None:
    for level in ("district", "street", "community", "grid"):
        page.select_option(f"#loc-{level}", area[level])


def test_an_operator_takes_a_call_follows_it_live_and_calls_back(hub: Hub, chromium: Any) -> None:
    page = operator_page(chromium, hub)
    b.shoot(page, "console-operator-desk-desktop")
    text = f"小区门口的路灯坏了好几天了，晚上很黑 {RUN}"
    # The first suggestion may wait for the model (triage trains and caches it at start): type until they come.
    def suggested() -> bool:
        page.fill("#text", text[:-1])
        page.type("#text", text[-1])
        try:
            page.wait_for_selector("#suggestions button[data-category]", timeout=3000)
            return True
        except Exception:  # noqa: BLE001 - not yet: type again
            return False
    until(suggested, "the classifier's suggestions", timeout=120)
    first = page.locator("#suggestions button[data-category]").first
    chosen = first.get_attribute("data-category")
    assert re.search(r"\d+%", first.inner_text())
    first.click()
    assert page.input_value("#category") == chosen
    page.select_option("#loc-grid", EAST["grid"])  # a grid alone fills in its community, street and district
    assert page.input_value("#loc-district") == EAST["district"] and page.input_value("#loc-street") == EAST["street"]
    page.fill("#caller_name", "测试来电人")
    page.fill("#caller_phone", PHONE)
    b.shoot(page, "console-operator-submit-filled-desktop")
    page.click("#submit-form button[type=submit]")
    banner = page.wait_for_selector("#submit-card .banner.ok", timeout=15000)
    ticket_id = re.search(r"T-[A-Za-z0-9-]+", banner.inner_text()).group(0)  # type: ignore[union-attr]
    assert page.input_value("#text") == "" and page.input_value("#caller_phone") == ""  # a fresh form for the next call

    # My tickets: the row appears and moves to handled with no reload (the live feed triggers the refresh).
    row = f"#mine tr[data-ticket='{ticket_id}']"
    try:
        page.wait_for_selector(row, timeout=60000)
    except Exception as exc:  # noqa: BLE001 - say what the live feed saw
        raise AssertionError(f"{ticket_id} not in my tickets; console: {httpx.get(hub.base + '/console/health').json()}") from exc
    # (no reload: the page is never navigated; wait_for_function would need eval, which the pages' CSP forbids)
    until(lambda: "已办结" in page.locator(row).inner_text(), "the ticket to show as handled in my tickets", timeout=120)
    b.shoot(page, "console-operator-mine-desktop")

    # The callback queue shows the caller's number; resolved? yes; satisfied: two clicks.
    page.goto(f"{hub.base}/console/operator/callbacks")
    item = page.locator(f"article[data-ticket='{ticket_id}']")
    assert PHONE in item.inner_text() and "测试来电人" in item.inner_text()
    b.shoot(page, "console-operator-callbacks-queue-desktop")
    item.locator("input[name=resolved][value=yes]").check()
    item.locator("button[name=satisfaction][value=satisfied]").click()
    done(page, ticket_id)
    assert until(lambda: status_of(hub, ticket_id) == "closed", "the ticket to close after the callback")


def test_a_ticket_in_manual_triage_is_decided_in_one_click(hub: Hub, chromium: Any) -> None:
    with hub.intake() as c:
        ticket_id = c.post("/tickets", json={"text": f"楼下那家一直这样，大家都受不了 {RUN}", "location": WEST}).json()["ticket_id"]
    until(lambda: status_of(hub, ticket_id) == "manual-triage", "the ticket in the manual-triage queue")
    page = operator_page(chromium, hub)
    page.goto(f"{hub.base}/console/operator/triage")
    item = page.locator(f"article[data-ticket='{ticket_id}']")
    candidates = item.locator("button.candidate")
    assert candidates.count() >= 1 and re.search(r"\d+%", candidates.first.inner_text())
    b.shoot(page, "console-operator-triage-queue-desktop")
    candidates.first.click()
    done(page, ticket_id)
    assert until(lambda: status_of(hub, ticket_id) not in ("manual-triage", None), "the ticket to leave manual triage")


def test_a_repeat_is_shown_with_its_master_and_split_with_a_reason(hub: Hub, chromium: Any) -> None:
    text = f"楼上装修噪音太大，晚上十点还在施工 {RUN}"
    with hub.intake() as c:
        master = c.post("/tickets", json={"text": text, "location": EAST}).json()["ticket_id"]
        until(lambda: status_of(hub, master) not in (None, "registered"), "the first complaint to be registered")
        repeat = c.post("/tickets", json={"text": text, "location": EAST}).json()["ticket_id"]
    until(lambda: status_of(hub, repeat) == "merged", "the repeat to be merged")
    page = operator_page(chromium, hub)
    page.goto(f"{hub.base}/console/operator/repeats")
    item = page.locator(f"article[data-ticket='{repeat}']")
    assert master in item.inner_text()
    b.shoot(page, "console-operator-repeats-queue-desktop")
    item.locator("input[name=reason]").fill("不同楼层，不是同一施工")
    item.locator("button[type=submit]").click()
    done(page, repeat)
    assert until(lambda: status_of(hub, repeat) not in ("merged", None), "the split ticket to be handled on its own")
