"""One raw aiokafka hop: a producer sends records at a fixed rate and a consumer of the same topic notes when
each arrives (send -> seen) and when the broker acknowledged it (send -> ack).

The ceiling phase measures it on the idle hub (tools/bench/ceiling.py). The half-capacity phase measures it again
while the hub works, in a process of its own (`python -m tools.bench.probe_hop`), so the bench's own load
generator does not delay it: that is what a hop costs on this loaded machine and broker before any of the
pipeline's own work, the floor a step's p50 is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from tools.bench.kafka_io import assigned_consumer, make_producer
from tools.bench.measure import latency_summary

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]
# The topic both hops use (created by the ceiling phase), and the loaded hop's rate: low enough to add no load.
HOP_TOPIC = "bench.hop.v1"
LOADED_HOP_RATE = 10.0
# The line the probe process prints once its clients are connected and it starts sending.
READY = "probe-ready"


async def relay_latency(bootstrap: str, topic: str, records: Sequence[Record], rate: float, n: int,
                        linger_ms: int, announce_ready: bool = False) -> dict[str, Any]:
    """Send `n` of `records` (cycled) to `topic` at `rate` per second; send -> seen and send -> ack summaries."""
    consumer = await assigned_consumer(bootstrap, [topic], from_end=True, fetch_max_wait_ms=50)
    producer = make_producer(bootstrap, linger_ms)
    sent: dict[bytes, float] = {}
    seen: list[float] = []
    acks: list[float] = []
    run = f"{time.time_ns():x}"  # keys of this run only: an earlier probe's records may still be in the topic

    async def watch() -> None:
        while len(seen) < n:
            batch = await consumer.getmany(timeout_ms=500)
            now = time.time()
            seen.extend(now - sent[r.key] for recs in batch.values() for r in recs if r.key in sent)

    try:
        await producer.start()  # inside: a producer that cannot start still closes the consumer
        if announce_ready:
            print(READY, flush=True)
        reader = asyncio.create_task(watch())
        loop = asyncio.get_running_loop()
        start = loop.time()
        pending = []
        for i in range(n):
            delay = start + i / rate - loop.time()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            _, value, headers = records[i % len(records)]
            key = f"hop-{run}-{i}".encode()
            sent_at = time.time()
            sent[key] = sent_at
            future = await producer.send(topic, value, key=key, headers=headers)
            future.add_done_callback(lambda _f, t=sent_at: acks.append(time.time() - t))
            pending.append(future)
        await asyncio.gather(*pending)
        await asyncio.wait_for(reader, timeout=60)
    finally:
        await producer.stop()
        await consumer.stop()
    return {"offered_per_s": rate, "records": n, "send_to_seen": latency_summary(seen), "send_to_ack": latency_summary(acks)}


async def start_probe(bootstrap: str, topic: str, rate: float, seconds: float, linger_ms: int,
                      record_bytes: int, connect_timeout_s: float = 60) -> asyncio.subprocess.Process:
    """Start the probe process and return once it sends (its clients connected); `probe_result` collects it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.bench.probe_hop", "--bootstrap", bootstrap, "--topic", topic, "--rate", str(rate),
        "--seconds", str(seconds), "--linger-ms", str(linger_ms), "--record-bytes", str(record_bytes),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=connect_timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"the hop probe did not connect within {connect_timeout_s:.0f} s") from None
    if line.decode().strip() != READY:
        await process.wait()
        error = (await process.stderr.read()).decode(errors="replace")[-2000:] if process.stderr else ""
        raise RuntimeError(f"the hop probe failed to start: {line!r} {error}")
    return process


async def probe_result(process: asyncio.subprocess.Process, timeout_s: float = 120) -> dict[str, Any]:
    """The probe's summary (killed, with an error, if it does not end in time)."""
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        return {"error": f"the hop probe did not finish within {timeout_s:.0f} s"}
    if process.returncode != 0:
        return {"error": f"the hop probe exited with {process.returncode}: {err.decode(errors='replace')[-2000:]}"}
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True, help="An existing topic this principal may write and read.")
    parser.add_argument("--rate", type=float, default=10.0, help="Records per second.")
    parser.add_argument("--seconds", type=float, default=20.0, help="How long it sends.")
    parser.add_argument("--linger-ms", type=int, default=1)
    parser.add_argument("--record-bytes", type=int, default=760, help="Size of each record's value.")
    args = parser.parse_args(argv)
    records: list[Record] = [(b"", b"x" * args.record_bytes, [("ce_type", b"bench.probe")])]
    n = max(1, int(args.rate * args.seconds))
    result = asyncio.run(relay_latency(args.bootstrap, args.topic, records, args.rate, n, args.linger_ms,
                                       announce_ready=True))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
