"""Registration, privacy masking, repeat detection and proactive rules. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts import events as ev
from domain import repeats
from domain.catalogue import Catalogue
from domain.classifier import seed_examples
from domain.privacy import mask_phone, phone_digits, pseudonym


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
                               proactive_rule=proactive_rule, external_id=s.external_id)


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

@dataclass(frozen=True)
class ProactiveRule:
    rule_id: str
    kind: str
    age: int | None
    category: str
    text_zh: str
    text_en: str


PROACTIVE_RULES: tuple[ProactiveRule, ...] = (
    ProactiveRule("elderly-subsidy-70", "birthday", 70, "civil-affairs.elderly-services",
                  "居民年满70周岁，主动告知并协助申领高龄津贴", "Resident turned 70: inform them of the elderly subsidy and help them apply"),
    ProactiveRule("newborn-registration", "newborn", None, "civil-affairs.subsistence-allowance",
                  "新生儿出生，主动告知户籍登记与医保参保", "Newborn: inform the family about household registration and medical insurance"),
)


def matching_rules(event: ev.ResidentLifeEventRecorded) -> list[ProactiveRule]:
    return [r for r in PROACTIVE_RULES if r.kind == event.kind and (r.age is None or r.age == event.age)]


def proactive_ticket(rule: ProactiveRule, event: ev.ResidentLifeEventRecorded, category_exists: bool) -> ev.RegisteredTicket:
    return ev.RegisteredTicket(
        channel=ev.Channel.proactive, text=f"{rule.text_zh} / {rule.text_en}",
        caller=ev.CallerRef(pseudonym=event.resident_ref), location=event.location,
        category=rule.category if category_exists else None, urgency=ev.Urgency.normal,
        submitted_at=event.occurred_on, proactive_rule=rule.rule_id,
    )
