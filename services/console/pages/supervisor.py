"""The supervisors' board (/console/board/): what the city's tickets are doing now.

Counts by state and the alerts feed refresh on the live stream (htmx fragments); the arbitration queue
decides disputed tickets through intake's POST /supervisor/decisions; rankings, the daily trend and the grid
map are ECharts charts. Every number comes from the replay API (the projections' read side); an auditor sees
the same board without the decide forms.

GET /console/map/areas.geojson serves the city map (domain/catalogue/city_map.v1.geojson) to any signed-in
user: the board's grid map and the operator's point picker (templates/partials/map_picker.html) draw it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from domain.catalogue.geo import read_city_map
from services.common.auth import Role

from ..deps import ConsoleDeps, NavItem
from ..session import ANY_USER, page_user
from ..upstream import User

BOARD = page_user(Role.supervisor, Role.auditor)
DECIDE = page_user(Role.supervisor)
NAV = [NavItem("nav.board", "/console/board/", frozenset({Role.supervisor, Role.auditor}))]
Scope = Literal["unit", "grid", "district"]
RATE_NAMES = ("response_rate", "resolution_rate", "satisfaction_rate")
ALERTS_PAGE = 20
# Bars of the ranking chart: the best ranked ones (a city with hundreds of units shows its top of the table).
CHART_BARS = 15
# The zone the projections count days in (CITYOPS_PROJECTIONS_TIMEZONE's default): the board shows times in it.
CITY_ZONE = ZoneInfo("Asia/Shanghai")


def router(deps: ConsoleDeps) -> APIRouter:
    api = APIRouter(prefix="/console")
    deps.templates.env.filters["board_time"] = short_time

    @api.get("/board/", include_in_schema=False)
    async def board(request: Request, user: Annotated[User, Depends(BOARD)],
                    scope: Annotated[Scope, Query()] = "unit") -> Response:
        states, alerts, queue, ranked, trend, grids, proactive, lowest = await asyncio.gather(
            deps.upstream.get("replay", "/replay/board/states", user),
            deps.upstream.get("replay", "/replay/board/alerts", user, params={"limit": ALERTS_PAGE}),
            deps.upstream.get("replay", "/replay/board/arbitration", user),
            deps.upstream.get("replay", "/replay/rankings", user, params={"scope": scope}),
            deps.upstream.get("replay", "/replay/board/trend", user),
            deps.upstream.get("replay", "/replay/board/grids", user),
            deps.upstream.get("replay", "/replay/board/proactive", user),
            deps.upstream.get("replay", "/replay/board/lowest-level", user))
        t = _t(deps, request)
        states, alerts = counts_or_none(states), page_or_none(alerts)
        context = {"states": states, "alerts": alerts, "queue": queue, "ranked": ranked, "scope": scope,
                   "grids": grids, "proactive": proactive, "lowest": lowest, "can_decide": user.has(Role.supervisor), "units": unit_choices(deps, request),
                   "names": area_and_unit_names(deps, request),
                   "ranking_chart": embedded(ranking_chart(ranked, t)), "trend_chart": embedded(trend_chart(trend, t)),
                   "map_data": embedded(map_data(grids, deps, request))}
        return deps.render(request, "supervisor/board.html", context)

    @api.get("/board/states", include_in_schema=False)
    async def states(request: Request, user: Annotated[User, Depends(BOARD)]) -> Response:
        counts = await deps.upstream.get("replay", "/replay/board/states", user)
        return deps.render(request, "supervisor/_states.html", {"states": counts_or_none(counts)})

    @api.get("/board/alerts", include_in_schema=False)
    async def alerts(request: Request, user: Annotated[User, Depends(BOARD)],
                     before: Annotated[str | None, Query(max_length=200)] = None) -> Response:
        page = await deps.upstream.get("replay", "/replay/board/alerts", user,
                                       params={"limit": ALERTS_PAGE, "before": before})
        template = "supervisor/_alert_rows.html" if before else "supervisor/_alerts.html"
        return deps.render(request, template, {"alerts": page_or_none(page), "names": area_and_unit_names(deps, request)})

    @api.get("/board/arbitration", include_in_schema=False)
    async def arbitration(request: Request, user: Annotated[User, Depends(BOARD)]) -> Response:
        queue = await deps.upstream.get("replay", "/replay/board/arbitration", user)
        return deps.render(request, "supervisor/_arbitration.html",
                           {"queue": queue, "can_decide": user.has(Role.supervisor), "units": unit_choices(deps, request),
                            "names": area_and_unit_names(deps, request)})

    @api.post("/board/decisions", include_in_schema=False)
    async def decide(request: Request, user: Annotated[User, Depends(DECIDE)],
                     ticket_id: Annotated[str, Form(min_length=1, max_length=100)],
                     lead: Annotated[str, Form(min_length=1, max_length=100)],
                     co_units: Annotated[list[str] | None, Form()] = None,
                     consultation_id: Annotated[str | None, Form(max_length=200)] = None,
                     note: Annotated[str, Form(max_length=2000)] = "") -> Response:
        co = [u for u in (co_units or []) if u and u != lead]
        answer = await deps.upstream.post("intake", "/supervisor/decisions", user,
                                          json={"ticket_id": ticket_id, "lead": lead, "co_units": co,
                                                "consultation_id": consultation_id or None, "note": note})
        return deps.render(request, "supervisor/_decided.html",
                           {"ticket_id": ticket_id, "lead": lead, "co_units": co, "answer": answer,
                            "names": area_and_unit_names(deps, request)}, status_code=202)

    @api.get("/map/areas.geojson", include_in_schema=False)
    async def areas(_: Annotated[User, Depends(ANY_USER)]) -> Response:
        return Response(city_map_text(), media_type="application/geo+json",
                        headers={"Cache-Control": "private, max-age=3600"})

    return api


def counts_or_none(answer: Any) -> dict[str, Any]:
    """The states answer, or zero counts when the replay API has none to give (an empty store answers {})."""
    if isinstance(answer, dict) and isinstance(answer.get("states"), dict):
        return answer
    return {"states": {}, "total": 0, "open": 0, "overdue": 0}


def page_or_none(answer: Any) -> dict[str, Any]:
    """An alerts page, or an empty last page."""
    if isinstance(answer, dict) and isinstance(answer.get("items"), list):
        return answer
    return {"items": [], "next": None}


def embedded(data: Any) -> str:
    """JSON for a <script type="application/json"> block: no "</" can close the block early."""
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


@lru_cache(maxsize=1)
def city_map_text() -> str:
    return json.dumps(read_city_map(), ensure_ascii=False)


def _t(deps: ConsoleDeps, request: Request) -> Any:
    from ..i18n import chosen_language, translator

    return translator(chosen_language(request))


def _english(request: Request) -> bool:
    from ..i18n import chosen_language

    return chosen_language(request) == "en"


def area_and_unit_names(deps: ConsoleDeps, request: Request) -> dict[str, str]:
    """id -> name of every unit and area in the page's language (a grid's id is its unit's id too)."""
    english = _english(request)
    names = {u.id: (u.name_en if english else u.name) for u in deps.catalogue.units}
    names.update({a.id: (a.name_en if english else a.name) for a in deps.catalogue.areas})
    return names


