"""Simulated behaviour of units, callback operators and a supervisor. Pure and seeded: the same
seed and task give the same choices, so demo runs and tests are reproducible."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from contracts import events as ev
from domain.grid_workers import on_the_spot_refusal


@dataclass(frozen=True)
class PlannedAction:
    kind: str  # sign-for, progress, extension, return, complete, on-the-spot, escalate, opinion, callback, decision
    delay_s: float
    detail: dict[str, Any]


def _rng(seed: int, key: str) -> random.Random:
    return random.Random(f"{seed}:{key}")


def plan_task(task: ev.TaskAssigned, s: Any) -> list[PlannedAction]:
    rng = _rng(s.seed, task.task_id)
    plan = [PlannedAction("sign-for", s.sign_delay_s, {})]
    grid_work = plan_grid_work(task, rng, s)
    if grid_work is not None:
        return plan + [grid_work]
    if task.role == ev.Role.lead and not task.final and rng.random() < s.p_return:
        return plan + [PlannedAction("return", s.sign_delay_s + s.work_delay_s / 2,
                                     {"reason": "not within our responsibilities (simulated)"})]
    plan.append(PlannedAction("progress", s.sign_delay_s + s.work_delay_s / 3, {"note": "on site, working on it (simulated)"}))
    if rng.random() < s.p_extension:
        plan.append(PlannedAction("extension", s.sign_delay_s + s.work_delay_s / 2, {"amount": 2, "unit": "wd",
                                                                                      "reason": "parts on order (simulated)"}))
    plan.append(PlannedAction("complete", s.sign_delay_s + s.work_delay_s, {"result": f"handled by {task.unit} (simulated)"}))
    return plan


def plan_opinion(c: ev.ConsultationRequested, unit: str, s: Any) -> PlannedAction:
    agrees = _rng(s.seed, f"{c.consultation_id}:{unit}").random() >= s.p_disagree
    return PlannedAction("opinion", s.sign_delay_s, {"agrees": agrees})


def plan_callback(c: ev.CallbackRequested, ticket_id: str, s: Any) -> PlannedAction:
    rng = _rng(s.seed, f"{ticket_id}:{c.round}")
    satisfied = rng.random() < s.p_satisfied
    return PlannedAction("callback", s.sign_delay_s, {
        "resolved": satisfied, "satisfaction": (ev.Satisfaction.satisfied if satisfied else ev.Satisfaction.unsatisfied).value,
        "round": c.round})


def plan_decision(r: ev.SupervisorReviewRequested) -> PlannedAction:
    """The simulated supervisor names the unit most parties pointed to, else keeps the proposed lead."""
    pointed = [p for _, agrees, p in r.opinions if not agrees and p]
    lead = max(set(pointed), key=pointed.count) if pointed else r.proposed.lead
    return PlannedAction("decision", 0.2, {"lead": lead, "co_units": [u for u in r.proposed.co_units if u != lead],
                                            "level": r.proposed.level.value, "consultation_id": r.consultation_id})


# The reasons a simulated grid worker escalates for, with their weights: mostly "help requested" (求助).
SIMULATED_ESCALATION_REASONS: tuple[tuple[ev.EscalationReason, float], ...] = (
    (ev.EscalationReason.help_requested, 0.6), (ev.EscalationReason.multi_party, 0.2),
    (ev.EscalationReason.needs_enforcement, 0.1), (ev.EscalationReason.safety_risk, 0.1))


def plan_grid_work(task: ev.TaskAssigned, rng: random.Random, s: Any) -> PlannedAction | None:
    """A simulated grid worker leading a small matter of its own grid: with `p_escalate` it sends the matter up
    to the community (reason drawn from SIMULATED_ESCALATION_REASONS), else with `p_on_the_spot` it resolves
    it on the spot; otherwise (None) it is handled as any task. Only where domain/grid_workers.py allows it (an
    agreed plan's deadline stands for a matter whose parties had to agree first)."""
    if task.unit != task.ticket.location.grid or task.final:
        return None
    if on_the_spot_refusal(lead_level="grid", role=task.role.value, needs_consultation=task.resolution_due is not None,
                           proactive=task.ticket.proactive_rule is not None) is not None:
        return None
    draw = rng.random()
    if draw < s.p_escalate:
        reasons, weights = zip(*SIMULATED_ESCALATION_REASONS, strict=True)
        reason = rng.choices(reasons, weights=weights)[0]
        return PlannedAction("escalate", s.sign_delay_s + s.work_delay_s / 2, {
            "to_level": "community", "reason": reason.value, "note": f"{reason.value}: needs the community (simulated)"})
    if draw < s.p_escalate + s.p_on_the_spot:
        return PlannedAction("on-the-spot", s.sign_delay_s + s.work_delay_s / 3,
                             {"result": f"resolved on the spot by {task.unit} (simulated)"})
    return None
