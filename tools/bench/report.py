"""One run's result, its table (every figure with its ratio to the raw-Kafka figure that bounds it)
and the JSON it is written as."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.common.metrics import STAGES
from tools.bench.config import GIB
from tools.bench.measure import ratio

# ============================================================================================ phases


@dataclass
class Result:
    started_at: str
    config: dict[str, Any]
    machine: dict[str, Any]
    kafka: dict[str, Any]
    code: dict[str, Any]
    phases: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, Any] = field(default_factory=dict)
    table: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    result_path: str | None = None


# ============================================================================================ the table


def build_table(res: Result) -> list[dict[str, Any]]:
    p = res.phases
    raw = p.get("ceiling", {})
    hop = raw.get("hop_latency", {})
    hop_seen, hop_ack = hop.get("send_to_seen", {}), hop.get("send_to_ack", {})
    pipe = raw.get("produce_consume_per_s")
    rows: list[dict[str, Any]] = []

    def row(figure: str, value: Any, unit: str, reference: str, r: float | None, target: str = "", met: bool | None = None) -> None:
        rows.append({"figure": figure, "value": value, "unit": unit, "reference": reference, "ratio": r,
                     "target": target, "met": met})

    jit = p.get("jit_warmup")
    if jit and jit.get("rounds"):
        row(f"broker JIT warm-up before measuring: {len(jit['rounds'])} bursts, compiler share of the broker's CPU in the last",
            jit["rounds"][-1]["jit_share"], "share", f"compiler CPU in the warm-up: {jit['jit_cpu_seconds']} s", None)
    row("raw aiokafka produce", raw.get("produce_per_s"), "records/s", "itself", 1.0 if raw.get("produce_per_s") else None)
    row("raw aiokafka consume", raw.get("consume_per_s"), "records/s", "itself", 1.0 if raw.get("consume_per_s") else None)
    row("raw aiokafka produce+consume", pipe, "records/s", "itself", 1.0 if pipe else None)
    row(f"raw hop latency p99 @{hop.get('offered_per_s', 0):.0f}/s", hop_seen.get("p99_ms"), "ms", "itself",
        1.0 if hop_seen.get("p99_ms") else None)

    pl = p.get("pipeline", {})
    ept = pl.get("events_per_ticket")
    ev_s = pl.get("events_per_s")
    r = ratio(ev_s, pipe)
    row("pipeline events/s (all topics, every service caught up)", ev_s, "events/s", "raw produce+consume", r, ">= 0.35 x raw",
        None if r is None else r >= 0.35)
    t_s = pl.get("tickets_per_s")
    row("pipeline tickets/s (intake -> closed, every service caught up)", t_s, "tickets/s",
        f"raw produce+consume / {ept} events per ticket", ratio(t_s, pipe / ept if pipe and ept else None))
    w_s = pl.get("workflow_tickets_per_s")
    row("  workflow alone: tickets/s to the last close", w_s, "tickets/s", "whole hub's rate (x)", ratio(w_s, t_s))
    budget_rows(row, pl, raw)

    low = p.get("latency_low", {})
    for key, label in (("latency", f"intake -> assignment @{res.config.get('rate', 0):.0f}/s"),
                       ("latency_low", f"intake -> assignment @{low.get('offered_per_s') or 0:.0f}/s "
                                       f"({low.get('fraction_of_capacity') or 0:.0%} of capacity)"),
                       ("nyc_curve", f"intake -> assignment, NYC 311 curve x{res.config.get('nyc_speedup', 0):.0f}")):
        if key not in p:
            continue
        lat = p.get(key, {}).get("intake_to_assignment_seen", {})
        for q in (50, 95, 99):
            v = lat.get(f"p{q}_ms")
            limit = {"latency_low": 250}.get(key) if q == 99 else None  # 200/s is above capacity: queueing, no target
            target, met = (f"<= {limit} ms", None if v is None else v <= limit) if limit else ("", None)
            row(f"{label} p{q}", v, "ms", f"raw hop p{q} (x)", ratio(v, hop_seen.get(f"p{q}_ms")), target, met)
    stage_rows(row, low, hop_seen)

    h = p.get("http", {})
    row("HTTP intake POST /tickets", h.get("requests_per_s"), "requests/s", "raw produce", ratio(h.get("requests_per_s"), raw.get("produce_per_s")))
    hl = h.get("latency", {})
    row("HTTP intake p50", hl.get("p50_ms"), "ms", "raw produce ack p50 (x)", ratio(hl.get("p50_ms"), hop_ack.get("p50_ms")))
    p99 = hl.get("p99_ms")
    row("HTTP intake p99", p99, "ms", "raw produce ack p99 (x)", ratio(p99, hop_ack.get("p99_ms")), "<= 500 ms",
        None if p99 is None else p99 <= 500)
    http_alone_rows(row, p.get("http_alone", {}))

    rp = p.get("replay", {})
    bare = rp.get("raw_read_same_log", {}).get("per_s")
    r = ratio(rp.get("events_per_s"), bare)
    row("replay: rebuild of all projections", rp.get("events_per_s"), "events/s", "bare read of the same log", r,
        ">= 0.3 x read", None if r is None else r >= 0.3)
    pg = rp.get("postgresql")
    if pg:
        r = ratio(pg.get("events_per_s"), bare)
        # The target holds only if PostgreSQL's views are the ones SQLite's rebuild made.
        row("replay: rebuild of all projections (PostgreSQL)", pg.get("events_per_s"), "events/s", "bare read of the same log",
            r, ">= 0.3 x read", None if r is None else r >= 0.3 and pg.get("same_checksum_as_sqlite", False))

    mem = res.processes.get("memory_at_fixed_load", {})
    for name, peak in mem.get("peak_bytes", {}).items():
        row(f"peak RSS {name} @{res.config.get('rate', 0):.0f}/s", round(peak / 2 ** 20, 1), "MiB", "share of 2 GiB", ratio(peak, 2 * GIB))
    total = mem.get("sum_of_peaks_bytes")
    if total:
        row("peak RSS whole hub (sum of per-process peaks)", round(total / 2 ** 20, 1), "MiB", "share of 2 GiB",
            ratio(total, 2 * GIB), "< 2048 MiB", total < 2 * GIB)
    return rows


def budget_rows(row: Any, pl: dict[str, Any], raw: dict[str, Any]) -> None:
    """What a closed ticket cost the whole hub in CPU, and the rate that caps on this machine's cores (budget.py),
    against what one record's trip costs when records travel in big batches (the raw produce+consume)."""
    b = pl.get("cpu_budget") or {}
    if not b.get("cpu_ms_per_ticket"):
        return
    trip = raw.get("produce_consume_cpu_us_per_record") or {}
    trip_us = sum(trip.values()) if trip else None
    row("  CPU per closed ticket (whole hub, broker included)", b["cpu_ms_per_ticket"], "ms", "", None)
    row("  CPU per event (whole hub)", b.get("cpu_us_per_event"), "µs", "raw trip CPU per record (x)",
        ratio(b.get("cpu_us_per_event"), trip_us))
    if trip:
        row("  raw trip CPU per record: " + " + ".join(f"{who} {us}" for who, us in trip.items()), trip_us, "µs", "", None)
    row("  broker CPU per event", b.get("broker_us_per_event"), "µs", "raw trip: broker CPU per record (x)",
        ratio(b.get("broker_us_per_event"), trip.get("kafka-broker")))
    row("  records read per event (fan-out)", b["records_read_per_event"], "reads", "", None)
    row(f"  CPU ceiling on {b['cores']} cores", b["ceiling_tickets_per_s"], "tickets/s", "pipeline tickets/s / ceiling",
        ratio(pl.get("tickets_per_s"), b["ceiling_tickets_per_s"]))
    for name, proc in b.get("processes", {}).items():
        per_read = proc.get("us_per_record_read")
        row(f"    {name}: CPU per ticket" + (f" ({proc['records_read_per_ticket']} reads x {per_read} µs)" if per_read else ""),
            proc["cpu_ms_per_ticket"], "ms", "", None)
        if name == "kafka-broker":
            for kind, ms in (b.get("broker_threads") or {}).items():
                row(f"      of which the JVM's {kind}", ms, "ms", "", None)


