"""What-if: re-run triage over past tickets with another catalogue or classifier, into a scratch store.

Nothing is published: this module has no producer. It reads the log (the registered tickets' texts
and locations, the classifications actually made, the callback outcomes), decides again for each
ticket that was triaged, and reports which tickets would have gone to another lead unit and how
the units' load and league table would change. Results go to a scratch database (one per run),
never to the live store or topics.

Decisions a person made (an operator's category, a manual triage) are kept: a classifier does not
overrule them. Without a classifier the logged categories are kept and only the catalogue's
routing is replayed, which isolates the effect of a catalogue change. The league table 'after'
credits each ticket's recorded callback outcome to its new lead: it shows how the table would read
if the other unit had achieved the same result, not a prediction of what it would have achieved.

The classifier is anything with `predict_many(texts) -> [obj with .category and .confidence]`;
`SavedModel` reads a model file written by the triage classifier's `save` without this module
importing triage (services import only contracts and shared plumbing).
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, Text, insert
from sqlalchemy.engine import Engine

from contracts import events as ev
from contracts.envelope import utcnow
from contracts.topics import EVALUATE, TICKETS, TRIAGE
from domain import rates as rate_rules
from domain.catalogue import Catalogue, UnknownCategoryError
from domain.consultation import consultation_cue
from services.common.progress import Meter

from .domain import Fact, rank
from .logsource import LogSource
from .replay import scan

# The topics a what-if needs: tickets (the registrations: text, place, operator's category), triage (what was
# decided), evaluate (outcomes). Not intake's topic: triage itself classifies the registration, never the
# submission, and only intake, discover and the archiver may read intake's records (issue 11).
WHATIF_TOPICS = tuple(spec.name for spec in (TICKETS, TRIAGE, EVALUATE))
_PERSON_DECIDED = ("operator", "manual")


class Classifier(Protocol):
    def predict_many(self, texts: Sequence[str]) -> Sequence[Any]: ...


@dataclass(frozen=True)
class Guess:
    category: str
    confidence: float


class SavedModel:
    """A classifier file saved by the triage service, read by the classifier's own code in domain/ (the
    saved pipeline refers to its feature functions, and its probabilities need the saved temperature).

    Only load model files you made: joblib is pickle."""

    def __init__(self, path: str | Path) -> None:
        from domain.classifier import ComplaintClassifier, ModelFormatError

        try:
            self._model = ComplaintClassifier.load(path)
        except ModelFormatError as exc:
            raise ValueError(f"{path} is not a cityops complaint classifier model file: {exc}") from exc
        self.path = str(path)
        self.labels = self._model.labels

    def predict_many(self, texts: Sequence[str]) -> list[Guess]:
        if not texts:
            return []
        return [Guess(p.category, p.confidence) for p in self._model.predict_many(list(texts))]


# ---------------------------------------------------------------------------------------------- what the log says

@dataclass
class _Seen:
    """What the log says about one ticket, as far as triage is concerned."""

    text: str | None = None
    location: ev.Location | None = None
    operator_category: str | None = None
    baseline: Fact | None = None  # the first classification that was not a reroute
    outcome: ev.CallbackRecorded | None = None
    outcome_key: tuple[Any, ...] = ()


def _observe(seen: dict[str, _Seen], fact: Fact) -> None:
    s = seen.setdefault(fact.ticket_id, _Seen())
    data = fact.data
    if isinstance(data, ev.TicketRegistered):
        s.text = s.text or data.ticket.text
        s.location = s.location or data.ticket.location
        s.operator_category = s.operator_category or data.ticket.category
    elif isinstance(data, ev.TicketClassified) and data.method != "reroute":
        if s.baseline is None or fact.sort_key < s.baseline.sort_key:
            s.baseline = fact
    elif isinstance(data, ev.CallbackRecorded) and fact.sort_key > s.outcome_key:
        s.outcome, s.outcome_key = data, fact.sort_key


# ---------------------------------------------------------------------------------------------- the run

@dataclass(frozen=True)
class TicketDiff:
    ticket_id: str
    category_before: str
    category_after: str | None
    lead_before: str
    lead_after: str | None
    co_before: tuple[str, ...]
    co_after: tuple[str, ...]
    why: str  # catalogue / classifier / manual-triage / unroutable / unchanged

    @property
    def lead_changed(self) -> bool:
        return self.lead_after != self.lead_before


@dataclass
class UnitChange:
    unit: str
    tickets_before: int
    tickets_after: int
    rank_before: int | None
    rank_after: int | None
    score_before: float | None
    score_after: float | None


@dataclass
class WhatIfReport:
    run_id: str
    catalogue_version: str
    model: str | None
    tickets_considered: int
    not_triaged: int
    diffs: list[TicketDiff] = field(default_factory=list)
    units: list[UnitChange] = field(default_factory=list)
    scratch_url: str | None = None

    @property
    def changed(self) -> list[TicketDiff]:
        return [d for d in self.diffs if d.lead_changed]

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        changed = self.changed
        return {"run_id": self.run_id, "catalogue_version": self.catalogue_version, "model": self.model,
                "tickets_considered": self.tickets_considered, "not_triaged": self.not_triaged,
                "tickets_changed": len(changed), "changed": [asdict(d) for d in changed[:limit]],
                "units": [asdict(u) for u in self.units if u.tickets_before != u.tickets_after
                          or u.rank_before != u.rank_after], "scratch_url": self.scratch_url}


def _route(catalogue: Catalogue, category: str | None, location: Any) -> tuple[str | None, tuple[str, ...]]:
    if category is None:
        return None, ()
    try:
        decision = catalogue.route(category, location)
    except UnknownCategoryError:
        return None, ()
    return decision.lead, tuple(decision.co_units)


def _classification(s: _Seen) -> ev.TicketClassified:
    """A triaged ticket's baseline event: `_observe` keeps only a classification there."""
    data = s.baseline.data if s.baseline is not None else None
    assert isinstance(data, ev.TicketClassified), "a triaged ticket's baseline is its classification"
    return data


