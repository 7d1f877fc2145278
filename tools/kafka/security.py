"""Who may talk to the project's brokers: SCRAM users, the broker's SASL and authorizer settings, the ACLs.

* Clients (services, tools, units, inter-broker traffic) authenticate with SASL/SCRAM-SHA-512 on the
  BROKER listener. SCRAM users are written into the storage at format time (`--add-scram`), so the broker
  knows them before its first request and no start waits for a user to be created.
* The CONTROLLER listener is SASL too, with PLAIN: Kafka does not accept SCRAM there (SCRAM credentials
  live in the metadata log, which the controllers serve), so the admin's PLAIN password is set in the
  node's configuration. Neither listener admits an anonymous client.
* The StandardAuthorizer (KRaft) refuses whatever no ACL allows; `admin` is the one super user.
* Passwords are random, made by the launcher on first start and kept in `credentials.json` (mode 0600)
  in the broker's state directory; nothing secret is in the repository.

ACLs are set after the broker answers, as admin, with Kafka's CreateAcls/DeleteAcls requests (the
Python client has the wire formats but no admin call for them): `sync_acls` makes the broker's ACLs
exactly the derived ones (tools/kafka/acls.py), so a start after a catalogue change drops stale ones.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactBytes, CompactString, Int8, Int16, Int32, Schema, TaggedFields
from pydantic import SecretStr

from services.common.settings import KafkaClientSettings
from tools.kafka.acls import ADMIN, Acl

MECHANISM = "SCRAM-SHA-512"
CONTROLLER_MECHANISM = "PLAIN"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

# Kafka's wire codes (org.apache.kafka.common.resource / acl).
_RESOURCE = {"topic": 2, "group": 3}
_PATTERN = {"literal": 3, "prefixed": 4}
_OPERATION = {"read": 3, "write": 4}
_ANY, _ALLOW = 1, 3


class KafkaSecurityError(RuntimeError):
    """The broker refused to set up its users or ACLs; the message says which and why."""


@dataclass(frozen=True)
class Credentials:
    """Every principal's password, as kept in a broker's credentials file."""

    path: Path
    passwords: dict[str, str]

    @property
    def admin_password(self) -> str:
        return self.passwords[ADMIN]

    def password(self, principal: str) -> str:
        try:
            return self.passwords[principal]
        except KeyError:
            raise KafkaSecurityError(f"no principal {principal!r} in {self.path}; known: {sorted(self.passwords)}") from None

    @classmethod
    def load(cls, path: Path) -> Credentials:
        return cls(path, dict(json.loads(path.read_text())["passwords"]))

    @classmethod
    def load_or_create(cls, path: Path, principals: Iterable[str]) -> Credentials:
        """The credentials in `path`, with a new random password for every principal not in it yet."""
        known = cls.load(path).passwords if path.exists() else {}
        missing = [p for p in principals if p not in known]
        if missing or not path.exists():
            known.update({p: secrets.token_urlsafe(24) for p in missing})
            _write_private(path, json.dumps({"mechanism": MECHANISM, "passwords": known}, indent=1) + "\n")
        return cls(path, known)


    @classmethod
    def keep_only(cls, path: Path, principals: Iterable[str]) -> None:
        """Forget the principals of `path` that are not in `principals` (their passwords stay for those kept): a
        fresh broker must not recreate users the deployment no longer has (area units once had principals)."""
        if not path.exists():
            return
        wanted = set(principals)
        known = cls.load(path).passwords
        if set(known) - wanted:
            kept = {p: pw for p, pw in known.items() if p in wanted}
            _write_private(path, json.dumps({"mechanism": MECHANISM, "passwords": kept}, indent=1) + "\n")


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, never readable by others even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def broker_properties(admin_password: str) -> dict[str, str]:
    """The SASL and authorizer settings of a node whose listeners are named BROKER and CONTROLLER."""
    scram = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" password="{admin_password}";'
    plain = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{ADMIN}" '
             f'password="{admin_password}" user_{ADMIN}="{admin_password}";')
    return {
        "listener.security.protocol.map": "BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": "BROKER",
        "sasl.enabled.mechanisms": MECHANISM,
        "listener.name.broker.sasl.enabled.mechanisms": MECHANISM,
        "listener.name.controller.sasl.enabled.mechanisms": CONTROLLER_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "sasl.mechanism.controller.protocol": CONTROLLER_MECHANISM,
        "listener.name.broker.scram-sha-512.sasl.jaas.config": scram,
        "listener.name.controller.plain.sasl.jaas.config": plain,
        "authorizer.class.name": AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN}",
    }


SCRAM_ITERATIONS = 4096  # Kafka's minimum for SCRAM-SHA-512, and its default


def salted_password(password: str, salt: bytes, iterations: int = 0) -> bytes:
    """SCRAM's SaltedPassword (RFC 5802): PBKDF2-HMAC-SHA-512 of the password."""
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations or SCRAM_ITERATIONS)


