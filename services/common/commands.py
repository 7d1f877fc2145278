"""Intake's commands (cityops.intake.commands.v1) become facts on the topic of the step that applies them.

Intake is the only writer of operators' and supervisors' decisions; the step a decision is addressed to
checks it against its own state and writes the fact (same fields, contracts.events.COMMAND_FACTS) on its
own topic, so every reader of the fact keeps reading it where it always did.
"""

from __future__ import annotations

from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope

from .pipeline import HandlerContext


def fact_of_command(ctx: HandlerContext, command: Envelope[Any]) -> Envelope[Any]:
    """The fact a step writes for an intake command: caused by it (a redelivery gives the same id) and
    dated when the person decided, as the fact was when intake wrote it itself."""
    return command.caused(ev.fact_of(command.data), source=ctx.source, time=command.time)