def decide(seen: dict[str, _Seen], catalogue: Catalogue, classifier: Classifier | None,
           min_confidence: float) -> list[TicketDiff]:
    """The what-if decision for every ticket that was triaged in the log."""
    triaged = {tid: s for tid, s in sorted(seen.items()) if s.baseline is not None}
    to_predict = [tid for tid, s in triaged.items()
                  if classifier is not None and _classification(s).method not in _PERSON_DECIDED and not s.operator_category]
    texts = [triaged[t].text or "" for t in to_predict]
    guesses = dict(zip(to_predict, classifier.predict_many(texts))) if to_predict and classifier is not None else {}
    diffs = []
    for tid, s in triaged.items():
        before = _classification(s)
        category: str | None = before.category
        why = "catalogue"
        if tid in guesses:
            guess = guesses[tid]
            # As triage decides: an unsure guess waits for an operator, unless the text says several parties must
            # agree (domain.consultation): then the guess routes it and the parties settle the plan.
            sure = guess.confidence >= min_confidence or consultation_cue(s.text or "") is not None
            category, why = (guess.category, "classifier") if sure else (None, "manual-triage")
        lead, co = _route(catalogue, category, s.location or before.ticket.location)
        if lead is None and category is not None:
            why = "unroutable"
        if lead == before.routing.lead and category == before.category:
            why = "unchanged"
        diffs.append(TicketDiff(tid, before.category, category, before.routing.lead, lead,
                                tuple(before.routing.co_units), co, why))
    return diffs


def unit_changes(diffs: Sequence[TicketDiff], seen: dict[str, _Seen], min_n: int) -> list[UnitChange]:
    """Each lead unit's ticket count and league position, before and after."""
    def table(lead_of: dict[str, str | None]) -> tuple[Counter[str], dict[str, Any]]:
        counts: Counter[str] = Counter()
        contributions: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for tid, lead in lead_of.items():
            if lead is None:
                continue
            counts[lead] += 1
            c = contributions[lead]
            c["tasks"] += 1
            outcome = seen[tid].outcome
            if outcome is not None:
                verdict = rate_rules.callback_counts(resolved=outcome.resolved, satisfaction=outcome.satisfaction,
                                                     reasonable_demand=outcome.reasonable_demand)
                for name, value in verdict.as_dict().items():
                    c[name] += value
        ranked = {r.key: r for r in rank((("unit", u, dict(c)) for u, c in contributions.items()), min_n)}
        return counts, ranked

    before_counts, before_rank = table({d.ticket_id: d.lead_before for d in diffs})
    after_counts, after_rank = table({d.ticket_id: d.lead_after for d in diffs})
    units = sorted(set(before_counts) | set(after_counts))
    return [UnitChange(u, before_counts[u], after_counts[u],
                       before_rank[u].rank if u in before_rank else None, after_rank[u].rank if u in after_rank else None,
                       before_rank[u].score if u in before_rank else None, after_rank[u].score if u in after_rank else None)
            for u in units]


