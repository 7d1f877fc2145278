"""The catalogue's limits against the real due dates of the Baltimore 311 sample they cite."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.catalogue import load_catalogue
from services.sla.calibration import EVIDENCE, due_spans, limit_fits_due_span

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "baltimore311" / "311_sample.csv"


@pytest.fixture(scope="module")
def spans():
    assert SAMPLE.exists(), f"the Baltimore sample ships with the repository at {SAMPLE}"
    return {row.request_type: row for row in due_spans(SAMPLE)}


def test_baltimore_fixes_one_due_span_per_request_type_and_it_is_the_one_cited(spans):
    for request_type, (_, hours) in EVIDENCE.items():
        row = spans[request_type]
        assert row.modal_hours == hours, request_type
        assert row.modal_share > 0.95, request_type


def test_each_cited_category_limit_expresses_its_baltimore_due_span():
    catalogue = load_catalogue()
    for request_type, (code, hours) in EVIDENCE.items():
        limit = catalogue.category(code).limits.resolution
        assert limit_fits_due_span(limit.amount, limit.unit, hours), f"{code} {limit} vs {request_type} {hours} h"


def test_the_fit_rule_refuses_looser_limits():
    assert limit_fits_due_span(4, "wd", 96) and limit_fits_due_span(24, "h", 48)
    assert not limit_fits_due_span(5, "wd", 96) and not limit_fits_due_span(72, "h", 48)
    assert not limit_fits_due_span(12, "h", 48)
