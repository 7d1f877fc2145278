"""The console across roles in Debian's chromium on a real hub (tools/hub.py's `cityops up`: the broker, every
service, the unit bridge, the replay API and the console, each its own OS process).

1. One complaint's whole story: an operator takes it at the desk; water (a unit the simulated units do not play:
   this test is water) signs for it and completes it from its pages; the operator calls the resident back from the
   callback queue; the supervisor sees it closed on the board, counted in the rankings, and its story page draws
   who held it. Screenshots of each step go to .state/screenshots/ (story-*.png).
2. The caller's number and name appear on no console page but the operator's callback queue: every GET page and
   fragment of the console, as every role, and the first events of the live stream.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.catalogue import load_catalogue
from services.common.auth import api_routes
from tests.harness import browser as b
from tests.harness.console import console_app
from tests.harness.hub import running_hub
from tools.hub import Hub

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

KEPT = "water"  # the unit this test plays in the browser; the simulated units answer for every other one
EAST = {"district": "district-east", "street": "street-east-1", "community": "community-east-1-a", "grid": "grid-east-1-a-1"}
GRID_WORKER = f"grid-worker:{EAST['grid']}"
RUN = f"{time.time_ns() % 10**8:08d}"



class StoryHub(Hub):
    """The demo hub where water is the test's, nobody disputes, returns or extends, and the operator in the browser
    (not the simulated callback desk) calls residents back."""

    def env(self) -> dict[str, str]:
        others = [u for u in load_catalogue().units_for_topics() if u != KEPT]
        return {**super().env(), "CITYOPS_UNIT_UNITS": json.dumps(others), "CITYOPS_UNIT_CALLBACKS": "false",
                "CITYOPS_UNIT_P_RETURN": "0", "CITYOPS_UNIT_P_EXTENSION": "0", "CITYOPS_UNIT_P_DISAGREE": "0",
                "CITYOPS_UNIT_SIGN_DELAY_S": "0.05", "CITYOPS_UNIT_WORK_DELAY_S": "0.3", "CITYOPS_BATCH_TIMEOUT_MS": "20"}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    def intake(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", headers=self.credentials.bearer("operator"), timeout=10)

    def status(self, ticket_id: str) -> str | None:
        with self.intake() as c:
            answer = c.get(f"/tickets/{ticket_id}")
            return answer.json()["status"] if answer.status_code == 200 else None


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoryHub]:
    with running_hub(StoryHub, Path(tmp_path_factory.mktemp("story-hub"))) as started:
        yield started


@pytest.fixture(scope="module")
def chromium(hub: StoryHub) -> Iterator[Any]:
    with b.chromium() as browser:
        yield browser


def until(step: str, check: Callable[[], Any], timeout: float = 120.0, every: float = 0.5) -> Any:
    """Poll `check` until it is truthy; the failure names the step of the story that did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"step '{step}' did not happen within {timeout:.0f}s")
        time.sleep(every)


def reload_until(page: Any, url: str, selector: str, step: str, timeout: float = 120.0) -> Any:
    """Open `url` again until `selector` is on it (the projections and the bridge read Kafka in their own time)."""
    def shown() -> bool:
        page.goto(url)
        return page.locator(selector).count() > 0
    until(step, shown, timeout=timeout, every=1.0)
    return page.locator(selector).first


def signed_in(browser: Any, hub: StoryHub, user: str, on_phone: bool = False) -> Any:
    page = (b.phone(browser) if on_phone else b.desktop(browser)).new_page()
    b.login(page, hub.base, user)
    return page


def step(name: str, page: Any) -> Any:
    """Run a step; on failure the screenshot of where it stood is named in the message."""
    class Step:
        def __enter__(self) -> None:
            return None

        def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
            if exc is not None and not isinstance(exc, KeyboardInterrupt):
                shot = b.shoot(page, f"story-failed-{name}")
                raise AssertionError(f"story step '{name}' failed: {exc} (screenshot {shot})") from exc
    return Step()