async def what_if(log: LogSource, catalogue: Catalogue, *, classifier: Classifier | None = None,
                  model_name: str | None = None, min_confidence: float = 0.0, min_n: int = 20,
                  scratch: Engine | None = None, meter: Meter | None = None,
                  since: datetime | None = None, until: datetime | None = None) -> WhatIfReport:
    """Replay triage over the log with `catalogue` (and `classifier`); write the result to `scratch`."""
    seen: dict[str, _Seen] = {}
    async for _, envelope in scan(log, meter=meter, label="what-if"):
        _observe(seen, Fact.from_envelope(envelope))
    if since or until:
        seen = {t: s for t, s in seen.items() if s.baseline is not None and _within(s.baseline.time, since, until)}
    diffs = decide(seen, catalogue, classifier, min_confidence)
    report = WhatIfReport(run_id=f"{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}", catalogue_version=catalogue.version,
                          model=model_name, tickets_considered=len(diffs),
                          not_triaged=sum(1 for s in seen.values() if s.baseline is None and s.text is not None),
                          diffs=diffs, units=unit_changes(diffs, seen, min_n))
    if scratch is not None:
        save_report(scratch, report)
        report.scratch_url = scratch.url.render_as_string(hide_password=True)
    return report


def _within(moment: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or moment >= since) and (until is None or moment <= until)


# ---------------------------------------------------------------------------------------------- the scratch store

_SCRATCH = MetaData()
RUNS = Table("whatif_runs", _SCRATCH,
             Column("run_id", String, primary_key=True), Column("created_at", DateTime(timezone=True)),
             Column("catalogue_version", String), Column("model", String), Column("tickets_considered", Integer),
             Column("tickets_changed", Integer), Column("not_triaged", Integer))
TICKETS_TABLE = Table("whatif_tickets", _SCRATCH,
                      Column("run_id", String, primary_key=True), Column("ticket_id", String, primary_key=True),
                      Column("category_before", String), Column("category_after", String),
                      Column("lead_before", String), Column("lead_after", String), Column("co_before", Text),
                      Column("co_after", Text), Column("why", String), Column("lead_changed", Boolean))
UNITS_TABLE = Table("whatif_units", _SCRATCH,
                    Column("run_id", String, primary_key=True), Column("unit", String, primary_key=True),
                    Column("tickets_before", Integer), Column("tickets_after", Integer),
                    Column("rank_before", Integer), Column("rank_after", Integer),
                    Column("score_before", Float), Column("score_after", Float))


def save_report(engine: Engine, report: WhatIfReport) -> None:
    """Write a run into its scratch store (a throwaway database: its tables are created, not migrated)."""
    _SCRATCH.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(RUNS).values(run_id=report.run_id, created_at=utcnow(), catalogue_version=report.catalogue_version,
                                         model=report.model, tickets_considered=report.tickets_considered,
                                         tickets_changed=len(report.changed), not_triaged=report.not_triaged))
        _insert_all(conn, TICKETS_TABLE, [{"run_id": report.run_id, **asdict(d), "co_before": ",".join(d.co_before),
                                           "co_after": ",".join(d.co_after), "lead_changed": d.lead_changed}
                                          for d in report.diffs])
        _insert_all(conn, UNITS_TABLE, [{"run_id": report.run_id, **asdict(u)} for u in report.units])


def _insert_all(conn: Any, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    for start in range(0, len(rows), 1000):
        conn.execute(insert(table), rows[start:start + 1000])
