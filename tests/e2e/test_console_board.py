"""The supervisors' board in a browser on a real hub (`cityops up` as tools/hub.py runs it: broker, every service,
the replay API and the console as their own processes, simulated units).

The simulated supervisor is off and every simulated party disputes the plans put to it, so disputed tickets wait
on the board; the test decides one from the page and watches intake's 202 turn into the ticket leaving review.
Screenshots go to .state/screenshots/ (board-*.png).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.browser import chromium, desktop, login, phone, shoot
from tests.harness.hub import running_hub
from tools.hub import Hub

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

DISPUTED = ["物业费收费不合理，物业强行涨价", "业主和物业矛盾，要求更换物业公司", "小区公共设施损坏，要动用维修基金"]
PLAIN = ["小区门口的路灯坏了好几天了，晚上很黑", "路边下水道堵了，污水漫到人行道上", "楼道堆放杂物，消防通道堆物"]
LOCATION = {"district": "district-east", "street": "street-east-1", "community": "community-east-1-a", "grid": "grid-east-1-a-1"}



class BoardHub(Hub):
    """The demo hub with nobody deciding disputes but the test, and parties that always dispute."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "CITYOPS_UNIT_SUPERVISOR": "false", "CITYOPS_UNIT_P_DISAGREE": "1.0"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoardHub]:
    with running_hub(BoardHub, Path(tmp_path_factory.mktemp("board-hub"))) as started:
        yield started


def _submit(hub: Hub) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{hub.http_port}", headers=hub.credentials.bearer("app"), timeout=10) as c:
        for n, text in enumerate(DISPUTED + PLAIN):
            answer = c.post("/tickets", json={"text": text, "location": LOCATION, "caller_phone": f"1380000{n:04d}",
                                               "caller_name": "board test"})
            assert answer.status_code == 202, answer.text


