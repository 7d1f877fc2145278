"""A unit's or grid worker's inbox (/console/unit/): my tasks with their clocks counting down, one task with its
actions and its joint action, my consultations with an opinion form.

Everything goes through the unit HTTP bridge with the user's own token, so the bridge's rules are the page's:
another unit's task is the bridge's 403, shown as a 403 page; a refused report (4xx) is shown on the page next to
the field the bridge named. A report is accepted (202) before the bridge reads it back, so the page says it was
sent and the live feed refreshes it once the task moved.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response

from domain.grid_workers import ESCALATION_REASONS, ESCALATION_TARGETS, escalation_refusal
from services.common.auth import Role
from services.common.inputs import ID_MAX, ID_PATTERN

from ..deps import ConsoleDeps, NavItem, local_time
from ..i18n import chosen_language
from ..session import page_user
from ..upstream import Upstream, UpstreamError, UpstreamUnavailable, User

UNIT_PAGE = page_user(Role.unit, Role.grid_worker)
NAV = [NavItem("nav.unit", "/console/unit/", frozenset({Role.unit, Role.grid_worker}))]
Me = Annotated[User, Depends(UNIT_PAGE)]
TaskId = Annotated[str, Path(max_length=ID_MAX, pattern=ID_PATTERN)]
ConsultationId = Annotated[str, Path(max_length=ID_MAX, pattern=ID_PATTERN)]
OPEN = ("assigned", "signed-for", "in-progress", "waiting-on-resident")
# Each form's fields as the bridge's body wants them; `checkbox` fields are true when present.
ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sign-for": ((), ()),
    "progress": (("note",), ("waiting_on_resident",)),
    "extension": (("amount", "unit", "reason"), ()),
    "return": (("reason", "suggested_unit"), ()),
    "complete": (("result",), ()),
    "resolve-on-the-spot": (("result",), ()),
    "escalate": (("to_level", "reason", "note"), ()),
}
OPINION_FIELDS = ("proposed_lead", "comment", "unit")
FULL_TIME = "%Y-%m-%d %H:%M"  # a deadline may be days away: the date in full
# After a report is accepted the bridge shows it once it read it back from Kafka (usually well under a second):
# the page waits that long for it, so the user sees the task move rather than the state before their click.
READ_BACK_WAIT_S, READ_BACK_POLL_S = 3.0, 0.2
WATCHED = ("status", "handler", "last_note", "result", "extension_pending")


def router(deps: ConsoleDeps) -> APIRouter:
    api = APIRouter(prefix="/console/unit")
    units = sorted(u.id for u in deps.catalogue.units)
    zone = ZoneInfo(deps.settings.timezone)  # deadlines on the city's clock
    unit_names = {u.id: (u.name, u.name_en) for u in deps.catalogue.units}
    unit_levels = {u.id: u.level for u in deps.catalogue.units}
    category_names = {c.code: (c.name, c.name_en) for c in deps.catalogue.categories}

    def render(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
        """A page with the catalogue's names for unit ids and category codes, in the page's language."""
        english = chosen_language(request) == "en"

        def named(names: dict[str, tuple[str, str]]) -> Any:
            return lambda code: (names[code][1 if english else 0] or code) if code in names else (code or "")

        return deps.render(request, template, {**context, "unit_name": named(unit_names), "category_name": named(category_names)},
                           status_code=status_code)

    def grid_work(task: dict[str, Any]) -> dict[str, Any]:
        """What the lowest levels may do on a task they lead (domain/grid_workers.py; the bridge has the last word):
        a grid resolves on the spot, an area unit escalates to the levels above its own."""
        level = unit_levels.get(str(task.get("unit")), "")
        lead = task.get("role") == "lead" and not task.get("final")
        above = [lv for lv in ESCALATION_TARGETS if escalation_refusal(level, lv) is None] if lead else []
        return {"on_the_spot": lead and level == "grid", "escalate_to": above,
                "escalation_reasons": [r.value for r in ESCALATION_REASONS]}

    async def inbox_context(request: Request, user: User, unit: str | None) -> dict[str, Any]:
        params, lang = {"unit": unit}, chosen_language(request)
        tasks = [present(task, lang, zone) for task in await bridge_list(deps.upstream, "/tasks", user, params)]
        consultations = await bridge_list(deps.upstream, "/consultations", user, {**params, "answered": "true"})
        return {"tasks": tasks, "consultations": consultations, "unit": unit or "", "my_units": my_units(user)}

    @api.get("/", include_in_schema=False)
    async def inbox(request: Request, user: Me, unit: str | None = None) -> Response:
        return render(request, "unit/inbox.html", await inbox_context(request, user, unit or None))

    @api.get("/tasks", include_in_schema=False)
    async def task_list(request: Request, user: Me, unit: str | None = None) -> Response:
        """The list alone: what the inbox swaps in when the live feed says one of my tickets moved."""
        return render(request, "unit/_tasks.html", await inbox_context(request, user, unit or None))

    async def task_page(request: Request, user: User, task_id: str, *, problem: UpstreamError | None = None,
                        form: dict[str, str] | None = None, action: str | None = None, sent: str | None = None,
                        fragment: bool = False) -> Response:
        task = present(await bridge_one(deps.upstream, f"/tasks/{task_id}", user), chosen_language(request), zone)
        context = {"task": task, "open": task["status"] in OPEN, "problem": problem, "form": form or {}, "action": action,
                   **grid_work(task),
                   "sent": sent if sent in ACTIONS else None, "units": units, "key": uuid.uuid4().hex}
        return render(request, "unit/_task.html" if fragment else "unit/task.html", context,
                           status_code=problem.status if problem else 200)

    @api.get("/tasks/{task_id}", include_in_schema=False)
    async def one_task(request: Request, user: Me, task_id: TaskId, sent: str | None = None) -> Response:
        return await task_page(request, user, task_id, sent=sent)

    @api.get("/tasks/{task_id}/panel", include_in_schema=False)
    async def task_panel(request: Request, user: Me, task_id: TaskId) -> Response:
        return await task_page(request, user, task_id, fragment=True)

    @api.post("/tasks/{task_id}/{action}", include_in_schema=False)
    async def act(request: Request, user: Me, task_id: TaskId, action: str) -> Response:
        if action not in ACTIONS:
            return Response(status_code=404)
        form = await request.form()
        text, checks = ACTIONS[action]
        fields = {name: str(form.get(name, "")) for name in text}
        body: dict[str, Any] | None = None
        if text or checks:
            body = {k: v for k, v in fields.items() if v != "" or k not in ("suggested_unit",)}
            body.update({name: name in form for name in checks})
        before = await bridge_one(deps.upstream, f"/tasks/{task_id}", user)
        try:
            await deps.upstream.post("bridge", f"/tasks/{task_id}/{action}", user, json=body,
                                     headers=idempotency(form.get("key")))
        except UpstreamError as refused:
            if refused.status in (403, 404):
                raise
            return await task_page(request, user, task_id, problem=refused, form=fields, action=action)
        await read_back(lambda: bridge_one(deps.upstream, f"/tasks/{task_id}", user), before, WATCHED)
        return RedirectResponse(f"/console/unit/tasks/{task_id}?sent={action}", status_code=303)

    async def consultation_page(request: Request, user: User, consultation_id: str, *, problem: UpstreamError | None = None,
                                form: dict[str, str] | None = None, sent: bool = False) -> Response:
        consultation = await bridge_one(deps.upstream, f"/consultations/{consultation_id}", user)
        consultation["due_local"] = local_time(consultation.get("opinions_due"), zone, FULL_TIME)
        context = {"c": consultation, "problem": problem, "form": form or {}, "sent": sent, "units": units,
                   "key": uuid.uuid4().hex, "waiting": [m for m in consultation.get("mine", []) if not m["answered"]]}
        return render(request, "unit/consultation.html", context, status_code=problem.status if problem else 200)

    @api.get("/consultations/{consultation_id}", include_in_schema=False)
    async def one_consultation(request: Request, user: Me, consultation_id: ConsultationId, sent: bool = False) -> Response:
        return await consultation_page(request, user, consultation_id, sent=sent)

    @api.post("/consultations/{consultation_id}/opinion", include_in_schema=False)
    async def opinion(request: Request, user: Me, consultation_id: ConsultationId) -> Response:
        form = await request.form()
        fields = {name: str(form.get(name, "")) for name in ("agrees", *OPINION_FIELDS)}
        body: dict[str, Any] = {k: v for k, v in fields.items() if k in OPINION_FIELDS and v != ""}
        if fields["agrees"] in ("yes", "no"):
            body["agrees"] = fields["agrees"] == "yes"
        before = await bridge_one(deps.upstream, f"/consultations/{consultation_id}", user)
        try:
            await deps.upstream.post("bridge", f"/consultations/{consultation_id}/opinion", user, json=body,
                                     headers=idempotency(form.get("key")))
        except UpstreamError as refused:
            if refused.status in (403, 404):
                raise
            return await consultation_page(request, user, consultation_id, problem=refused, form=fields)
        await read_back(lambda: bridge_one(deps.upstream, f"/consultations/{consultation_id}", user), before, ("mine",))
        return RedirectResponse(f"/console/unit/consultations/{consultation_id}?sent=true", status_code=303)

    return api


def my_units(user: User) -> list[str]:
    """The units a session acts for, for a grid worker's filter (the bridge decides which of them are real)."""
    return sorted({*([user.unit] if user.unit and user.has(Role.unit) else []), *(user.grids if user.has(Role.grid_worker) else ())})


