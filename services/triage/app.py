"""triage app factory."""

from __future__ import annotations

from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from domain.catalogue import Catalogue, load_catalogue
from domain.classifier import SEED_RECIPE_VERSION, ComplaintClassifier, cached_default_classifier
from services.common.app import build_service_app
from services.common.batch_state import table_of
from services.common.handler import Clock

from .handlers import PrimedClassifier, TriageDeps, spec
from .modelfile import WatchedModel
from .models import TriageTicket
from .settings import TriageSettings


def create_app(settings: TriageSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow, classifier: Any = None) -> FastStream:
    settings = settings or TriageSettings()
    catalogue = load_catalogue(settings.catalogue_file())
    if classifier is None:
        primed = watched_classifier(settings, catalogue)
    else:
        primed = PrimedClassifier(classifier, (getattr(classifier, "metadata", None) or {}).get("version"))
    deps = TriageDeps(catalogue=catalogue, classifier=primed)
    return build_service_app(settings, spec=spec(deps), tables=[table_of(TriageTicket)], broker=broker, engine=engine,
                             clock=clock)


def watched_classifier(settings: TriageSettings, catalogue: Catalogue) -> PrimedClassifier:
    """The published model (reloaded when `cityops triage publish` replaces it), else the catalogue-trained one."""
    def seeds() -> tuple[ComplaintClassifier, str]:
        return cached_default_classifier(settings.state_dir, catalogue), f"seeds-{catalogue.version}-r{SEED_RECIPE_VERSION}"

    watched = WatchedModel(settings.published_model_path, ComplaintClassifier.load, seeds,
                           check_every_s=settings.model_check_s, required=settings.model_path is not None)
    return PrimedClassifier(watched.classifier, watched.version, source=watched)
