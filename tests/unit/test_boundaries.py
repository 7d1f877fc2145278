"""Package boundaries: services talk through contracts and Kafka, never through each other's code.

* A service package (services/<svc>/, any svc but common and ops) imports only contracts, domain,
  services.common, itself, the standard library and third-party packages. Checked on the AST, so
  imports inside functions and `importlib.import_module("...")` with a literal name count too.
* contracts/ never imports services, domain or tools (contracts are the bottom layer every service shares).
* domain/ (the city's rules shared by services) imports only contracts, itself, the standard library
  and third-party packages.
* Nothing under services/ (services.common included) imports tools/: tools run and measure the
  services (the hub, the benchmark, the importers, the CLI), never the other way round.
* Importing any module opens no network connection: the check runs in a fresh interpreter
  (in this one most modules are already in sys.modules, so their import-time code would not run
  again) with socket connects and name lookups made to fail.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = {"common"}  # services/ packages that are not services
FIRST_PARTY = {"services", "contracts", "domain", "tests", "tools"}
# Alembic script directories hold migration scripts Alembic loads itself (env.py only runs
# inside an Alembic command). They are boundary-checked but not imported; see alembic_dirs().
ALEMBIC_MARKERS = ("script.py.mako", "env.py")


# --- the import checker --------------------------------------------------------------------------

def python_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.py") if "__pycache__" not in p.parts)


def package_of(root: Path, path: Path) -> list[str]:
    """Dotted package (as parts) a file's relative imports are resolved against."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1]  # for __init__.py the package is its directory, for a module its parent


def imported_modules(root: Path, path: Path) -> list[tuple[int, str]]:
    return sorted(_imports(root, path))


def _imports(root: Path, path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute dotted module) for every import in a file, relative ones resolved.

    `from pkg import name` yields pkg.name only when pkg is a top-level first-party package
    (`from services import act` imports services.act); otherwise the module itself is enough.
    An unresolvable relative import yields a name starting with '<'.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = package_of(root, path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level > len(package):
                    yield node.lineno, f"<relative import beyond the top-level package: level {node.level}>"
                    continue
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + (node.module.split(".") if node.module else []))
            else:
                module = node.module or ""
            if module in FIRST_PARTY:
                for alias in node.names:
                    yield node.lineno, f"{module}.{alias.name}" if alias.name != "*" else module
            else:
                yield node.lineno, module
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            first = node.args[0]
            if name in {"import_module", "__import__"} and isinstance(first, ast.Constant) and isinstance(first.value, str):
                if not first.value.startswith("."):
                    yield node.lineno, first.value


def service_import_allowed(svc: str, module: str) -> bool:
    parts = module.split(".")
    if module.startswith("<"):
        return False
    if parts[0] == "services":
        return len(parts) >= 2 and parts[1] in {svc, "common"}
    if parts[0] in {"tests", "tools"}:
        return False
    return True  # contracts, domain, the standard library, third-party packages


def contracts_import_allowed(module: str) -> bool:
    return not module.startswith("<") and module.split(".")[0] not in {"services", "domain", "tests", "tools"}


def domain_import_allowed(module: str) -> bool:
    return not module.startswith("<") and module.split(".")[0] not in {"services", "tests", "tools"}


def service_offenders(root: Path) -> list[str]:
    offenders = []
    for svc_dir in sorted(p for p in (root / "services").iterdir() if p.is_dir()):
        if svc_dir.name in SHARED or svc_dir.name.startswith((".", "_")):
            continue
        for path in python_files(svc_dir):
            for line, module in imported_modules(root, path):
                if not service_import_allowed(svc_dir.name, module):
                    offenders.append(f"{path.relative_to(root)}:{line}: {svc_dir.name} imports {module}")
    return offenders


def services_importing_tools(root: Path) -> list[str]:
    """Imports of tools/ anywhere under services/, services.common included."""
    offenders = []
    for path in python_files(root / "services"):
        for line, module in imported_modules(root, path):
            if module.split(".")[0] == "tools":
                offenders.append(f"{path.relative_to(root)}:{line}: imports {module}")
    return offenders


