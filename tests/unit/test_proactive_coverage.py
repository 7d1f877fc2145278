"""The board's proactive coverage (services/projections/board.py): per rule, residents qualified (a ticket raised)
and reached (that ticket closed), through the replay API, from events folded by the projection store."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import build_example
from tests.harness.auth import bearer
from tests.harness.replay import replay_api_over

T0 = datetime(2026, 12, 20, 6, tzinfo=UTC)


def registered(ticket_id: str, rule: str | None) -> Envelope[ev.Event]:
    ticket = ev.RegisteredTicket(channel=ev.Channel.proactive if rule else ev.Channel.phone, text="x",
                                 caller=ev.CallerRef(pseudonym=ticket_id), location=ev.Location(grid="grid-east-1-a-1"),
                                 urgency=ev.Urgency.normal, submitted_at=T0, proactive_rule=rule)
    return Envelope.origin(ev.TicketRegistered(ticket=ticket), source="/cityops/discover", ticket_id=ticket_id, time=T0)


def closed(ticket_id: str) -> Envelope[ev.Event]:
    return Envelope.origin(build_example(ev.TicketClosed), source="/cityops/evaluate", ticket_id=ticket_id, time=T0)


def test_qualified_and_reached_per_rule(tmp_path) -> None:
    history = [registered("P-1", "old-age-allowance-80"), registered("P-2", "old-age-allowance-80"),
               registered("P-3", "disability-care-subsidy"), registered("T-1", None), closed("P-1"), closed("T-1")]
    api, _ = replay_api_over(tmp_path, history)
    with TestClient(api, headers=bearer("supervisor")) as http:
        body = http.get("/replay/board/proactive").json()
        assert TestClient(api).get("/replay/board/proactive").status_code == 401
    assert [(r["rule"], r["qualified"], r["reached"]) for r in body] == [
        ("disability-care-subsidy", 1, 0), ("old-age-allowance-80", 2, 1)]
    assert body[1]["reached_rate"] == 0.5
