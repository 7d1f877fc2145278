"""What-if: another catalogue or classifier over past intake names exactly the tickets that would move."""

from __future__ import annotations

import asyncio
import copy

from contracts import events as ev
from domain.catalogue import load_catalogue, parse_catalogue, read_catalogue_data
from services.common.store import make_engine
from services.projections.logsource import MemoryLog
from services.projections.whatif import RUNS, TICKETS_TABLE, WHATIF_TOPICS, Guess, SavedModel, what_if
from tools.importers.synthetic import SyntheticHistory

HISTORY = SyntheticHistory(1200, seed=5).envelopes()
MOVED_DEPARTMENT = "city-management.street-cleaning"  # city-management -> environment
MOVED_AREA = "grid.corridor-safety"  # grid -> community


def changed_catalogue():
    data = copy.deepcopy(read_catalogue_data())
    for category in data["categories"]:
        if category["code"] == MOVED_DEPARTMENT:
            category["lead"] = "environment"
        if category["code"] == MOVED_AREA:
            category["lead_by_area"], category["level"] = "community", "community"
    data["version"] = "2026.2-trial"
    return parse_catalogue(data)


def first_classifications():
    first: dict[str, ev.TicketClassified] = {}
    for env in sorted(HISTORY, key=lambda e: e.time):
        if isinstance(env.data, ev.TicketClassified) and env.data.method != "reroute":
            first.setdefault(env.ticket_id, env.data)
    return first


def test_a_changed_catalogue_names_exactly_the_tickets_whose_routing_changed(tmp_path):
    trial = changed_catalogue()
    assert load_catalogue().diff(trial) == sorted([MOVED_DEPARTMENT, MOVED_AREA])
    first = first_classifications()
    expected = {t for t, c in first.items() if c.category == MOVED_DEPARTMENT} | \
               {t for t, c in first.items() if c.category == MOVED_AREA and c.ticket.location.grid}
    assert len(expected) >= 10  # the history holds enough of both to mean something

    scratch = make_engine(f"sqlite:///{tmp_path / 'scratch.db'}")
    report = asyncio.run(what_if(MemoryLog(HISTORY), trial, scratch=scratch, min_n=5))
    assert {d.ticket_id for d in report.changed} == expected
    assert report.tickets_considered == len(first)
    moved = {d.ticket_id: d for d in report.changed}
    assert all(moved[t].lead_before == "city-management" and moved[t].lead_after == "environment"
               for t in expected if first[t].category == MOVED_DEPARTMENT)
    assert all(moved[t].lead_after.startswith("community-") for t in expected if first[t].category == MOVED_AREA)

    units = {u.unit: u for u in report.units}
    department_moves = sum(1 for t in expected if first[t].category == MOVED_DEPARTMENT)
    assert units["environment"].tickets_after - units["environment"].tickets_before == department_moves
    with scratch.connect() as conn:
        assert conn.execute(RUNS.select()).one().tickets_changed == len(expected)
        assert len(conn.execute(TICKETS_TABLE.select()).all()) == len(first)


def test_the_what_if_reads_the_registrations_not_the_intake_records():
    # Only intake, discover and the archiver may read the intake topic (issue 11); triage classifies the
    # registration, so a what-if from the tickets topic decides on exactly what triage saw.
    from contracts.topics import INTAKE, TICKETS

    assert INTAKE.name not in WHATIF_TOPICS and TICKETS.name in WHATIF_TOPICS
    first = first_classifications()
    # What triage saw differs from the intake record: the registration is the one to go by.
    history = [_with_other_submission_text(env) for env in HISTORY]
    report = asyncio.run(what_if(MemoryLog(history), load_catalogue(), classifier=ByText()))
    by_ticket = {d.ticket_id: d for d in report.diffs}
    model_decided = [t for t, c in first.items() if c.method == "model"]
    assert model_decided and all(by_ticket[t].category_after == "hotline.suggestion" for t in model_decided)


def _with_other_submission_text(env):
    if not isinstance(env.data, ev.TicketSubmitted):
        return env
    return env.model_copy(update={"data": env.data.model_copy(update={"text": "intake record, not what triage saw"})})


class ByText:
    """Suggestion for what a registration says, a complaint about streets for anything else."""

    def predict_many(self, texts):
        return [Guess("hotline.suggestion" if t != "intake record, not what triage saw"
                      else "city-management.street-cleaning", 0.9) for t in texts]


def test_the_same_catalogue_changes_nothing():
    report = asyncio.run(what_if(MemoryLog(HISTORY), load_catalogue()))
    assert report.tickets_considered > 1000 and report.changed == []


class EverythingIsASuggestion:
    def predict_many(self, texts):
        return [Guess("hotline.suggestion", 0.9) for _ in texts]


def test_another_classifier_moves_only_what_the_model_decided_and_keeps_people_s_decisions():
    first = first_classifications()
    report = asyncio.run(what_if(MemoryLog(HISTORY), load_catalogue(), classifier=EverythingIsASuggestion()))
    by_ticket = {d.ticket_id: d for d in report.diffs}
    person_decided = {t for t, c in first.items() if c.method in ("operator", "manual")}
    assert person_decided and all(by_ticket[t].category_after == first[t].category for t in person_decided)
    model_decided = {t for t, c in first.items() if c.method == "model" and c.routing.lead != "hotline"}
    assert {d.ticket_id for d in report.changed} == model_decided
    assert all(by_ticket[t].why == "classifier" for t in model_decided)


def test_below_the_confidence_floor_a_ticket_would_wait_for_an_operator():
    report = asyncio.run(what_if(MemoryLog(HISTORY[:3000]), load_catalogue(), classifier=EverythingIsASuggestion(),
                                 min_confidence=0.95))
    model_decided = [d for d in report.diffs if d.why == "manual-triage"]
    assert model_decided and all(d.lead_after is None for d in model_decided)


def test_below_the_floor_a_text_that_needs_consultation_is_routed_as_triage_would():
    from domain.consultation import consultation_cue

    first = first_classifications()
    report = asyncio.run(what_if(MemoryLog(HISTORY), load_catalogue(), classifier=EverythingIsASuggestion(),
                                 min_confidence=0.95))
    by_ticket = {d.ticket_id: d for d in report.diffs}
    consult = {t for t, c in first.items() if c.method == "model" and consultation_cue(c.ticket.text)}
    assert consult and all(by_ticket[t].why == "classifier" and by_ticket[t].category_after == "hotline.suggestion"
                           for t in consult)
    assert all(by_ticket[t].why == "manual-triage" for t, c in first.items() if c.method == "model" and t not in consult)


def test_a_model_file_saved_by_triage_loads_without_importing_triage_code(tmp_path):
    from domain import classifier as classifier_module

    texts = ["street light broken", "路灯坏了", "lamp post dark", "noise at night", "楼上噪音", "loud music neighbours"] * 3
    labels = ["city-management.street-light"] * 3 + ["public-security.social-noise"] * 3
    model = classifier_module.ComplaintClassifier().fit(texts, labels * 3)
    path = model.save(tmp_path / "model.joblib")
    loaded = SavedModel(path)
    probe = ["the street light is out", "noisy party upstairs"]
    assert [g.category for g in loaded.predict_many(probe)] == [p.category for p in model.predict_many(probe)]
