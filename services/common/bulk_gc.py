"""Cyclic garbage collection for a bulk job that allocates and keeps many objects (a rebuild).

CPython's collector scans its oldest generation whole each time a quarter more objects have survived into it,
at about 250 ns an object on this project's 2-core machines. A rebuild allocates tens of thousands of tracked
objects a batch (decoded events, facts kept for the fold), so those full scans, re-reading everything kept so
far, took 1.0-1.4 s of a 4.4-5.4 s rebuild of 40,574 events (docs/performance.md, "Stop 26"). Almost nothing
they found was garbage: the job's objects are freed by reference counting, not by the collector.

Within `bulk_collection()` automatic collection is off. After each unit of work the job calls `unit_done()`,
which freezes what is alive (`gc.freeze`, constant time), so no later pass scans it. Every `full_every` units
one full pass (unfreeze, collect, freeze) frees whatever reference cycles formed meanwhile, so memory held by
such garbage is bounded by that many units' worth. On leaving, everything is unfrozen and automatic collection
is restored as it was; the next automatic pass collects the rest.

The switch is process-wide: nested or concurrent users share it, and it is undone when the last one leaves.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_users = 0
_was_enabled = True


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
    global _users, _was_enabled
    with _lock:
        if _users == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _users += 1
    try:
        yield BulkCollector(full_every)
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                gc.unfreeze()
                if _was_enabled:
                    gc.enable()
