"""The replay HTTP API for the supervisors' console (a FastAPI router; the console mounts it).

    GET /replay/tickets/{id}              current state and tasks (projection store)
    GET /replay/tickets/{id}/story        the whole story; ?source=store|kafka|archive (default kafka: the log)
    GET /replay/events                    ?since&until&type&unit&district&ticket&limit&source
    GET /replay/as-of                     ?time&ticket|unit|rankings&scope&min_n&source (default store)
    GET /replay/rankings                  ?scope&min_n
    GET /replay/units/{unit}/queue        open tasks, oldest first
    GET /replay/board/states              tickets per state now (total, open, overdue)
    GET /replay/board/alerts              reminders, breaches, escalations, newest first; ?limit&before&since
    GET /replay/board/arbitration         tickets in supervisor-review with their consultation and opinions
    GET /replay/board/trend               the three rates per day; ?scope&key&since|days (default the last 30)
    GET /replay/board/grids               per grid: open tickets, overdue, on-time rate
    GET /replay/tickets/{id}/timeline, GET /replay/what-if/models, POST /replay/what-if: views_api (rules of
                                          their own: operators read a timeline, only supervisors run a what-if)

Times are ISO 8601; without an offset they are in the settings' zone. Nothing connects until the
first request. Every route needs a supervisor's or an auditor's token (`REPLAY`); `GET /health` of the
served app (`replay_app`, `cityops replay serve`) needs none.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from sqlalchemy.engine import Engine

from services.common.auth import PUBLIC, Role, TokenVerifier, access, install_verifier
from services.common.store import make_engine

from . import board, queries
from .logsource import ArchiveLog, KafkaLog, LogSource
from .queries import EventFilter, parse_time
from .replay import AsOfQuestion, as_of_log, as_of_store, events_from_log, story_from_log, story_from_store
from .settings import ProjectionsSettings
from .views_api import create_views_router

Source = Literal["store", "kafka", "archive"]
# The log holds every decision of the city: supervisors and auditors read it, nobody else.
REPLAY = access(Role.supervisor, Role.auditor)


def create_router(settings: ProjectionsSettings | None = None, *, engine: Engine | None = None,
                  log_factory: Callable[[bool], LogSource] | None = None) -> APIRouter:
    settings = settings or ProjectionsSettings()
    router = APIRouter(prefix="/replay", tags=["replay"], dependencies=[Depends(REPLAY)])

    @cache
    def store() -> Engine:
        return engine or make_engine(settings.store_url())

    def log(from_archive: bool) -> LogSource:
        if log_factory is not None:
            return log_factory(from_archive)
        if from_archive:
            return ArchiveLog(make_engine(settings.archive_store_url()), settings.projected_topics())
        return KafkaLog(settings.kafka_bootstrap, settings.projected_topics())

    def at(text: str) -> datetime:
        try:
            return parse_time(text, settings.timezone)
        except ValueError:
            raise HTTPException(422, f"not an ISO 8601 time: {text!r}") from None

    def when(text: str | None) -> datetime | None:
        return None if text is None else at(text)

    @router.get("/tickets/{ticket_id}")
    def get_ticket(ticket_id: str) -> dict[str, Any]:
        row = queries.ticket(store(), ticket_id)
        if row is None:
            raise HTTPException(404, f"no ticket {ticket_id}")
        return {"ticket": row, "tasks": queries.ticket_tasks(store(), ticket_id)}

    @router.get("/tickets/{ticket_id}/story")
    async def get_story(ticket_id: str, source: Source = "kafka") -> dict[str, Any]:
        result = story_from_store(store(), ticket_id) if source == "store" else \
            await story_from_log(log(source == "archive"), ticket_id)
        if not result.entries:
            raise HTTPException(404, f"no events of {ticket_id}")
        return result.as_dict(datetime.now(UTC))

    @router.get("/events")
    async def get_events(since: str | None = None, until: str | None = None,
                         type: list[str] = Query(default=[]), unit: str | None = None,  # noqa: A002 - the query name
                         district: str | None = None, ticket: str | None = None,
                         limit: int = Query(default=1000, ge=1, le=100_000), source: Source = "store") -> list[dict[str, Any]]:
        flt = EventFilter(when(since), when(until), tuple(type), unit, district, ticket, limit)
        if source == "store":
            return queries.events(store(), flt)
        return await events_from_log(log(source == "archive"), flt)

    @router.get("/as-of")
    async def get_as_of(time: str, ticket: str | None = None, unit: str | None = None, rankings: bool = False,
                        scope: str | None = None, min_n: int | None = None, source: Source = "store") -> dict[str, Any]:
        if not (ticket or unit or rankings):
            raise HTTPException(422, "ask for a ticket, a unit or the rankings")
        question = AsOfQuestion(at(time), ticket, unit, rankings, scope, min_n or settings.min_rank_sample)
        answer = as_of_store(store(), question) if source == "store" else \
            await as_of_log(log(source == "archive"), question)
        return answer.as_dict()

    @router.get("/rankings")
    def get_rankings(scope: str | None = None, min_n: int | None = None) -> list[dict[str, Any]]:
        return [r.as_dict() for r in queries.rankings(store(), min_n or settings.min_rank_sample, scope)]

    @router.get("/units/{unit}/queue")
    def get_queue(unit: str) -> list[dict[str, Any]]:
        return queries.unit_queue(store(), unit)

    _board_routes(router, store, when, settings.timezone)
    return router


def _board_routes(router: APIRouter, store: Callable[[], Engine], when: Callable[[str | None], datetime | None],
                  zone: str) -> None:
    """The supervisors' board (services/console): counts, alerts, arbitration, trend, grids."""

    @router.get("/board/states")
    def get_states() -> dict[str, Any]:
        return board.state_counts(store())

    @router.get("/board/alerts")
    def get_alerts(limit: int = Query(default=50, ge=1, le=500), before: str | None = None,
                   since: str | None = None) -> dict[str, Any]:
        try:
            cursor = board.Cursor.parse(before) if before else None
        except ValueError:
            raise HTTPException(422, f"before: not a cursor from a previous page: {before!r}") from None
        return board.alerts(store(), limit=limit, before=cursor, since=when(since))

    @router.get("/board/arbitration")
    def get_arbitration(limit: int = Query(default=200, ge=1, le=1000)) -> list[dict[str, Any]]:
        return board.arbitration_queue(store(), limit)

    @router.get("/board/trend")
    def get_trend(scope: Literal["unit", "grid", "district"] = "district", key: str | None = None,
                  since: str | None = None, days: int = Query(default=30, ge=1, le=3660)) -> list[dict[str, Any]]:
        return board.daily_trend(store(), zone, scope=scope, key=key, since=when(since), days=days)

    @router.get("/board/grids")
    def get_grids() -> list[dict[str, Any]]:
        return board.grid_stats(store())

    @router.get("/board/proactive")
    def get_proactive() -> list[dict[str, Any]]:
        """Per proactive rule: residents qualified (a ticket raised) and reached (that ticket closed)."""
        return board.proactive_coverage(store())

    @router.get("/board/lowest-level")
    def get_lowest_level() -> list[dict[str, Any]]:
        """Per district and for all: closed tickets handled at grid or community level without escalation
        (solved at the lowest level), resolved on the spot, escalated."""
        return board.lowest_level(store())


def replay_app(settings: ProjectionsSettings | None = None, *, engine: Engine | None = None,
               log_factory: Callable[[bool], LogSource] | None = None, verifier: TokenVerifier | None = None) -> FastAPI:
    """The replay API as `cityops replay serve` serves it: the router, a public health check and the token
    verifier (built from `CITYOPS_AUTH_*` unless given; it raises `AuthError` when there is no way to check tokens)."""
    api = FastAPI(title="cityops replay", description="Supervisor replay of the log. Every route but /health needs a "
                  "supervisor's or an auditor's token: `Authorization: Bearer <token>` (`cityops auth token`).")
    install_verifier(api, verifier=verifier)

    @api.get("/health", tags=["replay"], dependencies=[Depends(PUBLIC)])
    def health() -> dict[str, str]:
        """The API answers (needs no token)."""
        return {"status": "ok"}

    settings = settings or ProjectionsSettings()
    engine = engine or make_engine(settings.store_url())  # lazy: make_engine connects on first use
    api.include_router(create_router(settings, engine=engine, log_factory=log_factory))
    api.include_router(create_views_router(settings, store=lambda: engine, log_factory=log_factory))
    return api