def contracts_offenders(root: Path) -> list[str]:
    offenders = []
    for path in python_files(root / "contracts"):
        for line, module in imported_modules(root, path):
            if not contracts_import_allowed(module):
                offenders.append(f"{path.relative_to(root)}:{line}: contracts imports {module}")
    return offenders


def domain_offenders(root: Path) -> list[str]:
    offenders = []
    for path in python_files(root / "domain"):
        for line, module in imported_modules(root, path):
            if not domain_import_allowed(module):
                offenders.append(f"{path.relative_to(root)}:{line}: domain imports {module}")
    return offenders


# --- the boundaries of this repository ----------------------------------------------------------

def test_services_import_only_contracts_common_and_themselves() -> None:
    offenders = service_offenders(REPO)
    assert not offenders, "service packages importing another service package:\n" + "\n".join(offenders)


def test_no_service_and_no_plumbing_imports_tools() -> None:
    offenders = services_importing_tools(REPO)
    assert not offenders, "services/ importing tools/:\n" + "\n".join(offenders)


def test_contracts_import_no_service() -> None:
    offenders = contracts_offenders(REPO)
    assert not offenders, "contracts importing services:\n" + "\n".join(offenders)


def test_domain_imports_only_contracts() -> None:
    offenders = domain_offenders(REPO)
    assert not offenders, "domain importing services:\n" + "\n".join(offenders)


def test_the_checker_sees_every_service_package() -> None:
    checked = {p.name for p in (REPO / "services").iterdir() if p.is_dir() and python_files(p)} - SHARED
    assert {"discover", "triage", "act", "intake"} <= checked, checked


# --- the checker can fail -----------------------------------------------------------------------

def test_checker_finds_every_kind_of_cross_service_import(tmp_path: Path) -> None:
    def write(rel: str, text: str) -> None:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    for pkg in ("services", "services/common", "services/triage", "services/triage/sub",
                "services/act", "contracts", "domain", "tools"):
        write(f"{pkg}/__init__.py", "")
    write("services/triage/good.py",
          "import os\nimport yaml\nfrom contracts.topics import X\nimport contracts\nfrom services.common.app import y\n"
          "from domain.catalogue import Catalogue\nimport domain.calendar\n"
          "from services import common\nfrom . import handlers\nfrom .models import M\nimport services.triage.models\n")
    write("services/triage/sub/good.py", "from .. import app\nfrom ...common import store\nfrom ..models import M\n")
    write("services/triage/bad.py",
          "from services.act.models import Task\n"        # 1
          "import services.act\n"                          # 2
          "from services import act\n"                     # 3
          "from ..act import handlers\n"                   # 4
          "def f():\n    from tools.hub import up\n"   # 6
          "import importlib\nimportlib.import_module('services.act.app')\n"  # 8
          "from tests.conftest import unique\n"           # 9
          "from .... import x\n")                          # 10
    write("services/common/fine.py", "from services.act import app\n")  # common is not checked for services
    write("services/common/bad.py", "import os\nfrom tools import bench\n")  # ... but it is for tools
    write("tools/fine.py", "from services.act import app\nfrom services.common import store\n")  # tools may
    write("contracts/bad.py", "from services.common import store\nimport os\nfrom domain import rates\n")
    write("contracts/good.py", "from .topics import X\nfrom contracts import envelope\n")
    write("domain/good.py", "from contracts import events\nfrom .catalogue import Catalogue\nimport yaml\n")
    write("domain/bad.py", "import os\nfrom services.common.settings import S\nfrom tests import x\n")

    found = service_offenders(tmp_path)
    assert [o.split(":")[0] + ":" + o.split(":")[1] for o in found] == [
        f"services/triage/bad.py:{n}" for n in (1, 2, 3, 4, 6, 8, 9, 10)], found
    assert contracts_offenders(tmp_path) == ["contracts/bad.py:1: contracts imports services.common",
                                             "contracts/bad.py:3: contracts imports domain.rates"]
    assert services_importing_tools(tmp_path) == [
        "services/common/bad.py:2: imports tools.bench", "services/triage/bad.py:6: imports tools.hub"]
    assert domain_offenders(tmp_path) == ["domain/bad.py:2: domain imports services.common.settings",
                                          "domain/bad.py:3: domain imports tests.x"]


