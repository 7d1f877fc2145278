"""`cityops sla ledger | rates | returns-index | calibrate` read the SLA store."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from services.sla.cli import app
from services.sla.synthetic import TicketStory
from tests.unit.test_sla_calibration import SAMPLE
from tests.unit.test_sla_handlers import GRID, ONE_DAY, Sla, at

runner = CliRunner()


def _store(tmp_path) -> str:
    sla = Sla(tmp_path)
    story = TicketStory("T-CLI", limits=ONE_DAY)
    story.registered(at(11, 3, 8))
    task = story.assigned(at(11, 3, 9), GRID)
    story.signed_for(at(11, 3, 9, 30), task)
    story.progress(at(11, 3, 10), task, waiting_on_resident=True)
    story.progress(at(11, 3, 12), task)
    story.completed(at(11, 4, 10), task)
    story.closed(at(11, 4, 15))
    returned = TicketStory("T-RET", limits=ONE_DAY)
    returned.registered(at(11, 3, 8))
    returned.returned(at(11, 3, 10), returned.assigned(at(11, 3, 9), "water"))
    returned.supervisor_decided(at(11, 3, 11), "water")
    sla.feed(story.events + returned.events)
    return str(sla.engine.url)


def test_ledger_prints_spans_and_totals(tmp_path):
    url = _store(tmp_path)
    result = runner.invoke(app, ["ledger", "T-CLI", "--db-url", url, "--json"])
    assert result.exit_code == 0, result.output
    spans = json.loads(result.output)["spans"]
    assert [s["party"] for s in spans] == ["hotline", f"unit:{GRID}", "resident", f"unit:{GRID}", "hotline"]
    table = runner.invoke(app, ["ledger", "T-CLI", "--db-url", url])
    assert "lifetime" in table.output and "resident" in table.output
    assert runner.invoke(app, ["ledger", "T-NONE", "--db-url", url]).exit_code == 1


def test_rates_and_returns_index(tmp_path):
    url = _store(tmp_path)
    rates = runner.invoke(app, ["rates", "--db-url", url, "--min-sample", "5"])
    assert rates.exit_code == 0, rates.output
    line = next(li for li in rates.output.splitlines() if li.startswith(GRID))
    assert "100.0%" in line and "(small sample)" in line
    index = runner.invoke(app, ["returns-index", "--db-url", url])
    water = next(li for li in index.output.splitlines() if li.startswith("water"))
    assert water.split()[1:] == ["1", "1", "1", "100.0"]


def test_calibrate_shows_real_due_spans():
    result = runner.invoke(app, ["calibrate", str(SAMPLE), "--top", "5"])
    assert result.exit_code == 0, result.output
    assert "TRS-Parking Complaint" in result.output and "24.0 h" in result.output


def test_rebuild_refuses_a_store_that_is_not_empty(tmp_path):
    url = _store(tmp_path)
    result = runner.invoke(app, ["rebuild", "--db-url", url])
    assert result.exit_code == 1 and "not empty" in result.output
