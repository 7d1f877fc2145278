"""When CPython's cyclic garbage collector looks at what: a long-lived process's startup heap, and bulk jobs.

The collector scans its oldest generation whole each time a quarter more objects have survived into it, at about
250 ns an object on this project's 2-core machines, and nearly everything it scans there is alive: the objects
the services and the rebuild allocate are freed by reference counting, not by the collector. Two cases made those
full scans a measurable share of the CPU (docs/performance.md, "Stop 26"):

* a service's startup heap (imported modules, the catalogue, the classifier: 150,000-210,000 objects) was
  re-scanned for the life of the process. `freeze_startup_heap()`, called once a service has started, moves it
  out of every generation (`gc.freeze`), so the full scans see only what was allocated since;
* a running service keeps growing and churning long-lived state (the projections' memo of 20,000 facts, sla's
  clocks), and each full scan re-read all of it: in the projections' offline replay 23 full scans took 3.1 s of
  its 24.8 s. Once `freeze_batch_survivors()` has switched it on (`cityops service run` does, from the settings'
  `gc_full_pass_every_s`: by default for the read side only), the pipeline calls `settle_after_batch()` after each batch it
  handled, which freezes what is alive then, in constant time, and once every that many seconds first unfreezes
  and scans everything, which frees the reference cycles that formed among the frozen meanwhile (an idle process
  keeps them until its next batch). The workflow steps hold little such state, and freezing their batches made them
  spend more CPU per record in the whole hub (docs/performance.md, "Stop 36"), so they are not switched on;
* a rebuild keeps tens of thousands of facts for its fold, and each full scan re-read all of them. Within
  `bulk_collection()` automatic collection is off; after each unit of work (a batch) the job calls `unit_done()`,
  which freezes what is alive, in constant time. Every `full_every` units one full pass frees whatever reference
  cycles formed meanwhile, so memory held by such garbage is bounded by that many units' worth.

Garbage that is a reference cycle among frozen objects waits for an unfreeze: a bulk job's end, or its next full
pass. Objects freed by reference counting (nearly all) are freed at once, frozen or not.

Both switches are process-wide; bulk jobs running together share one, undone when the last one leaves, and a
startup heap frozen before a bulk job is frozen again after it.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from faststream import FastStream

    from .settings import ServiceSettings

_lock = threading.Lock()
_bulk_users = 0
_was_enabled = True
_startup_frozen = False
_full_pass_every_s = 0.0  # 0: batches' survivors are left to the collector's own thresholds
_last_full_pass = 0.0


def freeze_startup_heap() -> None:
    """Take what the process holds now (a started service) out of the collector's scans for good."""
    global _startup_frozen
    with _lock:
        gc.collect()  # what startup left as garbage goes first, rather than being kept frozen
        gc.freeze()
        _startup_frozen = True
        _note_full_pass()


def _note_full_pass() -> None:
    global _last_full_pass
    _last_full_pass = time.monotonic()


def freeze_batch_survivors(full_pass_every_s: float) -> None:
    """From now on, in a process whose startup heap is frozen, `settle_after_batch()` freezes each batch's
    survivors, with a full pass at most every `full_pass_every_s` seconds; 0 turns it off."""
    global _full_pass_every_s
    if full_pass_every_s < 0:
        raise ValueError("full_pass_every_s must be 0 (off) or more")
    _full_pass_every_s = full_pass_every_s


def freeze_batch_survivors_as_configured(settings: Iterable[ServiceSettings]) -> float:
    """`freeze_batch_survivors` at the shortest interval the process's services ask for (`full_pass_every_s()`),
    so that none keeps cyclic garbage longer than it allows; off when none asks. Returns it."""
    every_s = min((s for s in (c.full_pass_every_s() for c in settings) if s > 0), default=0.0)
    freeze_batch_survivors(every_s)
    return every_s


def settle_after_batch() -> None:
    """Called by a consumer's pipeline after each batch it handled; see the module's docstring. A no-op until
    a started service has switched it on, and while a bulk job runs (the job's units do it then)."""
    if not (_startup_frozen and _full_pass_every_s) or _bulk_users:
        return
    with _lock:
        if time.monotonic() - _last_full_pass >= _full_pass_every_s:
            gc.unfreeze()
            gc.collect()
            _note_full_pass()
        gc.freeze()


def frozen_once_started(service: FastStream) -> FastStream:
    """A consumer service whose startup heap is frozen once it has started (`cityops service run`)."""
    service.after_startup(freeze_startup_heap)
    return service


def frozen_once_serving(api: FastAPI) -> FastAPI:
    """An HTTP service whose startup heap is frozen once its lifespan has started (`cityops intake serve`, the
    bridge, the console). In intake each full scan was a pause of about 130 ms for every request in flight."""
    started = api.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with started(app) as state:
            freeze_startup_heap()
            yield state

    api.router.lifespan_context = lifespan
    return api


class BulkCollector:
    """Marks the units of a bulk job; see the module's docstring."""

    def __init__(self, full_every: int) -> None:
        if full_every < 1:
            raise ValueError("full_every must be at least 1")
        self.full_every = full_every
        self.units = 0
        self.full_passes = 0

    def unit_done(self) -> None:
        self.units += 1
        with _lock:
            if self.units % self.full_every == 0:
                gc.unfreeze()
                gc.collect()
                self.full_passes += 1
            gc.freeze()


@contextmanager
def bulk_collection(full_every: int = 100) -> Iterator[BulkCollector]:
    """Automatic collection off within the block; call `unit_done()` after each unit of work."""
    global _bulk_users, _was_enabled
    with _lock:
        if _bulk_users == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _bulk_users += 1
    try:
        yield BulkCollector(full_every)
    finally:
        with _lock:
            _bulk_users -= 1
            if _bulk_users == 0:
                gc.unfreeze()
                if _startup_frozen:  # a service's startup heap was out of the scans before the job: keep it so
                    gc.collect()
                    gc.freeze()
                if _was_enabled:
                    gc.enable()
