"""triage app factory."""

from __future__ import annotations

from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.catalogue import load_catalogue
from contracts.envelope import utcnow
from services.common.app import build_service_app
from services.common.pipeline import Clock

from .classifier import ComplaintClassifier, default_classifier
from .handlers import EVENT_TYPES, TOPICS, handle
from .models import TriageTicket
from .settings import TriageSettings


def create_app(settings: TriageSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow, classifier: Any = None) -> FastStream:
    settings = settings or TriageSettings()
    catalogue = load_catalogue(settings.catalogue_path)
    if classifier is None:
        classifier = ComplaintClassifier.load(settings.model_path) if settings.model_path else default_classifier(catalogue)
    return build_service_app(settings, handler=handle, topics=TOPICS, event_types=EVENT_TYPES,
                             tables=[TriageTicket.__table__], broker=broker, engine=engine, clock=clock,
                             extras={"catalogue": catalogue, "classifier": classifier})
