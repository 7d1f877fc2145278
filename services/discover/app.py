"""discover app factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from domain.catalogue import load_catalogue
from domain.classifier import ComplaintClassifier, cached_default_classifier
from services.common.app import build_service_app
from services.common.batch_state import table_of
from services.common.handler import Clock

from .domain import similarity_for
from .handlers import CategoryGuesser, DiscoverDeps, spec
from .models import KnownTicket, ProactiveRaised, ProactiveScan, ResidentRow, WeatherAlertRow
from .settings import DiscoverSettings


def guess_model_dir(state_dir: Path) -> Path:
    """Where discover finds the catalogue-trained model: triage's cache in the state dir, so the model is trained
    once for both (whichever starts first trains it while the other waits: domain.classifier)."""
    return state_dir


def create_app(settings: DiscoverSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow, classifier: Any = None) -> FastStream:
    """`classifier` guesses the category of complaints that come without one (default: `model_path`, else the
    catalogue-trained model triage uses, trained once and cached in the state dir)."""
    settings = settings or DiscoverSettings()
    catalogue = load_catalogue(settings.catalogue_file())
    if classifier is None:
        classifier = ComplaintClassifier.load(settings.model_path) if settings.model_path else cached_default_classifier(
            guess_model_dir(settings.state_dir), catalogue)
    deps = DiscoverDeps(catalogue, similarity_for(catalogue), CategoryGuesser(classifier, settings.guess_min_confidence))
    tables = [table_of(m) for m in (KnownTicket, ResidentRow, WeatherAlertRow, ProactiveRaised, ProactiveScan)]
    return build_service_app(settings, spec=spec(deps, settings.proactive_tick_s), tables=tables,
                             broker=broker, engine=engine, clock=clock)
