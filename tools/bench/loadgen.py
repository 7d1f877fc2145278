"""An HTTP load generator as its own process: `python -m tools.bench.loadgen < job.json > result.json`.

Why not httpx in the benchmark process: on 2 cores the client itself was the bottleneck (httpx spends
about as much CPU per request as the server, and it shared an event loop with the benchmark's Kafka
watcher). This speaks HTTP/1.1 with keep-alive over plain asyncio streams, one connection per
concurrent client, and does nothing per request but write the prepared bytes and parse the status line
and Content-Length, so its cost per request is a small fraction of the server's. Its own ceiling is
measured against a trivial endpoint (GET /health) in the same run, so a reader can tell whether a rate
is the server's or the client's.

Job (JSON on stdin): host, port, method, path, headers {name: value}, bodies [JSON objects, used round
robin; none for GET], concurrency, seconds, idempotency_keys (true: every request carries an Idempotency-Key
of its own, as a careful app's do). Result (JSON on stdout): requests, by_status, errors,
seconds, requests_per_s, latency (ms percentiles of the 2xx answers), ticket_ids (from 2xx JSON bodies).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from tools.bench.measure import latency_summary


def request_bytes(job: dict[str, Any], body: dict[str, Any] | None) -> bytes:
    payload = json.dumps(body, ensure_ascii=False).encode() if body is not None else b""
    head = [f"{job.get('method', 'GET')} {job['path']} HTTP/1.1", f"Host: {job['host']}:{job['port']}",
            *(f"{k}: {v}" for k, v in job.get("headers", {}).items())]
    if job.get("idempotency_keys"):
        head.append(f"Idempotency-Key: {KEY_SLOT.decode()}")
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length) if length else b""


KEY_SLOT = b"#" * 20  # filled per request with a unique key of the same length (the request's bytes stay valid)


async def client(job: dict[str, Any], requests: list[bytes], offset: int, stop_at: float, out: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection(job["host"], job["port"])
    i = offset
    keyed = bool(job.get("idempotency_keys"))
    try:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            request = requests[i % len(requests)]
            writer.write(request.replace(KEY_SLOT, b"%06d%014d" % (offset % 10**6, i), 1) if keyed else request)
            i += 1
            try:
                status, body = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                out["errors"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(job["host"], job["port"])
                continue
            out["by_status"][status] = out["by_status"].get(status, 0) + 1
            if 200 <= status < 300:
                out["latencies"].append(time.perf_counter() - started)
                if job.get("collect_ticket_ids") and body:
                    out["ticket_ids"].append(json.loads(body)["ticket_id"])
    finally:
        writer.close()


async def run(job: dict[str, Any]) -> dict[str, Any]:
    bodies = job.get("bodies") or [None]
    requests = [request_bytes(job, body) for body in bodies]
    out: dict[str, Any] = {"by_status": {}, "errors": 0, "latencies": [], "ticket_ids": []}
    concurrency = int(job.get("concurrency", 16))
    started = time.perf_counter()
    stop_at = time.monotonic() + float(job.get("seconds", 5))
    await asyncio.gather(*(client(job, requests, i * 7919, stop_at, out) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    ok = len(out["latencies"])
    cpu = time.process_time()
    return {"requests": sum(out["by_status"].values()), "ok": ok, "by_status": out["by_status"], "errors": out["errors"],
            "seconds": round(elapsed, 2), "requests_per_s": round(ok / elapsed, 1), "concurrency": concurrency,
            "latency": latency_summary(out["latencies"]), "client_cpu_s": round(cpu, 2), "ticket_ids": out["ticket_ids"]}


def main() -> None:
    job = json.load(sys.stdin)
    try:
        import uvloop  # a faster loop when installed; the client's own ceiling is measured either way

        result = uvloop.run(run(job))
    except ImportError:
        result = asyncio.run(run(job))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
