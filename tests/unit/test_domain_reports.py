"""domain.reports: who may report on a task, and the filter the readers that do not park apply."""

from __future__ import annotations

import itertools

from contracts import events as ev
from domain.reports import assignment_claim, opinion_refusal, report_claim, report_refusal, without_refused_reports

ASSIGNED = [("a", "assigned", "T:water:1", "water"), ("b", "assigned", "T:housing:1", "housing")]


def _claims(kind: str):
    return lambda item: (item[2], item[3]) if item[1] == kind else None


def _kept(items):
    return {i[0] for i in without_refused_reports(items, assignment=_claims("assigned"), report=_claims("report"))}


def test_only_the_unit_a_task_is_assigned_to_may_report_on_it():
    assert report_refusal("TaskCompleted", "T:water:1", "water", "water") is None
    assert report_refusal("TaskCompleted", "T:water:1", "water", "housing") == (
        "TaskCompleted from unit housing for task T:water:1, which is assigned to unit water")
    assert opinion_refusal("C-1", ("water", "housing"), "water") is None
    assert opinion_refusal("C-1", ("water", "housing"), "grid-1") == (
        "OpinionGiven from unit grid-1, which is not a party of consultation C-1 (water, housing)")


def test_the_claims_of_reports_and_assignments():
    assert report_claim(ev.TaskSignedFor(task_id="T:water:1", unit="housing")) == ("T:water:1", "housing")
    assert report_claim(ev.ExtensionDecided(task_id="T:water:1", unit="water", approved=True, reason="ok",
                                            extra=ev.TimeLimitSpec(amount=1, unit="wd"))) is None  # act's, not a report
    assert assignment_claim(ev.TaskSignedFor(task_id="T:water:1", unit="water")) is None


def test_a_report_refused_by_an_assignment_in_the_set_is_left_out_whatever_the_order():
    items = ASSIGNED + [("ok", "report", "T:water:1", "water"), ("forged", "report", "T:water:1", "housing"),
                        ("early", "report", "T:grid:1", "grid"), ("other", "noted", "T:water:1", "housing")]
    for order in itertools.permutations(items):
        assert _kept(order) == {"a", "b", "ok", "early", "other"}  # "early": its assignment is not known yet
    assert _kept([i for i in items if i[0] != "a"]) == {"b", "ok", "forged", "early", "other"}  # nothing to judge by