def scram_format_arguments(credentials: Credentials) -> list[str]:
    """`kafka-storage format` arguments that create every principal's SCRAM user with the storage.

    Salted here (PBKDF2 in C) rather than by the storage tool's JVM, which runs without its optimising
    compiler and took 0.7 s for 60 users; it also keeps the passwords off the tool's command line."""
    arguments = []
    for name, password in sorted(credentials.passwords.items()):
        salt = secrets.token_bytes(24)
        salted = salted_password(password, salt)
        arguments.append(f'--add-scram={MECHANISM}=[name={name},iterations={SCRAM_ITERATIONS},'
                         f'salt="{base64.b64encode(salt).decode()}",saltedpassword="{base64.b64encode(salted).decode()}"]')
    return arguments


def admin_client_options(credentials: Credentials) -> dict[str, Any]:
    """aiokafka keyword arguments that authenticate as the admin."""
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": MECHANISM,
            "sasl_plain_username": ADMIN, "sasl_plain_password": credentials.admin_password}


# ---------------------------------------------------------------------------------------------------- ACLs

class _CreateAcls(Request[CreateAclsRequest_v1]):
    API_KEY = 30

    def __init__(self, acls: Sequence[Acl]) -> None:
        self._acls = acls

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class([(_RESOURCE[a.resource], a.name, _PATTERN[a.pattern], f"User:{a.principal}", "*",
                                      _OPERATION[a.operation], _ALLOW) for a in self._acls])


class _DeleteAcls(Request[DeleteAclsRequest_v1]):
    API_KEY = 31

    def __init__(self, filters: Sequence[tuple[int, str, int, str, str, int, int]]) -> None:
        self._filters = filters

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(list(self._filters))


class _DescribeAllAcls(Request[DescribeAclsRequest_v1]):
    API_KEY = 29

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        return request_struct_class(_ANY, None, _ANY, None, None, _ANY, _ANY)


_RESOURCE_NAME = {v: k for k, v in _RESOURCE.items()}
_PATTERN_NAME = {v: k for k, v in _PATTERN.items()}
_OPERATION_NAME = {v: k for k, v in _OPERATION.items()}


async def describe_acls(admin: AIOKafkaAdminClient) -> tuple[set[Acl], list[tuple[Any, ...]]]:
    """The broker's ALLOW ACLs we can name, and the raw (resource, pattern, principal, host, op, permission) of the rest."""
    response = await admin._send_request(_DescribeAllAcls())  # noqa: SLF001 - no public call for ACLs
    if response.error_code:
        raise KafkaSecurityError(f"DescribeAcls failed: error {response.error_code} {response.error_message}")
    known: set[Acl] = set()
    other: list[tuple[Any, ...]] = []
    for resource_type, name, pattern_type, entries in response.resources:
        for principal, host, operation, permission in entries:
            acl = _as_acl(resource_type, name, pattern_type, principal, host, operation, permission)
            if acl is None:
                other.append((resource_type, name, pattern_type, principal, host, operation, permission))
            else:
                known.add(acl)
    return known, other


def _as_acl(resource_type: int, name: str, pattern_type: int, principal: str, host: str, operation: int,
            permission: int) -> Acl | None:
    if (permission != _ALLOW or host != "*" or not principal.startswith("User:") or resource_type not in _RESOURCE_NAME
            or pattern_type not in _PATTERN_NAME or operation not in _OPERATION_NAME):
        return None
    return Acl(principal.removeprefix("User:"), _RESOURCE_NAME[resource_type], name, _PATTERN_NAME[pattern_type],
               _OPERATION_NAME[operation])


async def sync_acls(bootstrap: str, credentials: Credentials, wanted: Sequence[Acl], timeout_s: float = 30.0) -> dict[str, int]:
    """Make the broker's ACLs exactly `wanted`: create the missing ones, delete those no longer derived."""
    return await sync_acls_with({"bootstrap_servers": bootstrap, **admin_client_options(credentials)}, wanted, timeout_s)


async def sync_acls_with(options: dict[str, Any], wanted: Sequence[Acl], timeout_s: float = 30.0) -> dict[str, int]:
    """`sync_acls` with a client's aiokafka options (bootstrap_servers included); they must be a super user's."""
    admin = AIOKafkaAdminClient(request_timeout_ms=int(timeout_s * 1000), **options)
    await admin.start()
    try:
        present, other = await describe_acls(admin)
        missing = sorted(set(wanted) - present)
        stale = sorted(present - set(wanted))
        filters = [(_RESOURCE[a.resource], a.name, _PATTERN[a.pattern], f"User:{a.principal}", "*",
                    _OPERATION[a.operation], _ALLOW) for a in stale] + [tuple(o) for o in other]
        if filters:
            response = await admin._send_request(_DeleteAcls(filters))  # noqa: SLF001
            _raise_on_errors("DeleteAcls", [(r[0], r[1]) for r in response.filter_responses])
        if missing:
            response = await admin._send_request(_CreateAcls(missing))  # noqa: SLF001
            _raise_on_errors("CreateAcls", response.creation_responses)
        await _wait_until_present(admin, set(wanted), timeout_s)
        return {"created": len(missing), "deleted": len(filters), "total": len(wanted)}
    finally:
        await admin.close()