def unit_choices(deps: ConsoleDeps, request: Request) -> list[tuple[str, str]]:
    """Every unit a supervisor may name lead or co-unit: (id, name), by name."""
    names = area_and_unit_names(deps, request)
    return sorted(((u.id, names[u.id]) for u in deps.catalogue.units), key=lambda pair: pair[1])


def percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def ranking_chart(ranked: Sequence[Mapping[str, Any]], t: Any) -> dict[str, Any]:
    """Grouped bars of the three rates of the best ranked keys. While nothing has the minimum sample (a young
    hub), the largest samples are drawn faded under a title saying they are not ranked."""
    top = [r for r in ranked if r.get("rank") is not None][:CHART_BARS]
    faded = not top
    if faded:
        top = list(ranked[:CHART_BARS])
    return {"title": {"text": t("board.unranked_chart") if faded and top else "", "right": 0, "top": 0,
                      "textStyle": {"fontSize": 12, "color": "#999"}},
            "tooltip": {"trigger": "axis"}, "legend": {"top": 0, "left": 0},
            "grid": {"left": 40, "right": 10, "bottom": 90, "top": 30},
            "xAxis": {"type": "category", "data": [r["key"] for r in top], "axisLabel": {"rotate": 45, "fontSize": 10}},
            "yAxis": {"type": "value", "min": 0, "max": 100, "axisLabel": {"formatter": "{value}%"}},
            "series": [{"type": "bar", "name": t(f"board.{name}"), "data": [percent(r.get(name)) for r in top],
                        **({"itemStyle": {"opacity": 0.4}} if faded else {})} for name in RATE_NAMES]}


def trend_chart(trend: Sequence[Mapping[str, Any]], t: Any) -> dict[str, Any]:
    """The city's three rates per day (a ticket counted on the day it came in)."""
    return {"tooltip": {"trigger": "axis"}, "legend": {"top": 0},
            "grid": {"left": 40, "right": 10, "bottom": 30, "top": 30},
            "xAxis": {"type": "category", "data": [d["day"] for d in trend]},
            "yAxis": {"type": "value", "min": 0, "max": 100, "axisLabel": {"formatter": "{value}%"}},
            "series": [{"type": "line", "name": t(f"board.{name}"), "connectNulls": True, "smooth": True,
                        "data": [percent(d.get(name)) for d in trend]} for name in RATE_NAMES]}


def map_data(grids: Sequence[Mapping[str, Any]], deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    """What board.js colours the grid map with: per grid id its open tickets and on-time rate, and its name."""
    names = area_and_unit_names(deps, request)
    t = _t(deps, request)
    known = {a.id for a in deps.catalogue.areas if a.level == "grid"}
    by_grid = {g["grid"]: g for g in grids}
    return {"geojson": "/console/map/areas.geojson",
            "labels": {"open": t("board.map_open"), "on_time": t("board.map_on_time"), "no_data": t("board.no_data")},
            "grids": [{"id": grid, "name": names.get(grid, grid), "open": by_grid.get(grid, {}).get("open", 0),
                       "overdue": by_grid.get(grid, {}).get("overdue", 0),
                       "on_time": percent(by_grid.get(grid, {}).get("on_time_rate"))}
                      for grid in sorted(known | set(by_grid))]}


def short_time(value: str | None) -> str:
    """An ISO time as the board shows it: month, day and minute in the city's zone."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return (moment.astimezone(CITY_ZONE) if moment.tzinfo else moment).strftime("%m-%d %H:%M")
