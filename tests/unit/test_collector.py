"""services.common.collector: a started service's heap frozen, and its batches' survivors once switched on; bulk jobs
with automatic collection off, survivors frozen per unit and cycles freed by periodic full passes."""

from __future__ import annotations

import gc
import weakref

import pytest

from services.common import collector as collector_module
from services.common.collector import (
    bulk_collection,
    freeze_batch_survivors,
    freeze_batch_survivors_as_configured,
    freeze_startup_heap,
    frozen_once_serving,
    frozen_once_started,
    settle_after_batch,
)
from services.common.settings import ServiceSettings


@pytest.fixture(autouse=True)
def _nothing_frozen_after():
    yield
    gc.unfreeze()
    gc.enable()
    collector_module._startup_frozen = False
    freeze_batch_survivors(0)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_collection_is_off_inside_and_restored_after():
    assert gc.isenabled()
    with bulk_collection():
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        with bulk_collection():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_each_unit_freezes_what_is_alive_and_leaving_unfreezes_it():
    with bulk_collection(full_every=100) as collector:
        kept = [Node() for _ in range(100)]
        collector.unit_done()
        assert gc.get_freeze_count() >= len(kept)
    assert gc.get_freeze_count() == 0


def test_a_cycle_that_dies_after_its_unit_is_freed_by_the_next_full_pass():
    with bulk_collection(full_every=3) as collector:
        ref = _cycle()
        collector.unit_done()  # the cycle is alive now (its nodes hold each other): frozen
        collector.unit_done()
        assert ref() is not None  # garbage, but frozen: no pass has looked at it yet
        collector.unit_done()  # third unit: the full pass
        assert ref() is None
        assert collector.full_passes == 1


def test_a_cycle_left_frozen_is_collectable_once_the_job_ends():
    with bulk_collection(full_every=100) as collector:
        ref = _cycle()
        collector.unit_done()
        assert ref() is not None
    gc.collect()
    assert ref() is None


def test_nested_jobs_share_the_switch_until_the_last_one_leaves():
    with bulk_collection() as outer:
        with bulk_collection():
            pass
        assert not gc.isenabled()  # the outer job still runs
        outer.unit_done()
        assert gc.get_freeze_count() > 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_an_exception_in_the_job_still_restores_collection():
    with pytest.raises(RuntimeError), bulk_collection() as collector:
        collector.unit_done()
        raise RuntimeError("boom")
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_full_every_must_be_positive():
    with pytest.raises(ValueError, match="full_every"), bulk_collection(full_every=0):
        pass
    assert gc.isenabled()


def test_a_started_service_heap_is_frozen_and_stays_frozen_after_a_bulk_job():
    alive = [Node() for _ in range(100)]
    freeze_startup_heap()
    frozen = gc.get_freeze_count()
    assert frozen >= len(alive)
    with bulk_collection() as collector:
        collector.unit_done()
    assert gc.get_freeze_count() >= frozen  # the startup heap is frozen again, not left to the full scans
    assert gc.isenabled()


def test_startup_garbage_is_collected_before_the_heap_is_frozen():
    ref = _cycle()  # garbage already: nothing refers to the cycle from outside
    freeze_startup_heap()
    assert ref() is None


async def test_a_service_run_by_cityops_freezes_its_heap_once_started():
    from faststream import FastStream, TestApp
    from faststream.kafka import KafkaBroker, TestKafkaBroker

    broker = KafkaBroker("127.0.0.1:9")  # never connected: the test broker stands in
    app = frozen_once_started(FastStream(broker, logger=None))
    assert gc.get_freeze_count() == 0
    async with TestKafkaBroker(broker), TestApp(app):
        assert gc.get_freeze_count() > 0


async def test_an_http_service_freezes_its_heap_once_its_lifespan_has_started():
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    entered: list[int] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        entered.append(gc.get_freeze_count())  # the service's own start-up runs first
        yield {"ready": True}

    api = frozen_once_serving(FastAPI(lifespan=lifespan))
    async with api.router.lifespan_context(api) as state:
        assert entered == [0]
        assert gc.get_freeze_count() > 0
        assert state == {"ready": True}  # the service's lifespan state is passed on


# ---------------------------------------------------------------------------- a running service's batches


