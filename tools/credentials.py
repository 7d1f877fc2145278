"""The credentials a local hub runs with (`cityops up`, the benchmark): the hub key and one token per demo user.

The key is made once and kept in the hub's state dir (`auth.key`, mode 0600); every process gets its path
as `CITYOPS_AUTH_KEY_FILE`. The demo users' tokens are written to `tokens.env` (0600) next to it, as
`NAME_TOKEN=...` lines a shell can `source`; the simulated hotline staff get theirs as settings of the
units service.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from services.common.auth import Principal, Role, mint_token, write_key_file

DEMO_GRID = "grid-east-1-a-1"
DEMO_USERS: dict[str, Principal] = {
    "operator": Principal("demo-operator", frozenset({Role.operator})),
    "supervisor": Principal("demo-supervisor", frozenset({Role.supervisor})),
    "auditor": Principal("demo-auditor", frozenset({Role.auditor})),
    "app": Principal("demo-app", frozenset({Role.app}), client_id="demo-app"),
    "unit": Principal("water", frozenset({Role.unit}), unit="water"),
    "grid-worker": Principal("demo-grid-worker", frozenset({Role.grid_worker}), grids=(DEMO_GRID,)),
    # the simulated hotline staff of the units service (services/units/hotline.py)
    "callback-desk": Principal("simulated-callback-desk", frozenset({Role.operator})),
    "simulated-supervisor": Principal("simulated-supervisor", frozenset({Role.supervisor})),
}


@dataclass(frozen=True)
class HubCredentials:
    key_file: Path
    tokens_file: Path
    tokens: dict[str, str]

    def env(self) -> dict[str, str]:
        """What every process of the hub is given: the key to check tokens, and the simulated staff's tokens."""
        return {"CITYOPS_AUTH_KEY_FILE": str(self.key_file),
                "CITYOPS_UNIT_HOTLINE_TOKEN": self.tokens["callback-desk"],
                "CITYOPS_UNIT_SUPERVISOR_TOKEN": self.tokens["simulated-supervisor"]}

    def bearer(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


def env_name(user: str) -> str:
    return user.upper().replace("-", "_") + "_TOKEN"


def hub_credentials(state_dir: Path, ttl: timedelta = timedelta(days=1)) -> HubCredentials:
    """The hub key of `state_dir` (made on first use) and fresh tokens for every demo user, written to tokens.env."""
    key_file = state_dir / "auth.key"
    key = write_key_file(key_file).encode()
    tokens = {user: mint_token(key, principal, ttl) for user, principal in DEMO_USERS.items()}
    tokens_file = state_dir / "tokens.env"
    tokens_file.unlink(missing_ok=True)
    descriptor = os.open(tokens_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write("# cityops demo tokens (cityops up); valid for " + str(ttl) + ". Use: source this file, then\n"
                "# curl -H \"Authorization: Bearer $OPERATOR_TOKEN\" http://127.0.0.1:8080/tickets\n")
        for user, token in tokens.items():
            f.write(f"{env_name(user)}={token}\n")
    return HubCredentials(key_file, tokens_file, tokens)
