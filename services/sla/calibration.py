"""Real due dates from the Baltimore 311 sample: the evidence the catalogue's per-category limits rest on.

Source: City of Baltimore, Open Baltimore 311 ("311 Customer Service Requests"), a 10,000-row sample from
github.com/city-of-baltimore/city-R-training-series (shipped as data/baltimore311/, see its PROVENANCE.md).

Baltimore fixes a due date per request type when the request is created; the span DueDate - CreatedDate is
(almost) constant per type, in natural hours. `due_spans` recovers that span per type, and the real on-time
rate (closed no later than due), which is the benchmark the SLA service's own on-time rates can be read against.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


@dataclass(frozen=True)
class DueSpan:
    request_type: str
    count: int
    modal_hours: float
    modal_share: float
    on_time_rate: float | None


def _parse(text: str) -> datetime | None:
    text = (text or "").strip()
    return datetime.strptime(text, _TIME_FORMAT) if text else None


def due_spans(path: Path) -> list[DueSpan]:
    """Per request type (most frequent first): the modal due span in hours, its share, and the on-time rate."""
    spans: dict[str, Counter[float]] = defaultdict(Counter)
    closed: dict[str, list[bool]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            created, due, close = _parse(row["CreatedDate"]), _parse(row["DueDate"]), _parse(row["CloseDate"])
            if created is None or due is None:
                continue
            kind = row["SRType"]
            spans[kind][round((due - created).total_seconds() / 3600, 1)] += 1
            if close is not None:
                closed[kind].append(close <= due)
    out = []
    for kind, counter in spans.items():
        hours, hits = counter.most_common(1)[0]
        total = sum(counter.values())
        verdicts = closed[kind]
        out.append(DueSpan(kind, total, hours, hits / total, sum(verdicts) / len(verdicts) if verdicts else None))
    return sorted(out, key=lambda d: (-d.count, d.request_type))


# Baltimore request type -> the catalogue category whose resolution limit it informed (as cited in
# domain/catalogue/responsibility.v1.yaml), with Baltimore's due span in natural hours.
EVIDENCE: dict[str, tuple[str, float]] = {
    "BGE-StLight(s) Out": ("city-management.street-light", 96.0),
    "TRM-Street Light Out": ("city-management.street-light", 96.0),
    "TRM-Pothole Repair": ("city-management.road-damage", 48.0),
    "SW-Mixed Refuse": ("city-management.garbage-collection", 24.0),
    "SW-Dirty Street": ("city-management.street-cleaning", 168.0),
    "SW-Dirty Alley": ("city-management.street-cleaning", 168.0),
    "HCD-Illegal Dumping": ("city-management.illegal-dumping", 72.0),
    "FOR-Fallen Limb": ("city-management.trees-greenery", 24.0),
    "HCD-Maintenance Structure": ("housing.property-service", 360.0),
    "WW-Water No Water": ("water.outage", 24.0),
    "WW-Water Leak (Exterior)": ("water.pipe-burst", 48.0),
    "TRT-Traffic Signal Repairs": ("public-security.traffic-signal", 24.0),
    "TRS-Parking Complaint": ("public-security.illegal-parking", 24.0),
    "SW-Rat Rubout": ("health.pest-control", 336.0),
}


def limit_fits_due_span(amount: int, unit: str, hours: float) -> bool:
    """Whether a catalogue limit expresses a Baltimore due span of `hours` natural hours, no more loosely:
    natural hours/minutes between half the span and the span (a hazard may be stricter than Baltimore); working
    days between the span's working days (5 in 7) and its calendar days."""
    if unit in ("h", "m"):
        natural = amount if unit == "h" else amount / 60
        return hours / 2 <= natural <= hours
    if unit == "wd":
        days = hours / 24
        return days * 5 / 7 - 1e-9 <= amount <= days + 1e-9
    return False
