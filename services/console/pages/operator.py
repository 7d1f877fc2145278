"""The hotline operator's desk (/console/operator/)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.common.auth import Role

from ..deps import ConsoleDeps, NavItem
from ..session import page_user
from ..upstream import User

OPERATOR = page_user(Role.operator)
NAV = [NavItem("nav.operator", "/console/operator/", frozenset({Role.operator}))]


def router(deps: ConsoleDeps) -> APIRouter:
    api = APIRouter(prefix="/console/operator")

    @api.get("/", include_in_schema=False)
    async def desk(request: Request, user: Annotated[User, Depends(OPERATOR)]) -> Response:
        return deps.render(request, "operator/desk.html", {})

    return api