class _Clock:
    """Stands in for time.monotonic in the collector module: the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(collector_module.time, "monotonic", fake)
    return fake


def test_settling_does_nothing_until_a_started_service_switches_it_on():
    kept = [Node() for _ in range(100)]
    settle_after_batch()  # not a started service: nothing frozen
    assert gc.get_freeze_count() == 0
    freeze_batch_survivors(600)
    settle_after_batch()  # switched on, but the startup heap was never frozen (a test, a one-off command)
    assert gc.get_freeze_count() == 0
    assert kept


def test_switched_off_a_started_service_leaves_its_batches_to_the_collector():
    freeze_startup_heap()
    frozen = gc.get_freeze_count()
    kept = [Node() for _ in range(100)]
    freeze_batch_survivors(0)
    settle_after_batch()
    assert gc.get_freeze_count() == frozen
    assert kept


def test_what_survives_a_batch_is_frozen(clock):
    freeze_startup_heap()
    freeze_batch_survivors(600)
    frozen = gc.get_freeze_count()
    kept = [Node() for _ in range(100)]
    clock.now += 1
    settle_after_batch()
    assert gc.get_freeze_count() >= frozen + len(kept)


def test_a_cycle_frozen_with_a_batch_is_freed_by_the_first_settle_after_the_interval(clock):
    freeze_startup_heap()
    freeze_batch_survivors(600)
    ref = _cycle()
    clock.now += 1
    settle_after_batch()  # the cycle is frozen with the batch's survivors, then dies
    clock.now += 598
    settle_after_batch()
    assert ref() is not None  # garbage, but frozen: no full pass yet
    clock.now += 2  # 601 s after the startup's full pass
    settle_after_batch()
    assert ref() is None
    assert gc.get_freeze_count() > 0  # and what is alive is frozen again


def test_a_bulk_job_keeps_its_own_rhythm_while_batches_settle(clock):
    freeze_startup_heap()
    freeze_batch_survivors(600)
    with bulk_collection(full_every=100) as collector:
        ref = _cycle()
        collector.unit_done()
        clock.now += 10_000
        settle_after_batch()  # no full pass inside a bulk job: its units decide
        assert ref() is not None
    gc.collect()
    assert ref() is None


def test_a_negative_interval_is_refused():
    with pytest.raises(ValueError, match="full_pass_every_s"):
        freeze_batch_survivors(-1)


def test_a_process_of_several_services_takes_the_shortest_interval_any_of_them_asks_for():
    assert freeze_batch_survivors_as_configured([ServiceSettings(gc_full_pass_every_s=600),
                                                  ServiceSettings(gc_full_pass_every_s=120)]) == 120
    assert collector_module._full_pass_every_s == 120
    assert freeze_batch_survivors_as_configured([ServiceSettings(gc_full_pass_every_s=600),
                                                  ServiceSettings(gc_full_pass_every_s=0)]) == 600
    assert freeze_batch_survivors_as_configured([ServiceSettings(gc_full_pass_every_s=0)]) == 0
    assert collector_module._full_pass_every_s == 0


def test_by_default_the_read_side_asks_for_it_and_the_workflow_does_not(monkeypatch):
    from services.act.settings import ActSettings
    from services.archiver.settings import ArchiverSettings
    from services.projections.settings import ProjectionsSettings
    from services.sla.settings import SlaSettings

    monkeypatch.delenv("CITYOPS_GC_FULL_PASS_EVERY_S", raising=False)
    read_side = [SlaSettings(), ProjectionsSettings(), ArchiverSettings()]
    assert [s.full_pass_every_s() for s in read_side] == [600, 600, 600]
    assert ActSettings().full_pass_every_s() == 0
    assert freeze_batch_survivors_as_configured([ActSettings()]) == 0
    monkeypatch.setenv("CITYOPS_GC_FULL_PASS_EVERY_S", "0")  # the hub-wide switch turns the read side's off too
    assert freeze_batch_survivors_as_configured([SlaSettings(), ProjectionsSettings()]) == 0


def test_the_setting_names_itself_when_negative(monkeypatch):
    from pydantic import ValidationError

    monkeypatch.setenv("CITYOPS_GC_FULL_PASS_EVERY_S", "-5")
    with pytest.raises(ValidationError, match="gc_full_pass_every_s"):
        ServiceSettings()


@pytest.mark.parametrize("names", [["sla"], ["sla", "projections"], ["act"]])
def test_cityops_service_run_switches_it_on_from_the_settings(monkeypatch, names):
    import tools.run as run_module

    monkeypatch.setenv("CITYOPS_GC_FULL_PASS_EVERY_S", "321")
    monkeypatch.setattr(run_module, "yield_cpu_as_configured", lambda settings: 0)  # this test process keeps its priority
    started: list[object] = []

    def not_started(main) -> None:
        started.append(main)
        main.close()  # the service's coroutine, never awaited: nothing connects

    monkeypatch.setattr(run_module, "run_on_fast_loop", not_started)
    if len(names) > 1:
        import tools.packed as packed

        async def together(apps) -> None:
            return None

        monkeypatch.setattr(packed, "run_together", together)
    run_module.run(names)
    assert started
    assert collector_module._full_pass_every_s == 321
