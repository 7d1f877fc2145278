from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

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
    oidc_login_url: str | None = Field(
        default=None, description="The city's single sign-on page that signs a user in and hands back a token "
                                  "(the login page offers it when set).")
    oidc_token_param: str = Field(default="id_token", description="Form field or query parameter in which the SSO "
                                  "hands the console the user's token on /console/login/sso.")
    catalogue_path: str | None = Field(default=None, description="Responsibility catalogue YAML (areas and units for the "
                                       "forms and the demo identities); default the packaged v1.")
    live_buffer: int = Field(default=200, ge=1, description="Events a slow live subscriber may fall behind before it "
                             "is dropped (its browser reconnects).")

    @property
    def demo(self) -> bool:
        return self.mode == "demo"
