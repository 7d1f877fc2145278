"""Every `cityops ...` command the documents cite exists, with the options they give it.

The runbook and the READMEs are only useful while their commands work. This walks each cited command
line through the real command tree (the typer app the `cityops` script runs, sub-apps mounted):
every sub-command must exist and every `--option` must be one the command accepts. Arguments and
option values are not checked (documents use placeholders such as TICKET).
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), *REPO.glob("*/README.md"), *REPO.glob("*/*/README.md")])

_INLINE = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"^```.*?$\n(.*?)^```", re.S | re.M)
_COMMAND = re.compile(r"(?:^|(?<=[\s(=]))(?:\S*/)?cityops(?=\s|$)")
_SHELL_STOP = {"|", "||", "&", "&&", ";", ">", ">>", "<", "/", "or"}
_ELLIPSIS = ("...", "\u2026")  # "cityops replay ...": a family of commands, not one


# typer builds its command tree on a click it vendors, so commands are looked at by shape, not class.
Command = Any


def cli_root() -> Command:
    """The command tree behind the `cityops` script, wherever the CLI module lives."""
    for name in ("tools.cli", "services.ops.cli"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        mount = getattr(module, "_mount_subapps", None)
        if mount is not None:
            mount()
        return typer.main.get_command(module.app)
    raise AssertionError("no cityops CLI module found")


def command_lines(text: str) -> list[str]:
    """The `cityops ...` command lines of a Markdown text: in code spans and in fenced code blocks."""
    fences = [m.group(1) for m in _FENCE.finditer(text)]
    prose = _FENCE.sub("", text)
    candidates = [m.group(1) for m in _INLINE.finditer(prose)]
    candidates += [line.split(" #")[0] for block in fences for line in block.splitlines()]
    lines = []
    for candidate in candidates:
        starts = [m.start() for m in _COMMAND.finditer(candidate)]  # several commands may share a line
        for start, end in zip(starts, [*starts[1:], len(candidate)]):
            command = candidate[start:end].strip()
            lines.append("cityops" + command.split("cityops", 1)[1].rstrip())
    return lines


def _tokens(line: str) -> list[str]:
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        words = line.split()
    out = []
    for word in words[1:]:
        if word in _SHELL_STOP or word.startswith(("|", "&", ">", "<", ";", *_ELLIPSIS)):
            break
        out.append(word.strip("[]"))  # "[--scope unit]": an optional part, still checked
    return out


def _option_names(command: Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        opts = [*param.opts, *getattr(param, "secondary_opts", ())]
        names.update(o for o in opts if o.startswith("-"))
    return names


def _subcommands(command: Command) -> dict[str, Command] | None:
    return getattr(command, "commands", None)


def _takes_a_value(command: Command, name: str) -> bool:
    """Whether option `name` of `command` reads the next word as its value (not a flag)."""
    return any(name in param.opts and not getattr(param, "is_flag", False) and not getattr(param, "count", False)
               for param in command.params)


def problems_of(line: str, root: Command) -> list[str]:
    command, path = root, ["cityops"]
    value_next = False
    for token in _tokens(line):
        if value_next:  # the value of a group's option (`cityops topics --count --path FILE`), not a command
            value_next = False
            continue
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            if name not in _option_names(command):
                return [f"{' '.join(path)} has no option {name}"]
            value_next = "=" not in token and _takes_a_value(command, name)
        elif _subcommands(command) is not None:
            sub = _subcommands(command).get(token)
            if sub is None:
                return [f"{' '.join(path)} has no command {token!r}"]
            command, path = sub, [*path, token]
        # else: an argument or an option's value of a leaf command
    return []


def cited_commands() -> list[tuple[str, str]]:
    return [(str(doc.relative_to(REPO)), line) for doc in DOCUMENTS for line in command_lines(doc.read_text(encoding="utf-8"))]


def test_every_cited_command_exists() -> None:
    root = cli_root()
    cited = cited_commands()
    assert len(cited) > 40, f"found only {len(cited)} cited commands: is the extraction broken?"
    found = [f"{doc}: `{line}`: {problem}" for doc, line in cited for problem in problems_of(line, root)]
    assert not found, "documents cite commands that do not exist:\n" + "\n".join(found)


@pytest.mark.parametrize(("line", "expected"), [
    ("cityops kafka up --fresh --port 9092", []),
    ("cityops replay story T-0001 --from-archive", []),
    ("CITYOPS_STATE_DIR=.state/hub cityops sla ledger T-1", []),
    ("cityops kafka cluster up --base-port 9192", []),
    ("cityops kafka launch", ["cityops kafka has no command 'launch'"]),
    ("cityops replay story T-1 --from-tape", ["cityops replay story has no option --from-tape"]),
    ("cityops sla ledger T-1 | head", []),
    ("cityops replay ...", []),
    ("cityops replay rankings [--scope unit] [--tiny]", ["cityops replay rankings has no option --tiny"]),
    ("cityops topics --count --path x.yaml", []),  # a group's option and its value
    ("cityops topics --markdown lists", ["cityops topics has no command 'lists'"]),  # a flag takes no value
])
def test_the_checker_can_fail(line: str, expected: list[str]) -> None:
    assert problems_of(command_lines(f"run `{line}` now")[0], cli_root()) == expected


def test_commands_are_found_in_code_spans_and_blocks() -> None:
    text = ("Use `cityops up --rate 0`.\n\n```bash\n.venv/bin/cityops bench --quick   # 2 min\nls\n"
            "cityops replay rankings [--scope unit]     cityops replay queue water\n```\nthe `cityops` script, `cityops replay ...`")
    assert command_lines(text) == ["cityops up --rate 0", "cityops", "cityops replay ...", "cityops bench --quick",
                                   "cityops replay rankings [--scope unit]", "cityops replay queue water"]
