"""Importers: CSV rows -> intake records with original times, deterministic ids, places on our map."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from contracts import events as ev
from domain.catalogue import load_catalogue
from tools.importers.domain import AreaMapper, SkipRow, row_to_envelope
from tools.importers.mapping import BALTIMORE, NYC, CsvMapping, load_mapping
from tools.importers.publish import ImportReport, envelopes_from_rows, read_csv
from tools.importers.settings import ImporterSettings

CATALOGUE = load_catalogue()
NYC_ROW = {"unique_key": "68630470", "created_date": "2026-04-11T23:28:40.000", "closed_date": "", "agency": "HPD",
           "complaint_type": "PAINT/PLASTER", "descriptor": "WALL", "location_type": "RESIDENTIAL BUILDING",
           "incident_zip": "10033", "city": "NEW YORK", "borough": "MANHATTAN", "latitude": "40.84711263308333",
           "longitude": "-73.93533426475268"}
BAL_ROW = {"ServiceRequestNum": "16-00105912", "SRType": "SW-Rat Rubout Proactive", "CreatedDate": "02/09/2016 09:57:58 AM",
           "Agency": "Solid Waste", "Address": "1112 MYRTLE AVE, BALTIMORE, MD, 21201", "Neighborhood": "Upton",
           "Latitude": "39.297236", "Longitude": "-76.630738"}


def _areas(mapping: CsvMapping) -> AreaMapper:
    return AreaMapper(CATALOGUE, mapping.areas)


def test_an_nyc_row_becomes_an_intake_record_at_its_original_time():
    env = row_to_envelope(NYC, NYC_ROW, _areas(NYC))
    data: ev.TicketSubmitted = env.data
    assert env.type == ev.TicketSubmitted.event_type and env.ticket_id == "nyc311-68630470"
    # 23:28:40 New York summer time is 03:28:40 UTC the next day.
    assert data.submitted_at == env.time == datetime(2026, 4, 12, 3, 28, 40, tzinfo=UTC)
    assert data.channel == ev.Channel.import_ and data.external_id == "nyc311:68630470"
    assert data.text == "PAINT/PLASTER: WALL at RESIDENTIAL BUILDING"
    assert data.category is None  # triage decides, as for any other ticket
    assert (data.location.lat, data.location.lon) == (40.84711263308333, -73.93533426475268)
    assert data.location.district == "district-west" and data.location.grid.startswith("grid-west-")
    assert CATALOGUE.area_chain(data.location)[0].id == data.location.grid


def test_ids_are_the_same_on_every_import_and_differ_between_rows():
    first = row_to_envelope(NYC, NYC_ROW, _areas(NYC))
    again = row_to_envelope(NYC, dict(NYC_ROW), _areas(NYC))
    other = row_to_envelope(NYC, {**NYC_ROW, "unique_key": "68631668"}, _areas(NYC))
    assert (first.id, first.ticket_id) == (again.id, again.ticket_id)
    assert first.id != other.id and first.ticket_id != other.ticket_id


def test_empty_and_placeholder_cells_are_left_out():
    env = row_to_envelope(NYC, {**NYC_ROW, "descriptor": "N/A", "location_type": "", "borough": "Unspecified",
                                "latitude": "", "longitude": ""}, _areas(NYC))
    assert env.data.text == "PAINT/PLASTER"
    assert env.data.location.district is None and env.data.location.lat is None


def test_a_baltimore_row_uses_its_local_12_hour_clock_and_drops_placeholder_coordinates():
    env = row_to_envelope(BALTIMORE, BAL_ROW, _areas(BALTIMORE))
    assert env.ticket_id == "bal311-16-00105912" and env.data.text == "SW-Rat Rubout Proactive (Solid Waste)"
    assert env.time == datetime(2016, 2, 9, 14, 57, 58, tzinfo=UTC)  # EST is UTC-5 in February
    assert env.data.location.address == "1112 MYRTLE AVE, BALTIMORE, MD, 21201" and env.data.location.grid
    placeholder = row_to_envelope(BALTIMORE, {**BAL_ROW, "Latitude": "39", "Longitude": "-77"}, _areas(BALTIMORE))
    assert placeholder.data.location.lat is None


@pytest.mark.parametrize("change, reason", [({"unique_key": ""}, "no id"), ({"created_date": "yesterday"}, "no valid creation time"),
                                            ({"complaint_type": "", "descriptor": "", "location_type": ""}, "no text")])
def test_rows_without_an_id_a_time_or_a_text_are_skipped_with_a_reason(change, reason):
    with pytest.raises(SkipRow, match=reason):
        row_to_envelope(NYC, {**NYC_ROW, **change}, _areas(NYC))


def test_the_same_place_always_lands_in_the_same_area_and_without_a_catalogue_only_coordinates_remain():
    mapper = _areas(BALTIMORE)
    assert mapper.areas_for("Upton", "Upton") == _areas(BALTIMORE).areas_for("upton ", "Upton")
    districts = {mapper.areas_for(n, n)["district"] for n in ("Upton", "Canton", "Hampden", "Roland Park", "Dorchester", "Fells Point")}
    assert districts == {"district-east", "district-west"}
    bare = row_to_envelope(NYC, NYC_ROW, AreaMapper(None, {}))
    assert bare.data.location.district is None and bare.data.location.lat is not None


def test_a_generic_mapping_file_drives_any_csv(tmp_path):
    mapping_file = tmp_path / "city.yaml"
    mapping_file.write_text(
        "source: smalltown\nid: ref\ncreated: opened\ncreated_format: '%d.%m.%Y %H:%M'\ntimezone: Europe/Berlin\n"
        "text: '{kind}[ - {details}]'\nlanguage: de\nlat: y\nlon: x\narea: ward\nareas: {North: district-east}\n",
        encoding="utf-8")
    mapping = load_mapping(mapping_file)
    row = {"ref": "A-1", "opened": "01.07.2025 08:15", "kind": "Schlagloch", "details": "", "y": "52.5", "x": "13.4",
           "ward": "North"}
    env = row_to_envelope(mapping, row, _areas(mapping))
    assert env.ticket_id == "smalltown-A-1" and env.data.text == "Schlagloch" and env.data.language == "de"
    assert env.time == datetime(2025, 7, 1, 6, 15, tzinfo=UTC)
    assert env.data.location.district == "district-east"


def test_the_vendored_samples_convert_without_skips():
    settings = ImporterSettings()
    for mapping, path in ((NYC, settings.nyc_csv), (BALTIMORE, settings.baltimore_csv)):
        report = ImportReport(mapping.source, "t")
        envelopes = list(envelopes_from_rows(mapping, itertools.islice(read_csv(path), 3000), _areas(mapping), report))
        assert report.rows == 3000 and len(envelopes) == 3000 and not report.skipped
        assert len({e.id for e in envelopes}) == 3000
        assert all(e.time.tzinfo is not None for e in envelopes)
