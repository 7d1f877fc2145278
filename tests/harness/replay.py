"""The replay API over a fresh projections store that has folded a given history (unit tests of board routes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from contracts.envelope import Envelope
from services.common.store import make_engine
from services.projections.api import replay_app
from services.projections.logsource import MemoryLog
from services.projections.migrate import upgrade
from services.projections.settings import ProjectionsSettings
from services.projections.store import apply
from tests.harness.auth import verifier


def replay_api_over(tmp_path: Path, history: Sequence[Envelope[Any]]) -> tuple[Any, Engine]:
    """Fold `history` into a new SQLite store under `tmp_path`: the replay API (which replays the same history from
    memory) and the store's engine."""
    engine = make_engine(f"sqlite:///{tmp_path / 'proj.db'}")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        for envelope in history:
            apply(session, envelope)
    api = replay_app(ProjectionsSettings(timezone="Asia/Shanghai"), engine=engine,
                     log_factory=lambda archive: MemoryLog(list(history)), verifier=verifier())
    return api, engine
