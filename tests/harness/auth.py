"""Tokens for tests: one hub key, a verifier for apps built in-process, and ready Authorization headers."""

from __future__ import annotations

from datetime import timedelta

from services.common.auth import AuthSettings, Principal, Role, TokenVerifier, mint_token

TEST_KEY = "test-hub-key-" + "k" * 40  # long enough for the hub's 32-byte minimum
TTL = timedelta(hours=1)


def verifier() -> TokenVerifier:
    return TokenVerifier(AuthSettings(key=TEST_KEY))


def token(role: Role | str, subject: str | None = None, *, unit: str | None = None, grids: tuple[str, ...] = (),
          client_id: str | None = None, ttl: timedelta = TTL) -> str:
    role = Role(role)
    principal = Principal(subject=subject or f"test-{role}", roles=frozenset({role}), unit=unit, grids=grids,
                          client_id=client_id if client_id or role != Role.app else "test-app")
    return mint_token(TEST_KEY.encode(), principal, ttl)


def bearer(role: Role | str, subject: str | None = None, **kw: object) -> dict[str, str]:
    """`{"Authorization": "Bearer ..."}` for a caller with `role`."""
    return {"Authorization": f"Bearer {token(role, subject, **kw)}"}  # type: ignore[arg-type]
