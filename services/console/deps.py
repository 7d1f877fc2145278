"""What every page module gets: settings, the upstream APIs, the live feed, the templates and the clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from domain.catalogue import Catalogue
from services.common.auth import Principal, Role

from .i18n import LANG_COOKIE, chosen_language, translator
from .live import LiveFeed
from .session import Sessions
from .settings import ConsoleSettings
from .upstream import Upstream

TEMPLATES_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class NavItem:
    """One link of the navigation bar, shown to the roles named (a pages module lists its own in `NAV`)."""

    key: str  # i18n key of the label
    href: str
    roles: frozenset[Role]


@dataclass
class ConsoleDeps:
    settings: ConsoleSettings
    upstream: Upstream
    live: LiveFeed
    templates: Jinja2Templates
    clock: Callable[[], datetime]
    sessions: Sessions
    catalogue: Catalogue
    identities: dict[str, Principal] = field(default_factory=dict)  # demo mode: who one may sign in as
    nav: list[NavItem] = field(default_factory=list)

    def render(self, request: Request, template: str, context: Mapping[str, Any] | None = None, *,
               status_code: int = 200) -> HTMLResponse:
        """A page (or an htmx fragment) with what every template may use: `t`, `lang`, `user`, `csrf`, `nav`."""
        lang = chosen_language(request)
        user: Principal | None = getattr(request.state, "principal", None)
        base = {"t": translator(lang), "lang": lang, "user": user, "csrf": self.sessions.csrf_of(request) if user else "",
                "nav": [item for item in self.nav if user is not None and user.has(*item.roles)],
                "path": request.url.path, "now": self.clock()}
        response = self.templates.TemplateResponse(request, template, base | dict(context or {}), status_code=status_code)
        if request.query_params.get("lang") == lang:  # the switch was used: remember it
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/console")
        return response


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.autoescape = True
    return templates
