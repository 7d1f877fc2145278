"""One pipeline hop's latency (record in -> record out, as a consumer sees it) at a low offered
load, for the consumer and producer settings that decide it, measured in one run, variants
interleaved (the machine is shared: compare within a run).

A relay EventPipeline (FastStream batch subscriber, real broker) consumes topic A and re-publishes
each event to topic B; a feeder puts events on A at --rate per second; a reader on B notes each
one's arrival.

    .venv/bin/python benchmarks/hop_latency.py --bootstrap 127.0.0.1:59300 --seconds 15 --rounds 2 --partitions 12
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from contracts import codec  # noqa: E402
from contracts import events as ev  # noqa: E402
from contracts.envelope import Envelope  # noqa: E402
from contracts.topics import TopicSpec  # noqa: E402
from services.common import pipeline as pipeline_module  # noqa: E402
from services.common.kafka import ensure_topics, kafka_access, make_broker  # noqa: E402
from services.common.logs import configure_logging  # noqa: E402
from services.common.pipeline import Emit, EventPipeline, HandlerContext, HandlerSpec  # noqa: E402
from services.common.settings import ServiceSettings  # noqa: E402
from services.common.store import create_tables, make_engine  # noqa: E402


def relay(ctx: HandlerContext[str], envelope: Envelope[Any]) -> list[Emit]:
    """Re-publish to the output topic (the spec's deps)."""
    return [Emit(ctx.deps, envelope.caused(envelope.data, source=ctx.source))]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))] if ordered else float("nan")


async def one(bootstrap: str, batch_timeout_ms: int, linger_ms: int, fetch_max_wait_ms: int, busy_min_bytes: int, rate: float,
              seconds: float, partitions: int, naps: bool = False) -> dict[str, float]:
    """One variant; `naps`: FastStream's own batch polling, which sleeps after an empty poll (what the services
    did before services/common/kafka.py `poll_without_naps`)."""
    tag = uuid.uuid4().hex[:8]
    src, out = f"bench.hop.in.{tag}", f"bench.hop.out.{tag}"
    await ensure_topics(bootstrap, [TopicSpec(t, t, (), partitions=partitions) for t in (src, out, src + ".dlq")])
    settings = ServiceSettings(kafka_bootstrap=bootstrap, consumer_group=f"hop-{tag}", batch_timeout_ms=batch_timeout_ms,
                               linger_ms=linger_ms, fetch_max_wait_ms=fetch_max_wait_ms, fetch_busy_min_bytes=busy_min_bytes)
    engine = make_engine(f"sqlite:///{tempfile.mkdtemp()}/hop.db")
    create_tables(engine, [])
    broker = make_broker(settings)
    spec = HandlerSpec(topics=[src], event_types=[ev.TicketSubmitted.event_type], deps=out, handle=relay)
    pipeline = EventPipeline(name="relay", settings=settings, engine=engine, spec=spec)
    with mock.patch.object(pipeline_module, "poll_without_naps", (lambda s: s) if naps else pipeline_module.poll_without_naps):
        pipeline.subscribe(broker)
    reader = AIOKafkaConsumer(**kafka_access(bootstrap).options, group_id=None, fetch_max_wait_ms=20)
    await reader.start()
    reader.assign([TopicPartition(out, p) for p in range(partitions)])
    await reader.seek_to_end()
    producer = AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all", linger_ms=0)
    await producer.start()
    sent: dict[bytes, float] = {}
    gaps: list[float] = []

    async def read() -> None:
        while True:
            batch = await reader.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                for r in records:
                    if r.key in sent:
                        gaps.append(now - sent[r.key])

    async with broker:
        await broker.start()
        await asyncio.sleep(3)  # group joined
        idle_cpu = time.process_time()
        await asyncio.sleep(2)  # nothing to do: what waiting costs
        idle_cpu = (time.process_time() - idle_cpu) / 2
        task = asyncio.create_task(read())
        n = int(rate * seconds)
        start = asyncio.get_running_loop().time()
        for i in range(n):
            delay = start + i / rate - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            env = Envelope.origin(ev.TicketSubmitted(channel="phone", text=f"hop {i}", submitted_at=datetime.now(UTC)),
                                  source="/bench", ticket_id=f"T-{tag}-{i}")
            rec = codec.encode(env)
            sent[rec.key] = time.time()
            await producer.send(src, rec.value, key=rec.key, headers=rec.headers)
        await asyncio.sleep(2)
        task.cancel()
    await producer.stop()
    await reader.stop()
    return {"n": len(gaps), "p50_ms": pct(gaps, 50) * 1000, "p95_ms": pct(gaps, 95) * 1000, "p99_ms": pct(gaps, 99) * 1000,
            "idle_cpu_ms_per_s": idle_cpu * 1000}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=3, help="Partitions of the relay's input and output topics.")
    ap.add_argument("--variants", default="5:1:500:1:nap,200:1:500:1", help="batch_timeout_ms:linger_ms[:fetch_max_wait_ms"
                    "[:fetch_busy_min_bytes]][:nap],... (fetch defaults: the services' settings, 1 = never gather; nap: FastStream's own polling, "
                    "asleep after an empty poll)")
    args = ap.parse_args()
    configure_logging("WARNING", json=False)
    defaults = ServiceSettings()
    variants = [parse_variant(v, defaults.fetch_max_wait_ms, defaults.fetch_busy_min_bytes) for v in args.variants.split(",")]
    for _ in range(args.rounds):
        for bt, linger, fetch_wait, min_bytes, naps in variants:
            r = await one(args.bootstrap, bt, linger, fetch_wait, min_bytes, args.rate, args.seconds, args.partitions, naps)
            print(f"batch_timeout_ms={bt:4d} linger_ms={linger} fetch_max_wait_ms={fetch_wait:3d} fetch_busy_min_bytes={min_bytes:5d} "
                  f"{'naps' if naps else 'no naps'}: "
                  f"n={r['n']} p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; "
                  f"idle CPU {r['idle_cpu_ms_per_s']:.1f} ms/s", flush=True)


def parse_variant(text: str, wait_default: int, min_bytes_default: int) -> tuple[int, int, int, int, bool]:
    parts = text.split(":")
    naps = parts[-1] == "nap"
    numbers = [int(x) for x in (parts[:-1] if naps else parts)]
    wait = numbers[2] if len(numbers) > 2 else wait_default
    min_bytes = numbers[3] if len(numbers) > 3 else min_bytes_default
    return numbers[0], numbers[1], wait, min_bytes, naps


if __name__ == "__main__":
    asyncio.run(main())
