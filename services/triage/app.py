"""triage app factory."""

from __future__ import annotations

import hashlib
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from domain.catalogue import Catalogue, load_catalogue
from services.common.app import build_service_app
from services.common.batch_state import table_of
from services.common.handler import Clock

from .classifier import SEED_RECIPE_VERSION, ComplaintClassifier, default_classifier
from .handlers import PrimedClassifier, TriageDeps, spec
from .models import TriageTicket
from .settings import TriageSettings


def cached_default(settings: TriageSettings, catalogue: Catalogue) -> ComplaintClassifier:
    """The catalogue-trained classifier, trained once per catalogue and kept in the state dir,
    so a restarted triage is back in a second instead of retraining."""
    digest = hashlib.sha256(f"{SEED_RECIPE_VERSION}|{catalogue.model_dump_json()}".encode()).hexdigest()[:12]
    path = settings.state_dir / f"triage-default-{catalogue.version}-{digest}.model"
    if path.exists():
        try:
            return ComplaintClassifier.load(path)
        except Exception:  # a model from another library version: train again
            path.unlink(missing_ok=True)
    classifier = default_classifier(catalogue)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    classifier.save(tmp)
    tmp.replace(path)  # atomic: two triage instances starting together never read half a file
    return classifier


def create_app(settings: TriageSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow, classifier: Any = None) -> FastStream:
    settings = settings or TriageSettings()
    catalogue = load_catalogue(settings.catalogue_path)
    if classifier is None:
        classifier = ComplaintClassifier.load(settings.model_path) if settings.model_path else cached_default(settings, catalogue)
    deps = TriageDeps(catalogue=catalogue, classifier=PrimedClassifier(classifier))
    return build_service_app(settings, spec=spec(deps), tables=[table_of(TriageTicket)], broker=broker, engine=engine,
                             clock=clock)
