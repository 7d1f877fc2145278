"""A ticket's story (/console/tickets/{id}) and the replay views (/console/replay/as-of, /console/replay/what-if).

Who sees what (the replay API's own rules decide; the console only chooses which route to call):

- supervisors and auditors: the whole story, its timeline and who held the ticket when (the ledger, as bars over
  time), from the replay API's /story; the as-of view; supervisors alone run a what-if;
- operators: the timeline (what happened, when, by whom) from /timeline, not the ledger: it is how they answer a
  resident who calls back. Neither carries a caller's details: the projections never read intake's topics;
- units and grid workers: no story page (a unit's own task page shows its part).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from services.common.auth import Role

from ..deps import ConsoleDeps, NavItem
from ..i18n import chosen_language, translator
from ..session import page_user
from ..upstream import UpstreamError, User

STORY_READERS = page_user(Role.supervisor, Role.auditor, Role.operator)
REPLAY_READERS = page_user(Role.supervisor, Role.auditor)
WHAT_IF = page_user(Role.supervisor)
NAV = [NavItem("nav.replay", "/console/replay/", frozenset({Role.supervisor, Role.auditor}))]
MAX_UPLOAD_BYTES = 2_000_000
ZONE = ZoneInfo("Asia/Shanghai")  # the city's clock: times on the pages are local
# The ledger's bars: one colour per kind of holder (the legend says which).
HOLDER_COLOURS = {"hotline": "#5470c6", "unit": "#91cc75", "consultation": "#fac858", "resident": "#ee6666",
                  "suspension": "#9a60b4"}
SCOPES = ("unit", "grid", "district")


def router(deps: ConsoleDeps) -> APIRouter:
    api = APIRouter()

    @api.get("/console/tickets/{ticket_id}", include_in_schema=False)
    async def story(request: Request, ticket_id: str, user: Annotated[User, Depends(STORY_READERS)],
                    source: Annotated[str, Query(pattern="^(store|kafka|archive)$")] = "store") -> Response:
        if user.has(Role.supervisor, Role.auditor):
            answer = mapping(await deps.upstream.get("replay", f"/replay/tickets/{ticket_id}/story", user,
                                                     params={"source": source}))
            ledger = answer.get("holders") or []
        else:
            answer = mapping(await deps.upstream.get("replay", f"/replay/tickets/{ticket_id}/timeline", user))
            ledger = []
        t = translator(chosen_language(request))
        return deps.render(request, "story/ticket.html", {
            "ticket_id": ticket_id, "state": answer.get("state"), "tasks": answer.get("tasks", []),
            "events": answer.get("events", []), "ledger": ledger, "source": answer.get("source"),
            "ledger_chart": json.dumps(ledger_chart(ledger, t), ensure_ascii=False) if ledger else None,
            "local": local_time})

    @api.get("/console/replay/", include_in_schema=False, dependencies=[Depends(REPLAY_READERS)])
    async def replay_home() -> Response:
        return RedirectResponse("/console/replay/as-of", status_code=303)

    @api.get("/console/replay/as-of", include_in_schema=False)
    async def as_of(request: Request, user: Annotated[User, Depends(REPLAY_READERS)],
                    time: Annotated[str | None, Query(max_length=40)] = None,
                    ticket: Annotated[str | None, Query(max_length=100)] = None,
                    scope: Annotated[str, Query(pattern="^(unit|grid|district)$")] = "unit") -> Response:
        answer = None
        if time:
            params: dict[str, Any] = {"time": as_api_time(time), "scope": scope}
            params |= {"ticket": ticket} if ticket else {"rankings": True}
            answer = mapping(await deps.upstream.get("replay", "/replay/as-of", user, params=params)) or None
        t = translator(chosen_language(request))
        states = (answer or {}).get("states") or {}
        return deps.render(request, "story/as_of.html", {
            "time": time or "", "ticket": ticket or "", "scope": scope, "scopes": SCOPES, "answer": answer,
            "states_chart": json.dumps(states_chart(states, t), ensure_ascii=False) if states else None,
            "local": local_time})

    @api.get("/console/replay/what-if", include_in_schema=False)
    async def what_if_form(request: Request, user: Annotated[User, Depends(WHAT_IF)]) -> Response:
        models = await deps.upstream.get("replay", "/replay/what-if/models", user)
        return deps.render(request, "story/what_if.html", {"models": models or [], "report": None})

    @api.post("/console/replay/what-if", include_in_schema=False)
    async def what_if_run(request: Request, user: Annotated[User, Depends(WHAT_IF)],
                          catalogue: UploadFile | None = None,
                          model: Annotated[str, Form(max_length=200)] = "",
                          since: Annotated[str, Form(max_length=40)] = "",
                          until: Annotated[str, Form(max_length=40)] = "",
                          limit: Annotated[int, Form(ge=1, le=2000)] = 200) -> Response:
        body: dict[str, Any] = {"limit": limit, "model": model or None, "since": as_api_time(since) if since else None,
                                "until": as_api_time(until) if until else None}
        if catalogue is not None and catalogue.filename:
            body["catalogue"] = await read_upload(catalogue)
        report = mapping(await deps.upstream.post("replay", "/replay/what-if", user, json=body))
        template = "story/what_if_result.html" if request.headers.get("hx-request") == "true" else "story/what_if.html"
        models = [] if template.endswith("result.html") else await deps.upstream.get("replay", "/replay/what-if/models", user)
        return deps.render(request, template, {"report": report, "models": models or [],
                                               "catalogue_name": catalogue.filename if catalogue else None})

    return api


def mapping(answer: Any) -> dict[str, Any]:
    """An API's JSON object (an empty one for anything else: the page then shows nothing rather than failing)."""
    return answer if isinstance(answer, dict) else {}


