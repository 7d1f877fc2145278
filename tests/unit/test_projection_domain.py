"""The projections' pure fold: lifecycle states, tasks and queues, metric shares, rankings, privacy."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import events as ev
from contracts.envelope import Envelope
from domain.calendar import WorkCalendar
from tools.importers.synthetic import SyntheticHistory
from services.projections.domain import (TYPE_RANK, Fact, TaskState, TicketState, aggregate, fold, holdings, rank,
                                         stored_payload, task_row, ticket_row, timeline_row)
from services.projections.models import METRIC_COUNTERS, ProjTask, ProjTicket, ProjTimelineEntry

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
LIMITS = ev.Limits(sign_for=ev.TimeLimitSpec(amount=1, unit="wd"), response=ev.TimeLimitSpec(amount=2, unit="wd"),
                   resolution=ev.TimeLimitSpec(amount=5, unit="wd"))
LOCATION = ev.Location(district="district-east", street="street-east-1", community="community-east-1-a",
                       grid="grid-east-1-a-1")
REGISTERED = ev.RegisteredTicket(channel="phone", text="路灯坏了", caller=ev.CallerRef(masked_phone="138****5678"),
                                 location=LOCATION, urgency="normal", submitted_at=T0)


class Story:
    """Builds one ticket's events the way the services chain them."""

    def __init__(self, ticket_id: str = "T-1") -> None:
        self.ticket_id = ticket_id
        self.events: list[Envelope] = []
        self.minute = 0

    def add(self, data: ev.Event, *, cause: Envelope | None = None, index: int = 0) -> Envelope:
        self.minute += 1
        when = T0 + timedelta(minutes=self.minute)
        if not self.events:
            env = Envelope.origin(data, source="/test", ticket_id=self.ticket_id, time=when)
        else:
            env = (cause or self.events[-1]).caused(data, source="/test", time=when, index=index)
        self.events.append(env)
        return env

    def dispatch(self, units: list[tuple[str, str]], round_: int, dispatch_no: int) -> list[Envelope]:
        cause = self.events[-1]
        self.minute += 1
        out = []
        for i, (unit, role) in enumerate(units):
            data = ev.TaskAssigned(task_id=f"{self.ticket_id}:{unit}:{dispatch_no}", unit=unit, role=role, round=round_,
                                   category="city-management.street-light", limits=LIMITS, ticket=REGISTERED)
            env = cause.caused(data, source="/test/act", time=T0 + timedelta(minutes=self.minute), index=i)
            self.events.append(env)
            out.append(env)
        return out

    def facts(self) -> list[Fact]:
        return [Fact.from_envelope(e) for e in self.events]


def _submitted_and_classified(story: Story, lead: str = "city-management", co: tuple[str, ...] = ("street-east-1",)) -> None:
    story.add(ev.TicketSubmitted(channel="phone", text="路灯坏了", caller=ev.Caller(name="张三", phone="13812345678"),
                                 location=LOCATION, submitted_at=T0))
    story.add(ev.TicketRegistered(ticket=REGISTERED))
    story.add(ev.TicketClassified(category="city-management.street-light", confidence=0.9, method="model",
                                  catalogue_version="2026.1", routing=ev.Routing(lead=lead, co_units=co, level="city"),
                                  needs_consultation=False, limits=LIMITS, ticket=REGISTERED))


def test_a_full_lifecycle_ends_closed_with_every_task_out_of_the_queues():
    s = Story()
    _submitted_and_classified(s)
    s.dispatch([("city-management", "lead"), ("street-east-1", "co")], 1, 1)
    s.add(ev.TaskSignedFor(task_id="T-1:city-management:1", unit="city-management"))
    s.add(ev.TaskSignedFor(task_id="T-1:street-east-1:1", unit="street-east-1"))
    s.add(ev.TaskCompleted(task_id="T-1:street-east-1:1", unit="street-east-1", result="helped"))
    s.add(ev.TaskCompleted(task_id="T-1:city-management:1", unit="city-management", result="fixed"))
    s.add(ev.TicketHandled(round=1, units=("city-management", "street-east-1"), results=("fixed", "helped"),
                           category="city-management.street-light", location=LOCATION))
    s.add(ev.CallbackRequested(round=1, caller=REGISTERED.caller, units=("city-management", "street-east-1")))
    s.add(ev.CallbackRecorded(round=1, resolved=True, satisfaction="satisfied"))
    s.add(ev.TicketClosed(outcome="resolved", satisfaction="satisfied", rounds=1))
    folded = fold(s.facts())
    t = folded.ticket
    assert (t.status, t.lead_unit, t.co_units, t.round, t.outcome, t.district, t.grid) == (
        "closed", "city-management", "street-east-1", 1, "resolved", "district-east", "grid-east-1-a-1")
    assert t.submitted_at == T0 and t.closed_at is not None and t.events == 13
    assert all(not k.open and k.status == "completed" for k in folded.tasks)
    unit = folded.metrics[("unit", "city-management")]
    assert (unit["tasks"], unit["responded"], unit["completed"], unit["on_time"], unit["handled"], unit["callbacks"],
            unit["resolved"], unit["rated"], unit["satisfied"]) == (1, 1, 1, 1, 1, 1, 1, 1, 1)
    # The area counts the ticket's callback once although two units shared it.
    assert folded.metrics[("district", "district-east")]["callbacks"] == 1
    assert folded.metrics[("district", "district-east")]["tasks"] == 2


