"""The board's solved-at-the-lowest-level rate (services/projections/board.py): tickets folded from the events act
writes (TicketHandled's level, resolved_on_the_spot, escalated), read through the replay API."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import build_example
from tests.harness.auth import bearer
from tests.harness.replay import replay_api_over

T0 = datetime(2026, 12, 20, 6, tzinfo=UTC)
EAST, WEST = "grid-east-1-a-1", "grid-west-1-a-1"


def registered(ticket_id: str, grid: str, reported_by: str | None = None) -> Envelope[ev.Event]:
    ticket = ev.RegisteredTicket(channel=ev.Channel.grid_patrol, text="x", caller=ev.CallerRef(anonymous=True),
                                 location=ev.Location(district=f"district-{grid.split('-')[1]}", grid=grid), urgency=ev.Urgency.normal, submitted_at=T0,
                                 reported_by=reported_by)
    return Envelope.origin(ev.TicketRegistered(ticket=ticket), source="/cityops/discover", ticket_id=ticket_id, time=T0)


def handled(ticket_id: str, level: str, *, on_the_spot: bool = False, escalated: bool = False) -> Envelope[ev.Event]:
    data = ev.TicketHandled(round=1, units=("u",), results=("done",), category="grid.corridor-safety",
                            location=ev.Location(), level=ev.Level(level), resolved_on_the_spot=on_the_spot,
                            escalated=escalated)
    return Envelope.origin(data, source="/cityops/act", ticket_id=ticket_id, time=T0)


def closed(ticket_id: str) -> Envelope[ev.Event]:
    return Envelope.origin(build_example(ev.TicketClosed), source="/cityops/evaluate", ticket_id=ticket_id, time=T0)


def test_the_lowest_level_rate_per_district_and_for_all(tmp_path) -> None:
    history = [registered("G-1", EAST, "gw-east-1-a-1-1"), handled("G-1", "grid", on_the_spot=True), closed("G-1"),
               registered("G-2", EAST), handled("G-2", "community", escalated=True), closed("G-2"),
               registered("G-3", WEST), handled("G-3", "community"), closed("G-3"),
               registered("G-4", WEST), handled("G-4", "district"), closed("G-4"),
               registered("G-5", WEST), handled("G-5", "grid")]  # handled, not closed yet: not counted
    api, engine = replay_api_over(tmp_path, history)
    with TestClient(api, headers=bearer("supervisor")) as http:
        body = {r["district"]: r for r in http.get("/replay/board/lowest-level").json()}
        assert TestClient(api).get("/replay/board/lowest-level").status_code == 401
        assert http.get("/replay/board/lowest-level", headers=bearer("unit", "water")).status_code == 403
    assert (body["district-east"]["handled_closed"], body["district-east"]["solved_lowest"]) == (2, 1)
    assert (body["district-east"]["on_the_spot"], body["district-east"]["escalated"]) == (1, 1)
    assert (body["district-west"]["handled_closed"], body["district-west"]["solved_lowest"]) == (2, 1)
    assert body["all"]["lowest_level_rate"] == 0.5 and body["all"]["handled_closed"] == 4
    with engine.connect() as conn:
        reporter = conn.exec_driver_sql("SELECT reported_by FROM proj_tickets WHERE ticket_id = 'G-1'").scalar()
    assert reporter == "gw-east-1-a-1-1"
