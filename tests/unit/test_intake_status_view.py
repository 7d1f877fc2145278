"""Intake's status view through its real pipeline (tests/harness): it reads five topics, each in order but
not in step with the others, and must end in the same state whatever order their records come in."""

from __future__ import annotations

import pytest

from contracts import events as ev
from tests.harness.pipeline import start
from tests.harness.workflow import inputs, story_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return story_hub(tmp_path_factory.mktemp("intake-stories"))


def _status(svc, ticket_id):
    row = next(r for r in svc.rows("intake_ticket_status") if r["ticket_id"] == ticket_id)
    return row["status"], row["lead"], row["category"], row["round"]


def test_the_status_follows_a_ticket_read_in_log_order(tmp_path, hub):
    svc = start("intake-status", tmp_path)
    svc.feed(inputs(svc, hub.log))
    assert _status(svc, "T-HAPPY") == ("closed", "city-management", "city-management.garbage-collection", 1)
    assert _status(svc, "T-REPEAT")[0] == "closed"
    assert _status(svc, "T-JOINT") == ("closed", "city-management", "city-management.manhole-cover", 2)
    assert _status(svc, "T-SPLIT")[0] == "dispatched"
    assert _status(svc, "T-CONSULT")[0] == "handled" and _status(svc, "T-DISPUTE")[:2] == ("dispatched", "street-west-2")


@pytest.mark.parametrize("ticket_id", ["T-MANUAL", "T-HAPPY"])
def test_an_assignment_read_before_the_classification_that_caused_it_loses_nothing(tmp_path, hub, ticket_id):
    """The act topic may be read ahead of the triage topic (after a restart, or a slow partition): the
    classification, older than the assignment, must still move the ticket to dispatched with its lead.
    (It did not: the assignment stamped the row, and the classification then counted as stale.)"""
    records = inputs(start("intake-status", tmp_path), hub.log, ticket_id)
    first_dispatch = next(i for i, r in enumerate(records) if r.type == ev.TaskAssigned.event_type)
    upto = records[:first_dispatch + 1]
    in_order = start("intake-status", tmp_path)
    in_order.feed(upto)
    act_first = start("intake-status", tmp_path)
    act_first.feed([upto[-1]] + upto[:-1])
    assert _status(act_first, ticket_id) == _status(in_order, ticket_id)
    assert _status(act_first, ticket_id)[:2] == ("dispatched", "city-management")
