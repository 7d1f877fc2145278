"""Audit (审计): who did what through an HTTP door of the hub, and what the hub answered.

One record per state-changing HTTP call (POST, PUT, PATCH, DELETE), refused ones included, written by the
door that received it (intake, the units' HTTP bridge) on cityops.audit.v1, kept forever. It names the
caller as the token did and the request by its route template and the ids it touched; it never carries
a request or response body, nor any caller's personal data.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ..envelope import Event


class AuditRecorded(Event):
    """An HTTP call that could change state reached a door of the hub, and this is what came of it."""

    event_type = "cityops.audit.http-call.recorded.v1"

    subject: str | None = Field(default=None, description="Who called: the token's subject; none when no valid token was shown.")
    roles: tuple[str, ...] = Field(default=(), description="The caller's roles, as the token gave them.")
    issuer: str | None = Field(default=None, description="Who issued the token: `cityops` (the hub) or the city's SSO issuer.")
    unit: str | None = Field(default=None, description="The unit a unit user's token is bound to.")
    client_id: str | None = Field(default=None, description="The client id an app's token is bound to.")
    occurred_at: datetime = Field(description="When the call was received.")
    service: str = Field(description="The door that received it (intake, bridge).")
    method: str = Field(description="HTTP method.")
    route: str = Field(description="The route template (e.g. /tickets/{ticket_id}/split), or the raw path when no route matched.")
    target_ids: tuple[str, ...] = Field(default=(), description="Ids the call named or produced (tickets, tasks).")
    command_types: tuple[str, ...] = Field(default=(), description="Event types the call published, if any.")
    status_code: int = Field(description="The HTTP status answered.")
    outcome: str = Field(description="accepted (2xx/3xx), unauthenticated (401), forbidden (403), rejected (other 4xx) "
                         "or failed (5xx).")
    client_ip: str | None = Field(default=None, description="The address the call came from (as the HTTP server saw it).")
    request_id: str = Field(description="The request's id (its X-Request-ID header, or one made up; echoed in the answer).")
