"""`confirm_behind`: a batch's acknowledgements are awaited while the next batch is applied, and nothing about
what is delivered changes: the next batch's outputs go out only after the batch before's are confirmed, a batch's
offsets are committed only once its outputs are, a failed confirmation is retried from the outbox, and a stop
gives up a confirmation that does not come without committing it. Through EventPipeline, no Kafka."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from tests.harness.pipeline import Record
from tests.unit.test_pipeline_failures import OUT, SOURCE, World


class GatedBroker:
    """Takes every record at once (in `sent`, in order) and confirms it only when told."""

    def __init__(self) -> None:
        self.sent: list[Record] = []
        self.waiting: list[asyncio.Future[None]] = []

    async def publish(self, value: bytes, topic: str, *, key: bytes | None = None, headers: dict[str, str] | None = None,
                      **_: Any) -> asyncio.Future[None]:
        self.sent.append(Record(topic, 0, 0, key, value, [(k, v.encode()) for k, v in (headers or {}).items()]))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        return future

    def confirm(self, error: BaseException | None = None) -> None:
        waiting, self.waiting = self.waiting, []
        for future in waiting:
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def keys(self) -> list[bytes | None]:
        return [r.key for r in self.sent if r.topic == OUT]


def _behind(tmp_path: Any) -> tuple[World, GatedBroker]:
    broker = GatedBroker()
    return World(tmp_path, broker=broker, confirm_behind=True), broker  # type: ignore[arg-type]


async def _until(done: Any) -> None:
    for _ in range(200):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def test_the_next_batch_is_applied_before_the_last_is_confirmed_but_sent_only_after_it(tmp_path):
    world, broker = _behind(tmp_path)
    committed: list[str] = []

    async def two_batches() -> None:
        await world.pipeline.handle_records([world.record("lamp", "T-1")], confirmed=lambda: committed.append("first"))
        assert broker.keys() == [b"T-1"] and committed == []  # sent, not confirmed: returned all the same
        second = asyncio.create_task(world.pipeline.handle_records([world.record("road", "T-2")],
                                                                   confirmed=lambda: committed.append("second")))
        await asyncio.sleep(0.05)
        assert len(world.outcomes()) == 2  # the second batch is applied meanwhile...
        assert broker.keys() == [b"T-1"] and not second.done()  # ...and its output waits for the first's confirmation
        broker.confirm()
        await second
        assert committed == ["first"] and broker.keys() == [b"T-1", b"T-2"]
        broker.confirm()
        await world.pipeline.confirm_pending()
        assert committed == ["first", "second"]

    world.run(two_batches())
    assert world.outbox() == []


def test_a_failed_confirmation_is_retried_from_the_outbox_before_the_next_batch_is_sent_and_commits_only_then(tmp_path):
    world, broker = _behind(tmp_path)
    committed: list[str] = []

    async def fail_then_recover() -> None:
        await world.pipeline.handle_records([world.record("lamp", "T-1"), world.record("bench", "T-3")],
                                            confirmed=lambda: committed.append("first"))
        broker.confirm(KafkaConnectionError("simulated: no acknowledgement"))
        second = asyncio.create_task(world.pipeline.handle_records([world.record("road", "T-2")],
                                                                   confirmed=lambda: committed.append("second")))
        await _until(lambda: len(broker.sent) == 4)  # the retry after its backoff (10 ms): the outbox's rows again
        assert committed == [] and sorted(broker.keys()) == [b"T-1", b"T-1", b"T-3", b"T-3"]
        broker.confirm()
        await second
        broker.confirm()
        await world.pipeline.confirm_pending()

    with structlog.testing.capture_logs() as logs:
        world.run(fail_then_recover())
    assert committed == ["first", "second"]
    assert broker.keys()[-1] == b"T-2"  # after the first batch's resend, never before it
    (failed,) = [e for e in logs if e["event"] == "outputs_not_confirmed"]
    assert failed["log_level"] == "error" and failed["events"] == 2 and "no acknowledgement" in failed["error"]
    assert world.outbox() == []


def test_an_output_the_broker_refuses_dead_letters_its_cause_when_confirmed_behind(tmp_path):
    world, broker = _behind(tmp_path)

    async def refused() -> None:
        await world.pipeline.handle_records([world.record("lamp", "T-1")])
        broker.confirm(TopicAuthorizationFailedError(OUT))
        await _until(lambda: len(broker.sent) == 2)  # the dead letter, through the outbox
        broker.confirm()
        await world.pipeline.confirm_pending()

    world.run(refused())
    (dead,) = [r for r in broker.sent if r.topic == SOURCE + ".dlq"]
    assert dead.key == b"T-1" and "TopicAuthorizationFailedError" in (dead.header("dlq_error") or "")
    assert world.outbox() == []


def test_a_stop_gives_up_a_confirmation_that_does_not_come_leaving_the_offsets_and_the_outbox(tmp_path):
    world, broker = _behind(tmp_path)
    committed: list[str] = []

    async def stop_unconfirmed() -> None:
        await world.pipeline.handle_records([world.record("lamp", "T-1")], confirmed=lambda: committed.append("first"))
        await world.pipeline.confirm_pending(timeout_s=0.05)

    with structlog.testing.capture_logs() as logs:
        world.run(stop_unconfirmed())
    assert committed == []
    assert [topic for _, topic in world.outbox()] == [OUT]  # sent again at the next start (recover_outbox)
    assert any(e["event"] == "outputs_unconfirmed_at_stop" for e in logs)


def test_off_by_default_a_batch_returns_only_once_confirmed_and_commits_before_it_returns(tmp_path):
    broker = GatedBroker()
    world = World(tmp_path, broker=broker)  # type: ignore[arg-type]
    committed: list[str] = []

    async def one_batch() -> None:
        batch = asyncio.create_task(world.pipeline.handle_records([world.record("lamp", "T-1")],
                                                                  confirmed=lambda: committed.append("first")))
        await asyncio.sleep(0.05)
        assert not batch.done() and committed == []
        broker.confirm()
        await batch
        assert committed == ["first"]

    world.run(one_batch())
