"""Where a service's input is cut into batches must not change what it publishes or what it stores.

For every service with a pipeline, a realistic log (tickets driven down every branch of the workflow by
the services' own handlers, tests/harness/workflow.py) is fed once as a single batch and again cut into
batches at random places (hypothesis); a random subset of the stories is used each time. Compared:
the published records per (topic, key), in order, with their derived ids and payloads (only `ce_time`,
the production time an output takes from the wall clock, is left out, and copies re-sent for a duplicate
input, see `distinct`), what the service's ticks then publish, and every table of its store
(`ServiceHarness.snapshot`).

The examples are derandomised (the same ones every run, so a failure reproduces); raise `max_examples`
locally to search wider. sla's own store-level version of this (fixed cuts over synthetic stories) is in test_pipeline_batches.py;
here sla runs on the workflow's log and its outputs and ticks are compared too.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.envelope import utcnow
from tests.harness.pipeline import Clock, Log, Record, by_key, distinct, start
from tests.harness.workflow import KeywordClassifier, story_hub

# Units simulated with answers both at once (sign-for) and later (the rest, sent by the tick).
UNIT_SETTINGS = {"sign_delay_s": 0.0, "work_delay_s": 60.0, "callbacks": True, "supervisor": True,
                 "p_return": 0.3, "p_extension": 0.3, "p_disagree": 0.3}
SERVICES = {"discover": {}, "triage": {"classifier": KeywordClassifier()}, "consult": {}, "act": {}, "evaluate": {}, "sla": {}, "units": UNIT_SETTINGS,
            "intake-status": {}, "projections": {}, "archiver": {}}
# The stories that belong together: a repeat with its master, the proactive ticket with its resident.
FAMILY_OF = {"T-REPEAT": "T-HAPPY", "T-SPLIT": "T-JOINT", "R-42": "proactive"}


def _family(ticket_id: str | None) -> str:
    return "proactive" if ticket_id and ticket_id.startswith("P-") else FAMILY_OF.get(ticket_id, ticket_id)


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Log:
    return story_hub(tmp_path_factory.mktemp("split-stories")).log


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("split-runs")


def _later_than(records: list[Record]) -> Clock:
    """A clock well after the log: consultations overdue, simulated units due, SLA clocks run out."""
    last = max((r.envelope().time for r in records), default=utcnow())
    return Clock(last + timedelta(days=30))


def _run(name: str, records: list[Record], cuts: frozenset[int], directory: Path) -> tuple:
    """(published, store, published by a tick a month later, store after it)."""
    svc = start(name, directory, clock=Clock(), **SERVICES[name])
    try:
        published = by_key(distinct(svc.feed(records, splits=cuts)))
        stored = svc.snapshot()
        if not svc.ticks:
            return published, stored, {}, stored
        svc.clock.now = _later_than(records).now
        return published, stored, by_key(svc.tick()), svc.snapshot()
    finally:
        svc.close()


@st.composite
def _cuts_and_stories(draw, records: list[Record]) -> tuple[frozenset[str], frozenset[int]]:
    families = sorted({_family(r.ticket_id) for r in records})
    chosen = frozenset(draw(st.sets(st.sampled_from(families), min_size=1)))
    size = sum(1 for r in records if _family(r.ticket_id) in chosen)
    every = draw(st.booleans()) and draw(st.booleans())  # now and then, a batch per record
    cuts = frozenset(range(1, size)) if every else frozenset(draw(st.sets(st.integers(1, max(1, size - 1)), max_size=12)))
    return chosen, cuts


@pytest.mark.parametrize("name", list(SERVICES))
def test_published_records_and_store_do_not_depend_on_where_batches_split(name, log, workdir):
    probe = start(name, workdir, **SERVICES[name])
    records = [r for r in log.records if probe.wants(r)]
    probe.close()
    assert len(records) > 10

    @cache
    def one_batch(chosen: frozenset[str]) -> tuple:
        return _run(name, [r for r in records if _family(r.ticket_id) in chosen], frozenset(), workdir)

    @settings(max_examples=6, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_cuts_and_stories(records))
    def check(drawn: tuple[frozenset[str], frozenset[int]]) -> None:
        chosen, cuts = drawn
        subset = [r for r in records if _family(r.ticket_id) in chosen]
        published, stored, ticked, stored_after_tick = _run(name, subset, cuts, workdir)
        expected = one_batch(chosen)
        assert published == expected[0]
        assert stored == expected[1]
        assert ticked == expected[2]
        assert stored_after_tick == expected[3]

    check()
    full_published, full_store, _, _ = one_batch(frozenset(_family(r.ticket_id) for r in records))
    if name not in ("projections", "archiver", "intake-status"):
        assert full_published, f"{name} published nothing from the log: the property would be empty"
    assert any(rows for table, rows in full_store.items() if table not in ("outbox", "parked_events", "processed_events"))
