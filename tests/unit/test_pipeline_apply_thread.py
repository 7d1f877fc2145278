"""Where a consumer's batch is applied (services/common/pipeline.py `_apply_where_cheapest`): a small batch on
SQLite on the event loop's own thread, a larger one, one on a store whose write lock is held, or any when the
setting is 0, in a worker thread. The state it leaves is the same either way
(test_pipeline_batches.py compares stores fed in batches of every size)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session

from services.common.pipeline import EventPipeline, write_lock
from services.sla.models import SlaFactRow
from tests.unit.test_pipeline_batches import _records, _sla_pipeline, _stories


def _noting_threads(pipeline: EventPipeline) -> list[int]:
    threads: list[int] = []
    real = pipeline._apply

    def noting(*args: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args)

    pipeline._apply = noting  # type: ignore[method-assign]
    return threads


def _facts(pipeline: EventPipeline) -> int:
    with Session(pipeline.engine) as session:
        return len(session.exec(select(SlaFactRow)).all())  # type: ignore[call-overload]


@pytest.mark.parametrize(("batch", "limit", "on_loop"), [(3, 8, True), (8, 8, True), (9, 8, False), (1, 0, False)])
async def test_small_batches_are_applied_on_the_loop_and_larger_ones_in_a_worker_thread(tmp_path, batch, limit, on_loop):
    pipeline = _sla_pipeline(tmp_path, "sla")
    pipeline.settings = pipeline.settings.model_copy(update={"apply_on_loop_max_records": limit})
    threads = _noting_threads(pipeline)
    await pipeline.handle_records(_records(_stories(3))[:batch])
    assert threads and all((t == threading.get_ident()) is on_loop for t in threads)
    assert _facts(pipeline) > 0  # the batch was applied, wherever


async def test_a_small_batch_goes_to_a_worker_thread_while_another_transaction_holds_the_write_lock(tmp_path):
    pipeline = _sla_pipeline(tmp_path, "sla")
    threads = _noting_threads(pipeline)
    taken = threading.Event()

    def hold() -> None:
        with write_lock(pipeline.engine):
            taken.set()
            time.sleep(0.05)

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait(5)
    try:
        await pipeline.handle_records(_records(_stories(1))[:2])
    finally:
        holder.join()
    assert threads and threads[0] != threading.get_ident()
    assert _facts(pipeline) > 0
