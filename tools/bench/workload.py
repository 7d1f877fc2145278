"""What the benchmark submits: complaint texts the classifier routes with confidence, as intake
records on a uniform schedule or on the NYC 311 sample's own arrival curve."""

from __future__ import annotations

import csv
import json
import random
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.common.settings import REPO_ROOT
from tools.bench.config import MODEL_CACHE, NYC_ATTRIBUTION, NYC_SAMPLE

# ============================================================================================ workload


Location = dict[str, str]


def demo_locations() -> list[Location]:
    """Area paths of the demo complaints, without the grid: a ticket without a grid or coordinate
    has no place to be merged at, so every benchmark ticket is dispatched on its own."""
    from tools.hub import DEMO_COMPLAINTS

    seen: dict[str, Location] = {}
    for _, loc in DEMO_COMPLAINTS:
        trimmed = {k: v for k, v in loc.items() if k != "grid"}
        seen[json.dumps(trimmed, sort_keys=True)] = trimmed
    return list(seen.values())


def classifier_for_bench(service_state: Path, catalogue: Any = None) -> tuple[Any, float]:
    """The classifier the triage service will use, loaded (or trained) by triage's own cache
    (`domain.classifier.cached_default_classifier`) in the services' state dir, so that the benchmark picks
    texts that model routes with confidence. Trained models are kept in .cache/bench between runs."""
    from domain.catalogue import load_catalogue
    from services.triage.settings import TriageSettings

    catalogue = catalogue if catalogue is not None else load_catalogue()
    min_confidence = TriageSettings(state_dir=service_state).min_confidence
    service_state.mkdir(parents=True, exist_ok=True)
    for cached in MODEL_CACHE.glob("triage-default-*.model"):
        shutil.copyfile(cached, service_state / cached.name)
    from domain.classifier import cached_default_classifier

    classifier = cached_default_classifier(service_state, catalogue)
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    for model in service_state.glob("triage-default-*.model"):
        if not (MODEL_CACHE / model.name).exists():
            shutil.copyfile(model, MODEL_CACHE / model.name)
    return classifier, min_confidence


def nyc_rows(path: Path = NYC_SAMPLE) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass
class TextPool:
    """Complaint texts the classifier routes with confidence, so that every benchmark ticket is
    dispatched and none waits for an operator; for other NYC texts, the category an operator would
    pick (the NYC mapping), else a confident text in its place."""

    confident: list[str]
    category_of: dict[str, str | None]   # text -> category an operator would pick (NYC mapping), or None
    confident_set: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.confident_set = set(self.confident)

    @classmethod
    def build(cls, classifier: Any, min_confidence: float, rows: list[dict[str, str]]) -> TextPool:
        from domain.catalogue import load_catalogue
        from services.triage.nyc311 import load_nyc_mapping, nyc_row_text
        from tools.hub import DEMO_COMPLAINTS

        catalogue = load_catalogue()
        mapping = load_nyc_mapping()
        texts: dict[str, str | None] = {t: None for t, _ in DEMO_COMPLAINTS}
        for row in rows:
            texts.setdefault(nyc_row_text(row), mapping.get(row.get("complaint_type", "")))
        ordered = list(texts)
        predictions = classifier.predict_many(ordered)
        confident = [t for t, p in zip(ordered, predictions)
                     if p.confidence >= min_confidence + 0.02 and catalogue.has_category(p.category)]
        return cls(confident, texts)

    def complaint(self, rng: random.Random, locations: list[Location], text: str | None = None) -> tuple[str, str | None, Location]:
        """(text, operator's category or None, location); a given text is kept when it can be routed."""
        location = rng.choice(locations)
        if text is not None and text in self.confident_set:
            return text, None, location
        if text is not None and self.category_of.get(text):
            return text, self.category_of[text], location
        return rng.choice(self.confident), None, location


@dataclass
class Submission:
    event_id: str
    ticket_id: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    at: float = 0.0          # offset in seconds from the start of the feed


def make_submission(text: str, category: str | None, location: Location, rng: random.Random, at: float = 0.0) -> Submission:
    from contracts import codec
    from contracts import events as ev
    from services.intake.domain import ComplaintIn, submission_event

    # Anonymous callers: this feed writes the intake topic directly (it measures the pipeline, not intake),
    # and only intake may seal a caller's name and phone; a plain caller here would be personal data
    # written outside intake's key store, which erasure could not reach.
    complaint = ComplaintIn(text=text, category=category, location=ev.Location(**location))
    envelope = submission_event(complaint, now=datetime.now(UTC), idempotency_key=None)
    record = codec.encode(envelope)
    return Submission(envelope.id, envelope.ticket_id, record.key, record.value, record.headers, at)


def uniform_schedule(pool: TextPool, rng: random.Random, rate: float, n: int) -> list[Submission]:
    """n submissions, evenly spaced at `rate` per second (rate 0: all at once)."""
    locations = demo_locations()
    out = []
    for i in range(n):
        text, category, loc = pool.complaint(rng, locations)
        out.append(make_submission(text, category, loc, rng, at=i / rate if rate else 0.0))
    return out


def nyc_schedule(pool: TextPool, rng: random.Random, rows: list[dict[str, str]], day: str, start: str,
                 speedup: float, seconds: float, source: Path = NYC_SAMPLE) -> tuple[list[Submission], dict[str, Any]]:
    """The sample's own arrivals from `day` at `start` (HH:MM), `speedup` times faster, for `seconds`."""
    from services.triage.nyc311 import nyc_row_text

    t0 = datetime.fromisoformat(f"{day}T{start}:00")
    window = timedelta(seconds=seconds * speedup)
    chosen = sorted(((datetime.fromisoformat(r["created_date"]), r) for r in rows
                     if t0 <= datetime.fromisoformat(r["created_date"]) < t0 + window), key=lambda x: x[0])
    locations = demo_locations()
    out = []
    kept_text = with_category = 0
    for created, row in chosen:
        original = nyc_row_text(row)
        text, category, loc = pool.complaint(rng, locations, text=original)
        kept_text += text == original
        with_category += category is not None
        out.append(make_submission(text, category, loc, rng, at=(created - t0).total_seconds() / speedup))
    per_minute: dict[datetime, int] = {}
    for created, _ in chosen:
        m = created.replace(second=0, microsecond=0)
        per_minute[m] = per_minute.get(m, 0) + 1
    shape = {"source": NYC_ATTRIBUTION, "file": _shown_path(source) if source.exists() else None,
             "window_start": t0.isoformat(), "window_end": (t0 + window).isoformat(), "speedup": speedup,
             "requests": len(out), "mean_rate_per_s": round(len(out) / seconds, 1) if seconds else None,
             "peak_minute_requests": max(per_minute.values()) if per_minute else 0,
             "peak_rate_per_s": round(max(per_minute.values()) * speedup / 60, 1) if per_minute else 0,
             "own_text_classified": kept_text - with_category, "own_text_operator_category": with_category,
             "text_replaced": len(out) - kept_text}
    return out, shape


def _shown_path(path: Path) -> str:
    """A path inside the repository relative to it (results stay comparable across clones), else as given."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)
