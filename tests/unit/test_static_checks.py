"""ruff and mypy, configured in pyproject.toml, run as part of the test suite (so `make test` is CI).

* `ruff check .`: the rule set and its per-file exceptions are in [tool.ruff]; nothing is reformatted.
* `mypy` on every top-level package that exists (contracts, domain, services, tools): strict for
  contracts and domain, non-strict elsewhere ([tool.mypy] and its overrides).
Each check also runs on a small planted mistake, to show the configuration can fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
PACKAGES = ("contracts", "domain", "services", "tools")


def _tool(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def python_packages(root: Path) -> list[str]:
    """The top-level packages present in this tree (domain and tools may not exist yet)."""
    return [name for name in PACKAGES if any((root / name).rglob("*.py"))]


def _require(module: str) -> None:
    if subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode != 0:
        pytest.fail(f"{module} is not installed: pip install -e '.[test]'")


def test_ruff_finds_nothing() -> None:
    _require("ruff")
    result = run([*_tool("ruff"), "check", ".", "--no-cache", "--output-format", "concise"], REPO)
    assert result.returncode == 0, f"ruff check . found problems:\n{result.stdout[-8000:]}{result.stderr[-2000:]}"


def test_mypy_finds_nothing() -> None:
    _require("mypy")
    packages = python_packages(REPO)
    assert "contracts" in packages and "services" in packages
    result = run([*_tool("mypy"), *packages], REPO)
    assert result.returncode == 0, f"mypy {' '.join(packages)} found problems:\n{result.stdout[-8000:]}{result.stderr[-2000:]}"


# --- the checks can fail -------------------------------------------------------------------------

UNTYPED = "def passthrough(value):\n    return value\n\n\ndef typed() -> int:\n    return passthrough(1)\n"


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A tree with this repository's configuration and an untyped helper in contracts and in services."""
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.read_text(encoding="utf-8"), encoding="utf-8")
    for package in ("contracts", "services"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "helpers.py").write_text(UNTYPED)
    return tmp_path


def test_mypy_is_strict_for_contracts_only(planted: Path) -> None:
    _require("mypy")
    result = run([*_tool("mypy"), "contracts", "services", "--no-incremental"], planted)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1 and errors, result.stdout
    assert all(line.startswith("contracts/helpers.py") for line in errors), result.stdout
    assert any("[no-untyped-def]" in line for line in errors) and any("[no-untyped-call]" in line for line in errors)


def test_ruff_reports_a_planted_mistake(planted: Path) -> None:
    _require("ruff")
    (planted / "services" / "sloppy.py").write_text("import os\nimport json\n\n\ndef f(items=[]):\n    return items\n")
    result = run([*_tool("ruff"), "check", ".", "--no-cache", "--output-format", "concise"], planted)
    assert result.returncode == 1
    for code in ("F401", "I001", "B006"):
        assert code in result.stdout, result.stdout
