"""The catalogue-trained classifier is trained once per catalogue and state dir, even when two services start at
the same moment (domain/classifier.py `cached_default_classifier`: triage and discover share it)."""

from __future__ import annotations

import threading
import time

from domain import classifier as classifier_module
from domain.catalogue import load_catalogue


def test_two_services_starting_together_train_once_and_share_the_model(tmp_path, monkeypatch):
    catalogue = load_catalogue()
    trained: list[int] = []
    real = classifier_module.default_classifier

    def slow_training(cat):
        trained.append(1)
        time.sleep(0.3)  # long enough for the other starter to arrive while this one trains
        return real(cat)

    monkeypatch.setattr(classifier_module, "default_classifier", slow_training)
    got: list[object] = []
    starters = [threading.Thread(target=lambda: got.append(classifier_module.cached_default_classifier(tmp_path, catalogue)))
                for _ in range(2)]
    for t in starters:
        t.start()
    for t in starters:
        t.join(120)
    assert len(got) == 2 and len(trained) == 1
    assert got[0].predict("路灯不亮了") == got[1].predict("路灯不亮了")  # type: ignore[attr-defined]
    assert len(list(tmp_path.glob("triage-default-*.model"))) == 1 and not list(tmp_path.glob("*.tmp"))
