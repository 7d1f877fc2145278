"""evaluate keeps the three rates by the rules of domain.rates (the ones projections and sla apply)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import build_example
from services.common.pipeline import HandlerContext, NoDeps
from services.common.store import create_tables, make_engine
from services.evaluate.handlers import handle, rates_table
from services.evaluate.models import store_tables
from services.evaluate.settings import EvaluateSettings

MONDAY_9 = datetime(2026, 5, 11, 1, 0, tzinfo=UTC)  # 09:00 in Asia/Shanghai, a working day
LIMITS = ev.Limits(sign_for=ev.TimeLimitSpec(amount=30, unit="m"), response=ev.TimeLimitSpec(amount=1, unit="wd"),
                   resolution=ev.TimeLimitSpec(amount=3, unit="wd"))


@pytest.fixture
def apply(tmp_path):
    """Apply events (minutes after Monday 9:00, data) to an evaluate store (`store`: its file name) and
    return the units' rates."""
    def run(*events: tuple[int, ev.Event], store: str = "evaluate.db") -> dict:
        engine = make_engine(f"sqlite:///{tmp_path / store}")
        create_tables(engine, store_tables())
        for minutes, data in events:
            envelope = Envelope.origin(data, source="/t", ticket_id="T-1", time=MONDAY_9 + timedelta(minutes=minutes))
            with Session(engine) as s, s.begin():
                handle(HandlerContext(session=s, now=lambda: MONDAY_9, source="/t", settings=EvaluateSettings(), deps=NoDeps()), envelope)
        with Session(engine) as s:
            return {row["key"]: row for row in rates_table(s, "unit")}
    return run


def assigned(task: str, unit: str = "water") -> ev.TaskAssigned:
    return build_example(ev.TaskAssigned).model_copy(update={"task_id": task, "unit": unit, "limits": LIMITS})


def signed(task: str, unit: str = "water") -> ev.TaskSignedFor:
    return ev.TaskSignedFor(task_id=task, unit=unit)


def breached(task: str, unit: str = "water") -> ev.SlaBreached:
    return ev.SlaBreached(task_id=task, unit=unit, clock="sign_for", deadline=MONDAY_9 + timedelta(minutes=30))


def test_response_rate_counts_sign_fors_within_the_limit_over_tasks_judged(apply):
    rows = apply((0, assigned("a")), (0, assigned("b")), (0, assigned("c")), (0, assigned("d")),
                 (10, signed("a")),                    # on time
                 (120, signed("b")),                   # late, and sla's breach read only afterwards
                 (31, breached("c")), (200, signed("c")),  # never twice: the breach judged it
                 (31, breached("b")))                  # d: still inside nothing judged, never signed
    water = rows["water"]
    assert (water["assigned"], water["signed_for"], water["response_n"]) == (4, 3, 3)
    assert water["response_rate"] == round(1 / 3, 4)


def test_the_verdict_does_not_depend_on_which_topic_is_read_first(apply):
    """Assignment (act), sign-for (unit reports) and breach (sla) come from three topics: read in any order,
    each task is judged once, the same way, and nothing waits parked for another topic."""
    events = [(0, assigned("a")), (0, assigned("b")), (0, assigned("c")), (10, signed("a")), (120, signed("b")),
              (31, breached("b")), (31, breached("c")), (200, signed("c"))]
    in_order = apply(*events)["water"]
    backwards = apply(*reversed(events), store="backwards.db")["water"]
    assert (backwards["response_n"], backwards["response_rate"]) == (in_order["response_n"], in_order["response_rate"])
    assert (in_order["response_n"], in_order["response_rate"]) == (3, round(1 / 3, 4))


def test_a_sign_for_by_another_unit_read_before_the_assignment_counts_for_nobody(apply):
    """evaluate does not park: such a sign-for is kept aside, and the first of the assignment and sla's breach
    (both name the task's unit) drops it; the task's own sign-for is counted as ever (domain.reports)."""
    honest = [(0, assigned("a")), (15, signed("a")), (31, breached("b")), (0, assigned("b"))]
    forged = [(10, signed("a", "housing")), (0, assigned("a")), (15, signed("a")),
              (20, signed("b", "housing")), (31, breached("b")), (0, assigned("b"))]
    expected = apply(*honest)
    rows = apply(*forged, store="forged.db")
    assert set(rows) == {"water"} and rows["water"] == expected["water"]
    assert (rows["water"]["assigned"], rows["water"]["signed_for"], rows["water"]["response_n"]) == (2, 1, 2)
