"""A grid worker on a phone, in a real browser (Debian's chromium) on a real broker, in front of the real bridge:
one small matter of their grid resolved on the spot, another escalated to the community with "help requested";
both reports are on the unit-reports topic as the worker made them. Screenshots: .state/screenshots/grid-*.png."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import events as ev
from tests.e2e import test_console_unit_browser as unit_browser
from tests.e2e.test_console_unit_browser import _produce, _realistic, _reports, _wait_for
from tests.harness import browser
from tests.harness.bridge import GRID, assigned

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
hub = unit_browser.hub  # the real bridge on the broker with the console in front of it


def _grid_matter(ticket_id: str, at: datetime) -> Any:
    """A grid-led small matter (grid.corridor-safety) of the worker's grid, as act assigns it."""
    envelope = assigned(ticket_id, GRID, role=ev.Role.lead, at=at)
    ticket = _realistic(envelope.data.ticket, "3栋楼道堆满纸箱，还有电动车在楼道里充电", "grid.corridor-safety")
    data = envelope.data.model_copy(update={"ticket": ticket, "category": "grid.corridor-safety"})
    return envelope.model_copy(update={"data": data})


@pytest.mark.skipif(browser.available() is not None, reason=str(browser.available()))
def test_a_grid_worker_resolves_one_matter_on_the_spot_and_escalates_another_with_help_requested(hub, kafka_bootstrap, unique) -> None:
    base, _, _ = hub
    now = datetime.now(UTC)
    spot, up = _grid_matter(f"T-GS-{unique}", now), _grid_matter(f"T-GU-{unique}", now)
    asyncio.run(_produce(kafka_bootstrap, spot, up))
    with browser.chromium() as chromium:
        phone = browser.phone(chromium).new_page()
        browser.login(phone, base, f"grid-worker:{GRID}")
        _wait_for(phone, base, f"/console/unit/tasks/{spot.data.task_id}", "#resolve-on-the-spot")
        phone.click("#form-resolve-on-the-spot summary")
        phone.fill("#spot-result", "和住户一起把纸箱清走，劝导电动车下楼充电")
        browser.shoot(phone, "grid-on-the-spot-form")
        phone.click("#resolve-on-the-spot")
        phone.wait_for_selector("#task-status[data-status='completed']", timeout=15000)
        assert "纸箱清走" in phone.locator("#result").inner_text()
        browser.shoot(phone, "grid-on-the-spot-done")

        _wait_for(phone, base, f"/console/unit/tasks/{up.data.task_id}", "#escalate")
        phone.click("#form-escalate summary")
        phone.select_option("#escalate-level", "community")
        phone.select_option("#escalate-reason", "help-requested")
        phone.fill("#escalate-note", "住户拒绝搬走电动车，需要社区出面")
        browser.shoot(phone, "grid-escalate-form")
        phone.click("#escalate")
        phone.wait_for_selector("#sent", timeout=15000)
        browser.shoot(phone, "grid-escalate-sent")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the task page is {width}px wide on a 390px phone"

    [done] = [r for r in asyncio.run(_reports(kafka_bootstrap, spot.ticket_id)) if isinstance(r.data, ev.TaskCompleted)]
    assert done.data.resolved_on_the_spot and done.data.unit == GRID
    [escalated] = [r for r in asyncio.run(_reports(kafka_bootstrap, up.ticket_id)) if isinstance(r.data, ev.TaskReturned)]
    assert (escalated.data.escalate_to, escalated.data.escalation_reason) == ("community", "help-requested")