def test_a_lead_return_withdraws_the_co_units_and_the_reroute_dispatch_replaces_them():
    s = Story()
    _submitted_and_classified(s)
    s.dispatch([("city-management", "lead"), ("street-east-1", "co")], 1, 1)
    s.add(ev.TaskReturned(task_id="T-1:city-management:1", unit="city-management", reason="not ours"))
    s.add(ev.RerouteRequested(category="city-management.street-light", excluded_units=("city-management",), returns=1,
                              reason="not ours", ticket=REGISTERED))
    s.add(ev.TicketClassified(category="city-management.street-light", confidence=1.0, method="reroute",
                              catalogue_version="2026.1", routing=ev.Routing(lead="street-east-1", level="street"),
                              needs_consultation=False, limits=LIMITS, excluded_units=("city-management",),
                              ticket=REGISTERED))
    s.dispatch([("street-east-1", "lead")], 1, 2)
    folded = fold(s.facts())
    tasks = {k.task_id: k for k in folded.tasks}
    assert tasks["T-1:city-management:1"].status == "returned"
    assert tasks["T-1:street-east-1:1"].status == "withdrawn"
    assert tasks["T-1:street-east-1:2"].open and tasks["T-1:street-east-1:2"].status == "assigned"
    t = folded.ticket
    assert (t.status, t.lead_unit, t.co_units, t.returns, t.reroutes) == ("dispatched", "street-east-1", "", 1, 1)
    assert folded.metrics[("unit", "city-management")]["returned"] == 1


def test_a_rejected_return_puts_the_final_task_back_in_the_queue():
    s = Story()
    _submitted_and_classified(s, co=())
    s.dispatch([("city-management", "lead")], 1, 1)
    s.add(ev.TaskSignedFor(task_id="T-1:city-management:1", unit="city-management"))
    s.add(ev.TaskReturned(task_id="T-1:city-management:1", unit="city-management", reason="not ours"))
    s.add(ev.ReturnRejected(task_id="T-1:city-management:1", unit="city-management", reason="final"))
    folded = fold(s.facts())
    task = folded.tasks[0]
    assert (task.status, task.open, task.returns) == ("signed-for", True, 1)
    assert folded.ticket.status == "signed-for"


def test_a_reopened_ticket_counts_re_handling_against_the_units_of_the_round_before():
    s = Story()
    _submitted_and_classified(s, co=())
    s.dispatch([("city-management", "lead")], 1, 1)
    s.add(ev.TaskCompleted(task_id="T-1:city-management:1", unit="city-management", result="fixed"))
    s.add(ev.TicketHandled(round=1, units=("city-management",), results=("fixed",), category="x", location=LOCATION))
    s.add(ev.CallbackRecorded(round=1, resolved=False, satisfaction="unsatisfied"))
    s.add(ev.TicketReopened(round=2, reason="still dark", units=("city-management",)))
    s.dispatch([("city-management", "lead")], 2, 2)
    folded = fold(s.facts())
    assert (folded.ticket.status, folded.ticket.round, folded.ticket.reopens) == ("dispatched", 2, 1)
    unit = folded.metrics[("unit", "city-management")]
    assert (unit["handled"], unit["rehandled"], unit["callbacks"], unit["resolved"], unit["satisfied"]) == (1, 1, 1, 0, 0)
    assert [k.open for k in folded.tasks] == [False, True]


