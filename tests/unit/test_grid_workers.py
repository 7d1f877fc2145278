"""Grid workers are people: the roster, the on-the-spot and escalation rules, the solved-at-the-lowest-level
rate (domain/grid_workers.py, domain/rates.py), and how act and triage carry them out (through their real
pipelines, tests/harness)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from contracts import events as ev
from contracts.envelope import Envelope
from domain import grid_workers as gw
from domain import rates
from domain.catalogue import load_catalogue
from domain.holders import fact_from
from services.common.store import make_engine
from services.evaluate.handlers import lowest_level_table
from services.projections.migrate import upgrade
from services.projections.store import apply
from services.sla.domain import genuine_returns
from services.triage import domain as triage_domain
from services.units import domain as sim
from services.units import sdk
from services.units.cli import app
from services.units.settings import UnitSettings
from tests.harness.pipeline import record_of, start
from tests.harness.workflow import callback_submitted, of_type, one

CATALOGUE = load_catalogue()
GRIDS = [a.id for a in CATALOGUE.areas if a.level == "grid"]


# ---------------------------------------------------------------------------- the roster

def test_the_packaged_roster_covers_every_grid_of_the_small_city_with_one_or_two_workers():
    roster = gw.load_roster(GRIDS)
    assert gw.uncovered_grids(roster, GRIDS) == []
    per_grid = [len(roster.workers_of_grid(g)) for g in GRIDS]
    assert min(per_grid) >= 1 and max(per_grid) <= 2 and len(GRIDS) == 16
    assert roster.catalogue == CATALOGUE.version


@pytest.mark.parametrize(("workers", "words"), [
    ([{"id": "gw-1", "name": "王丽", "grids": ["grid-nowhere"]}], "worker gw-1: grids: unknown grid 'grid-nowhere'"),
    ([{"id": "gw-1", "name": "王丽", "grids": ["grid-east-1-a-1"]}, {"id": "gw-1", "name": "李强", "grids": ["grid-east-1-a-2"]}],
     "workers.id: duplicate worker id 'gw-1'"),
    ([{"id": "gw-1", "name": "王丽", "grids": []}], "workers.0.grids"),
    ([{"id": "GW 1", "name": "王丽", "grids": ["grid-east-1-a-1"]}], "workers.0.id"),
    ([{"id": "gw-1", "name": "王丽", "grids": ["grid-east-1-a-1"], "phone": "13800000000"}], "workers.0.phone"),
])
def test_a_bad_roster_is_refused_naming_the_worker_and_field(workers, words):
    with pytest.raises(gw.RosterError) as caught:
        gw.parse_roster({"version": "1", "workers": workers}, GRIDS)
    assert words in str(caught.value)


def test_uncovered_grids_are_listed():
    roster = gw.parse_roster({"version": "1", "workers": [{"id": "gw-1", "name": "王丽", "grids": [GRIDS[0]]}]}, GRIDS)
    assert gw.uncovered_grids(roster, GRIDS) == GRIDS[1:]


def test_a_city_without_a_written_roster_gets_one_generated_worker_per_grid():
    roster = gw.roster_for(["grid-a-1", "grid-b-2"], "some-other-catalogue")
    assert [(w.id, w.grids) for w in roster.workers] == [("gw-a-1-1", ("grid-a-1",)), ("gw-b-2-1", ("grid-b-2",))]
    assert gw.roster_for(GRIDS, CATALOGUE.version).version == gw.load_roster(GRIDS).version


def test_a_reporter_must_be_on_the_roster_and_posted_to_the_grid():
    roster = gw.load_roster(GRIDS)
    worker = roster.workers[0]
    assert gw.reporter_refusal(roster, worker.id, worker.grids[0]) is None
    assert gw.reporter_refusal(roster, worker.id, None) is None
    assert "is not a grid worker" in (gw.reporter_refusal(roster, "gw-nobody", None) or "")
    other = next(g for g in GRIDS if g not in worker.grids)
    assert f"not posted to grid {other}" in (gw.reporter_refusal(roster, worker.id, other) or "")


# ---------------------------------------------------------------------------- the rules

def test_only_a_grid_lead_on_an_ordinary_grid_matter_resolves_on_the_spot():
    ok = {"lead_level": "grid", "role": "lead", "needs_consultation": False, "proactive": False}
    assert gw.on_the_spot_refusal(**ok) is None
    for change, words in [({"role": "co"}, "only the lead"), ({"lead_level": "community"}, "not led by a grid"),
                          ({"proactive": True}, "proactive visit"), ({"needs_consultation": True}, "agree first")]:
        assert words in (gw.on_the_spot_refusal(**{**ok, **change}) or "")


@pytest.mark.parametrize(("unit_level", "to_level", "allowed"), [
    ("grid", "community", True), ("grid", "street", True), ("grid", "district", True), ("community", "street", True),
    ("street", "district", True), ("community", "community", False), ("street", "community", False),
    ("district", "city", False), ("city", "district", False), ("grid", "grid", False), ("grid", "city", False),
])
def test_escalation_only_goes_up_the_area_ladder(unit_level, to_level, allowed):
    assert (gw.escalation_refusal(unit_level, to_level) is None) is allowed


def test_an_escalation_skips_the_areas_below_its_target():
    chain = [("grid-x", "grid"), ("community-x", "community"), ("street-x", "street"), ("district-x", "district")]
    assert gw.areas_below(chain, "community") == ("grid-x",)
    assert gw.areas_below(chain, "district") == ("grid-x", "community-x", "street-x")


def test_help_requested_is_an_escalation_reason():
    assert ev.EscalationReason.help_requested in gw.ESCALATION_REASONS
    assert ev.EscalationReason("help-requested") is ev.EscalationReason.help_requested


def test_the_lowest_level_rate_counts_grid_and_community_tickets_nobody_escalated():
    closed = [("grid", False), ("community", False), ("grid", True), ("street", False), ("city", False), (None, False)]
    counts: dict[str, int] = {}
    for level, escalated in closed:
        for name, n in rates.lowest_level_counts(level=level, escalated=escalated).items():
            counts[name] = counts.get(name, 0) + n
    assert counts == {"handled_closed": 6, "solved_lowest": 2}
    assert rates.lowest_level_rate(counts) == round(2 / 6, 4)
    assert rates.lowest_level_rate({}) is None


# ---------------------------------------------------------------------------- act and triage

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _grid_ticket(ticket_id: str, category: str = "grid.corridor-safety", grid: str = "grid-east-1-a-1") -> Envelope:
    ticket = ev.RegisteredTicket(channel=ev.Channel.grid_patrol, text="楼道堆放杂物", caller=ev.CallerRef(anonymous=True),
                                 location=ev.Location(grid=grid), urgency=ev.Urgency.normal, submitted_at=AT,
                                 reported_by="gw-east-1-a-1-1")
    data = triage_domain.classified(ticket, category, 1.0, "operator", CATALOGUE)
    return Envelope.origin(data, source="/cityops/triage", ticket_id=ticket_id, time=AT)


def _assert_dead_lettered(out, reason):
    assert [r.topic for r in out] == ["cityops.unit-reports.v1.dlq"]
    assert reason in dict(out[0].headers)["dlq_error"].decode()


def _assigned(out, unit):
    return next(a for a in of_type(out, ev.TaskAssigned) if a.data.unit == unit)


def test_a_grid_worker_resolves_a_small_matter_on_the_spot_and_the_ticket_is_handled_at_grid_level(tmp_path):
    act = start("act", tmp_path)
    out = act.feed([record_of(_grid_ticket("T-SPOT"))])
    assert {a.data.unit for a in of_type(out, ev.TaskAssigned)} == {"grid-east-1-a-1", "housing"}
    lead = _assigned(out, "grid-east-1-a-1")
    out = act.feed([record_of(sdk.resolve_on_the_spot(lead, "grid-east-1-a-1", "moved the clutter with the residents"))])
    handled = one(out, ev.TicketHandled, "T-SPOT")
    assert (handled.data.level, handled.data.resolved_on_the_spot, handled.data.escalated) == ("grid", True, False)
    assert handled.data.units == ("grid-east-1-a-1",)
    tasks = {t["unit"]: t["status"] for t in act.rows("act_tasks")}
    assert tasks == {"grid-east-1-a-1": "completed", "housing": "withdrawn"}


def test_an_ordinary_completion_waits_for_the_co_unit_and_is_not_on_the_spot(tmp_path):
    act = start("act", tmp_path)
    out = act.feed([record_of(_grid_ticket("T-ORD"))])
    lead, co = _assigned(out, "grid-east-1-a-1"), _assigned(out, "housing")
    assert act.feed([record_of(sdk.complete(lead, "grid-east-1-a-1", "done"))]) == []
    handled = one(act.feed([record_of(sdk.complete(co, "housing", "checked"))]), ev.TicketHandled, "T-ORD")
    assert (handled.data.level, handled.data.resolved_on_the_spot) == ("grid", False)


def test_on_the_spot_is_refused_to_a_co_unit_and_dead_lettered_with_the_reason(tmp_path):
    act = start("act", tmp_path)
    out = act.feed([record_of(_grid_ticket("T-CO"))])
    co = _assigned(out, "housing")
    forged = sdk.resolve_on_the_spot(co, "housing", "closed it")
    _assert_dead_lettered(act.feed([record_of(forged)]), "only the lead unit resolves a matter on the spot")
    assert act.processed()[forged.id] == "dead-lettered"
    assert {t["unit"]: t["status"] for t in act.rows("act_tasks")}["housing"] == "assigned"


def test_an_escalation_with_help_requested_asks_triage_to_route_up_and_triage_gives_it_to_the_community(tmp_path):
    act = start("act", tmp_path / "act")
    out = act.feed([record_of(_grid_ticket("T-UP"))])
    lead = _assigned(out, "grid-east-1-a-1")
    up = sdk.escalate(lead, "grid-east-1-a-1", "community", "help-requested", "residents refuse to move the bikes")
    reroute = one(act.feed([record_of(up)]), ev.RerouteRequested, "T-UP")
    assert (reroute.data.escalate_to, reroute.data.escalation_reason) == ("community", "help-requested")
    assert reroute.data.excluded_units == ("grid-east-1-a-1",)
    row = act.rows("act_tickets")[0]
    assert (row["returns"], row["status"]) == (0, "rerouting")  # an escalation is not a dispute over ownership

    triage = start("triage", tmp_path / "triage")
    classified = one(triage.feed([record_of(reroute)]), ev.TicketClassified, "T-UP")
    assert (classified.data.routing.lead, classified.data.routing.level) == ("community-east-1-a", "community")
    assert classified.data.escalation_reason == "help-requested" and not classified.data.needs_consultation

    out = act.feed([record_of(classified)])
    community = _assigned(out, "community-east-1-a")
    handled = one(act.feed([record_of(sdk.complete(community, "community-east-1-a", "talked to the residents")),
                            *[record_of(sdk.complete(a, a.data.unit, "helped")) for a in of_type(out, ev.TaskAssigned)
                              if a.data.unit != "community-east-1-a"]]), ev.TicketHandled, "T-UP")
    assert (handled.data.level, handled.data.escalated) == ("community", True)
    assert not gw.solved_at_lowest_level(handled.data.level, handled.data.escalated)


def test_an_escalation_to_the_district_skips_community_and_street(tmp_path):
    act = start("act", tmp_path / "act")
    lead = _assigned(act.feed([record_of(_grid_ticket("T-DIST"))]), "grid-east-1-a-1")
    up = sdk.escalate(lead, "grid-east-1-a-1", "district", "safety-risk", "wiring on fire risk")
    reroute = one(act.feed([record_of(up)]), ev.RerouteRequested, "T-DIST")
    triage = start("triage", tmp_path / "triage")
    classified = one(triage.feed([record_of(reroute)]), ev.TicketClassified, "T-DIST")
    assert (classified.data.routing.lead, classified.data.routing.level) == ("district-east", "district")


def test_an_escalation_down_or_sideways_is_dead_lettered_and_changes_nothing(tmp_path):
    act = start("act", tmp_path)
    lead = _assigned(act.feed([record_of(_grid_ticket("T-SIDE"))]), "grid-east-1-a-1")
    bad = ev.TaskReturned(task_id=lead.data.task_id, unit="grid-east-1-a-1", reason="x", escalate_to=ev.Level.grid,
                          escalation_reason=ev.EscalationReason.help_requested)
    env = sdk.report(lead, bad, "grid-east-1-a-1")
    _assert_dead_lettered(act.feed([record_of(env)]), "escalate_to: must be one of community, street, district")
    assert act.processed()[env.id] == "dead-lettered"
    assert {t["unit"]: t["status"] for t in act.rows("act_tasks")}["grid-east-1-a-1"] == "assigned"


# ---------------------------------------------------------------------------- simulated grid workers

def _grid_task(n: int, *, unit: str = "grid-east-1-a-1", proactive: str | None = None) -> ev.TaskAssigned:
    classified = _grid_ticket(f"T-SIM-{n}").data
    ticket = classified.ticket.model_copy(update={"proactive_rule": proactive})
    return ev.TaskAssigned(task_id=f"T-SIM-{n}:{unit}:1", unit=unit, role=ev.Role.lead, round=1, category=classified.category,
                           limits=classified.limits, ticket=ticket)


def test_simulated_grid_workers_resolve_on_the_spot_and_escalate_with_help_requested_in_their_seeded_shares():
    settings = UnitSettings(p_on_the_spot=0.5, p_escalate=0.1)
    plans = [sim.plan_task(_grid_task(n), settings) for n in range(2000)]
    kinds = [p[-1].kind for p in plans]
    assert 0.07 < kinds.count("escalate") / 2000 < 0.13 and 0.45 < kinds.count("on-the-spot") / 2000 < 0.55
    reasons = [p[-1].detail["reason"] for p in plans if p[-1].kind == "escalate"]
    assert reasons.count("help-requested") > len(reasons) / 2
    assert all(p[-1].detail["to_level"] == "community" for p in plans if p[-1].kind == "escalate")
    assert [p[-1].kind for p in (sim.plan_task(_grid_task(n), settings) for n in range(50))] == kinds[:50]  # seeded
    department = [sim.plan_task(_grid_task(n, unit="housing"), settings)[-1].kind for n in range(200)]
    proactive = [sim.plan_task(_grid_task(n, proactive="old-age-allowance-80"), settings)[-1].kind for n in range(200)]
    assert not {"escalate", "on-the-spot"} & (set(department) | set(proactive))


# ---------------------------------------------------------------------------- evaluate's counters

def test_evaluate_counts_closed_handled_tickets_in_the_lowest_level_rate_of_grid_district_and_city(tmp_path):
    def registered(ticket_id: str) -> Envelope:
        ticket = _grid_ticket(ticket_id).data.ticket.model_copy(
            update={"location": ev.Location(district="district-east", grid="grid-east-1-a-1")})
        return Envelope.origin(ev.TicketRegistered(ticket=ticket), source="/cityops/discover", ticket_id=ticket_id, time=AT)

    def handled(ticket_id: str, level: str, **flags: bool) -> Envelope:
        data = ev.TicketHandled(round=1, units=("u",), results=("done",), category="grid.corridor-safety",
                                location=ev.Location(grid="grid-east-1-a-1"), level=ev.Level(level), **flags)
        return Envelope.origin(data, source="/cityops/act", ticket_id=ticket_id, time=AT)

    evaluate = start("evaluate", tmp_path)
    stories = [("E-SPOT", "grid", {"resolved_on_the_spot": True}), ("E-UP", "community", {"escalated": True}),
               ("E-COM", "community", {}), ("E-DEPT", "district", {}), ("E-OPEN", "grid", {})]
    for ticket_id, level, flags in stories:
        evaluate.feed([record_of(registered(ticket_id)), record_of(handled(ticket_id, level, **flags))])
    evaluate.feed([record_of(callback_submitted(t, 1, satisfied=True)) for t, _, _ in stories[:-1]])  # E-OPEN stays open
    counters = {(r["scope"], r["key"]): (r["handled_closed"], r["solved_lowest"], r["on_the_spot"])
                for r in evaluate.rows("evaluate_lowest_level")}
    assert counters == {("grid", "grid-east-1-a-1"): (4, 2, 1), ("district", "district-east"): (4, 2, 1),
                        ("city", "all"): (4, 2, 1)}
    with Session(evaluate.engine) as session:
        [city] = lowest_level_table(session, "city")
    assert city["lowest_level_rate"] == 0.5


def test_the_roster_command_checks_lists_and_writes_a_roster(tmp_path):
    runner = CliRunner()
    checked = runner.invoke(app, ["roster", "--check"])
    assert checked.exit_code == 0 and "22 workers covering 16 of 16 grids" in checked.output
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "1"\nworkers:\n  - {id: gw-1, name: 王丽, grids: [grid-nowhere]}\n', encoding="utf-8")
    refused = runner.invoke(app, ["roster", "--check", "--path", str(bad)])
    assert refused.exit_code == 1 and "worker gw-1: grids: unknown grid 'grid-nowhere'" in refused.output
    written = tmp_path / "roster.yaml"
    listed = runner.invoke(app, ["roster", "--write", str(written)])
    assert listed.exit_code == 0 and "gw-east-1-a-1-1" in listed.output and "王丽" in listed.output
    assert gw.load_roster(GRIDS, written) == gw.load_roster(GRIDS)  # the written file reads back as the same roster


# ---------------------------------------------------------------------------- an escalation is no return

def test_an_escalation_is_not_a_return_for_sla_s_ping_pong_and_returns_index():
    task = _assigned_envelope()
    returned = sdk.return_task(task, GRID_UNIT, "not ours")
    escalated = sdk.escalate(task, GRID_UNIT, "community", "help-requested", "needs the community")
    facts = [fact_from(e) for e in (task, returned, escalated)]
    assert [f.kind for f in facts] == ["assigned", "returned", "returned"]  # both set the unit's clocks aside
    assert genuine_returns(facts) == [facts[1]]


def test_the_projections_count_an_escalation_in_no_return_rate(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'proj.db'}")
    upgrade(engine)
    task = _assigned_envelope()
    with Session(engine) as session, session.begin():
        for envelope in (task, sdk.escalate(task, GRID_UNIT, "community", "help-requested", "needs the community")):
            apply(session, envelope)
    with engine.connect() as conn:
        returns = conn.exec_driver_sql("SELECT returns FROM proj_tickets WHERE ticket_id = 'T-ESC'").scalar()
        returned = conn.exec_driver_sql("SELECT SUM(returned) FROM proj_ticket_metrics WHERE ticket_id = 'T-ESC'").scalar()
    assert (returns, returned or 0) == (0, 0)


GRID_UNIT = "grid-east-1-a-1"


def _assigned_envelope() -> Envelope:
    classified = _grid_ticket("T-ESC")
    data = ev.TaskAssigned(task_id=f"T-ESC:{GRID_UNIT}:1", unit=GRID_UNIT, role=ev.Role.lead, round=1,
                           category=classified.data.category, limits=classified.data.limits, ticket=classified.data.ticket)
    return classified.caused(data, source="/cityops/act", id_extra=data.task_id)