async def _wait_until_present(admin: AIOKafkaAdminClient, wanted: set[Acl], timeout_s: float) -> None:
    # ACLs are metadata records: a broker applies them a moment after the controller accepted them.
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        present, _ = await describe_acls(admin)
        if present == wanted:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise KafkaSecurityError(f"ACLs not in place after {timeout_s}s: {len(wanted - present)} missing, "
                                     f"{len(present - wanted)} extra")
        await asyncio.sleep(0.1)


def _raise_on_errors(what: str, results: Iterable[tuple[int, str | None]]) -> None:
    errors = [f"{code} {message}" for code, message in results if code]
    if errors:
        raise KafkaSecurityError(f"{what} failed for {len(errors)} ACL(s): {errors[:3]}")


# ---------------------------------------------------------------------------------------------------- clients

def client_env(bootstrap: str, credentials: Credentials, principal: str) -> dict[str, str]:
    """The environment that makes a child process a client of this broker as `principal`
    (services/common/settings.py reads it; services/common/kafka.py turns it into client options)."""
    return {"CITYOPS_KAFKA_BOOTSTRAP": bootstrap, "CITYOPS_KAFKA_USERNAME": principal,
            "CITYOPS_KAFKA_PASSWORD": credentials.password(principal), "CITYOPS_KAFKA_SASL_MECHANISM": MECHANISM}


def client_settings(bootstrap: str, credentials: Credentials, principal: str = ADMIN) -> KafkaClientSettings:
    """Client settings for an in-process client of this broker as `principal` (default: the admin)."""
    return KafkaClientSettings(kafka_bootstrap=bootstrap, kafka_username=principal,
                               kafka_password=SecretStr(credentials.password(principal)), kafka_sasl_mechanism=MECHANISM)


def librdkafka_properties(bootstrap: str, credentials: Credentials, principal: str) -> str:
    """A librdkafka configuration file for `principal` (`kcat -F FILE`)."""
    return (f"# cityops: Kafka principal {principal} (secret: keep this file private)\n"
            f"bootstrap.servers={bootstrap}\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanisms={MECHANISM}\n"
            f"sasl.username={principal}\nsasl.password={credentials.password(principal)}\n")


def compose_env(principals: Iterable[str]) -> str:
    """`.env` lines for docker-compose.yml: a random password for each principal (CITYOPS_KAFKA_PASSWORD_<NAME>)."""
    return "".join(f"{compose_password_variable(p)}={secrets.token_urlsafe(24)}\n" for p in principals)


def compose_password_variable(principal: str) -> str:
    return "CITYOPS_KAFKA_PASSWORD_" + principal.upper().replace("-", "_")


# ---------------------------------------------------------------------------------------------------- users

class _AlterUserScramCredentialsResponse(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("user", CompactString("utf-8")), ("error_code", Int16),
                                 ("error_message", CompactString("utf-8")), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _AlterUserScramCredentialsStruct(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterUserScramCredentialsResponse
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields))),
        ("upsertions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("iterations", Int32),
                                    ("salt", CompactBytes), ("salted_password", CompactBytes), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _UpsertScramUsers(Request[_AlterUserScramCredentialsStruct]):
    API_KEY = 51

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def build(self, request_struct_class: type[_AlterUserScramCredentialsStruct]) -> _AlterUserScramCredentialsStruct:
        upsertions: list[tuple[Any, ...]] = []
        for name, password in sorted(self._users.items()):
            salt = secrets.token_bytes(24)
            upsertions.append((name, 2, SCRAM_ITERATIONS, salt, salted_password(password, salt), {}))  # 2 = SCRAM-SHA-512
        return request_struct_class([], upsertions, {})


async def upsert_users(bootstrap: str, credentials: Credentials, principals: Iterable[str], timeout_s: float = 30.0) -> None:
    """Create (or reset) the SCRAM users of principals the storage was formatted without, as the admin."""
    users = {p: credentials.password(p) for p in principals}
    if not users:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                **admin_client_options(credentials))
    await admin.start()
    try:
        response = await admin._send_request(_UpsertScramUsers(users))  # noqa: SLF001 - no public call for it
        _raise_on_errors("AlterUserScramCredentials", [(r[1], f"{r[0]}: {r[2]}") for r in response.results])
    finally:
        await admin.close()


def record_users(users_file: Path, credentials: Credentials) -> None:
    """Note that the storage holds a SCRAM user for every principal of `credentials`."""
    users_file.write_text(json.dumps(sorted(credentials.passwords)) + "\n")


def users_in_storage(users_file: Path) -> set[str]:
    try:
        return set(json.loads(users_file.read_text()))
    except (OSError, ValueError):
        return set()


async def secure_running_broker(bootstrap: str, credentials: Credentials, users_file: Path, acls: Sequence[Acl],
                                timeout_s: float) -> dict[str, int]:
    """Create the users the storage lacks (principals added after it was formatted), then sync the ACLs."""
    missing = set(credentials.passwords) - users_in_storage(users_file)
    if missing:
        await upsert_users(bootstrap, credentials, sorted(missing), timeout_s)
        record_users(users_file, credentials)
    return await sync_acls(bootstrap, credentials, acls, timeout_s)
