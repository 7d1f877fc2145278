"""The AsyncAPI document passes the official AsyncAPI parser (@asyncapi/parser, run by tools/asyncapi-check).

The parser is a Node package: `make install` runs `npm ci` in tools/asyncapi-check, so under
`make test` the check always runs. On a developer box without Node or without that install the
test is skipped with the command to run, except in CI (CI set), where a missing checker fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.asyncapi import asyncapi_document, binding_topic_configuration
from contracts.topics import AREA_TASKS, DLQ_RETENTION, RETAIN_FOREVER

REPO = Path(__file__).resolve().parents[2]
CHECKER_DIR = REPO / "tools" / "asyncapi-check"
CHECKER = CHECKER_DIR / "check.mjs"
# Own unit task topics all share one shape: a few ids cover them without reading the catalogue. Area units
# (streets, communities, grids) have none: their tasks are on the catalogue's shared AREA_TASKS topic.
UNIT_IDS = ["water", "hotline", "district-east"]


def _checker_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (deploy/system-deps.sh installs it)"
    if not (CHECKER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        return "the AsyncAPI parser is not installed: run `make install` (npm ci in tools/asyncapi-check)"
    return None


def run_checker(document: dict[str, Any], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    missing = _checker_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    path = tmp_path / "asyncapi.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    result = subprocess.run(["node", str(CHECKER), str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), f"checker crashed ({result.returncode}):\n{result.stderr[-4000:]}"
    return result.returncode, json.loads(result.stdout)


def _problems(report: dict[str, Any]) -> str:
    shown = [d for d in report["diagnostics"] if d["severity"] in ("error", "warning")][:30]
    return "\n".join(f"{d['severity']} {d['code']} at {d['path']}: {d['message']}" for d in shown)


def test_the_official_parser_finds_no_error_or_warning(tmp_path: Path) -> None:
    status, report = run_checker(asyncapi_document(UNIT_IDS), tmp_path)
    assert (status, report["errors"], report["warnings"]) == (0, 0, 0), _problems(report)


def test_the_checker_reports_a_broken_document(tmp_path: Path) -> None:
    """What the generator used to write: string retention values and a dangling $defs reference."""
    document = asyncapi_document(UNIT_IDS)
    channel = next(iter(document["channels"].values()))
    channel["bindings"]["kafka"]["topicConfiguration"] = dict(RETAIN_FOREVER)
    document["components"]["schemas"]["Envelope"]["properties"]["data"] = {"$ref": "#/$defs/Event"}
    status, report = run_checker(document, tmp_path)
    codes = {d["code"] for d in report["diagnostics"] if d["severity"] == "error"}
    assert status == 1 and report["errors"] >= 3 and "invalid-ref" in codes, report


def test_topic_configuration_keeps_kafka_types() -> None:
    assert binding_topic_configuration(RETAIN_FOREVER) == {"retention.ms": -1, "retention.bytes": -1}
    assert binding_topic_configuration(DLQ_RETENTION) == {"retention.ms": 30 * 24 * 3600 * 1000}
    assert binding_topic_configuration({"cleanup.policy": "compact,delete", "segment.ms": "60000"}) == {
        "cleanup.policy": ["compact", "delete"], "segment.ms": "60000"}


def test_every_reference_resolves_inside_the_document() -> None:
    document = asyncapi_document(UNIT_IDS)

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    def resolve(pointer: str) -> Any:
        node: Any = document
        for part in pointer.removeprefix("#/").split("/"):
            node = node[part]
        return node

    dangling = []
    for ref in sorted(set(refs(document))):
        try:
            resolve(ref)
        except (KeyError, TypeError):
            dangling.append(ref)
    assert dangling == []


def test_the_shared_area_topic_is_a_channel_keyed_by_the_unit() -> None:
    document = asyncapi_document(UNIT_IDS)
    [area] = [c for c in document["channels"].values() if c["address"] == AREA_TASKS.name]
    assert area["bindings"]["kafka"]["partitions"] == 12 and area["x-writer"] == "act"
    assert set(area["x-readers"]) == {"units", "bridge", "archiver"}
    assert not any(c["address"].startswith("cityops.unit.grid-") for c in document["channels"].values())
    assigned = document["components"]["messages"]["act_task_assigned_v1"]["bindings"]["kafka"]["key"]["description"]
    assert "unit id" in assigned and "ticket id" in assigned
