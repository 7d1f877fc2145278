"""Out-of-order arrival, as a property: a service reads several topics, each in order but not in step with
the others. For any order Kafka could deliver the workflow's log in (each topic in its own order, topics
interleaved at random, nothing before what it must follow: `must_come_after`), cut into random batches,
a service ends with the same store and publishes the same records as when it read the log as it was
written. Events that arrive before what they depend on are parked and applied when it comes.

Holds for the services listed here; evaluate and the intake status view did not, until the fixes tested in
test_evaluate_handlers.py and test_intake_status_view.py. Two races between topics are known and left out:
consult, where a ping-pong escalation (sla's topic) and the reroute that came with it (triage's topic) open
either one supervisor review, or a review next to a new consultation, depending on which is read first;
and sla, whose ping-pong escalation carries the level of the routing read last (`from_level`). The status
view's lead can still lag behind in a race between the consult and triage topics.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.harness.pipeline import Log, distinct, start, without_time
from tests.harness.workflow import KeywordClassifier, delivery_order, must_come_after, story_hub

SERVICES = {"discover": {}, "triage": {"classifier": KeywordClassifier()}, "act": {}, "evaluate": {}, "projections": {}}
# evaluate closes a repeat whose merge it reads after its master's closing at once, caused by the merge (with
# its own id, no satisfaction) instead of by the master's callback: there the records are compared by what
# they are (topic, ticket, type), the store exactly.
BY_KIND = {"evaluate"}
BOOKKEEPING = ("processed_events", "parked_events", "outbox")


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Log:
    return story_hub(tmp_path_factory.mktemp("order-stories")).log


def _run(name, records, cuts, directory):
    svc = start(name, directory, **SERVICES[name])
    try:
        out = distinct(svc.feed(records, splits=cuts))
        published = sorted((r.topic, r.key, r.type) for r in out) if name in BY_KIND else sorted(map(without_time, out))
        store = {table: rows for table, rows in svc.snapshot().items() if table not in BOOKKEEPING}
        return published, store, svc.parked(), set(svc.processed().values())
    finally:
        svc.close()


@pytest.mark.parametrize("name", list(SERVICES))
def test_any_delivery_order_ends_in_the_same_store_and_output(name, log, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"order-{name}")
    probe = start(name, workdir, **SERVICES[name])
    records = [r for r in log.records if probe.wants(r)]
    after = must_come_after(probe, records, log)
    probe.close()
    expected_published, expected_store, _, _ = _run(name, records, (), workdir)

    @settings(max_examples=8, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow],
              phases=[Phase.explicit, Phase.generate])  # no shrinking: a smaller random order explains nothing more
    @given(st.randoms(use_true_random=False), st.sets(st.integers(1, len(records) - 1), max_size=8))
    def check(rng, cuts):
        order = delivery_order(records, after, rng)
        assert sorted(r.id for r in order) == sorted(r.id for r in records)
        published, store, parked, outcomes = _run(name, order, cuts, workdir)
        assert parked == [] and outcomes <= {"applied"}
        assert published == expected_published
        assert store == expected_store

    check()