def http_alone_rows(row: Any, ha: dict[str, Any]) -> None:
    """Intake and the broker only, with a load generator of its own (http_intake.py)."""
    post = ha.get("post_tickets") or {}
    if not post:
        return
    rate, p99 = post.get("requests_per_s"), (post.get("latency") or {}).get("p99_ms")
    ceiling = (ha.get("client_ceiling_get_health") or {}).get("requests_per_s")
    row("HTTP intake alone POST /tickets", rate, "requests/s", "load generator's own ceiling (GET /health)",
        ratio(rate, ceiling), ">= 1,000/s", None if rate is None else rate >= 1000)
    row("HTTP intake alone p99", p99, "ms", "", None, "<= 50 ms", None if p99 is None else p99 <= 50)
    row("HTTP intake alone: intake CPU per request", (ha.get("cpu") or {}).get("cpu_us_per_event", {}).get("intake"),
        "µs", "", None)


WORKFLOW_STEPS = ("discover", "triage", "act")  # the steps between intake and assignment (consult: the parties' answers)


def stage_rows(row: Any, low: dict[str, Any], hop_seen: dict[str, Any]) -> None:
    """Below saturation: a raw hop measured meanwhile, each step's p50 (record to record) against it, and where the
    steps' batches spent the time."""
    loaded = low.get("raw_hop_meanwhile", {})
    loaded_seen = loaded.get("send_to_seen") or {}
    for q in ("p50", "p99"):
        v = loaded_seen.get(f"{q}_ms")
        if v is not None:
            row(f"  raw hop meanwhile {q} ({loaded.get('offered_per_s', 0):g}/s, a process of its own)", v, "ms",
                f"raw hop {q} on the idle hub (x)", ratio(v, hop_seen.get(f"{q}_ms")))
    floor, floor_name = (loaded_seen, "raw hop meanwhile") if loaded_seen.get("p50_ms") else (hop_seen, "raw hop")
    for step in WORKFLOW_STEPS:
        v = low.get("steps", {}).get(step, {}).get("p50_ms")
        if v is not None:
            row(f"  step {step} p50 (input -> output record)", v, "ms", f"{floor_name} p50 (x)",
                ratio(v, floor.get("p50_ms")), "<= 30 ms", v <= 30)
    for consumer, by_stage in low.get("stages", {}).items():
        for q in ("p50", "p99"):
            parts = " / ".join("-" if by_stage.get(s) is None else f"{by_stage[s][q + '_ms']:g}" for s in STAGES)
            row(f"  {consumer} {q} by stage: {' / '.join(STAGES)}", parts, "ms", "", None)
    record_wait_rows(row, low.get("record_waits", {}))


