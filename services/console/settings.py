from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from domain.calendar import DEFAULT_TIMEZONE
from services.common.settings import ServiceSettings


class ConsoleSettings(ServiceSettings):
    """The console web app (`cityops service run console`; `cityops up` starts it on :8090)."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_CONSOLE_", extra="ignore")
    service_name: ClassVar[str] = "console"

    http_host: str = Field(default="127.0.0.1", description="Address the console listens on.")
    http_port: int = Field(default=8090, description="Port the console listens on.")
    intake_url: str = Field(default="http://127.0.0.1:8080", description="The hotline's intake API.")
    bridge_url: str = Field(default="http://127.0.0.1:8081", description="The unit HTTP bridge.")
    replay_url: str = Field(default="http://127.0.0.1:8082", description="The replay API (projections).")
    request_timeout_s: float = Field(default=5.0, gt=0, description="Longest wait for an upstream API before the page "
                                     "shows a 'try again' banner.")
    session_ttl_s: int = Field(default=8 * 3600, ge=60, description="How long a console session lasts (one shift).")
    cookie_secure: bool = Field(default=False, description="Send the session cookie over HTTPS only (set it behind TLS).")
    oidc_client_id: str | None = Field(
        default=None, description="The console's client id at the city's single sign-on (OpenID Connect, "
                                  "authorization code + PKCE); set, the login page offers SSO. The issuer, its JWKS, "
                                  "audience and role map are the hub's CITYOPS_AUTH_OIDC_* settings.")
    oidc_client_secret: str | None = Field(default=None, description="The client's secret, if the issuer wants one "
                                           "(a public client relies on PKCE alone).")
    oidc_discovery_url: str | None = Field(default=None, description="The issuer's discovery document; default "
                                           "<issuer>/.well-known/openid-configuration.")
    oidc_authorize_url: str | None = Field(default=None, description="The authorize endpoint, when not discovered "
                                           "(with oidc_token_url).")
    oidc_token_url: str | None = Field(default=None, description="The token endpoint, when not discovered.")
    oidc_redirect_url: str | None = Field(default=None, description="The callback registered at the issuer; default "
                                          "this console's own /console/login/sso.")
    oidc_scopes: str = Field(default="openid profile", description="Scopes asked for.")
    timezone: str = Field(default=DEFAULT_TIMEZONE, description="Zone the pages show times in (hub-wide CITYOPS_TIMEZONE).")
    live_buffer: int = Field(default=200, ge=1, description="Events a slow live subscriber may fall behind before it "
                             "is dropped (its browser reconnects).")

    @property
    def demo(self) -> bool:
        return self.mode == "demo"