def test_an_unreasonable_demand_is_left_out_of_satisfaction_but_not_of_resolution():
    s = Story()
    _submitted_and_classified(s, co=())
    s.dispatch([("city-management", "lead")], 1, 1)
    s.add(ev.TicketHandled(round=1, units=("city-management",), results=("done",), category="x", location=LOCATION))
    s.add(ev.CallbackRecorded(round=1, resolved=True, satisfaction="unsatisfied", reasonable_demand=False))
    unit = fold(s.facts()).metrics[("unit", "city-management")]
    assert (unit["callbacks"], unit["resolved"], unit["rated"], unit["satisfied"]) == (1, 1, 0, 0)


def test_breaches_mark_the_ticket_overdue_and_count_against_on_time_and_response():
    s = Story()
    _submitted_and_classified(s, co=())
    s.dispatch([("city-management", "lead")], 1, 1)
    due = T0 + timedelta(days=1)
    s.add(ev.SlaBreached(task_id="T-1:city-management:1", unit="city-management", clock="sign_for", deadline=due))
    s.add(ev.TaskSignedFor(task_id="T-1:city-management:1", unit="city-management"))
    s.add(ev.SlaBreached(task_id="T-1:city-management:1", unit="city-management", clock="resolution", deadline=due))
    s.add(ev.TaskCompleted(task_id="T-1:city-management:1", unit="city-management", result="late"))
    folded = fold(s.facts())
    assert folded.ticket.overdue and folded.ticket.breaches == 2 and folded.ticket.sign_for_due == due
    unit = folded.metrics[("unit", "city-management")]
    assert (unit["response_n"], unit["responded"], unit["completed"], unit["on_time"]) == (1, 0, 1, 0)


def test_a_merged_ticket_stays_merged_until_it_is_closed_with_its_master():
    s = Story("T-2")
    s.add(ev.TicketRegistered(ticket=REGISTERED, master_ticket_id="T-1"))
    s.add(ev.TicketMerged(master_ticket_id="T-1", similarity=0.9, reason="same"))
    assert fold(s.facts()).ticket.status == "merged"
    s.add(ev.TicketClosed(outcome="merged", rounds=0, master_ticket_id="T-1"))
    t = fold(s.facts()).ticket
    assert (t.status, t.master_ticket_id, t.outcome) == ("closed", "T-1", "merged")


def test_the_projections_read_no_intake_topic():
    from contracts.topics import CHANNEL_INTAKE, INTAKE, RESIDENTS
    from services.projections.settings import ProjectionsSettings

    topics = ProjectionsSettings().projected_topics()
    assert not {INTAKE.name, CHANNEL_INTAKE.name, RESIDENTS.name} & set(topics)
    assert "cityops.tickets.v1" in topics


def test_a_ticket_read_from_its_registration_alone_has_what_its_submission_said():
    # What the live service folds since it stopped reading the intake topic (issue 11).
    s = Story()
    late_submission = T0 - timedelta(days=3)  # an imported record: submitted long before it was registered
    ticket = REGISTERED.model_copy(update={"submitted_at": late_submission, "external_id": "nyc311:42",
                                           "category": "city-management.street-light", "urgency": ev.Urgency.urgent})
    s.add(ev.TicketRegistered(ticket=ticket))
    t = fold(s.facts()).ticket
    assert (t.channel, t.text, t.urgency, t.category, t.submitted_at, t.external_id, t.district, t.grid) == (
        "phone", "路灯坏了", "urgent", "city-management.street-light", late_submission, "nyc311:42",
        "district-east", "grid-east-1-a-1")
    assert timeline_row(s.facts()[0])["summary"] == "registered via phone: 路灯坏了"


def test_a_submission_kept_from_before_still_folds_as_it_did():
    s = Story()
    _submitted_and_classified(s)
    with_submission = fold(s.facts()).ticket
    without = fold(s.facts()[1:]).ticket
    assert with_submission.events == without.events + 1
    assert dataclasses.replace(with_submission, events=without.events) == without


def test_the_caller_never_reaches_a_read_model():
    data = ev.TicketSubmitted(channel="phone", text="noise", caller=ev.Caller(name="张三", phone="13812345678"),
                              submitted_at=T0)
    env = Envelope.origin(data, source="/t", ticket_id="T-9", time=T0)
    row = timeline_row(Fact.from_envelope(env))
    assert "13812345678" not in row["payload"] and "张三" not in row["payload"] and "13812345678" not in row["summary"]
    assert '"caller":' not in stored_payload(data)


