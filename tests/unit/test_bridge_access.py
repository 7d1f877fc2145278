"""Every route of the unit bridge, from the app's own route list: no token 401, a wrong role 403, another unit 403,
the task's own unit 2xx (/health: anyone). A route without an access rule fails the table.

Each route is called on a fresh bridge holding one task and one consultation of unit A (water), with the request
body its OpenAPI example gives, so the documented examples are checked to be accepted too.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.common.auth import Role, route_access
from tests.harness.bridge import GRID, OTHER_GRID, BridgeHarness, assigned, consultation

UNIT_A, UNIT_B = "water", "power"
GRID_WORK_ROUTES = {"/tasks/{task_id}/resolve-on-the-spot", "/tasks/{task_id}/escalate"}


def api_routes(app: FastAPI) -> list[APIRoute]:
    return [r for r in app.routes if isinstance(r, APIRoute)]


def routes_without_a_rule(app: FastAPI) -> list[str]:
    return [f"{sorted(r.methods)} {r.path}" for r in api_routes(app) if not route_access(r)]


def _example_body(route: APIRoute) -> Any:
    if route.body_field is None:
        return None
    model = route.body_field.field_info.annotation
    return model.model_config["json_schema_extra"]["examples"][0]


async def _bridge_with_a_task(tmp_path, unit: str = UNIT_A) -> tuple[BridgeHarness, dict[str, str]]:
    bridge = BridgeHarness(tmp_path)
    task, asked = assigned("T-ACC", unit), consultation("T-ACC-C", (unit,))
    await bridge.feed(task, asked)
    return bridge, {"task_id": task.data.task_id, "consultation_id": asked.data.consultation_id}


def _call(bridge: BridgeHarness, route: APIRoute, ids: dict[str, str], headers: dict[str, str], params: dict[str, str]) -> int:
    path = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], route.path)
    method = next(iter(route.methods))
    return bridge.client.request(method, path, json=_example_body(route), headers=headers, params=params).status_code


async def test_every_route_refuses_no_token_a_wrong_role_and_another_unit_and_serves_its_own(tmp_path) -> None:
    probe, _ = await _bridge_with_a_task(tmp_path / "probe")
    assert not routes_without_a_rule(probe.app), f"routes without an access rule: {routes_without_a_rule(probe.app)}"
    problems, checked = [], 0
    for i, route in enumerate(api_routes(probe.app)):
        # A grid worker's own routes (on the spot, escalate) act on a grid's task: a department's is refused 409.
        own, another = (GRID, OTHER_GRID) if route.path in GRID_WORK_ROUTES else (UNIT_A, UNIT_B)
        bridge, ids = await _bridge_with_a_task(tmp_path / str(i), own)  # fresh: an earlier route's report changes no state
        [rule] = route_access(route)
        if not rule.public and Role.unit not in rule.roles:
            continue  # not a unit's door (GET /metrics: supervisors, auditors); test_route_access.py checks it
        has_id = "{" in route.path
        # A list route has no id: another unit asks for A's list by name.
        other = {} if has_id else {"unit": own}
        expected = {
            "no token": (({}, {}), 200 if rule.public else 401),
            "wrong role": ((bridge.auth(Role.operator), {}), 200 if rule.public else 403),
            "another unit": ((bridge.auth(Role.unit, unit=another), other), 200 if rule.public else 403),
            "its own unit": ((bridge.auth(Role.unit, unit=own), {}), None),
        }
        for case, ((headers, params), status) in expected.items():
            got = _call(bridge, route, ids, headers, params)
            ok = (200 <= got < 300) if status is None else got == status
            if not ok:
                problems.append(f"{sorted(route.methods)} {route.path} {case}: {got}, expected {status or '2xx'}")
        checked += 1
        assert not bridge.published or bridge.sent[0].data.unit == own
    assert checked >= 12, checked  # health, 2 task reads, 7 task reports, 2 consultation reads, 1 opinion
    assert not problems, "\n".join(problems)


async def test_a_route_without_an_access_rule_is_found(tmp_path) -> None:
    bridge, _ = await _bridge_with_a_task(tmp_path)

    @bridge.app.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    assert routes_without_a_rule(bridge.app) == ["['GET'] /forgotten"]


async def test_a_grid_worker_acts_on_every_route_for_its_grid_and_is_refused_another_grid_and_a_department(tmp_path) -> None:
    """The grid-worker rule, route by route: a worker bound to the grid of the task gets 2xx; one bound to
    another grid, or whose grids claim names a department (least privilege), gets 403."""
    probe, _ = await _bridge_with_a_task(tmp_path / "probe", GRID)
    problems, checked = [], 0
    for i, route in enumerate(api_routes(probe.app)):
        [rule] = route_access(route)
        if rule.public or Role.grid_worker not in rule.roles:
            continue
        for case, (unit, grids, allowed) in {"its grid": (GRID, (GRID,), True), "another grid": (GRID, (OTHER_GRID,), False),
                                             "a department named as a grid": (UNIT_A, (UNIT_A,), False)}.items():
            bridge, ids = await _bridge_with_a_task(tmp_path / f"{i}-{case}", unit)
            params = {} if "{" in route.path else {"unit": unit}
            got = _call(bridge, route, ids, bridge.auth(Role.grid_worker, grids=grids), params)
            if (200 <= got < 300) != allowed or (not allowed and got != 403):
                problems.append(f"{sorted(route.methods)} {route.path} {case}: {got}")
            assert all(sent.data.unit == GRID for sent in bridge.sent)
        checked += 1
    assert checked >= 11, checked  # 2 task reads, 7 task reports, 2 consultation reads, 1 opinion
    assert not problems, "\n".join(problems)


async def test_a_department_may_not_resolve_on_the_spot_nor_escalate_and_a_grid_may_not_escalate_sideways(tmp_path) -> None:
    bridge, ids = await _bridge_with_a_task(tmp_path / "department", UNIT_A)
    water = bridge.auth(Role.unit, unit=UNIT_A)
    spot = bridge.client.post(f"/tasks/{ids['task_id']}/resolve-on-the-spot", json={"result": "fixed"}, headers=water)
    up = bridge.client.post(f"/tasks/{ids['task_id']}/escalate", headers=water,
                            json={"to_level": "district", "reason": "help-requested", "note": "too big"})
    assert (spot.status_code, up.status_code) == (409, 409)
    assert "not led by a grid" in spot.json()["detail"]
    assert "only a grid, community or street unit escalates" in up.json()["detail"]
    assert not bridge.published

    bridge, ids = await _bridge_with_a_task(tmp_path / "grid", GRID)
    worker = bridge.auth(Role.grid_worker, grids=(GRID,))
    bad_reason = bridge.client.post(f"/tasks/{ids['task_id']}/escalate", headers=worker,
                                    json={"to_level": "community", "reason": "bored", "note": "x"})
    sideways = bridge.client.post(f"/tasks/{ids['task_id']}/escalate", headers=worker,
                                  json={"to_level": "grid", "reason": "help-requested", "note": "x"})
    assert bad_reason.status_code == 422 and "reason" in str(bad_reason.json()["detail"][0]["loc"])
    assert sideways.status_code == 422 and "to_level" in str(sideways.json()["detail"][0]["loc"])
    ok = bridge.client.post(f"/tasks/{ids['task_id']}/escalate", headers=worker,
                            json={"to_level": "community", "reason": "help-requested", "note": "residents refuse"})
    assert ok.status_code == 202
    [sent] = bridge.sent
    assert (sent.data.escalate_to, sent.data.escalation_reason, sent.data.unit) == ("community", "help-requested", GRID)
