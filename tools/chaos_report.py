"""The findings of a chaos run: gathered after the drain, printed as a table, judged for the exit code."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import typer

from tools.chaos_audit import check_projections, dead_letters, read_log_facts, rows_left

if TYPE_CHECKING:
    from tools.chaos import ChaosConfig, ChaosHub, Kill, Load

SAMPLE = 20  # ids listed per finding; the counts are complete


def audit(hub: ChaosHub, cfg: ChaosConfig, load: Load, kills: list[Kill], drained_s: float, env: Mapping[str, str]) -> dict[str, Any]:
    """Everything the run found, as plain data (printed, written as JSON, judged by `verdict`)."""
    facts = asyncio.run(read_log_facts(hub.bootstrap))
    accepted = set(load.accepted.values())
    closed = facts.closed_tickets()
    lost = sorted(accepted - closed)
    never_logged = sorted(accepted - facts.submitted)
    duplicates = facts.duplicates()
    projections = check_projections(cfg.state_dir, hub.bootstrap, env)
    return {
        "config": {k: str(v) if k == "state_dir" else v for k, v in dataclasses.asdict(cfg).items()},
        "kills": [dataclasses.asdict(k) for k in kills],
        "load": {"accepted": len(accepted), "client_retries": load.retries, "refused": load.refused,
                 "abandoned": load.abandoned, "retried_after": load.failures, "retry_answered_another_ticket": load.mismatched},
        "drain_s": round(drained_s, 1),
        "closed": len(accepted & closed),
        "lost": {"count": len(lost), "sample": lost[:SAMPLE]},
        "accepted_never_on_log": {"count": len(never_logged), "sample": never_logged[:SAMPLE]},
        "duplicates": {kind: {"count": len(ids), "sample": ids[:SAMPLE]} for kind, ids in duplicates.items()},
        "undecodable_records": facts.undecodable,
        "dead_letters": asyncio.run(dead_letters(hub.bootstrap)),
        "rows_left": rows_left(cfg.state_dir, hub.supervisor),
        "projections": dataclasses.asdict(projections),
        "processes_down_at_end": {name: code for name, code in hub.supervisor.dead().items()},
    }


def verdict(findings: Mapping[str, Any]) -> list[str]:
    """Why the run failed (empty: it passed). Losses and duplicated effects fail a run; dead letters, rows
    left and an unequal projection are reported for a person to judge, since a run can legitimately have some."""
    failures = []
    if findings["lost"]["count"]:
        failures.append(f"{findings['lost']['count']} accepted tickets never closed")
    if findings["load"]["retry_answered_another_ticket"]:
        failures.append(f"{findings['load']['retry_answered_another_ticket']} retries answered with another ticket id")
    failures += [f"{d['count']} × {kind}" for kind, d in findings["duplicates"].items() if d["count"]]
    return failures


def print_findings(findings: Mapping[str, Any]) -> None:
    load, cfg = findings["load"], findings["config"]
    faults = "broker (3-broker cluster)" if cfg["cluster"] else "broker" if cfg["broker"] else "a random service"
    kills = findings["kills"]
    failed_restarts = [k for k in kills if k["error"]]
    rows = [
        ("load", f"{cfg['rate']}/s for {cfg['duration']:.0f}s"),
        ("faults", f"{len(kills)} × SIGKILL of {faults}, every {cfg['kill_every']:.0f}s: "
                   + ", ".join(k["victim"] for k in kills) + (f" ({len(failed_restarts)} restarts FAILED)" if failed_restarts else "")),
        ("tickets accepted", f"{load['accepted']} (client retries {load['client_retries']}, refused {load['refused'] or 0}, "
                             f"abandoned {load['abandoned']})"),
        ("retried after", ", ".join(f"{why} × {n}" for why, n in sorted(load["retried_after"].items())) or "nothing"),
        ("tickets closed", f"{findings['closed']} (drain {findings['drain_s']:.0f}s)"),
        ("lost (accepted, never closed)", _counted(findings["lost"])),
        ("  of which never on the intake topic", _counted(findings["accepted_never_on_log"])),
        *((f"duplicate: {kind}", _counted(d)) for kind, d in findings["duplicates"].items()),
        ("dead letters", ", ".join(f"{t} {n}" for t, n in findings["dead_letters"].items()) or "0"),
        ("outbox / parked rows left", ", ".join(f"{s} {c}" for s, c in findings["rows_left"].items()) or "0"),
        ("projections rebuilt = live", _projections(findings["projections"])),
        ("processes down at the end", ", ".join(f"{n} ({c})" for n, c in findings["processes_down_at_end"].items()) or "none"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        typer.echo(f"{name:<{width}}  {value}")


def _counted(finding: Mapping[str, Any]) -> str:
    return str(finding["count"]) + (f": {', '.join(finding['sample'])}" if finding["count"] else "")


def _projections(check: Mapping[str, Any]) -> str:
    if check["equal"] is None:
        return f"not checked ({check['detail']})"
    unequal = [t for t, same in check["tables"].items() if not same]
    return ("yes" if check["equal"] else f"NO: {', '.join(unequal)}") + f" ({check['detail']})"