def test_a_complaint_goes_from_the_operator_to_the_unit_back_to_the_operator_and_onto_the_board(hub: StoryHub, chromium: Any) -> None:
    text = f"文庙路12号小区从早上停水到现在，楼里有老人 {RUN}"
    operator = signed_in(chromium, hub, "operator")
    with step("operator-submits", operator):
        operator.fill("#text", text)
        operator.select_option("#category", "water.outage")
        operator.select_option("#loc-grid", EAST["grid"])
        operator.fill("#caller_name", "故事来电人")
        operator.fill("#caller_phone", "13811112222")
        b.shoot(operator, "story-1-operator-submit")
        operator.click("#submit-form button[type=submit]")
        banner = operator.wait_for_selector("#submit-card .banner.ok", timeout=15000)
        found = re.search(r"T-[A-Za-z0-9-]+", banner.inner_text())
        assert found, banner.inner_text()
        ticket_id = found.group(0)

    unit = signed_in(chromium, hub, f"unit:{KEPT}")
    with step("unit-inbox", unit):
        card = reload_until(unit, f"{hub.base}/console/unit/", f"li.unit-card:has-text('{RUN}')", "the task in water's inbox")
        b.shoot(unit, "story-2-unit-inbox")
        card.locator("a").click()
        unit.wait_for_selector("#sign-for", timeout=15000)
    with step("unit-signs-for", unit):
        unit.click("#sign-for")
        unit.wait_for_selector("#task-status[data-status='signed-for']", timeout=15000)
        b.shoot(unit, "story-3-unit-signed-for")
    with step("unit-completes", unit):
        unit.click("#form-complete summary")
        unit.fill("#complete-result", "供水管道已抢修完毕，已恢复供水")
        unit.click("#complete")
        unit.wait_for_selector("#task-status[data-status='completed']", timeout=15000)
        b.shoot(unit, "story-4-unit-completed")
    task_url = unit.url
    small = signed_in(chromium, hub, f"unit:{KEPT}", on_phone=True)
    with step("unit-on-a-phone", small):
        small.goto(task_url)
        small.wait_for_selector("#task-status[data-status='completed']", timeout=15000)
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= 391, f"the task page is {width}px wide on a 390px phone"
        b.shoot(small, "story-4-unit-completed-phone")
    until("the ticket handled once water completed", lambda: hub.status(ticket_id) == "handled")

    with step("operator-calls-back", operator):
        item = reload_until(operator, f"{hub.base}/console/operator/callbacks", f"article[data-ticket='{ticket_id}']",
                            "the ticket on the callback queue")
        b.shoot(operator, "story-5-operator-callback")
        item.locator("input[name=resolved][value=yes]").check()
        item.locator("button[name=satisfaction][value=satisfied]").click()
        operator.wait_for_selector(f"#actions li[data-ticket='{ticket_id}']", timeout=15000)
    until("the ticket closed after the callback", lambda: hub.status(ticket_id) == "closed")

    supervisor = signed_in(chromium, hub, "supervisor")
    water = {u.id: u.name for u in load_catalogue().units}[KEPT]
    with step("supervisor-board", supervisor):
        def counted() -> bool:
            supervisor.goto(f"{hub.base}/console/board/?scope=unit")
            closed = supervisor.locator("[data-testid=states] li[data-state=closed] .n")
            rows = supervisor.locator("[data-testid=rankings] tbody tr", has_text=water)
            return closed.count() == 1 and int(closed.inner_text()) >= 1 and rows.count() == 1 \
                and int(rows.locator("td").nth(2).inner_text()) >= 1
        until("the closed ticket on the board and water in the rankings", counted, every=2.0)
        supervisor.wait_for_selector("[data-testid=ranking-chart] canvas", timeout=15000)
        b.shoot(supervisor, "story-6-supervisor-board")
    with step("supervisor-story", supervisor):
        reload_until(supervisor, f"{hub.base}/console/tickets/{ticket_id}", "#story-head [data-status=closed]",
                     "the story page to show the ticket closed")
        holders = supervisor.locator("#ledger-table tbody tr[data-kind=unit]", has_text=KEPT)
        assert holders.count() >= 1, "water is not among the ticket's holders"
        supervisor.wait_for_selector("#ledger .ledger-chart canvas", timeout=15000)
        b.shoot(supervisor, "story-7-supervisor-story")


# --- the caller's number ------------------------------------------------------------------------------------------

NUMBER, NAME = "13766602468", "隐私测试人"
SPELLINGS = (NUMBER, "137 6660 2468", "137-6660-2468", NAME)


def get_routes() -> list[str]:
    """Every GET path of the console app (built in-process: the list of pages to open comes from the app itself)."""
    paths = sorted({route.path for method, _, route in api_routes(console_app()) if method == "GET"})
    assert len(paths) >= 15, paths  # the flattening found the pages modules' routes, not just the app's own
    return paths


def leaks(body: str) -> list[str]:
    return [s for s in SPELLINGS if s in body]


def live_events(hub: StoryHub, cookies: dict[str, str], produce: Callable[[], object], want: int = 3,
                timeout: float = 60.0) -> list[str]:
    """The first `want` events the live stream sends a session while `produce` makes the hub move."""
    events: list[str] = []
    opened = threading.Event()

    def read() -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=hub.base, cookies=cookies, timeout=httpx.Timeout(10, read=2)) as c, \
                c.stream("GET", "/console/live") as stream:
            opened.set()
            lines = stream.iter_lines()
            while time.monotonic() < deadline and len(events) < want:
                try:
                    line = next(lines)
                except httpx.ReadTimeout:
                    break
                except StopIteration:
                    break
                if line.startswith("data:"):
                    events.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    opened.wait(15)
    time.sleep(1)  # the stream is subscribed once its headers came: let the feed attach it before producing
    produce()
    reader.join(timeout + 5)
    return events


