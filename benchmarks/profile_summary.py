"""Summarise py-spy collapsed stacks (`cityops bench --profile` writes benchmarks/profiles/*.collapsed.txt).

For each file: samples, then the functions with the largest inclusive share (a function counted
once per sample however deep it recurses) and the largest self share.

    .venv/bin/python benchmarks/profile_summary.py benchmarks/profiles/*.collapsed.txt --top 25
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def frame_name(frame: str, keep_lines: bool = False) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})"


def summarise(path: Path, top: int, only: str | None) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        frames, count = m.group(1).split(";"), int(m.group(2))
        names = [frame_name(f) for f in frames if f.strip()]
        if only and not any(only in n for n in names):
            continue
        total += count
        for name in set(names):
            inclusive[name] += count
        if names:
            own[names[-1]] += count
    out = [f"== {path.name}: {total} samples"]
    out.append("  inclusive:")
    out += [f"    {100 * c / total:5.1f}%  {n}" for n, c in inclusive.most_common(top)] if total else []
    out.append("  self:")
    out += [f"    {100 * c / total:5.1f}%  {n}" for n, c in own.most_common(top)] if total else []
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--only", help="only samples whose stack contains this text")
    args = ap.parse_args()
    for f in args.files:
        print(summarise(f, args.top, args.only))


if __name__ == "__main__":
    main()
