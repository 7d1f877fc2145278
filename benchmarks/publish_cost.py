"""Client CPU per acknowledged publish, the way the HTTP doors publish (intake's ticket record and every audited
call's audit record): FastStream's `broker.publish` awaited until the broker acknowledges, bounded by the door's
timeout, 16 publishers at once like the bench's HTTP load. Starts its own broker (stopped at the end) and
interleaves the variants in one run:

* `wait_for`: the bound as `asyncio.wait_for(broker.publish(...))` (before stop 28: a task per publish);
* `timeout scope`: `services.common.kafka.publish_acknowledged` as it is now (`asyncio.timeout`);
* `unbounded`: `broker.publish` awaited with no bound at all (the floor).

    .venv/bin/python benchmarks/publish_cost.py [--publishes 4000] [--rounds 4] [--kafka-port 27192]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faststream.kafka import KafkaBroker  # noqa: E402

from contracts.codec import KafkaRecord  # noqa: E402
from contracts.topics import TopicSpec  # noqa: E402
from services.common.kafka import ensure_topics, make_broker, publish_acknowledged  # noqa: E402
from services.common.settings import ServiceSettings  # noqa: E402
from tools.bench.config import BenchConfig  # noqa: E402
from tools.bench.hub import BenchHub  # noqa: E402

TOPIC, CONCURRENCY, TIMEOUT_S = "publish-cost", 16, 5.0
# About the size of an intake record: a 900-byte value and the CloudEvents headers the codec writes.
VALUE = b'{"text":"' + "路灯不亮".encode() * 75 + b'"}'
HEADERS = [("ce_id", b"0f6c8f6e3b6a4c1e9d2b7a5c4e3f2a1b"), ("ce_type", b"cityops.ticket.submitted"),
           ("ce_source", b"/cityops/intake"), ("ce_time", b"2026-12-04T10:00:00Z"), ("ce_specversion", b"1.0")]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def record(i: int) -> KafkaRecord:
    return KafkaRecord(key=f"T-{i % 997:04d}".encode(), value=VALUE, headers=HEADERS)


def variants(broker: KafkaBroker) -> dict[str, Callable[[int], Awaitable[None]]]:
    async def wait_for(i: int) -> None:
        r = record(i)
        await asyncio.wait_for(broker.publish(r.value, TOPIC, key=r.key, headers={k: v.decode() for k, v in r.headers}),
                               timeout=TIMEOUT_S)

    async def timeout_scope(i: int) -> None:
        await publish_acknowledged(broker, record(i), TOPIC, timeout_s=TIMEOUT_S)

    async def unbounded(i: int) -> None:
        r = record(i)
        await broker.publish(r.value, TOPIC, key=r.key, headers={k: v.decode() for k, v in r.headers})

    return {"wait_for": wait_for, "timeout scope": timeout_scope, "unbounded": unbounded}


async def measure(publish: Callable[[int], Awaitable[None]], n: int) -> tuple[float, float]:
    """(publishes a second, client CPU µs per publish) for n acknowledged publishes by CONCURRENCY publishers."""
    numbers = iter(range(n))

    async def publisher() -> None:
        for i in numbers:
            await publish(i)

    started, cpu = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(publisher() for _ in range(CONCURRENCY)))
    wall, used = time.perf_counter() - started, cpu_seconds() - cpu
    return n / wall, used / n * 1e6


async def compare(hub: BenchHub, publishes: int, rounds: int) -> None:
    await ensure_topics(hub.bootstrap, [TopicSpec(TOPIC, "publish_cost.py", (), partitions=6)])
    broker = make_broker(ServiceSettings(service_name="intake", kafka_bootstrap=hub.bootstrap))
    await broker.start()
    try:
        chosen = variants(broker)
        await measure(chosen["unbounded"], publishes // 4)  # warm-up: metadata, connections
        for round_ in range(rounds):
            for name, publish in chosen.items():
                rate, cpu_us = await measure(publish, publishes)
                print(f"round {round_} {name:14s} {rate:8,.0f} publishes/s  {cpu_us:5.0f} µs client CPU a publish",
                      flush=True)
    finally:
        await broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--kafka-port", type=int, default=27192)
    parser.add_argument("--state-dir", type=Path, default=Path(".state/publish-cost"))
    args = parser.parse_args()
    cfg = BenchConfig(kafka_port=args.kafka_port, state_dir=args.state_dir.resolve())
    shutil.rmtree(cfg.state_dir, ignore_errors=True)
    cfg.state_dir.mkdir(parents=True)
    hub = BenchHub(cfg)
    try:
        hub.start_broker()
        asyncio.run(compare(hub, args.publishes, args.rounds))
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
