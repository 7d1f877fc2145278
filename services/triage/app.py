"""triage app factory."""

from __future__ import annotations

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

from .handlers import PrimedClassifier, TriageDeps, spec
from .models import TriageTicket
from .settings import TriageSettings


def create_app(settings: TriageSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow, classifier: Any = None) -> FastStream:
    settings = settings or TriageSettings()
    catalogue = load_catalogue(settings.catalogue_path)
    if classifier is None:
        classifier = ComplaintClassifier.load(settings.model_path) if settings.model_path else cached_default_classifier(settings.state_dir, catalogue)
    deps = TriageDeps(catalogue=catalogue, classifier=PrimedClassifier(classifier))
    return build_service_app(settings, spec=spec(deps), tables=[table_of(TriageTicket)], broker=broker, engine=engine,
                             clock=clock)
