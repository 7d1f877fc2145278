"""A service process's CPU priority (services/common/priority.py): the read side yields the CPU to the workflow.

Each case runs in a child interpreter: a niceness once raised cannot be lowered again by an unprivileged process,
so the test process itself must keep its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from pydantic import ValidationError

from services.archiver.settings import ArchiverSettings
from services.common.settings import READ_SIDE_NICE
from services.discover.settings import DiscoverSettings
from services.projections.settings import ProjectionsSettings
from services.sla.settings import SlaSettings
from services.triage.settings import TriageSettings
from tools.run import settings_of

# The child builds the named services' settings from its environment, starts a thread before the call (a niceness
# belongs to one thread on Linux), calls yield_cpu_as_configured and reports every thread's niceness.
CHILD = textwrap.dedent("""
    import importlib, json, os, sys, threading
    from services.common.priority import yield_cpu_as_configured
    classes = {"discover": "DiscoverSettings", "triage": "TriageSettings", "sla": "SlaSettings",
               "projections": "ProjectionsSettings", "archiver": "ArchiverSettings"}
    settings = [getattr(importlib.import_module(f"services.{n}.settings"), classes[n])() for n in sys.argv[1:]]
    start = os.getpriority(os.PRIO_PROCESS, 0)
    early, go = threading.Event(), threading.Event()
    ids = []
    def worker():
        ids.append(threading.get_native_id()); early.set(); go.wait()
    thread = threading.Thread(target=worker); thread.start(); early.wait()
    returned = yield_cpu_as_configured(settings)
    later = []
    late = threading.Thread(target=lambda: later.append(os.getpriority(os.PRIO_PROCESS, 0))); late.start(); late.join()
    earlier = os.getpriority(os.PRIO_PROCESS, ids[0])
    go.set(); thread.join()
    print(json.dumps({"start": start, "returned": returned, "main": os.getpriority(os.PRIO_PROCESS, 0),
                      "earlier_thread": earlier, "later_thread": later[0]}))
""")


def run_child(*services: str, env: dict[str, str] | None = None, nice: int = 0) -> dict[str, int]:
    """What the child saw; its niceness at start is this process's (plus `nice`), so a niced test run still holds."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")}
    full_env.update(env or {})
    argv = [sys.executable, "-c", CHILD, *services]
    if nice:
        argv = ["nice", "-n", str(nice), *argv]
    done = subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=60, check=False,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")


def test_the_read_side_asks_to_yield_and_the_workflow_does_not() -> None:
    assert [s.niceness() for s in (SlaSettings(), ProjectionsSettings(), ArchiverSettings())] == [READ_SIDE_NICE] * 3
    assert [s.niceness() for s in (DiscoverSettings(), TriageSettings())] == [0, 0]


def every_thread_at(niceness: int) -> dict[str, int]:
    return {"returned": niceness, "main": niceness, "earlier_thread": niceness, "later_thread": niceness}


def test_a_read_side_process_runs_nicer_in_every_thread_it_has_and_will_have() -> None:
    seen = run_child("sla", "projections", "archiver")
    assert seen.pop("start") < READ_SIDE_NICE, "run the tests at a niceness below the read side's"
    assert seen == every_thread_at(READ_SIDE_NICE)


def test_a_process_with_one_workflow_step_keeps_the_steps_priority() -> None:
    seen = run_child("discover", "sla")
    assert seen == every_thread_at(seen.pop("start"))


def test_a_services_own_setting_wins_over_the_read_side_default() -> None:
    own = run_child("sla", env={"CITYOPS_SLA_CPU_NICE": "12"})
    assert own["main"] == max(own["start"], 12)
    # hub-wide, as every setting: here it puts the read side back at the workflow's priority
    hub_wide = run_child("projections", env={"CITYOPS_CPU_NICE": "0"})
    assert hub_wide["main"] == hub_wide["start"]


def test_an_operators_own_nice_is_never_undone() -> None:
    seen = run_child("sla", nice=19)  # nicer than the read side's 10: kept
    assert seen["start"] == 19 and seen["returned"] == 19 and seen["main"] == 19


def test_a_niceness_outside_the_unix_range_is_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOPS_SLA_CPU_NICE", "20")
    with pytest.raises(ValidationError, match="cpu_nice"):
        SlaSettings()


def test_cityops_service_run_finds_each_consumer_apps_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from services.archiver.app import create_app as archiver_app
    from services.sla.app import create_app as sla_app

    monkeypatch.setenv("CITYOPS_STATE_DIR", str(tmp_path))
    assert isinstance(settings_of(sla_app()), SlaSettings)
    assert isinstance(settings_of(archiver_app()), ArchiverSettings)  # an app not built by build_service_app