def test_the_sealed_caller_never_reaches_a_read_model_either():
    sealed = ev.SealedCaller(key_id="k1", nonce="bm9uY2U=", ciphertext="c2VhbGVk")
    data = ev.TicketSubmitted(channel="phone", text="noise", sealed_caller=sealed, submitted_at=T0,
                              caller_ref=ev.CallerRef(pseudonym="p1", masked_phone="138****5678"))
    payload = stored_payload(data)
    assert "sealed" not in payload and "c2VhbGVk" not in payload and '"masked_phone":"138****5678"' in payload


def test_state_dataclasses_mirror_the_tables():
    assert [f.name for f in dataclasses.fields(TicketState)] == [c.name for c in ProjTicket.__table__.columns]
    assert [f.name for f in dataclasses.fields(TaskState) if f.name != "status_before_return"] == \
        [c.name for c in ProjTask.__table__.columns]
    assert set(timeline_row(_one_fact())) == {c.name for c in ProjTimelineEntry.__table__.columns}


def _one_fact() -> Fact:
    s = Story()
    _submitted_and_classified(s)
    return s.facts()[0]


def test_every_event_type_has_a_lifecycle_rank_and_a_summary():
    from contracts.examples import all_examples

    from contracts.topics import AUDIT, COMMANDS, RESIDENTS_BASE

    for env in all_examples():
        if env.type == ev.ResidentLifeEventRecorded.event_type or env.type in (
                COMMANDS.event_types + AUDIT.event_types + RESIDENTS_BASE.event_types):
            continue  # not projected: the residents' register, intake's commands (their facts are), the audit trail
        assert env.type in TYPE_RANK
        row = timeline_row(Fact.from_envelope(env))
        assert row["summary"] and row["kind"] != row["type"]


# ---------------------------------------------------------------------------------------------- order and totality

HISTORY = SyntheticHistory(150, seed=7).envelopes()
BY_TICKET: dict[str, list[Fact]] = {}
for _env in HISTORY:
    BY_TICKET.setdefault(_env.ticket_id, []).append(Fact.from_envelope(_env))


def _rows(folded):
    return (ticket_row(folded.ticket), [task_row(k) for k in folded.tasks], folded.metrics)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(BY_TICKET)), st.randoms(use_true_random=False))
def test_the_fold_depends_on_the_set_of_events_not_their_order(ticket_id, rnd):
    facts = list(BY_TICKET[ticket_id])
    shuffled = facts[:]
    rnd.shuffle(shuffled)
    duplicated = shuffled + shuffled[: len(shuffled) // 2]  # redeliveries
    assert _rows(fold(duplicated)) == _rows(fold(facts))


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(BY_TICKET)), st.randoms(use_true_random=False))
def test_the_fold_is_total_on_any_subset_of_a_ticket_s_events(ticket_id, rnd):
    facts = [f for f in BY_TICKET[ticket_id] if rnd.random() < 0.6]
    folded = fold(facts, ticket_id)
    if facts:
        assert folded is not None and folded.ticket.events == len(facts)
        holdings(folded)  # never raises either
    else:
        assert folded is None


def test_no_closed_ticket_of_the_synthetic_history_leaves_a_task_open():
    closed = [fold(f) for f in BY_TICKET.values()]
    closed = [f for f in closed if f.ticket.status == "closed"]
    assert closed and all(not k.open for f in closed for k in f.tasks)


def test_a_task_is_open_exactly_in_the_open_states_act_uses():
    from domain.statuses import OPEN_TASK_STATES, TaskStatus, TicketStatus

    folds = [f for f in map(fold, BY_TICKET.values()) if f is not None]
    tasks = [k for f in folds for k in f.tasks]
    assert {k.status for k in tasks} <= set(TaskStatus)
    assert {f.ticket.status for f in folds} <= set(TicketStatus)
    assert all(k.open == (k.status in OPEN_TASK_STATES) for k in tasks)


