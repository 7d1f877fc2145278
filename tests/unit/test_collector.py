"""services.common.collector: a started service's heap frozen; bulk jobs with automatic collection off, survivors
frozen per unit and cycles freed by periodic full passes."""

from __future__ import annotations

import gc
import weakref

import pytest

from services.common import collector as collector_module
from services.common.collector import bulk_collection, freeze_startup_heap, frozen_once_serving, frozen_once_started


@pytest.fixture(autouse=True)
def _nothing_frozen_after():
    yield
    gc.unfreeze()
    gc.enable()
    collector_module._startup_frozen = False


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
