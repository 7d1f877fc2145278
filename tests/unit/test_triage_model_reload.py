"""A running triage takes a newly published model without a restart (services/triage/modelfile.py): the file is
checked at most every check_every_s, reloaded when it changed, swapped in only if it loads, and the batch after
the swap is classified, and versioned, by the new model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import build_example
from domain.catalogue import load_catalogue
from domain.classifier import ComplaintClassifier, Prediction
from services.triage.app import watched_classifier
from services.triage.handlers import PrimedClassifier, TriageDeps, prepare_batch
from services.triage.modelfile import WatchedModel, model_version, publish_model
from services.triage.settings import TriageSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Constant:
    """A 'model' that always answers the category written in its file."""

    def __init__(self, category: str) -> None:
        self.category = category

    def predict(self, text: str) -> Prediction:
        return Prediction(category=self.category, confidence=0.9)

    def predict_many(self, texts: list[str]) -> list[Prediction]:
        return [self.predict(t) for t in texts]


class Loader:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path) -> Constant:
        self.calls += 1
        text = path.read_text(encoding="utf-8")
        if not text.startswith("model:"):
            raise ValueError(f"{path} is not a model")
        return Constant(text.removeprefix("model:"))


def _write(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture
def setup(tmp_path):
    clock, load = FakeClock(), Loader()
    target = tmp_path / "published" / "triage.model"
    watched = WatchedModel(target, load, lambda: (Constant("seeds"), "seeds-v1"), check_every_s=2.0, clock=clock)
    return tmp_path, target, watched, clock, load


def test_without_a_published_model_the_fallback_classifies(setup):
    _, _, watched, _, load = setup
    assert (watched.classifier.category, watched.version) == ("seeds", "seeds-v1") and load.calls == 0


def test_a_published_model_is_taken_at_the_next_check_not_before(setup):
    tmp_path, target, watched, clock, load = setup
    version = publish_model(_write(tmp_path / "a.model", "model:water.outage"), target, load)
    assert version == model_version(target) and len(version) == 12
    clock.now = 1.0
    assert watched.refresh() is False and watched.version == "seeds-v1"  # not yet time to look
    clock.now = 2.0
    assert watched.refresh() is True
    assert (watched.classifier.category, watched.version) == ("water.outage", version)
    clock.now = 4.0
    assert watched.refresh() is False  # unchanged file: no reload


def test_the_same_bytes_published_again_are_not_reloaded(setup):
    tmp_path, target, watched, clock, load = setup
    source = _write(tmp_path / "a.model", "model:water.outage")
    publish_model(source, target, load)
    clock.now = 2.0
    watched.refresh()
    calls = load.calls
    publish_model(source, target, load)  # a new file (inode, mtime), the same content
    clock.now = 4.0
    assert watched.refresh() is False and load.calls == calls + 1  # publish's own check only


def test_a_file_that_does_not_load_keeps_the_running_model_and_is_tried_once(setup):
    tmp_path, target, watched, clock, load = setup
    publish_model(_write(tmp_path / "a.model", "model:water.outage"), target, load)
    clock.now = 2.0
    watched.refresh()
    good = watched.version
    broken = _write(tmp_path / ".broken", "not a model")
    os.replace(broken, target)  # bypassing publish, which would have refused it
    calls = load.calls
    for moment in (4.0, 6.0, 8.0):
        clock.now = moment
        assert watched.refresh() is False
    assert (watched.classifier.category, watched.version) == ("water.outage", good)
    assert load.calls == calls + 1


def test_publish_refuses_a_file_triage_could_not_load_and_leaves_the_published_one(setup):
    tmp_path, target, _, _, load = setup
    publish_model(_write(tmp_path / "a.model", "model:water.outage"), target, load)
    with pytest.raises(ValueError):
        publish_model(_write(tmp_path / "b.model", "garbage"), target, load)
    assert target.read_text(encoding="utf-8") == "model:water.outage"
    assert [p.name for p in target.parent.iterdir()] == ["triage.model"]  # no temporary left behind


def test_a_model_named_at_start_must_exist_and_load(tmp_path):
    load = Loader()
    with pytest.raises(FileNotFoundError):
        WatchedModel(tmp_path / "missing.model", load, lambda: (Constant("seeds"), "s"), required=True)
    with pytest.raises(ValueError):
        WatchedModel(_write(tmp_path / "bad.model", "nope"), load, lambda: (Constant("seeds"), "s"), required=True)


def test_the_batch_after_a_publish_is_classified_and_versioned_by_the_new_model(setup, tmp_path):
    _, target, watched, clock, load = setup
    primed = PrimedClassifier(watched.classifier, watched.version, source=watched)
    deps = TriageDeps(catalogue=None, classifier=primed)  # type: ignore[arg-type]
    batch = [Envelope.origin(build_example(ev.TicketRegistered).model_copy(update={"ticket": build_example(
        ev.TicketRegistered).ticket.model_copy(update={"category": None})}), source="/test", ticket_id="T-1")]
    prepare_batch(deps, batch)
    text = batch[0].data.ticket.text
    assert (primed.predict(text).category, primed.version) == ("seeds", "seeds-v1")
    publish_model(_write(tmp_path / "a.model", "model:water.outage"), target, load)
    clock.now = 2.0
    prepare_batch(deps, batch)
    assert (primed.predict(text).category, primed.version) == ("water.outage", model_version(target))


def test_triage_loads_the_published_model_at_start_and_names_its_version(tmp_path):
    model = ComplaintClassifier().fit(["停水了 no water", "家里没水 water off", "路灯不亮 light out", "路灯坏了 dark street"],
                                      ["water.outage", "water.outage", "city-management.street-light",
                                       "city-management.street-light"])
    published = tmp_path / "state" / "triage.model"
    publish_model(model.save(tmp_path / "trained.model"), published, ComplaintClassifier.load)
    settings = TriageSettings(state_dir=tmp_path / "state", model_check_s=0.5)
    assert settings.published_model_path == published
    primed = watched_classifier(settings, load_catalogue())
    assert primed.version == model_version(published) and primed.source is not None
    assert primed.source.path == published and primed.source.check_every_s == 0.5
    assert primed.predict("停水了").category == "water.outage"


def test_the_publish_command_refuses_a_broken_file_and_prints_the_version_of_a_good_one(tmp_path):
    from typer.testing import CliRunner

    from services.triage.cli import app

    target = tmp_path / "state" / "triage.model"
    model = ComplaintClassifier().fit(["beep x", "hum y", "beep z", "hum w"], ["water.outage", "gas.leak"] * 2)
    good = CliRunner().invoke(app, ["publish", str(model.save(tmp_path / "good.model")), "--to", str(target)])
    assert good.exit_code == 0 and model_version(target) in good.output.replace("\n", "")
    published = target.read_bytes()
    bad = CliRunner().invoke(app, ["publish", str(_write(tmp_path / "bad.model", "nope")), "--state-dir", str(target.parent)])
    assert bad.exit_code == 1 and target.read_bytes() == published
    hub = CliRunner().invoke(app, ["publish", str(tmp_path / "good.model"), "--state-dir", str(tmp_path / "hub")])
    assert hub.exit_code == 0 and (tmp_path / "hub" / "triage.model").read_bytes() == published
