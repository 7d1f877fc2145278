"""Progress of long work (replays, rebuilds): a rich progress bar per phase with its rate and time left, or nothing."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class Meter(Protocol):
    def phase(self, name: str, total: int | None) -> None: ...
    def advance(self, amount: int) -> None: ...
    def close(self) -> None: ...


class NullMeter:
    def phase(self, name: str, total: int | None) -> None:
        return None

    def advance(self, amount: int) -> None:
        return None

    def close(self) -> None:
        return None


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", self.unit)
        return Text(f"{speed:,.0f} {unit}/s" if speed else f"- {unit}/s", style="progress.data.speed")


class RichMeter:
    """One bar per phase (load, fold ...), each with count, rate and ETA; goes to stderr. A phase counts `unit`
    (log records) unless `phase_units` names what it counts (a fold phase counts tickets)."""

    def __init__(self, unit: str = "ev", console: Console | None = None,
                 phase_units: Mapping[str, str] | None = None) -> None:
        self.unit = unit
        self.phase_units = dict(phase_units or {})
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  _RateColumn(unit), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                  console=console or Console(stderr=True), transient=False)
        self._progress.start()
        self._task: Any = None

    def phase(self, name: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.update(self._task, total=self._progress.tasks[-1].completed)
        self._task = self._progress.add_task(name, total=total, unit=self.phase_units.get(name, self.unit))

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)

    def close(self) -> None:
        self._progress.stop()


def meter_for(progress: bool, phase_units: Mapping[str, str] | None = None) -> Meter:
    """A progress bar when asked for and someone is watching (stderr is a terminal), else nothing."""
    return RichMeter(phase_units=phase_units) if progress and sys.stderr.isatty() else NullMeter()
