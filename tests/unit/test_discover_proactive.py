"""discover's proactive rules on residents' base data, through its real pipeline (tests/harness): base records
stored, the scan on request and on the daily schedule, life events, one ticket per entitlement across re-runs,
a restart and a replay; triage sends the ticket to the resident's grid."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope
from domain.catalogue import load_catalogue
from domain.residents.records import Resident
from services.discover.handlers import daily_scan
from services.triage.domain import classified
from tests.harness.pipeline import BUILDERS, Clock, record_of, start
from tests.harness.workflow import life_event, of_type

DAY = date(2026, 12, 20)
GRID_A, GRID_B = "grid-east-1-a-1", "grid-west-1-a-1"
BASE = Resident("R1", "张某", date(1947, 1, 10), "F", "HH1", "H1", "桂花社区1号楼2单元301室", GRID_A)


def residents() -> list[Resident]:
    return [BASE,  # turns 80 on 2027-01-10: within 30 days of DAY
            replace(BASE, resident_id="R2", display_name="李某", birth_date=date(1980, 5, 5), grid_id=GRID_B,
                    disability_kind="physical", disability_grade=1),  # care subsidy, once
            replace(BASE, resident_id="R3", display_name="王某", birth_date=date(1990, 5, 5))]  # nothing


def base_record(r: Resident, n: int = 0) -> Any:
    from dataclasses import asdict

    return record_of(Envelope.origin(ev.ResidentBaseRecorded(**asdict(r)), source="registry", ticket_id=r.resident_id,
                                     event_id=f"00000000-0000-4000-8000-{n:012d}"), offset=n)


def scan_request(day: date, n: int) -> Any:
    return record_of(Envelope.origin(ev.ProactiveScanRequested(day=day), source="registry", ticket_id=f"scan-{n}"))


def registered(records: list[Any]) -> dict[str, ev.RegisteredTicket]:
    return {e.data.ticket.caller.pseudonym + "|" + (e.data.ticket.proactive_rule or ""): e.data.ticket
            for e in of_type(records, ev.TicketRegistered)}


def test_a_scan_raises_one_ticket_per_entitlement_and_never_again_even_after_a_restart(tmp_path) -> None:
    svc = start("discover", tmp_path)
    assert svc.feed([base_record(r, i) for i, r in enumerate(residents())]) == []
    out = registered(svc.feed([scan_request(DAY, 1)]))
    assert set(out) == {"R1|old-age-allowance-80", "R2|disability-care-subsidy"}
    eighty = out["R1|old-age-allowance-80"]
    assert eighty.location.grid == GRID_A and eighty.channel == ev.Channel.proactive
    assert eighty.text.startswith("张某将于2027-01-10年满80周岁") and "张三" not in eighty.text
    assert eighty.category == "civil-affairs.elderly-services"
    assert svc.feed([scan_request(DAY, 2)]) == []  # the same day again
    assert svc.feed([scan_request(date(2027, 1, 5), 3)]) == []  # a later day: the same entitlements
    again = BUILDERS["discover"](svc.directory, svc.clock)  # a restart on the same store
    assert again.feed([scan_request(date(2027, 1, 6), 4)]) == []
    assert len(again.rows("discover_proactive_raised")) == 2


def test_the_daily_tick_scans_once_a_day_after_the_configured_time(tmp_path) -> None:
    clock = Clock(datetime(2026, 12, 19, 21, 0, tzinfo=UTC))  # 05:00 on the 20th in Shanghai
    svc = start("discover", tmp_path, clock=clock, proactive_scan_at="06:00")
    svc.ticks = [daily_scan]
    svc.feed([base_record(r, i) for i, r in enumerate(residents())])
    assert svc.tick() == []  # before 06:00
    clock.advance(hours=1, minutes=30)
    assert set(registered(svc.tick())) == {"R1|old-age-allowance-80", "R2|disability-care-subsidy"}
    assert svc.tick() == []  # scanned today
    assert [r["day"] for r in svc.rows("discover_proactive_scans")] == [date(2026, 12, 20)]
    # A new unemployment spell the next day is a new occasion: the only new ticket.
    svc.feed([base_record(replace(residents()[2], unemployed_since=date(2026, 12, 1)), 9)])
    clock.advance(days=1)
    assert set(registered(svc.tick())) == {"R3|unemployment-registration"}


def test_a_weather_alert_sends_grid_workers_to_the_elderly_living_alone_in_it(tmp_path) -> None:
    svc = start("discover", tmp_path)
    alone = replace(BASE, resident_id="R9", birth_date=date(1940, 3, 3), lives_alone=True)
    alert = ev.WeatherAlertIssued(alert_id="cold-1", kind="cold-wave", starts=DAY, ends=date(2026, 12, 23), grids=(GRID_A,))
    svc.feed([base_record(alone, 1), record_of(Envelope.origin(alert, source="registry", ticket_id="cold-1"))])
    assert set(registered(svc.feed([scan_request(DAY, 1)]))) == {"R9|elderly-alone-weather-visit"}
    assert svc.feed([scan_request(date(2026, 12, 21), 2)]) == []  # one visit per alert


def test_life_events_fire_their_rules_once_and_a_newborn_goes_to_registration_and_insurance(tmp_path) -> None:
    svc = start("discover", tmp_path)
    first = registered(svc.feed([record_of(life_event("R-5", "birthday", age=70))]))
    assert set(first) == {"R-5|old-age-allowance-70"}
    repeat = life_event("R-5", "birthday", age=70).model_copy(update={"id": "another-delivery-of-the-same-fact"})
    assert svc.feed([record_of(repeat)]) == []
    baby = {t.proactive_rule: t.category for t in registered(svc.feed([record_of(life_event("R-6", "newborn"))])).values()}
    assert baby == {"newborn-household-registration": "public-security.household-registration",
                    "newborn-medical-insurance": "social-security.social-insurance"}


def test_triage_routes_a_proactive_ticket_to_the_residents_grid_with_the_department_assisting() -> None:
    catalogue = load_catalogue()
    ticket = ev.RegisteredTicket(channel=ev.Channel.proactive, text="x", caller=ev.CallerRef(pseudonym="R1"),
                                 location=ev.Location(grid=GRID_A), category="civil-affairs.elderly-services",
                                 urgency=ev.Urgency.normal, submitted_at=datetime(2026, 12, 20, tzinfo=UTC),
                                 proactive_rule="old-age-allowance-80")
    routed = classified(ticket, "civil-affairs.elderly-services", 1.0, "rule", catalogue).routing
    assert (routed.lead, routed.level) == (GRID_A, "grid") and "civil-affairs" in routed.co_units
    complaint = classified(ticket.model_copy(update={"proactive_rule": None}), "civil-affairs.elderly-services", 1.0, "rule",
                           catalogue).routing
    assert complaint.lead != GRID_A  # an ordinary complaint still goes the category's way
    returned = classified(ticket, "civil-affairs.elderly-services", 1.0, "rule", catalogue, excluding=(GRID_A,)).routing
    assert returned.lead != GRID_A
