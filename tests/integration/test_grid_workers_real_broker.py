"""Grid workers on the real broker (issue 14, point 4): triage, act, evaluate and the projections run as services.

* A grid worker's patrol report of a small matter (grid.corridor-safety, its own grid) is resolved on the spot:
  act hands it over at grid level with the co-unit's part withdrawn, evaluate closes it after the callback,
  and the projections count it in the solved-at-the-lowest-level rate.
* Another is escalated by the grid worker with reason "help requested": triage routes it up the area chain,
  and the community gets the task on its own topic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import ACT, AREA_TASKS, COMMANDS, TICKETS, UNIT_REPORTS, all_topics, own_task_topic
from services.act.app import create_app as act_app
from services.act.settings import ActSettings
from services.common.kafka import ensure_topics
from services.common.store import make_engine
from services.evaluate.app import create_app as evaluate_app
from services.evaluate.settings import EvaluateSettings
from services.projections import board
from services.projections.app import create_app as projections_app
from services.projections.models import ProjTicket
from services.projections.settings import ProjectionsSettings
from services.triage.app import create_app as triage_app
from services.triage.settings import TriageSettings
from services.units import sdk
from tests.harness.topics import start_group_at_the_end
from tests.harness.workflow import KeywordClassifier
from tests.integration.test_act_reports_real_broker import publish, records_of

pytestmark = pytest.mark.kafka

GRID, COMMUNITY, WORKER = "grid-east-1-a-1", "community-east-1-a", "gw-east-1-a-1-1"
OWN_TOPIC_UNITS = ["housing"]  # the grid and the community take their tasks from the shared area topic


def patrol_report(ticket_id: str) -> Envelope[Any]:
    """discover's registration of a grid worker's patrol report, with the category the worker chose."""
    ticket = ev.RegisteredTicket(channel=ev.Channel.grid_patrol, text="楼道堆放杂物，电动车在楼道充电",
                                 caller=ev.CallerRef(anonymous=True),
                                 location=ev.Location(district="district-east", street="street-east-1",
                                                      community=COMMUNITY, grid=GRID),
                                 category="grid.corridor-safety", urgency=ev.Urgency.normal,
                                 submitted_at=datetime.now(UTC), reported_by=WORKER)
    return Envelope.origin(ev.TicketRegistered(ticket=ticket), source="/cityops/discover", ticket_id=ticket_id)


async def one_on(bootstrap: str, topic: str, ticket_id: str, event_type: type[ev.Event],
                 where: Callable[[Any], bool] = lambda e: True) -> Envelope[Any]:
    deadline = time.monotonic() + 90
    while True:
        found = [e for e in (codec.decode(r.key, r.value, r.headers) for r in await records_of(bootstrap, topic, ticket_id, timeout=2))
                 if isinstance(e.data, event_type) and where(e.data)]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {event_type.__name__} of {ticket_id} on {topic}")
        await asyncio.sleep(0.5)


async def eventually(check: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)
    return value


async def test_on_the_spot_counts_at_the_lowest_level_and_help_requested_reaches_the_community(kafka_bootstrap, unique, tmp_path):
    await ensure_topics(kafka_bootstrap, all_topics(OWN_TOPIC_UNITS))
    common = {"kafka_bootstrap": kafka_bootstrap, "batch_timeout_ms": 50, "log_level": "WARNING"}
    act_s = ActSettings(**common, consumer_group=f"act-{unique}", db_url=f"sqlite:///{tmp_path / 'act.db'}")
    triage_s = TriageSettings(**common, consumer_group=f"triage-{unique}", db_url=f"sqlite:///{tmp_path / 'triage.db'}")
    eval_s = EvaluateSettings(**common, consumer_group=f"evaluate-{unique}", db_url=f"sqlite:///{tmp_path / 'evaluate.db'}")
    proj_s = ProjectionsSettings(**common, consumer_group=f"proj-{unique}", state_dir=tmp_path)
    proj_engine = make_engine(f"sqlite:///{tmp_path / 'projections.db'}")
    from services.act.handlers import TOPICS as ACT_TOPICS
    from services.evaluate.handlers import TOPICS as EVAL_TOPICS
    from services.triage.handlers import TOPICS as TRIAGE_TOPICS
    for settings, topics in ((act_s, ACT_TOPICS), (triage_s, TRIAGE_TOPICS), (eval_s, EVAL_TOPICS),
                             (proj_s, proj_s.projected_topics())):
        await start_group_at_the_end(kafka_bootstrap, settings.group_id, topics)
    apps = [act_app(act_s), triage_app(triage_s, classifier=KeywordClassifier()), evaluate_app(eval_s),
            projections_app(proj_s, engine=proj_engine)]
    for app in apps:
        await app.start()
    try:
        # 1. Resolved on the spot, called back, closed: solved at the lowest level.
        spot = f"T-SPOT-{unique}"
        await publish(kafka_bootstrap, TICKETS.name, patrol_report(spot))
        task = await one_on(kafka_bootstrap, AREA_TASKS.name, spot, ev.TaskAssigned, lambda d: d.unit == GRID)
        assert task.data.ticket.reported_by == WORKER
        await publish(kafka_bootstrap, UNIT_REPORTS.name, sdk.resolve_on_the_spot(task, GRID, "moved the bikes out with the residents"))
        handled = await one_on(kafka_bootstrap, ACT.name, spot, ev.TicketHandled)
        assert (handled.data.level, handled.data.resolved_on_the_spot, handled.data.units) == ("grid", True, (GRID,))
        callback = Envelope.origin(ev.CallbackSubmitted(round=1, resolved=True, satisfaction=ev.Satisfaction.satisfied),
                                   source="/cityops/intake", ticket_id=spot)
        await publish(kafka_bootstrap, COMMANDS.name, callback)

        def closed_row() -> Any:
            with proj_engine.connect() as conn:
                row = conn.execute(select(ProjTicket.__table__).where(ProjTicket.__table__.c.ticket_id == spot)).mappings().first()
            return row if row is not None and row["status"] == "closed" else None

        row = await eventually(closed_row, f"{spot} closed in the projections")
        assert (row["handled_level"], row["on_the_spot"], row["escalated_up"], row["reported_by"]) == ("grid", True, False, WORKER)
        every = {r["district"]: r for r in board.lowest_level(proj_engine)}["all"]
        assert every["solved_lowest"] >= 1 and every["on_the_spot"] >= 1 and every["lowest_level_rate"] is not None

        # 2. Escalated with "help requested": the community gets the task.
        up = f"T-UP-{unique}"
        await publish(kafka_bootstrap, TICKETS.name, patrol_report(up))
        task = await one_on(kafka_bootstrap, AREA_TASKS.name, up, ev.TaskAssigned, lambda d: d.unit == GRID)
        await publish(kafka_bootstrap, UNIT_REPORTS.name,
                      sdk.escalate(task, GRID, "community", "help-requested", "residents refuse to move the bikes"))
        reroute = await one_on(kafka_bootstrap, ACT.name, up, ev.RerouteRequested)
        assert (reroute.data.escalate_to, reroute.data.escalation_reason) == ("community", "help-requested")
        community = await one_on(kafka_bootstrap, AREA_TASKS.name, up, ev.TaskAssigned, lambda d: d.unit == COMMUNITY)
        assert community.data.role == ev.Role.lead and community.data.round == 1
        await publish(kafka_bootstrap, UNIT_REPORTS.name, sdk.complete(community, COMMUNITY, "talked the residents round"))
        for co in [a for a in [await one_on(kafka_bootstrap, own_task_topic("housing"), up, ev.TaskAssigned,
                                            lambda d: d.task_id.endswith(":2"))] if a.data.unit == "housing"]:
            await publish(kafka_bootstrap, UNIT_REPORTS.name, sdk.complete(co, "housing", "checked the wiring"))
        handled = await one_on(kafka_bootstrap, ACT.name, up, ev.TicketHandled)
        assert (handled.data.level, handled.data.escalated, handled.data.resolved_on_the_spot) == ("community", True, False)
    finally:
        for app in reversed(apps):
            await app.stop()