def _replay(hub: Hub, path: str, **params: Any) -> Any:
    answer = httpx.get(f"http://127.0.0.1:{hub.replay_port}{path}", params=params,
                       headers=hub.credentials.bearer("supervisor"), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _at_least(n: int, items: list[Any]) -> list[Any] | None:
    return items if len(items) >= n else None


def _until(what: str, check: Any, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_board_shows_the_city_and_a_decision_from_the_page_reaches_intake(hub: BoardHub) -> None:
    _submit(hub)
    # Every disputed text ends on the queue (the parties always dispute); waiting for all of them, not the first,
    # keeps the page from showing more than this list when a dispute lands between the two reads.
    queue = _until("every disputed ticket on the board", lambda: _at_least(len(DISPUTED), _replay(hub, "/replay/board/arbitration")))
    _until("rankings", lambda: _replay(hub, "/replay/rankings", min_n=1))
    base = f"http://127.0.0.1:{hub.console_port}"
    with chromium() as browser:
        page = desktop(browser).new_page()
        intake_answers_seen: list[int] = []
        page.on("response", lambda r: intake_answers_seen.append(r.status) if r.url.endswith("/console/board/decisions") else None)
        login(page, base, "supervisor")
        page.goto(f"{base}/console/board/?scope=unit")
        assert int(page.inner_text("[data-testid=total]")) >= len(DISPUTED) + len(PLAIN)
        assert page.locator("[data-testid=rankings] tbody tr").count() >= 1
        page.wait_for_selector("#board-map[data-ready=true]", timeout=15_000)
        page.wait_for_selector("[data-testid=ranking-chart] canvas", timeout=15_000)
        assert page.locator("[data-testid=arbitration-item]").count() == len(queue)
        shoot(page, "board-supervisor")
        page.click("[data-map-metric=on_time]")
        assert page.get_attribute("#board-map", "data-metric") == "on_time"
        shoot(page, "board-map-on-time", full_page=False)

        # the counts are swapped in again when the live stream (SSE) says a ticket moved: mark the ones shown now
        page.wait_for_selector("#live-dot.on", timeout=15_000)
        page.evaluate("document.getElementById('states').setAttribute('data-stale', 'yes')")
        item = page.locator("[data-testid=arbitration-item]").first
        ticket_id = item.get_attribute("id").removeprefix("arb-")  # type: ignore[union-attr]
        item.locator("textarea[name=note]").fill("由测试裁决：物业纠纷由街道主办")
        item.locator("button[type=submit]").click()
        page.wait_for_selector("[data-testid=decided]", timeout=15_000)
        assert intake_answers_seen == [202]
        page.wait_for_selector("#states:not([data-stale])", timeout=60_000)  # the decision moved the ticket: live
        shoot(page, "board-decided")
        left = _until("the decided ticket to leave review", lambda: _replay(hub, f"/replay/tickets/{ticket_id}")["ticket"]["status"]
                      not in ("supervisor-review",) and _replay(hub, f"/replay/tickets/{ticket_id}")["ticket"]["final"], timeout=120)
        assert left

        _the_map_picker_fills_a_form(page)

        operator = desktop(browser).new_page()
        login(operator, base, "operator")
        operator.goto(f"{base}/console/operator/")
        _a_click_on_the_operator_s_map_fills_the_place(operator)

        small = phone(browser).new_page()
        login(small, base, "supervisor")
        small.goto(f"{base}/console/board/")
        assert small.evaluate("document.documentElement.scrollWidth") <= 390 + 1
        shoot(small, "board-phone")

        auditor = desktop(browser).new_page()
        login(auditor, base, "auditor")
        auditor.goto(f"{base}/console/board/")
        assert auditor.locator("form.decide").count() == 0 and auditor.locator("[data-testid=states]").count() == 1
        shoot(auditor, "board-auditor")


PICKER_FORM = """
<form id="picker-form"><input name="lat"><input name="lon">
  <select name="district"></select><select name="street"></select><select name="community"></select><select name="grid"></select>
  <div class="chart picker" style="width:360px;height:260px" data-map-picker data-geojson="/console/map/areas.geojson"></div>
</form>"""


def _the_map_picker_fills_a_form(page: Any) -> None:
    """partials/map_picker.html's map, as the operator's form includes it: a click fills the place fields."""
    page.add_script_tag(url="/console/static/map_picker.js")
    page.evaluate("""html => { const box = document.createElement('div'); box.innerHTML = html;
        document.querySelector('main').prepend(box);
        box.dispatchEvent(new Event('htmx:afterSettle', {bubbles: true})); }""", PICKER_FORM)
    picker = page.locator("#picker-form [data-map-picker]")
    page.wait_for_selector("#picker-form [data-map-picker][data-ready=true]", timeout=15_000)
    box = picker.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#picker-form [data-map-picker][data-picked]", timeout=5_000)
    values = page.evaluate("""() => Object.fromEntries(['lat', 'lon', 'district', 'street', 'community', 'grid']
        .map(n => [n, document.querySelector('#picker-form [name=' + n + ']').value]))""")
    from domain.catalogue import load_catalogue
    from domain.catalogue.geo import default_locator

    assert values["grid"] == picker.get_attribute("data-picked")
    located = default_locator().locate(float(values["lon"]), float(values["lat"]))
    assert located == {level: values[level] for level in ("grid", "community", "street", "district")}
    assert {a.level: a.id for a in load_catalogue().area_chain({"grid": values["grid"]})} == located
    shoot(page, "board-map-picker", full_page=False)


def _a_click_on_the_operator_s_map_fills_the_place(page: Any) -> None:
    """The operator's submit form includes the picker: a click selects the grid and its ancestors in the form."""
    picker = page.locator("[data-map-picker]")
    page.wait_for_selector("[data-map-picker][data-ready=true]", timeout=15_000)
    picker.scroll_into_view_if_needed()
    box = picker.bounding_box()
    assert box is not None
    # the map keeps the city's proportions, centred: a point a little below the middle lies on it
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6)
    page.wait_for_selector("[data-map-picker][data-picked]", timeout=5_000)
    grid = picker.get_attribute("data-picked")
    chosen = page.evaluate("""() => Object.fromEntries(['district', 'street', 'community', 'grid', 'lat', 'lon']
        .map(n => [n, document.querySelector('form [name=' + n + ']').value]))""")
    from domain.catalogue.geo import default_locator

    assert chosen["grid"] == grid
    assert default_locator().locate(float(chosen["lon"]), float(chosen["lat"])) == \
        {level: chosen[level] for level in ("grid", "community", "street", "district")}
    shoot(page, "operator-map-picker")
