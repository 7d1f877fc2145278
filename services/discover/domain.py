"""Registration, privacy masking, repeat detection and proactive rules. Pure: no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from contracts import events as ev
from domain import repeats
from domain.catalogue import Catalogue
from domain.classifier import seed_examples
from domain.privacy import mask_phone, phone_digits, pseudonym
from domain.residents.records import Resident
from domain.residents.rules import Firing, Rule, firings


def caller_ref(caller: ev.Caller, key: str | None) -> ev.CallerRef:
    """What may be seen of a caller of an intake record written before intake sealed callers (it carries
    the clear phone): the masked phone, and a pseudonym only when a key is configured."""
    if not caller.phone:
        return ev.CallerRef(anonymous=True)
    return ev.CallerRef(pseudonym=pseudonym(key, phone_digits(caller.phone)) if key else None,
                        masked_phone=mask_phone(caller.phone))


def registered_ticket(s: ev.TicketSubmitted, key: str | None, proactive_rule: str | None = None) -> ev.RegisteredTicket:
    """Intake's caller reference when it made one (discover never sees the phone then), else one made here."""
    ref = s.caller_ref if s.caller_ref is not None else caller_ref(s.caller, key)
    return ev.RegisteredTicket(channel=s.channel, text=s.text, caller=ref, location=s.location,
                               category=s.category, urgency=s.urgency, submitted_at=s.submitted_at,
                               proactive_rule=proactive_rule, external_id=s.external_id,
                               reported_by=s.reported_by)


# ---------------------------------------------------------------- repeat detection (domain.repeats)

def similarity_for(catalogue: Catalogue) -> repeats.TextSimilarity:
    """Text similarity whose idf is counted over the catalogue's seed sentences: the filler complaints wrap
    around a problem ("已经好几天了，请尽快处理") weighs little, the problem's words much."""
    return repeats.TextSimilarity.fit(e.text for e in seed_examples(catalogue))


def confident_guesses(classifier: Any, texts: list[str], min_confidence: float) -> list[str | None]:
    """The classifier's category for each text when it is sure enough, else None (no gate on the category)."""
    if not texts:
        return []
    return [p.category if p.confidence >= min_confidence else None for p in classifier.predict_many(texts)]


def complaint(ticket_id: str, text: str, category: str | None, location: ev.Location, submitted_at: datetime) -> repeats.Complaint:
    return repeats.Complaint(ticket_id=ticket_id, text=text, submitted_at=submitted_at, category=category,
                             grid=location.grid, address=location.address, lat=location.lat, lon=location.lon)


def place_key(location: ev.Location) -> str | None:
    """Where to look for repeats: the grid when known, else a ~1 km cell of the coordinate, else the address
    (`repeats.same_place` then decides within it)."""
    if location.grid:
        return f"grid:{location.grid}"
    if location.lat is not None and location.lon is not None:
        return f"cell:{round(location.lat, 2)}:{round(location.lon, 2)}"
    if location.address:
        return f"addr:{repeats.address_key(location.address)}"
    return None


# ---------------------------------------------------------------- proactive rules ("the policy finds the person")
# The rules are data (domain/residents/rules.v1.yaml); here: which firings a life event or a scan makes,
# and the ticket each one becomes. A firing's key (resident, rule, occasion) names its ticket, so a resident
# is never contacted twice for one entitlement, whatever re-runs the scan or replays the log.

UNKNOWN_NAME = "居民"  # a life event's resident the register has not sent yet: no surname to show

# Which rules' triggers a life event can set off (the rest need the base record's fields or an alert).
_TRIGGERS_OF_EVENT = {"birthday": ("birthday",), "newborn": ("recent",), "unemployed": ("since",),
                      "disability-registered": ("state",)}


def resident_of(record: ev.ResidentBaseRecorded) -> Resident:
    return Resident(**record.model_dump(exclude={"event_type"}))


def resident_from_event(event: ev.ResidentLifeEventRecorded, known: Resident | None) -> Resident:
    """The resident a life event is about: the register's record when discover has it, else what the event says
    (a newborn is not registered nor insured yet; an unemployed person not registered as such)."""
    day = event.occurred_on.date()
    if known is not None:
        return replace(known, unemployed_since=known.unemployed_since or (day if event.kind == "unemployed" else None))
    born = day if event.kind == "newborn" else _years_before(day, event.age or 0)
    return Resident(resident_id=event.resident_ref, display_name=UNKNOWN_NAME, birth_date=born, sex="F", household_id=None,
                    house_id="", address=event.location.address or "", grid_id=event.location.grid or "",
                    unemployed_since=day if event.kind == "unemployed" else None,
                    household_registered=event.kind != "newborn", medical_insured=event.kind != "newborn",
                    disability_kind="multiple" if event.kind == "disability-registered" else None,
                    disability_grade=None)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a common year
        return day.replace(year=day.year - years, day=28)


def life_event_firings(event: ev.ResidentLifeEventRecorded, known: Resident | None, rules: tuple[Rule, ...]) -> list[Firing]:
    """The firings of the rules a life event can set off, on the day it happened."""
    triggers = _TRIGGERS_OF_EVENT.get(event.kind, ())
    resident = resident_from_event(event, known)
    return firings(resident, [r for r in rules if r.trigger in triggers], event.occurred_on.date())


def proactive_ticket_id(key: str) -> str:
    """The firing's key as a ticket id: the same firing is the same ticket, on any run."""
    return "P-" + hashlib.sha256(key.encode()).hexdigest()[:12].upper()


def proactive_ticket(firing: Firing, category_exists: bool, at: datetime) -> ev.RegisteredTicket:
    """A task for the resident's grid worker: who, what and by when, in the rule's words."""
    r = firing.resident
    return ev.RegisteredTicket(
        channel=ev.Channel.proactive, text=firing.text(), caller=ev.CallerRef(pseudonym=r.resident_id),
        location=ev.Location(grid=r.grid_id or None, address=r.address or None),
        category=firing.rule.category if category_exists else None, urgency=ev.Urgency.normal,
        submitted_at=at, proactive_rule=firing.rule.rule_id,
    )
