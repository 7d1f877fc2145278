"""Every reader of cityops.unit-reports.v1 besides act and consult refuses a unit's report on another unit's task
(domain.reports), through its real pipeline (tests/harness): sla and evaluate dead-letter it as act does, the
projections leave it out of the fold; the task's own unit is heard. act's own tests are in test_act_handlers.py.

The forger is the co-unit of a joint ticket reporting on the lead's task: a unit that may write reports, about
a ticket it works on, on a task that is not its own."""

from __future__ import annotations

import pytest

from contracts import events as ev
from contracts.topics import UNIT_REPORTS
from services.units import sdk
from tests.harness.pipeline import record_of, start
from tests.harness.workflow import inputs, of_type, story_hub

LEAD, CO = "city-management", "water"
# The tables that hold what each service made of the reports (not its bookkeeping).
STATE = {"sla": ("sla_timers", "sla_tasks", "sla_tickets", "sla_ledger_facts"),
         "evaluate": ("evaluate_tasks", "evaluate_rates", "evaluate_tickets"),
         "projections": ("proj_tickets", "proj_tasks", "proj_ticket_metrics")}
# What each service reads of the unit reports (evaluate only the sign-for, for the response rate).
KINDS = {"sla": ("sign-for", "progress", "extension", "return", "complete"), "evaluate": ("sign-for",),
         "projections": ("sign-for", "progress", "extension", "return", "complete")}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return story_hub(tmp_path_factory.mktemp("report-readers"))


def _report(task, unit: str, kind: str):
    return {
        "sign-for": lambda: sdk.sign_for(task, unit),
        "progress": lambda: sdk.progress(task, unit, "on our way"),
        "extension": lambda: sdk.request_extension(task, unit, 2, "wd", "parts on order"),
        "return": lambda: sdk.return_task(task, unit, "not ours", suggested_unit=unit),
        "complete": lambda: sdk.complete(task, unit, "done"),
    }[kind]()


def _dispatched(svc, hub):
    """The service fed T-JOINT up to its first unit report: the lead's and the co-unit's tasks are assigned."""
    records = inputs(svc, hub.log, "T-JOINT")
    first_report = next(i for i, r in enumerate(records) if r.topic == UNIT_REPORTS.name)
    svc.feed(records[:first_report])
    return next(t for t in of_type(hub.log.records, ev.TaskAssigned, "T-JOINT") if t.data.role == ev.Role.lead)


def _state(svc, name):
    snapshot = svc.snapshot()
    return {table: snapshot[table] for table in STATE[name]}


CASES = [(name, kind) for name in ("sla", "evaluate") for kind in KINDS[name]]


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_a_report_from_a_unit_that_is_not_the_task_s_changes_nothing_and_is_dead_lettered(tmp_path, hub, name, kind):
    svc = start(name, tmp_path)
    lead = _dispatched(svc, hub)
    before = _state(svc, name)
    forged = _report(lead, CO, kind)
    out = svc.feed([record_of(forged)])
    assert [(r.topic, r.value) for r in out] == [(UNIT_REPORTS.name + ".dlq", record_of(forged).value)]
    assert out[0].header("dlq_error") == (f"rejected: {type(forged.data).__name__} from unit {CO} for task "
                                          f"{lead.data.task_id}, which is assigned to unit {LEAD}")
    assert svc.processed()[forged.id] == "dead-lettered"
    assert _state(svc, name) == before
    out = svc.feed([record_of(_report(lead, LEAD, kind))])  # the task's own unit: heard
    assert not [r for r in out if r.topic.endswith(".dlq")]
    assert _state(svc, name) != before


@pytest.mark.parametrize("kind", KINDS["projections"])
def test_the_projections_do_not_fold_a_report_from_a_unit_that_is_not_the_task_s(tmp_path, hub, kind):
    """Not dead-lettered: whether the assignment is read first depends on how the topics interleave, and a
    rebuild must give the live rows; the fold leaves the report out whatever the order (test_projection_domain)."""
    svc = start("projections", tmp_path)
    lead = _dispatched(svc, hub)
    before = _state(svc, "projections")
    forged = _report(lead, CO, kind)
    assert svc.feed([record_of(forged)]) == []
    assert svc.processed()[forged.id] == "applied"
    assert _state(svc, "projections") == before
    assert forged.id in {row["event_id"] for row in svc.rows("proj_timeline")}  # the ticket's log keeps it
    svc.feed([record_of(_report(lead, LEAD, kind))])
    assert _state(svc, "projections") != before


@pytest.mark.parametrize("forged_first", [True, False])
def test_evaluate_lets_the_assignment_decide_between_two_units_that_signed_for_a_task_before_it_was_read(
        tmp_path, hub, forged_first):
    """evaluate keeps a sign-for read before the assignment (it does not park, test_evaluate_rates); a second one
    from another unit waits parked for the assignment, which accepts the task's own and refuses the other."""
    svc = start("evaluate", tmp_path)
    lead = next(t for t in of_type(hub.log.records, ev.TaskAssigned, "T-JOINT") if t.data.role == ev.Role.lead)
    own, forged = sdk.sign_for(lead, LEAD), sdk.sign_for(lead, CO)
    first, second = (forged, own) if forged_first else (own, forged)
    assert svc.feed([record_of(first), record_of(second)]) == []
    assert svc.parked() == [second.id]
    out = svc.feed([record_of(lead)])
    assert svc.parked() == [] and svc.processed()[own.id] == "applied"
    assert [r.topic for r in out] == ([] if forged_first else [UNIT_REPORTS.name + ".dlq"])
    rates = {r["key"]: r for r in svc.rows("evaluate_rates") if r["scope"] == "unit"}
    assert (rates[LEAD]["assigned"], rates[LEAD]["signed_for"], rates[LEAD]["response_n"]) == (1, 1, 1)
    assert CO not in rates
