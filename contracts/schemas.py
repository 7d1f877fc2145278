"""JSON Schema of every event, exported to contracts/schemas/ and frozen there.

Within a version a schema may only grow: `compatibility_problems(frozen, current)` lists what a
model change would break for existing consumers or stored events (a removed or retyped field,
a new required field, a dropped enum value). tests/contract/test_schemas.py runs it for every type.

Retiring a field within a version: mark it deprecated (`Field(deprecated="why, and what replaces
it")`, which puts `"deprecated": true` in the schema); producers stop relying on it, it stays in the
schema and on the model so records already in the log still decode, and it is removed only by the
next version. The check treats the marker like a description. Class-level constants of an event
(`event_type`, and `topic_area`, which every event declared and nothing read) are not fields: they
are not in the schema or on the wire, so dropping one changes no schema and needs no deprecation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .envelope import Envelope
from .registry import EVENT_TYPES

SCHEMA_DIR = Path(__file__).parent / "schemas"


def current_schemas() -> dict[str, dict[str, Any]]:
    out = {t: model.model_json_schema() for t, model in EVENT_TYPES.items()}
    out["cityops.envelope.v1"] = Envelope.model_json_schema()
    return out


def schema_path(event_type: str, directory: Path = SCHEMA_DIR) -> Path:
    return directory / f"{event_type}.json"


def export_schemas(directory: Path = SCHEMA_DIR, overwrite: bool = False) -> list[Path]:
    """Write the schemas that are not frozen yet (or all with overwrite, for a new version)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, schema in sorted(current_schemas().items()):
        path = schema_path(event_type, directory)
        if path.exists() and not overwrite:
            continue
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def load_frozen(directory: Path = SCHEMA_DIR) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def compatibility_problems(frozen: dict[str, Any], current: dict[str, Any], where: str = "") -> list[str]:
    problems: list[str] = []
    problems += _object_problems(frozen, current, where or "<root>")
    frozen_defs, current_defs = frozen.get("$defs", {}), current.get("$defs", {})
    for name, fdef in frozen_defs.items():
        if name not in current_defs:
            problems.append(f"{where}$defs.{name}: removed")
            continue
        problems += _object_problems(fdef, current_defs[name], f"{where}$defs.{name}")
    return problems


def _object_problems(frozen: dict[str, Any], current: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    if "enum" in frozen:
        dropped = set(map(str, frozen["enum"])) - set(map(str, current.get("enum", [])))
        if dropped:
            problems.append(f"{where}: enum values removed {sorted(dropped)}")
    fprops, cprops = frozen.get("properties", {}), current.get("properties", {})
    for name, fprop in fprops.items():
        if name not in cprops:
            problems.append(f"{where}.{name}: field removed")
        elif _type_signature(fprop) != _type_signature(cprops[name]):
            problems.append(f"{where}.{name}: type changed from {_type_signature(fprop)} to {_type_signature(cprops[name])}")
    new_required = set(current.get("required", [])) - set(frozen.get("required", []))
    if new_required:
        problems.append(f"{where}: new required field(s) {sorted(new_required)} (new fields must be optional)")
    return problems


def _type_signature(prop: dict[str, Any]) -> str:
    """What a field accepts, ignoring prose (descriptions, titles, examples) and the deprecation marker."""
    prose = {"description", "title", "examples", "default", "deprecated"}

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in prose}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return json.dumps(strip(prop), sort_keys=True)
