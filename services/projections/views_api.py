"""The replay API's routes with rules of their own (the console's story and what-if pages call them).

    GET  /replay/tickets/{id}/timeline   a ticket's events from the store: operators too (no caller data is
                                         ever in the projections: they never read intake's topics)
    GET  /replay/what-if/models          the saved classifiers a what-if may try (names, never paths)
    POST /replay/what-if                 re-run triage with an uploaded catalogue and/or a saved model over a
                                         time range of the log: the difference table. Supervisors only.

A what-if reads the log from the beginning and folds in Python: it runs in a worker thread (never on
the event loop), one at a time (a second request meanwhile is a 429), and answers at most `limit`
changed tickets. Nothing is written: no scratch store (the CLI keeps one), no topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Engine

from domain.catalogue import Catalogue, parse_catalogue
from domain.catalogue.loading import load_catalogue
from services.common.auth import Role, access

from . import queries
from .logsource import KafkaLog, LogSource
from .queries import parse_time
from .settings import ProjectionsSettings
from .whatif import WHATIF_TOPICS, SavedModel, what_if

TIMELINE = access(Role.operator, Role.supervisor, Role.auditor)
WHAT_IF = access(Role.supervisor)
MAX_CATALOGUE_CHARS = 2_000_000
TIMELINE_COLUMNS = ("event_id", "time", "kind", "unit", "round", "summary")


class WhatIfRequest(BaseModel):
    """A what-if question: the catalogue to try (YAML text, as uploaded) and/or a saved model, and a range."""

    model_config = ConfigDict(extra="forbid")

    catalogue: str | None = Field(default=None, max_length=MAX_CATALOGUE_CHARS,
                                  description="A responsibility catalogue as YAML (default: the current one).")
    model: str | None = Field(default=None, max_length=200, description="A name from GET /replay/what-if/models.")
    since: str | None = Field(default=None, description="Only tickets first triaged at or after this time (ISO 8601).")
    until: str | None = Field(default=None, description="Only tickets first triaged up to this time (ISO 8601).")
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0, description="Below it a ticket would wait for an operator.")
    limit: int = Field(default=200, ge=1, le=2000, description="At most this many changed tickets in the answer.")


def parse_uploaded_catalogue(text: str) -> Catalogue:
    """The uploaded YAML as a catalogue, or a 422 naming what is wrong (the line, or the field)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise HTTPException(422, f"catalogue: not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPException(422, "catalogue: the file must hold a mapping (version, units, categories, ...)")
    try:
        return parse_catalogue(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise HTTPException(422, f"catalogue: {where}: {first['msg']} ({exc.error_count()} problems)") from None
    except ValueError as exc:
        raise HTTPException(422, f"catalogue: {exc}") from None


def saved_models(settings: ProjectionsSettings) -> dict[str, Path]:
    """Model files a what-if may load, by file name: the triage service's cached ones in the state dir and any put
    under state_dir/models. A request names one of these; it never gives a path (joblib files are pickles)."""
    found: dict[str, Path] = {}
    for directory in (settings.state_dir, settings.state_dir / "models"):
        if directory.is_dir():
            found.update({p.name: p for p in sorted(directory.glob("*.model")) if p.is_file()})
    return found


def create_views_router(settings: ProjectionsSettings, *, store: Callable[[], Engine],
                        log_factory: Callable[[bool], LogSource] | None = None) -> APIRouter:
    router = APIRouter(prefix="/replay", tags=["replay"])
    busy = asyncio.Lock()

    @router.get("/tickets/{ticket_id}/timeline", dependencies=[Depends(TIMELINE)])
    def get_timeline(ticket_id: str) -> dict[str, Any]:
        """A ticket's events in order, what happened and who did it (no positions in the log, no payloads)."""
        rows = queries.timeline(store(), ticket_id)
        if not rows:
            raise HTTPException(404, f"no events of {ticket_id}")
        return {"ticket_id": ticket_id, "events": [{k: r[k] for k in TIMELINE_COLUMNS} for r in rows]}

    @router.get("/what-if/models", dependencies=[Depends(WHAT_IF)])
    def get_models() -> list[str]:
        return sorted(saved_models(settings))

    @router.post("/what-if", dependencies=[Depends(WHAT_IF)])
    async def post_what_if(request: WhatIfRequest) -> dict[str, Any]:
        if request.catalogue is None and request.model is None:
            raise HTTPException(422, "catalogue or model: give a catalogue to try, a model, or both")
        since, until = _time("since", request.since, settings), _time("until", request.until, settings)
        if since and until and since > until:
            raise HTTPException(422, "until: before since")
        trial = (parse_uploaded_catalogue(request.catalogue) if request.catalogue is not None
                 else load_catalogue(settings.catalogue_file()))
        model_path = None
        if request.model is not None:
            model_path = saved_models(settings).get(request.model)
            if model_path is None:
                raise HTTPException(422, f"model: no saved model {request.model!r} (GET /replay/what-if/models)")
        if busy.locked():
            raise HTTPException(429, "a what-if is already running: try again when it has finished")
        async with busy:
            report = await asyncio.to_thread(_run, settings, log_factory, trial, model_path, request, since, until)
        return report

    return router


def _time(name: str, text: str | None, settings: ProjectionsSettings) -> datetime | None:
    if not text:
        return None
    try:
        return parse_time(text, settings.timezone)
    except ValueError:
        raise HTTPException(422, f"{name}: not an ISO 8601 time: {text!r}") from None


def _run(settings: ProjectionsSettings, log_factory: Callable[[bool], LogSource] | None, trial: Catalogue,
         model_path: Path | None, request: WhatIfRequest, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    """One what-if in this worker thread, with a loop of its own (the log's consumer lives and dies in it)."""
    try:
        classifier = SavedModel(model_path) if model_path is not None else None
    except Exception as exc:  # a model file of another format or library version
        raise HTTPException(422, f"model: cannot be read: {exc}") from None
    log = log_factory(False) if log_factory is not None else \
        KafkaLog(settings.kafka_bootstrap, [settings.topic(t) for t in WHATIF_TOPICS])
    report = asyncio.run(what_if(log, trial, classifier=classifier, model_name=request.model,
                                 min_confidence=request.min_confidence, min_n=settings.min_rank_sample,
                                 since=since, until=until))
    answer = report.as_dict(limit=request.limit)
    answer.pop("scratch_url", None)
    answer["since"], answer["until"], answer["limit"] = since, until, request.limit
    return answer