def test_holders_tell_who_held_a_ticket_in_time_order():
    s = Story()
    _submitted_and_classified(s, co=())
    s.dispatch([("city-management", "lead")], 1, 1)
    s.add(ev.TaskCompleted(task_id="T-1:city-management:1", unit="city-management", result="fixed"))
    s.add(ev.TicketHandled(round=1, units=("city-management",), results=("fixed",), category="x", location=LOCATION))
    s.add(ev.TicketClosed(outcome="resolved", rounds=1))
    held = holdings(fold(s.facts()))
    assert [(h.holder, h.role, h.ended_by) for h in held] == [
        ("hotline", "intake+triage", "dispatched"), ("city-management", "lead", "completed"),
        ("hotline", "callback", "resolved")]
    assert all(h.end is not None and h.end >= h.start for h in held)


def test_holders_are_the_sla_ledger_one_holder_at_a_time():
    from domain.holders import bounds_for, check_tiles, ledger_for

    s = Story()
    _submitted_and_classified(s)
    s.dispatch([("city-management", "lead"), ("street-east-1", "co")], 1, 1)
    s.add(ev.TaskCompleted(task_id="T-1:city-management:1", unit="city-management", result="fixed"))
    s.add(ev.TaskCompleted(task_id="T-1:street-east-1:1", unit="street-east-1", result="helped"))
    s.add(ev.TicketHandled(round=1, units=("city-management", "street-east-1"), results=("fixed", "helped"),
                           category="x", location=LOCATION))
    s.add(ev.TicketClosed(outcome="resolved", rounds=1))
    held = holdings(fold(s.facts()))
    # The lead holds it while it works, then the co-unit still working: never two holders at once.
    assert [(h.holder, h.role) for h in held] == [
        ("hotline", "intake+triage"), ("city-management", "lead"), ("street-east-1", "co"), ("hotline", "callback")]
    ledger = ledger_for(s.events)
    assert [(h.holder, h.start, h.end) for h in held] == [
        (span.party.removeprefix("unit:"), span.start, span.end) for span in ledger]
    check_tiles(ledger, *bounds_for(s.events))


# ---------------------------------------------------------------------------------------------- who may report

def _forged_reports(s: Story) -> list[Fact]:
    """Every kind of unit report on the lead's task by the co-unit, one dated before the assignment too."""
    task, unit = "T-1:city-management:1", "street-east-1"
    reports = [ev.TaskSignedFor(task_id=task, unit=unit), ev.ProgressReported(task_id=task, unit=unit, note="on it"),
               ev.ExtensionRequested(task_id=task, unit=unit, extra=ev.TimeLimitSpec(amount=3, unit="wd"), reason="x"),
               ev.TaskReturned(task_id=task, unit=unit, reason="not ours"), ev.TaskCompleted(task_id=task, unit=unit, result="x")]
    cause = s.events[-1]
    return [Fact.from_envelope(cause.caused(data, source="/forger", time=T0 + timedelta(minutes=2 + 30 * i), index=50 + i))
            for i, data in enumerate(reports)]


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False))
def test_a_report_by_another_unit_than_the_task_s_is_not_folded_in_any_order(rnd):
    """Not dead-lettered (whether the assignment is read first depends on how topics interleave, and a rebuild
    must give the live rows): the fold, a function of the ticket's set of events, leaves it out (domain.reports)."""
    s = Story()
    _submitted_and_classified(s)
    s.dispatch([("city-management", "lead"), ("street-east-1", "co")], 1, 1)
    s.add(ev.TaskSignedFor(task_id="T-1:street-east-1:1", unit="street-east-1"))
    honest = s.facts()
    attacked = honest + _forged_reports(s)
    rnd.shuffle(attacked)
    folded, expected = fold(attacked), fold(honest)
    assert _rows(folded) == _rows(expected) and folded.ticket.events == len(honest)
    assert holdings(folded) == holdings(expected)
    lead = next(k for k in folded.tasks if k.unit == "city-management")
    assert (lead.status, lead.signed_for_at, lead.returns) == ("assigned", None, 0)
    s.add(ev.TaskCompleted(task_id="T-1:city-management:1", unit="city-management", result="fixed"))  # its own unit
    assert next(k for k in fold(s.facts()).tasks if k.unit == "city-management").status == "completed"


def test_the_story_keeps_a_refused_report_and_says_it_was_refused():
    from services.projections.replay import REFUSED, story_from_facts

    s = Story()
    _submitted_and_classified(s)
    s.dispatch([("city-management", "lead"), ("street-east-1", "co")], 1, 1)
    forged = _forged_reports(s)
    story = story_from_facts("T-1", "test", [(f, None) for f in s.facts() + forged])
    marked = [e["event_id"] for e in story.entries if e["summary"].startswith(REFUSED)]
    assert sorted(marked) == sorted(f.id for f in forged) and len(story.entries) == len(s.events) + len(forged)


