"""The burst's CPU budget: how much CPU a closed ticket costs the whole hub, where, and the rate that caps.

Each event is read by several consumers (a registered ticket by seven), so what the hub spends per ticket is
the sum over processes of (records it read per ticket x CPU per record read), plus the broker's share. Divided
into the machine's cores it gives the ceiling the pipeline cannot pass however its waits are tuned; the
benchmark prints the rate it reached as a share of that ceiling. Records read come from each service's
`cityops_records_read_total` (services/common/metrics.py), scraped before and after the burst.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

READ = "cityops_records_read"


def records_read(text: str) -> float:
    """Records read by every consumer of one process's exposition text."""
    return sum(sample.value for family in text_string_to_metric_families(text) if family.name == READ
               for sample in family.samples if sample.name == READ + "_total")


async def scrape_reads(ports: Mapping[str, int]) -> dict[str, float]:
    """Records read so far, by service (each serves its metrics on a port of its own)."""
    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        async def one(port: int) -> float:
            try:
                return records_read((await client.get(f"http://127.0.0.1:{port}/metrics")).text)
            except httpx.HTTPError:
                return 0.0
        values = await asyncio.gather(*(one(p) for p in ports.values()))
    return dict(zip(ports, values, strict=True))


def cpu_budget(cpu_seconds: Mapping[str, float], reads_before: Mapping[str, float], reads_after: Mapping[str, float],
               tickets: int, events: int, cores: int, broker: str = "kafka-broker",
               bench: str = "bench (this process)") -> dict[str, Any]:
    """Per process (a packed one, "act+evaluate", sums its services' reads) and for the whole hub."""
    reads = {name: reads_after.get(name, 0.0) - reads_before.get(name, 0.0) for name in reads_after}
    processes: dict[str, dict[str, Any]] = {}
    for process, seconds in cpu_seconds.items():
        if process == bench:
            continue
        read = sum(reads.get(member, 0.0) for member in process.split("+"))
        processes[process] = {
            "cpu_seconds": seconds, "records_read": int(read),
            "us_per_record_read": round(seconds * 1e6 / read) if read else None,
            "records_read_per_ticket": round(read / tickets, 1) if tickets else None,
            "cpu_ms_per_ticket": round(seconds * 1000 / tickets, 2) if tickets else None,
        }
    hub_seconds = sum(p["cpu_seconds"] for p in processes.values())
    total_reads = sum(p["records_read"] for p in processes.values())
    per_ticket_ms = hub_seconds * 1000 / tickets if tickets else None
    return {
        "cores": cores, "tickets": tickets, "events": events,
        "cpu_ms_per_ticket": round(per_ticket_ms, 2) if per_ticket_ms else None,
        "cpu_us_per_event": round(hub_seconds * 1e6 / events) if events else None,
        "records_read_per_event": round(total_reads / events, 2) if events else None,
        "broker_us_per_event": round(cpu_seconds.get(broker, 0.0) * 1e6 / events) if events else None,
        "ceiling_tickets_per_s": round(cores * 1000 / per_ticket_ms, 1) if per_ticket_ms else None,
        "ceiling_events_per_s": round(cores * events / hub_seconds, 1) if hub_seconds else None,
        "processes": dict(sorted(processes.items(), key=lambda kv: -kv[1]["cpu_seconds"])),
    }


def broker_threads(used: Mapping[str, float], tickets: int) -> dict[str, float]:
    """The broker's CPU per closed ticket by kind of JVM thread (measure.JvmThreadWatch), largest first."""
    if not tickets:
        return {}
    return {kind: round(seconds * 1000 / tickets, 2) for kind, seconds in sorted(used.items(), key=lambda kv: -kv[1])}


def describe(budget: Mapping[str, Any]) -> str:
    """One paragraph for the run's log."""
    heavy = ", ".join(f"{name} {p['cpu_ms_per_ticket']} ms ({p['records_read_per_ticket']} reads x {p['us_per_record_read']} µs)"
                      if p["us_per_record_read"] else f"{name} {p['cpu_ms_per_ticket']} ms"
                      for name, p in list(budget["processes"].items())[:6])
    threads = budget.get("broker_threads") or {}
    split = ("; the broker's per ticket by thread: " + ", ".join(f"{kind} {ms} ms" for kind, ms in threads.items())) if threads else ""
    return (f"CPU budget: {budget['cpu_ms_per_ticket']} ms of CPU per closed ticket ({budget['cpu_us_per_event']} µs per event, "
            f"each event read {budget['records_read_per_event']} times); on {budget['cores']} cores that caps the hub at "
            f"{budget['ceiling_tickets_per_s']} tickets/s = {budget['ceiling_events_per_s']} events/s. Heaviest: {heavy}{split}")
