"""One city setting for the hub (CITYOPS_CITY): every service that reads the responsibility catalogue reads the
city's, an explicit catalogue_path still wins, and an unknown city is refused naming the field and the known ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from domain.catalogue import CATALOGUE_V1_PATH, CITY_CATALOGUES, UnknownCityError, catalogue_path_for_city
from services.bridge.settings import BridgeSettings
from services.console.settings import ConsoleSettings
from services.discover.settings import DiscoverSettings
from services.intake.settings import IntakeSettings
from services.projections.settings import ProjectionsSettings
from services.sla.settings import SlaSettings
from services.triage.settings import TriageSettings
from services.units.settings import UnitSettings

# Every settings class whose service loads the catalogue (grep `catalogue_file()` in services/).
CATALOGUE_READERS = [IntakeSettings, TriageSettings, BridgeSettings, SlaSettings, ConsoleSettings, UnitSettings,
                     DiscoverSettings, ProjectionsSettings]
YANTAI = Path(__file__).resolve().parents[2] / "domain" / "catalogue" / "responsibility.yantai.v1.yaml"


def test_the_known_cities_resolve_to_their_catalogue_files():
    assert catalogue_path_for_city("demo") == CATALOGUE_V1_PATH
    assert catalogue_path_for_city("yantai").resolve() == YANTAI
    assert catalogue_path_for_city(" Yantai ") == catalogue_path_for_city("yantai")
    assert all(path.exists() for path in CITY_CATALOGUES.values())


def test_an_unknown_city_is_an_error_listing_the_known_ones():
    with pytest.raises(UnknownCityError) as caught:
        catalogue_path_for_city("atlantis")
    assert "atlantis" in str(caught.value) and "demo, yantai" in str(caught.value)


@pytest.mark.parametrize("settings_class", CATALOGUE_READERS, ids=lambda c: c.__name__)
def test_every_catalogue_reader_defaults_to_the_small_city(monkeypatch, settings_class):
    monkeypatch.delenv("CITYOPS_CITY", raising=False)
    monkeypatch.delenv("CITYOPS_CATALOGUE_PATH", raising=False)
    assert settings_class().catalogue_file() == CATALOGUE_V1_PATH


@pytest.mark.parametrize("settings_class", CATALOGUE_READERS, ids=lambda c: c.__name__)
def test_every_catalogue_reader_honours_the_hub_wide_city(monkeypatch, settings_class):
    monkeypatch.setenv("CITYOPS_CITY", "yantai")
    assert settings_class().catalogue_file().resolve() == YANTAI


@pytest.mark.parametrize("settings_class", CATALOGUE_READERS, ids=lambda c: c.__name__)
def test_an_explicit_catalogue_path_wins_over_the_city(monkeypatch, tmp_path, settings_class):
    own = tmp_path / "ours.yaml"
    monkeypatch.setenv("CITYOPS_CITY", "yantai")
    monkeypatch.setenv("CITYOPS_CATALOGUE_PATH", str(own))
    assert settings_class().catalogue_file() == own


@pytest.mark.parametrize("settings_class", CATALOGUE_READERS, ids=lambda c: c.__name__)
def test_an_unknown_city_stops_the_settings_naming_the_field(monkeypatch, settings_class):
    monkeypatch.setenv("CITYOPS_CITY", "atlantis")
    with pytest.raises(ValidationError) as caught:
        settings_class()
    assert caught.value.errors()[0]["loc"] == ("city",)
    assert "demo, yantai" in str(caught.value)


def test_one_service_can_be_put_on_another_city_than_the_hub(monkeypatch):
    monkeypatch.setenv("CITYOPS_CITY", "yantai")
    monkeypatch.setenv("CITYOPS_INTAKE_CITY", "demo")
    assert IntakeSettings().catalogue_file() == CATALOGUE_V1_PATH
    assert TriageSettings().catalogue_file().resolve() == YANTAI