# ---------------------------------------------------------------------------------------------- rankings

def _counts(**given: int) -> dict[str, int]:
    return {name: given.get(name, 0) for name in METRIC_COUNTERS}


def test_small_samples_are_listed_with_their_size_but_not_ranked():
    rows = [("unit", "big-good", _counts(tasks=40, response_n=40, responded=40, completed=40, on_time=40)),
            ("unit", "big-poor", _counts(tasks=40, response_n=40, responded=20, completed=40, on_time=10, returned=10)),
            ("unit", "tiny-perfect", _counts(tasks=3, response_n=3, responded=3, completed=3, on_time=3))]
    ranked = {r.key: r for r in rank(rows, min_n=20)}
    assert (ranked["big-good"].rank, ranked["big-poor"].rank) == (1, 2)
    assert ranked["tiny-perfect"].rank is None and "n=3" in ranked["tiny-perfect"].note


def test_satisfaction_alone_does_not_win_a_ranking():
    satisfied_but_bouncing = _counts(tasks=50, returned=25, callbacks=20, resolved=10, rated=20, satisfied=20,
                                     response_n=50, responded=25, completed=25, on_time=10)
    solid = _counts(tasks=50, returned=1, callbacks=20, resolved=18, rated=20, satisfied=16, response_n=50,
                    responded=48, completed=49, on_time=45)
    ranked = {r.key: r for r in rank([("unit", "a", satisfied_but_bouncing), ("unit", "b", solid)], min_n=20)}
    assert ranked["a"].rates["satisfaction_rate"] > ranked["b"].rates["satisfaction_rate"]
    assert ranked["b"].rank == 1 and ranked["a"].rank == 2


def test_aggregate_sums_contributions_per_scope_and_key():
    total = aggregate([("unit", "a", _counts(tasks=1)), ("unit", "a", _counts(tasks=2)), ("grid", "g", _counts(tasks=5))])
    assert [(s, k, c["tasks"]) for s, k, c in total] == [("grid", "g", 5), ("unit", "a", 3)]


@pytest.mark.parametrize("seed", [1, 2])
def test_random_interleavings_of_many_tickets_fold_alike(seed):
    rnd = random.Random(seed)
    facts = [f for fs in BY_TICKET.values() for f in fs]
    rnd.shuffle(facts)
    regrouped: dict[str, list[Fact]] = {}
    for f in facts:
        regrouped.setdefault(f.ticket_id, []).append(f)
    assert {t: _rows(fold(fs)) for t, fs in regrouped.items()} == {t: _rows(fold(fs)) for t, fs in BY_TICKET.items()}


def test_deadlines_come_from_the_limits_on_china_s_calendar_until_the_sla_service_states_them():
    s = Story()
    _submitted_and_classified(s, co=())
    assigned = s.dispatch([("city-management", "lead")], 1, 1)[0].time  # inside the 2026 May Day holiday
    calendar = WorkCalendar.load()
    folded = fold(s.facts())
    task, t = folded.tasks[0], folded.ticket
    assert task.sign_for_due == calendar.add(assigned, 1, "wd") == datetime(2026, 5, 6, 9, 30, tzinfo=UTC)
    assert task.resolution_due == calendar.add(assigned, 5, "wd")
    assert (t.sign_for_due, t.response_due, t.resolution_due) == (task.sign_for_due, task.response_due, task.resolution_due)
    s.add(ev.ExtensionRequested(task_id="T-1:city-management:1", unit="city-management",
                                extra=ev.TimeLimitSpec(amount=3, unit="wd"), reason="parts"))
    s.add(ev.ExtensionDecided(task_id="T-1:city-management:1", unit="city-management", approved=True,
                              extra=ev.TimeLimitSpec(amount=3, unit="wd"), reason="ok"))
    assert fold(s.facts()).ticket.resolution_due == calendar.add(calendar.add(assigned, 5, "wd"), 3, "wd")
    stated = datetime(2026, 5, 20, 9, 30, tzinfo=UTC)  # e.g. after a pause the SLA service counted
    s.add(ev.SlaReminderSent(task_id="T-1:city-management:1", unit="city-management", clock="resolution",
                             fraction=0.8, deadline=stated))
    assert fold(s.facts()).ticket.resolution_due == stated
