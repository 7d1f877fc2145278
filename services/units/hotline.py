"""The simulated callback operators and supervisor post their decisions to intake's HTTP API.

Intake is the one writer of operators' and supervisors' decisions (cityops.intake.commands.v1), so the
simulation goes the way a person at the hotline does: `POST /callbacks` and `POST /supervisor/decisions`
at `hotline_url`, each with its own token: the callback operators' (`hotline_token`, role operator) and the
supervisor's (`supervisor_token`, role supervisor); intake takes who decided from the token. The decisions are planned by the handler as pending_actions rows (kinds HOTLINE_KINDS);
this loop posts the due ones and deletes a row once intake has answered for it.

At least once, applied once: a row is deleted only after intake's answer, so a crash or a failed delete
posts it again, with the same Idempotency-Key (the row's action id). Intake derives the command's id from
that key, and the step that applies the command drops the copy. A row intake cannot take yet (404: its
status view has not seen the ticket; 5xx; intake down) is kept and tried again at the next round; one it
refuses for good (422) is dropped with a warning.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from services.common.batch_state import table_of
from services.common.logs import get_logger
from services.common.pipeline import EventPipeline, write_lock

from .handlers import HOTLINE_KINDS
from .models import PendingAction
from .settings import UnitSettings

log = get_logger(__name__)
_ACTIONS = table_of(PendingAction)
_RETRY_LATER = {404, 408, 425, 429}
# A missing, expired or under-privileged token: the decision is kept until someone fixes the token.
_NOT_ALLOWED = {401, 403}


def request_for(row: Any) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of intake's API for a due callback or decision row."""
    ticket_id = json.loads(row.cause_json)["ticket_id"]
    detail = json.loads(row.detail_json)
    if row.kind == "callback":
        return "/callbacks", {"ticket_id": ticket_id, "round": detail["round"], "resolved": detail["resolved"],
                              "satisfaction": detail["satisfaction"]}
    if row.kind == "decision":
        return "/supervisor/decisions", {"ticket_id": ticket_id, "lead": detail["lead"], "co_units": detail["co_units"],
                                         "level": detail["level"], "consultation_id": detail["consultation_id"]}
    raise ValueError(f"not a hotline action: {row.kind}")


def due_rows(engine: Engine, now: Any, limit: int = 500) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(_ACTIONS).where(_ACTIONS.c.kind.in_(HOTLINE_KINDS), _ACTIONS.c.due_at <= now)
                                       .order_by(_ACTIONS.c.due_at).limit(limit)).all())


def forget(engine: Engine, action_ids: list[str]) -> None:
    with write_lock(engine), engine.begin() as connection:
        for i in range(0, len(action_ids), 500):
            connection.execute(delete(_ACTIONS).where(_ACTIONS.c.action_id.in_(action_ids[i:i + 500])))


@dataclass(frozen=True)
class StaffTokens:
    """The simulated hotline staff's bearer tokens: the callback operators' and the supervisor's."""

    operator: str | None = None
    supervisor: str | None = None

    @classmethod
    def of(cls, settings: UnitSettings) -> StaffTokens:
        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None
        return cls(secret(settings.hotline_token), secret(settings.supervisor_token))

    def headers(self, kind: str) -> dict[str, str]:
        token = self.operator if kind == "callback" else self.supervisor
        return {"Authorization": f"Bearer {token}"} if token else {}


async def post_one(client: httpx.AsyncClient, row: Any, tokens: StaffTokens = StaffTokens()) -> bool:
    """Post one decision; True when the row is done with (accepted, or refused for good)."""
    path, body = request_for(row)
    try:
        response = await client.post(path, json=body, headers={"Idempotency-Key": row.action_id, **tokens.headers(row.kind)})
    except httpx.HTTPError as exc:
        log.debug("hotline_post_failed", path=path, action_id=row.action_id, error=repr(exc))
        return False
    if response.is_success:
        return True
    if response.status_code in _NOT_ALLOWED:
        log.warning("hotline_post_not_allowed", path=path, action_id=row.action_id, status=response.status_code)
        return False
    if response.status_code in _RETRY_LATER or response.status_code >= 500:
        return False
    log.warning("hotline_post_refused", path=path, action_id=row.action_id, status=response.status_code,
                answer=response.text[:500])
    return True


async def post_callbacks(client: httpx.AsyncClient, rows: list[Any], tokens: StaffTokens = StaffTokens()) -> list[str]:
    """Post due callbacks in one request (POST /callbacks/batch: one HTTP round trip and one broker
    acknowledgement wait for them all, not one per ticket); return the ids of the rows done with."""
    items = [{**request_for(row)[1], "idempotency_key": row.action_id} for row in rows]
    try:
        response = await client.post("/callbacks/batch", json={"items": items}, headers=tokens.headers("callback"))
    except httpx.HTTPError as exc:
        log.debug("hotline_post_failed", path="/callbacks/batch", rows=len(rows), error=repr(exc))
        return []
    if response.is_success:
        # An unknown ticket is not in intake's status view yet: its row is kept and posted again.
        results = response.json()["results"]
        return [row.action_id for row, result in zip(rows, results, strict=True) if result["status"] == "recorded"]
    if response.status_code in _RETRY_LATER or response.status_code >= 500 or response.status_code in _NOT_ALLOWED:
        log.debug("hotline_post_not_taken", path="/callbacks/batch", rows=len(rows), status=response.status_code)
        return []
    log.warning("hotline_post_refused", path="/callbacks/batch", rows=len(rows), status=response.status_code,
                answer=response.text[:500])
    return [row.action_id for row in rows]


async def post_due(client: httpx.AsyncClient, engine: Engine, now: Any, concurrency: int = 16,
                   tokens: StaffTokens = StaffTokens()) -> int:
    """Post every due callback (in batches) and decision (a few at a time); return how many are done with."""
    rows = await asyncio.to_thread(due_rows, engine, now)
    if not rows:
        return 0
    callbacks = [row for row in rows if row.kind == "callback"]
    decisions = [row for row in rows if row.kind != "callback"]
    gate = asyncio.Semaphore(concurrency)

    async def post(row: Any) -> bool:
        async with gate:
            return await post_one(client, row, tokens)

    done = await post_callbacks(client, callbacks, tokens) if callbacks else []
    done += [row.action_id for row, ok in zip(decisions, await asyncio.gather(*(post(r) for r in decisions)), strict=True) if ok]
    if done:
        await asyncio.to_thread(forget, engine, done)
    return len(done)


async def run_hotline(pipeline: EventPipeline, stop: asyncio.Event) -> None:
    """Background loop of the units service: post due decisions every `tick_s` until stopped."""
    settings: UnitSettings = pipeline.settings  # type: ignore[assignment]  # the units app builds its pipeline with UnitSettings
    if not (settings.callbacks or settings.supervisor):
        return
    async with httpx.AsyncClient(base_url=settings.hotline_url, timeout=10) as client:
        while not stop.is_set():
            try:
                await post_due(client, pipeline.engine, pipeline.clock(), tokens=StaffTokens.of(settings))
            except Exception as exc:  # keep going: a store or network blip must not end the simulation
                log.error("hotline_round_failed", error=repr(exc))
            try:
                await asyncio.wait_for(stop.wait(), timeout=settings.tick_s)
            except TimeoutError:
                pass
