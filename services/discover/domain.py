"""Registration, privacy masking, repeat detection and proactive rules. Pure: no I/O."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from contracts import events as ev
from domain.privacy import mask_phone, phone_digits, pseudonym

_WORD = re.compile(r"[a-z0-9]+")
_CJK = re.compile(r"[\u4e00-\u9fff]")


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


# ---------------------------------------------------------------- repeat detection

def shingles(text: str) -> frozenset[str]:
    """Character bigrams for Chinese, words and word pairs for English: one measure for both."""
    lowered = text.lower()
    cjk = "".join(_CJK.findall(lowered))
    grams = {cjk[i:i + 2] for i in range(len(cjk) - 1)}
    words = _WORD.findall(lowered)
    grams |= set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}
    return frozenset(grams)


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / math.sqrt(len(a) * len(b))


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


def place_key(location: ev.Location) -> str | None:
    """Where to look for repeats: the grid when known, else a ~1 km cell of the coordinate."""
    if location.grid:
        return f"grid:{location.grid}"
    if location.lat is not None and location.lon is not None:
        return f"cell:{round(location.lat, 2)}:{round(location.lon, 2)}"
    if location.address:
        return f"addr:{location.address.strip().lower()}"
    return None


@dataclass(frozen=True)
class Candidate:
    ticket_id: str
    text: str
    category: str | None
    lat: float | None
    lon: float | None
    submitted_at: datetime


@dataclass(frozen=True)
class RepeatMatch:
    master_ticket_id: str
    similarity: float
    reason: str


def find_master(new: ev.TicketSubmitted, candidates: list[Candidate], *, window: timedelta,
                min_similarity: float, radius_m: float) -> RepeatMatch | None:
    """The open ticket this complaint repeats, if any: same place, same category (when both are
    known), within the window, and similar enough text. The most similar wins; ties go to the oldest."""
    new_grams = shingles(new.text)
    best: RepeatMatch | None = None
    for c in sorted(candidates, key=lambda c: c.submitted_at):
        if abs(new.submitted_at - c.submitted_at) > window:
            continue
        if new.category and c.category and new.category != c.category:
            continue
        if (new.location.lat is not None and c.lat is not None and new.location.lon is not None and c.lon is not None
                and distance_m(new.location.lat, new.location.lon, c.lat, c.lon) > radius_m):
            continue
        score = similarity(new_grams, shingles(c.text))
        if score >= min_similarity and (best is None or score > best.similarity):
            best = RepeatMatch(c.ticket_id, round(score, 3), f"same place, text similarity {score:.2f} within {window}")
    return best


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
