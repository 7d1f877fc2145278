"""The two redelivery checks every step's handler tests make (one definition, five services).

Kafka redelivers a batch whose offsets were not committed: after a publish that was never confirmed,
the batch must re-send exactly the records a fresh service would publish (same derived ids) and leave
the store as it was; after a confirmed publish it must publish nothing and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.harness.pipeline import by_key
from tests.harness.workflow import inputs


def check_redelivery_after_an_unconfirmed_publish(make: Callable[[], Any], log: Any) -> tuple[Any, dict[str, Any], list[Any]]:
    """Feed the service's inputs with the broker failing the confirmation, then again; return the service,
    its store after the failure and what the second delivery published, for further checks."""
    svc = make()
    records = inputs(svc, log)
    svc.broker.fail_next = True
    with pytest.raises(ConnectionError):
        svc.feed(records)
    store = svc.snapshot()
    resent = svc.feed(records)
    assert resent and by_key(resent) == by_key(make().feed(records))  # the same records, with the same derived ids
    after = svc.snapshot()
    assert after.pop("outbox") == [] and {k: v for k, v in store.items() if k != "outbox"} == after
    return svc, store, resent


def check_redelivery_after_a_confirmed_publish(make: Callable[[], Any], log: Any) -> None:
    svc = make()
    records = inputs(svc, log)
    svc.feed(records)
    store = svc.snapshot()
    assert svc.feed(records) == [] and svc.snapshot() == store
