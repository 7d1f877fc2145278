"""The story and replay pages in Debian's chromium, on real servers: the replay API (uvicorn) over a projection
store folded from a synthetic history, and the console (uvicorn) calling it over HTTP with each user's own token.
Screenshots (desktop and a 390 px phone) go to .state/screenshots/.

The what-if reads that history from memory instead of Kafka (the API's log source is a parameter) and the console
has no live feed (no broker); everything else is what `cityops up` runs.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session

from contracts import events as ev
from domain.catalogue import read_catalogue_data
from services.common.store import make_engine
from services.console.app import create_app
from services.console.live import LiveFeed
from services.console.settings import ConsoleSettings
from services.projections.api import replay_app
from services.projections.logsource import MemoryLog
from services.projections.migrate import upgrade
from services.projections.settings import ProjectionsSettings
from services.projections.store import apply
from tests.harness.auth import verifier
from tests.harness.browser import available, chromium, desktop, login, phone, shoot
from tests.harness.ports import free_port
from tools.importers.synthetic import SyntheticHistory

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

HISTORY = SyntheticHistory(300, seed=21).envelopes()
MOVED = "city-management.street-cleaning"



@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("replay-browser")
    engine = make_engine(f"sqlite:///{state / 'projections.db'}")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        for envelope in HISTORY:
            apply(session, envelope)
    replay = replay_app(ProjectionsSettings(timezone="Asia/Shanghai", min_rank_sample=5, state_dir=state), engine=engine,
                        log_factory=lambda archive: MemoryLog(HISTORY), verifier=verifier())
    with served(replay) as replay_url:
        console = create_app(ConsoleSettings(mode="demo", replay_url=replay_url, intake_url="http://127.0.0.1:9",
                                             bridge_url="http://127.0.0.1:9"), live=LiveFeed(), verifier=verifier())
        with served(console) as base:
            yield base


def a_reopened_ticket() -> str:
    reopened = {e.ticket_id for e in HISTORY if isinstance(e.data, ev.TicketReopened)}
    closed = [e.ticket_id for e in HISTORY if isinstance(e.data, ev.TicketClosed) and e.ticket_id in reopened]
    return closed[0] if closed else next(e.ticket_id for e in HISTORY if isinstance(e.data, ev.TicketClosed))


def trial_catalogue(path: Path) -> Path:
    data = copy.deepcopy(read_catalogue_data())
    for category in data["categories"]:
        if category["code"] == MOVED:
            category["lead"] = "environment"
    data["version"] = "2026.9-trial"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_a_supervisor_reads_a_story_as_bars_then_the_city_as_of_a_time_then_a_what_if(hub, tmp_path):
    ticket_id = a_reopened_ticket()
    with chromium() as browser:
        page = desktop(browser).new_page()
        login(page, hub, "supervisor")
        page.goto(f"{hub}/console/tickets/{ticket_id}")
        page.wait_for_selector("#ledger-table tbody tr")
        page.wait_for_function("() => { const el = document.querySelector('.ledger-chart'); "
                               "return el && window.echarts && window.echarts.getInstanceByDom(el) && el.querySelector('canvas'); }")
        rows = page.locator("#ledger-table tbody tr").count()
        assert rows >= 3 and page.locator("#timeline li").count() >= rows
        assert "热线" in page.inner_text("#ledger-table") and "单位计时" in page.inner_text("#ledger-table")
        shoot(page, "story-supervisor-desktop")

        page.goto(f"{hub}/console/replay/as-of")
        page.fill("input[name=time]", "2026-05-08T12:00")
        page.click("#as-of-form button[type=submit]")
        page.wait_for_selector("#as-of-states canvas")
        assert page.locator("#as-of-rankings tbody tr").count() > 0
        shoot(page, "replay-as-of-desktop")

        page.goto(f"{hub}/console/replay/what-if")
        page.set_input_files("input[name=catalogue]", str(trial_catalogue(tmp_path / "trial.yaml")))
        page.click("#what-if-form button[type=submit]")
        page.wait_for_selector("#what-if-tickets tbody tr", timeout=60_000)
        assert "environment" in page.inner_text("#what-if-units")
        summary = page.inner_text("#what-if-summary")
        assert "2026.9-trial" in summary
        shoot(page, "replay-what-if-desktop")
        page.click("#what-if-tickets tbody tr:first-child a.ticket-link")
        page.wait_for_selector("#ledger-table")
        assert "/console/tickets/" in page.url

        page.goto(f"{hub}/console/replay/what-if")
        page.set_input_files("input[name=catalogue]", {"name": "bad.yaml", "mimeType": "text/yaml", "buffer": b"- not a mapping"})
        page.click("#what-if-form button[type=submit]")
        page.wait_for_selector("#problems [data-status='422']")
        assert "catalogue" in page.inner_text("#problems")
        shoot(page, "replay-what-if-refused")


def test_an_operator_sees_the_timeline_only_and_a_phone_fits(hub):
    ticket_id = a_reopened_ticket()
    with chromium() as browser:
        page = phone(browser).new_page()
        login(page, hub, "operator")
        page.goto(f"{hub}/console/tickets/{ticket_id}")
        page.wait_for_selector("#timeline li")
        assert page.locator("#ledger").count() == 0
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        shoot(page, "story-operator-phone")
        page.goto(f"{hub}/console/replay/as-of")
        assert page.locator("[data-status='403']").count() == 1

        page = phone(browser).new_page()
        login(page, hub, "supervisor", lang="en")
        page.goto(f"{hub}/console/tickets/{ticket_id}?lang=en")
        page.wait_for_selector("#ledger-table tbody tr")
        assert "Who held it" in page.inner_text("#ledger") and page.evaluate("() => document.documentElement.scrollWidth") <= 390
        shoot(page, "story-supervisor-phone-en")
