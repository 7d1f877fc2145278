"""The simulated units: an answer without delay goes out with the event's batch, and is the same event
(same derived id, same content) the tick sends when the answer is delayed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session

from contracts import codec
from contracts import events as ev
from services.common.pipeline import HandlerContext
from services.common.store import create_tables, make_engine
from services.sla.synthetic import TicketStory
from services.units.handlers import UnitDeps, handle, send_due
from services.units.models import PendingAction
from services.units.settings import UnitSettings

UNIT = "housing"


def _assignment():
    story = TicketStory("T-U1")
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    story.registered(at)
    story.assigned(at + timedelta(minutes=5), UNIT)
    return story.events[-1]


def _run(tmp_path, name: str, assignment, delay_s: float, now: datetime) -> tuple[list, list, int]:
    """(events emitted while handling, events the tick sends an hour later, pending rows in between)."""
    settings = UnitSettings(sign_delay_s=delay_s, work_delay_s=delay_s, p_return=0, p_extension=0)
    engine = make_engine(f"sqlite:///{tmp_path / name}.db")
    create_tables(engine, [PendingAction.__table__])
    clock = [now]
    with Session(engine) as session, session.begin():
        ctx = HandlerContext(session=session, now=lambda: clock[0], source="/cityops/units", settings=settings,
                             deps=UnitDeps(frozenset({UNIT})))
        handled = list(handle(ctx, assignment))
        pending = session.execute(select(func.count()).select_from(PendingAction.__table__)).scalar_one()
        clock[0] = now + timedelta(hours=1)
        ticked = send_due(ctx)
    return handled, ticked, pending


def _wire(emits: list) -> list[tuple[str, bytes, bytes, list]]:
    """What would go on the wire, without the send time (the tick stamps its own `now`)."""
    out = []
    for emit in emits:
        rec = codec.encode(emit.envelope)
        out.append((emit.topic, rec.key, rec.value, [(k, v) for k, v in rec.headers if k != "ce_time"]))
    return out


def test_answers_without_delay_go_out_at_once_as_the_same_events_the_tick_sends(tmp_path):
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    assignment = _assignment()
    at_once, ticked_after_none, pending_none = _run(tmp_path, "at-once", assignment, 0, now)
    handled_later, later, pending_later = _run(tmp_path, "later", assignment, 5, now)

    assert [type(e.envelope.data) for e in at_once] == [ev.TaskSignedFor, ev.ProgressReported, ev.TaskCompleted]
    assert pending_none == 0 and ticked_after_none == []
    assert handled_later == [] and pending_later == 3
    assert sorted(_wire(at_once)) == sorted(_wire(later))