async def read_upload(upload: UploadFile) -> str:
    """The uploaded catalogue as text, or a 422 naming the field: at most 2 MB of UTF-8."""
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise UpstreamError(422, f"catalogue: larger than {MAX_UPLOAD_BYTES // 1_000_000} MB", "catalogue")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UpstreamError(422, "catalogue: not UTF-8 text (a YAML file)", "catalogue") from None


def as_api_time(text: str) -> str:
    """A `datetime-local` input's value (the city's local time, no offset) as ISO 8601 with the offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UpstreamError(422, f"time: not a date and time: {text!r}", "time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=ZONE)).isoformat()


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00").replace(" ", "T"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def local_time(value: Any) -> str:
    """A time from the APIs (UTC) on the city's clock, to the minute."""
    moment = parse_time(value)
    return moment.astimezone(ZONE).strftime("%Y-%m-%d %H:%M") if moment else ""


def duration_text(seconds: float) -> str:
    spent = timedelta(seconds=int(seconds))
    days, rest = spent.days, spent.seconds
    return f"{days}d {rest // 3600}h{rest % 3600 // 60:02d}m" if days else f"{rest // 3600}h{rest % 3600 // 60:02d}m"


def ledger_chart(ledger: list[dict[str, Any]], t: Any) -> dict[str, Any]:
    """An ECharts option (plain JSON: the page's CSP allows no inline code) drawing who held the ticket when: one row
    per holding, a bar from its start to its end, in hours (days for a long story) since the ticket's first event;
    an invisible bar up to the start, stacked, places it (a gantt chart out of plain bars)."""
    rows = [f"{i + 1}. {t('story.kind.' + h['kind'])}{'' if h['kind'] != 'unit' else ' ' + h['holder']}"
            for i, h in enumerate(ledger)]
    starts = [parse_time(h["start"]) for h in ledger]
    ends = [parse_time(h["to"]) for h in ledger]
    first = min(s for s in starts if s)
    total = max(e for e in ends if e) - first
    per = 86400.0 if total > timedelta(days=3) else 3600.0
    offsets, bars = [], []
    for holding, start, end in zip(ledger, starts, ends):
        assert start is not None and end is not None
        offsets.append(round((start - first).total_seconds() / per, 3))
        bars.append({"value": round((end - start).total_seconds() / per, 3),
                     "itemStyle": {"color": HOLDER_COLOURS.get(holding["kind"], "#73c0de")}})
    unit = t("story.days") if per == 86400.0 else t("story.hours")
    return {
        "animation": False,
        "grid": {"left": 8, "right": 16, "top": 8, "bottom": 30, "containLabel": True},
        "tooltip": {"trigger": "item", "formatter": "{b}: {c} " + unit},
        "xAxis": {"type": "value", "min": 0, "name": unit, "nameLocation": "middle", "nameGap": 24},
        "yAxis": {"type": "category", "data": rows, "inverse": True},
        "series": [
            {"type": "bar", "stack": "held", "silent": True, "itemStyle": {"color": "transparent"}, "data": offsets},
            {"type": "bar", "stack": "held", "barMaxWidth": 22, "data": bars},
        ],
    }


def states_chart(states: dict[str, int], t: Any) -> dict[str, Any]:
    names = list(states)
    return {
        "animation": False,
        "grid": {"left": 8, "right": 16, "top": 8, "bottom": 8, "containLabel": True},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "value"},
        "yAxis": {"type": "category", "data": [t("story.status." + n) for n in names], "inverse": True},
        "series": [{"type": "bar", "data": [states[n] for n in names], "label": {"show": True, "position": "right"},
                    "itemStyle": {"color": "#5470c6"}}],
    }