def record_wait_rows(row: Any, record_waits: dict[str, Any]) -> None:
    """Each workflow step's records' wait until their poll, by topic read (records counted): the topic its input comes
    from is the one its step p50 follows, record by record, as the per-batch stages cannot show."""
    for consumer in WORKFLOW_STEPS:
        by_topic = record_waits.get(consumer) or {}
        for q in ("p50", "p99"):
            parts = ", ".join(f"{short_topic(topic)} {_ms(waits, q)} ({waits.get('records', 0)})" for topic, waits in by_topic.items())
            if parts:
                row(f"  {consumer} {q} record wait to its poll, by topic (records)", parts, "ms", "", None)


def short_topic(topic: str) -> str:
    """cityops.triage.v1 -> triage."""
    parts = topic.split(".")
    return ".".join(parts[1:-1]) if len(parts) > 2 and parts[0] == "cityops" else topic


def _ms(figures: dict[str, Any] | None, q: str) -> str:
    value = (figures or {}).get(f"{q}_ms")
    return "-" if value is None else f"{value:g}"


def format_table(rows: list[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 100 else f"{v:,.2f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    header = ("figure", "value", "unit", "ratio", "vs", "target", "met")
    lines = [[r["figure"], fmt(r["value"]), r["unit"], fmt(r["ratio"]), r["reference"], r["target"],
              "" if r["met"] is None else ("yes" if r["met"] else "NO")] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    for line in lines:
        out.append("  ".join((c.rjust(w) if i in (1, 3) else c.ljust(w)) for i, (c, w) in enumerate(zip(line, widths))))
    return "\n".join(out)
