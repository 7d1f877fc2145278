"""A short chaos run, as an operator would start it: `cityops chaos` brings up its own hub (broker, every
service, simulated units), submits tickets for a minute while a random service is SIGKILLed and restarted
every 20 s, drains, and audits the log. Nothing accepted may be lost and no effect may happen twice.

It starts its own broker, so it needs no session broker; its ports follow CITYOPS_TEST_KAFKA_PORT
(+2 for the broker and its controller, +4 and +5 for intake and the bridge) unless
CITYOPS_TEST_CHAOS_PORTS="kafka,http,bridge" says otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from services.common.settings import REPO_ROOT
from tools.supervisor import cityops_argv

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

_BASE = int(os.environ.get("CITYOPS_TEST_KAFKA_PORT", "19092"))
KAFKA_PORT, HTTP_PORT, BRIDGE_PORT = (int(p) for p in os.environ.get(
    "CITYOPS_TEST_CHAOS_PORTS", f"{_BASE + 2},{_BASE + 4},{_BASE + 5}").split(","))


def test_a_short_chaos_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    report = tmp_path / "findings.json"
    argv = cityops_argv("chaos", "--duration", "60", "--rate", "2", "--kill-every", "20", "--seed", "7",
                        "--kafka-port", str(KAFKA_PORT), "--http-port", str(HTTP_PORT), "--bridge-port", str(BRIDGE_PORT),
                        "--drain", "180", "--state-dir", str(tmp_path / "hub"), "--json", str(report))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_KAFKA_")}  # never the session's admin
    run = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    printed = run.stdout[-6000:] + run.stderr[-3000:]
    assert report.exists(), printed
    findings = json.loads(report.read_text())
    # The run really was chaotic: services were killed and restarted while tickets kept coming.
    assert len(findings["kills"]) >= 2 and not any(k["error"] for k in findings["kills"]), printed
    assert findings["load"]["accepted"] >= 100, printed
    # ... and nothing was lost or done twice (the exit code says the same).
    assert findings["lost"]["count"] == 0, printed
    assert all(d["count"] == 0 for d in findings["duplicates"].values()), printed
    assert run.returncode == 0, printed
    assert findings["projections"]["equal"] is True, printed
    assert "tickets accepted" in run.stdout and "projections rebuilt = live" in run.stdout