# --- importing opens no socket ------------------------------------------------------------------

def alembic_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob(ALEMBIC_MARKERS[0]) if (p.parent / ALEMBIC_MARKERS[1]).exists())


def importable_modules(root: Path) -> tuple[list[str], list[str]]:
    """Every module of contracts/, domain/, services/ and tools/ by its dotted name, and the Alembic scripts left out."""
    skip = alembic_dirs(root)
    modules, left_out = [], []
    for top in ("contracts", "domain", "services", "tools"):
        for path in python_files(root / top):
            rel = path.relative_to(root)
            if any(path.is_relative_to(d) for d in skip):
                left_out.append(str(rel))
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules.append(".".join(parts))
    return modules, left_out


_IMPORT_ALL = r"""
import importlib, json, socket, sys, traceback

attempts, failures = [], {}
current = [None]

class NetworkAtImport(OSError):
    pass

def _refuse(what):
    def refuse(*args, **kwargs):
        stack = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()[:-1]
                 if any(f"/{top}/" in f.filename for top in ("services", "contracts", "domain", "tools"))]
        attempts.append({"module": current[0], "call": what, "args": repr(args[1:] if what.startswith("socket.") else args)[:200],
                         "where": stack[-3:]})
        raise NetworkAtImport(f"{what} called while importing {current[0]}")
    return refuse

socket.socket.connect = _refuse("socket.connect")
socket.socket.connect_ex = _refuse("socket.connect_ex")
socket.getaddrinfo = _refuse("getaddrinfo")
socket.create_connection = _refuse("create_connection")

for name in json.loads(sys.argv[1]):
    current[0] = name
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc(limit=-8)
print(json.dumps({"attempts": attempts, "failures": failures}))
"""


def test_every_module_imports_without_opening_a_socket(tmp_path: Path) -> None:
    modules, left_out = importable_modules(REPO)
    assert "tools.cli" in modules and "contracts.envelope" in modules and "domain.catalogue" in modules
    assert all("migrations" in Path(p).parts for p in left_out), left_out
    env = {**os.environ, "CITYOPS_STATE_DIR": str(tmp_path / "state"), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-c", _IMPORT_ALL, json.dumps(modules)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"import run crashed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    problems = [f"{a['module']}: {a['call']}{a['args']} at {a['where']}" for a in report["attempts"]]
    problems += [f"{name} failed to import:\n{tb}" for name, tb in report["failures"].items()]
    assert not problems, f"{len(problems)} problem(s) importing {len(modules)} modules:\n" + "\n".join(problems)


def test_the_socket_guard_catches_a_connect_at_import(tmp_path: Path) -> None:
    pkg = tmp_path / "chatty"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "dial.py").write_text(
        "import socket\ns = socket.socket()\ntry:\n    s.connect(('127.0.0.1', 9))\nexcept OSError:\n    pass\n")
    (pkg / "broken.py").write_text("raise RuntimeError('boom')\n")
    result = subprocess.run([sys.executable, "-c", _IMPORT_ALL, json.dumps(["chatty.dial", "chatty.broken", "json"])],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [a["module"] for a in report["attempts"]] == ["chatty.dial"]  # swallowed, still recorded
    assert list(report["failures"]) == ["chatty.broken"] and "boom" in report["failures"]["chatty.broken"]


@pytest.mark.parametrize("module", ["services.common.store", "contracts.topics"])
def test_module_names_match_files(module: str) -> None:
    modules, _ = importable_modules(REPO)
    assert module in modules