def idempotency(key: Any) -> dict[str, str]:
    """The form's own key: submitting the same form twice (a double tap on a phone) is one report."""
    return {"Idempotency-Key": key} if isinstance(key, str) and 0 < len(key) <= 64 and key.isalnum() else {}


async def bridge_one(upstream: Upstream, path: str, user: User) -> dict[str, Any]:
    """One object of the bridge's, or the "try again" banner when the answer is not one (a bridge of another
    version, a proxy's page)."""
    answer = await upstream.get("bridge", path, user)
    if not isinstance(answer, dict):
        raise UpstreamUnavailable("bridge", f"unexpected answer to {path}")
    return answer


async def bridge_list(upstream: Upstream, path: str, user: User, params: dict[str, Any]) -> list[dict[str, Any]]:
    answer = await upstream.get("bridge", path, user, params=params)
    if not isinstance(answer, list):
        raise UpstreamUnavailable("bridge", f"unexpected answer to {path}")
    return [item for item in answer if isinstance(item, dict)]


async def read_back(fetch: Any, before: dict[str, Any], watched: tuple[str, ...]) -> None:
    """Wait (a bounded while) until the bridge shows the report just accepted: one of `watched` changed."""
    loop = asyncio.get_running_loop()
    until = loop.time() + READ_BACK_WAIT_S
    while loop.time() < until:
        await asyncio.sleep(READ_BACK_POLL_S)
        now = await fetch()
        if any(now.get(k) != before.get(k) for k in watched):
            return


def left_text(seconds: int | None, lang: str) -> str:
    """Time left as a page shows it before unit.js counts it down (the same format as unit.js's)."""
    if seconds is None:
        return "—"
    sign, rest = ("-" if seconds < 0 else ""), abs(seconds)
    hours, minutes = rest // 3600, rest % 3600 // 60
    return f"{sign}{hours}小时{minutes:02d}分" if lang == "zh" else f"{sign}{hours}h {minutes:02d}m"


def present(task: dict[str, Any], lang: str, zone: ZoneInfo) -> dict[str, Any]:
    """A task of the bridge with what the page shows ready-made: times on the city's clock, the time left as text."""
    task["assigned_local"] = local_time(task.get("assigned_at"), zone, FULL_TIME)
    for clock in task.get("clocks", []):
        clock["due_local"] = local_time(clock.get("due"), zone, FULL_TIME)
        clock["left_text"] = left_text(clock.get("left_s"), lang)
    return task

