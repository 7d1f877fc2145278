"""A size budget end to end (issue 12, point 2): nothing intake or the unit bridge accepts can make a record larger
than the broker takes.

Before, a 1 MB address was accepted, triage's TaskAssigned (which carries the ticket) no longer fitted the broker's
record limit, and triage stalled for ever. Now every string a person or a unit can send is capped
(services/common/inputs.py); what a ticket's records carry at most is then bounded:

* the ticket itself (text, address, caller's masked reference) rides on TicketRegistered, ConsultationRequested,
  TaskAssigned (once per unit) and the status views: text 5,000 characters, address 500, at most 4 UTF-8 bytes each;
* TicketHandled carries every unit's result: at most 1 lead + MAX_CO_UNITS co-units (a supervisor's decision;
  the catalogue's widest joint action has 2 co-units), 5,000 characters each;
* notes, reasons, comments: 2,000 characters each, one per record.

So the largest record is TicketHandled at about 6 x 20 kB. This test does not trust the arithmetic: it submits
the largest ticket intake accepts (every field at its cap, in 4-byte characters), sends it through a consultation
the parties disagree on, a supervisor's decision with the most co-units allowed, every unit's longest notes and
results and the longest callback comment, follows it to closed with the workflow services' own handlers, and
measures every record it produced against the broker's limit with a margin of 4.
"""

from __future__ import annotations

from typing import Any

from contracts import events as ev
from contracts import unit_reports
from contracts.codec import encode
from contracts.envelope import Envelope
from domain.catalogue import load_catalogue
from services.common.inputs import ADDRESS_MAX, KEY_MAX, NOTE_MAX, TEXT_MAX
from services.common.store import create_tables
from services.intake.api import MAX_CO_UNITS, build_api
from services.intake.app import store_tables
from tests.harness.auth import bearer, verifier
from tests.harness.pipeline import record_of
from tests.harness.workflow import Hub

# The broker's record limit: Kafka's default message.max.bytes (1,048,588, tools/kafka sets no other) and the
# producers' default max.request.size (1,048,576, the smaller, the one a publish meets first).
BROKER_RECORD_LIMIT = 1_048_576
MARGIN = 4  # room for what later versions add to a record, and for the record batch's own overhead

WIDE = "😀"  # one character, four UTF-8 bytes: the most a capped character can weigh on the wire
NAME = "龘"  # another one (three bytes), so masking the caller's name in the text removes nothing
CATEGORY = "environment.water-pollution"  # needs a consultation, a lead and two co-units


def record_bytes(envelope: Envelope[Any]) -> int:
    record = encode(envelope)
    return len(record.key) + len(record.value) + sum(len(k) + len(v) for k, v in record.headers)


def largest_complaint(grid: str) -> dict[str, Any]:
    return {"text": WIDE * TEXT_MAX, "caller_name": NAME * 100, "caller_phone": "+" + "1" * 31,
            "location": {"grid": grid, "address": WIDE * ADDRESS_MAX, "lat": -89.123456789, "lon": -179.123456789},
            "category": CATEGORY, "urgency": "emergency", "external_id": WIDE * 128}


class Hotline:
    """Intake's real API on the hub's log: what it publishes goes on the log and the services handle it."""

    def __init__(self, hub: Hub) -> None:
        status = hub.services["intake-status"]
        create_tables(status.engine, store_tables())
        self.hub = hub

        async def publish(topic: str, envelope: Envelope[Any]) -> None:
            if topic != "cityops.audit.v1":
                hub.log.append(record_of(envelope, topic=topic))
        from fastapi.testclient import TestClient
        self.client = TestClient(build_api(publish=publish, engine=status.engine, catalogue=load_catalogue(),
                                           now=hub.clock, verifier=verifier()))

    def post(self, path: str, body: dict[str, Any], role: str, **headers: str) -> Any:
        r = self.client.post(path, json=body, headers={**bearer(role, f"{role}-1"), **headers})
        assert r.status_code == 202, r.text
        self.hub.settle()
        return r.json()


def test_the_largest_accepted_ticket_goes_to_closed_and_every_record_fits_the_broker(tmp_path) -> None:
    catalogue = load_catalogue()
    grid = max((a.id for a in catalogue.areas if a.level == "grid"), key=len)
    hub = Hub(tmp_path, services=("discover", "triage", "consult", "act", "evaluate", "sla", "intake-status"))
    hotline = Hotline(hub)

    over = {"text": WIDE * (TEXT_MAX + 1), "caller_name": NAME * 101, "external_id": WIDE * 129}
    for field, value in over.items():  # one character more than the largest is refused
        assert hotline.client.post("/tickets", json={**largest_complaint(grid), field: value},
                                   headers=bearer("operator")).status_code == 422, field
    too_far = {**largest_complaint(grid), "location": {"grid": grid, "address": WIDE * (ADDRESS_MAX + 1)}}
    assert hotline.client.post("/tickets", json=too_far, headers=bearer("operator")).status_code == 422
    assert hub.log.records == []

    ticket = hotline.post("/tickets", largest_complaint(grid), "operator", **{"Idempotency-Key": "k" * KEY_MAX})["ticket_id"]
    request = hub.last(ev.ConsultationRequested, ticket)
    for unit in request.data.parties:  # every party disagrees, at length: a supervisor decides
        hub.add(unit_reports.opinion(request, unit, False, proposed_lead="housing", comment=WIDE * NOTE_MAX))
    review = hub.last(ev.SupervisorReviewRequested, ticket)
    units = [u.id for u in catalogue.units if u.kind == "department"][: 1 + MAX_CO_UNITS]
    hotline.post("/supervisor/decisions", {"ticket_id": ticket, "lead": units[0], "co_units": units[1:], "level": "city",
                                           "consultation_id": review.data.consultation_id, "note": WIDE * NOTE_MAX}, "supervisor")
    tasks = hub.open_tasks(ticket)
    assert len(tasks) == 1 + MAX_CO_UNITS
    for task in tasks:
        unit = task.data.unit
        hub.add(unit_reports.sign_for(task, unit, handler=WIDE * 100),
                unit_reports.progress(task, unit, WIDE * NOTE_MAX),
                unit_reports.complete(task, unit, WIDE * TEXT_MAX))
    handled = hub.last(ev.TicketHandled, ticket)
    assert len(handled.data.results) == 1 + MAX_CO_UNITS
    hotline.post("/callbacks", {"ticket_id": ticket, "round": 1, "resolved": True, "satisfaction": "satisfied",
                                "comment": WIDE * NOTE_MAX}, "operator")
    assert hub.events(ev.TicketClosed, ticket), "the largest ticket did not reach closed"

    sizes = {(r.topic, r.type): len(r.key or b"") + len(r.value) + sum(len(k) + len(v) for k, v in r.headers)
             for r in hub.log.records}
    largest = max(sizes.items(), key=lambda item: item[1])
    print(f"\nlargest record: {largest[0]} {largest[1]:,} bytes of {BROKER_RECORD_LIMIT:,}")
    assert largest[1] <= BROKER_RECORD_LIMIT // MARGIN, largest
    assert record_bytes(handled) == sizes[("cityops.act.v1", ev.TicketHandled.event_type)]
