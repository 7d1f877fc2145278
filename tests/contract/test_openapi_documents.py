"""The OpenAPI documents the hub serves (intake's hotline + Open311 API, the replay API) are valid OpenAPI.

Checked with openapi-spec-validator, which validates against the OpenAPI 3.x schema and resolves
every reference. The apps are built without serving: building neither connects nor reads the
catalogue (its handlers use it per request).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from services.common.store import make_engine
from services.intake.api import build_api
from services.projections.api import create_router
from services.projections.settings import ProjectionsSettings


async def _no_publish(topic: str, envelope: Any) -> None:
    raise AssertionError("building the OpenAPI document publishes nothing")


def intake_document() -> dict[str, Any]:
    engine = make_engine("sqlite://")
    api = build_api(publish=_no_publish, engine=engine, catalogue=None, now=lambda: None)
    return api.openapi()


def replay_document() -> dict[str, Any]:
    # The app `cityops replay serve` builds around the projections router.
    api = FastAPI(title="cityops replay")
    api.include_router(create_router(ProjectionsSettings(), engine=make_engine("sqlite://")))
    return api.openapi()


def bridge_document() -> dict[str, Any]:
    from domain.catalogue import load_catalogue
    from services.bridge.api import build_api as build_bridge

    return build_bridge(publish=_no_publish, engine=make_engine("sqlite://"), catalogue=load_catalogue(), now=lambda: None).openapi()


DOCUMENTS = {"intake": intake_document, "replay": replay_document, "bridge": bridge_document}


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_openapi_document_is_valid(name: str) -> None:
    document = DOCUMENTS[name]()
    validate(document)  # raises with the first error


def test_intake_document_lists_the_hotline_and_open311_paths() -> None:
    paths = intake_document()["paths"]
    assert {"/tickets", "/tickets/{ticket_id}", "/open311/v2/services.json", "/open311/v2/requests.json"} <= set(paths)


def test_bridge_document_shows_each_route_with_its_examples_and_bearer_auth() -> None:
    document = bridge_document()
    paths = document["paths"]
    assert {"/tasks", "/tasks/{task_id}/complete", "/tasks/{task_id}/extension", "/consultations/{consultation_id}/opinion"} <= set(paths)
    for path, item in paths.items():
        for method, operation in item.items():
            if path != "/health":
                assert operation.get("security"), f"{method} {path} does not say it needs a bearer token"
            if method == "post":
                assert {"202", "401", "403", "404", "409", "422"} <= set(operation["responses"]), f"{method} {path}"
                assert operation["responses"]["409"]["content"]["application/json"]["example"]
    schemas = document["components"]["schemas"]
    for body in ("ProgressIn", "ExtensionIn", "ReturnIn", "CompleteIn", "OpinionIn", "ReportAccepted", "TaskOut", "ConsultationOut"):
        assert schemas[body].get("examples"), f"{body} has no example"


def test_the_bridge_answers_examples_are_valid_answers() -> None:
    from services.bridge.api import ConsultationOut, ReportAccepted, TaskOut

    for model in (TaskOut, ConsultationOut, ReportAccepted):
        for example in model.model_config["json_schema_extra"]["examples"]:
            model.model_validate(example)


def test_the_validator_rejects_a_broken_document() -> None:
    document = intake_document()
    no_location = copy.deepcopy(document)
    del no_location["paths"]["/tickets"]["post"]["parameters"][0]["in"]  # a parameter must say where it goes
    with pytest.raises(OpenAPIValidationError):
        validate(no_location)
    dangling = copy.deepcopy(document)
    dangling["paths"]["/tickets"]["post"]["responses"]["202"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/Nowhere"}
    with pytest.raises(Exception, match="Nowhere"):
        validate(dangling)