def test_the_callers_number_is_on_the_callback_queue_and_on_no_other_page(hub: StoryHub, chromium: Any) -> None:
    with hub.intake() as c:
        answer = c.post("/tickets", json={"text": f"小区门口的路灯坏了好几天了，晚上很黑 {RUN}", "location": EAST,
                                           "caller_name": NAME, "caller_phone": NUMBER})
        assert answer.status_code == 202, answer.text
        ticket_id = answer.json()["ticket_id"]
    until(f"the numbered ticket to await its callback (now {hub.status(ticket_id)})",
          lambda: hub.status(ticket_id) == "handled", timeout=180)
    with hub.intake() as c:
        lead = c.get(f"/tickets/{ticket_id}").json().get("lead") or "city-management"

    routes = get_routes()
    users = ["operator", "supervisor", "auditor", f"unit:{lead}", f"unit:{KEPT}", GRID_WORKER]
    opened: dict[str, list[str]] = {}
    fragments: dict[str, list[str]] = {}
    for user in users:
        page = signed_in(chromium, hub, user)
        seen: list[tuple[str, str]] = []

        def record(response: Any, seen: list[tuple[str, str]] = seen) -> None:
            kind = response.headers.get("content-type", "")
            if "/console/" in response.url and ("html" in kind or "json" in kind) and "/static/" not in response.url:
                try:
                    seen.append((response.url, response.text()))
                except Exception:  # noqa: BLE001 - a redirect or an aborted request has no body
                    pass
        page.on("response", record)
        task_ids = re.findall(r"/console/unit/tasks/([^\"'/?#]+)", page.content()) if user.startswith(("unit", "grid")) else []
        for path in routes:
            if path in ("/console/live", "/health", "/console/health", "/console/login/sso") or path.startswith("/console/static"):
                continue
            for url in concrete(path, ticket_id, task_ids):
                page.goto(hub.base + url)
                page.wait_for_load_state("networkidle")
                if user == "operator" and path == "/console/operator/":
                    page.wait_for_selector(f"#mine tr[data-ticket='{ticket_id}']", timeout=30000)
                body = page.content()
                opened.setdefault(url, []).append(user)
                if leaks(body):
                    fragments.setdefault(f"{user} {url}", []).extend(leaks(body))
                safe = re.sub(r"[^A-Za-z0-9]+", "-", url).strip("-") or "root"
                if url in (f"/console/tickets/{ticket_id}", "/console/operator/callbacks"):
                    b.shoot(page, f"privacy-{user}-{safe}")
        for url, body in seen:  # everything htmx loaded into those pages (fragments, JSON for charts)
            if leaks(body):
                fragments.setdefault(f"{user} {url.removeprefix(hub.base)} (loaded)", []).extend(leaks(body))
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        events = live_events(hub, cookies, lambda: hub.intake().post("/tickets", json={
            "text": f"楼道堆放杂物，消防通道堆物 {RUN}", "location": EAST, "caller_name": NAME, "caller_phone": NUMBER}))
        if user in ("operator", "supervisor"):
            assert events, f"the live stream sent {user} nothing while a ticket was registered"
        for event in events:
            if leaks(event):
                fragments.setdefault(f"{user} /console/live", []).extend(leaks(event))
        page.context.close()

    with hub.intake() as c:
        queue = c.get("/callbacks/queue").text[:1500]
    callbacks = fragments.pop("operator /console/operator/callbacks", [])
    fragments.pop("operator /console/operator/callbacks (loaded)", None)
    assert NUMBER in callbacks and NAME in callbacks, \
        f"the callback queue must show whom to call: {callbacks}; pages {sorted(opened)}; intake's queue {queue}"
    assert not fragments, fragments
    story = f"/console/tickets/{ticket_id}"
    assert {"operator", "supervisor", "auditor"} <= set(opened[story]), opened[story]
    assert len(opened) >= 15, sorted(opened)  # every page and fragment, not a handful
    with httpx.Client(base_url=hub.base, timeout=10) as anonymous:  # no session: the login form only
        assert not leaks(anonymous.get("/console/operator/callbacks", follow_redirects=True).text)


def concrete(path: str, ticket_id: str, task_ids: list[str]) -> list[str]:
    """`path` with its parameters filled in from the ticket and the user's own tasks (none: not opened)."""
    if "{ticket_id}" in path:
        return [path.replace("{ticket_id}", ticket_id)]
    if "{task_id}" in path:
        return [path.replace("{task_id}", t) for t in task_ids[:3]]
    if "{" in path:
        return []
    if path == "/console/replay/as-of":
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        return [path, f"{path}?time={now}Z", f"{path}?time={now}Z&ticket={ticket_id}"]
    return [path]
