"""services.common.kafka.kafka_access: the one place a client's settings become Kafka connection options."""

from __future__ import annotations

import pytest
from faststream.security import SASLScram256, SASLScram512

from services.common.kafka import kafka_access
from services.common.settings import KafkaClientSettings, ServiceSettings


@pytest.fixture(autouse=True)
def no_kafka_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("USERNAME", "PASSWORD", "SASL_MECHANISM", "SECURITY_PROTOCOL", "SSL_CAFILE"):
        monkeypatch.delenv(f"CITYOPS_KAFKA_{name}", raising=False)


def test_without_a_username_a_client_speaks_plaintext_as_before() -> None:
    access = kafka_access("h:1")
    assert access.options == {"bootstrap_servers": "h:1", "security_protocol": "PLAINTEXT"}
    assert access.security is None


def test_the_hub_wide_username_and_password_make_a_scram_sha_512_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOPS_KAFKA_USERNAME", "triage")
    monkeypatch.setenv("CITYOPS_KAFKA_PASSWORD", "s3cret")
    access = kafka_access("h:1")
    assert access.options == {"bootstrap_servers": "h:1", "security_protocol": "SASL_PLAINTEXT",
                              "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "triage",
                              "sasl_plain_password": "s3cret"}
    security = access.security
    assert isinstance(security, SASLScram512) and (security.username, security.password) == ("triage", "s3cret")
    assert "s3cret" not in repr(access) and "s3cret" not in repr(KafkaClientSettings())


def test_a_service_prefix_overrides_the_hub_wide_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    class TriageLike(ServiceSettings):
        model_config = {"env_prefix": "CITYOPS_TRIAGELIKE_"}  # type: ignore[assignment]

    monkeypatch.setenv("CITYOPS_KAFKA_USERNAME", "admin")
    monkeypatch.setenv("CITYOPS_TRIAGELIKE_KAFKA_USERNAME", "triage")
    monkeypatch.setenv("CITYOPS_KAFKA_PASSWORD", "pw")
    assert kafka_access(TriageLike()).username == "triage"


def test_mechanism_and_tls_are_settings(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl
    import subprocess

    monkeypatch.setenv("CITYOPS_KAFKA_USERNAME", "unit-water")
    monkeypatch.setenv("CITYOPS_KAFKA_PASSWORD", "pw")
    monkeypatch.setenv("CITYOPS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    assert isinstance(kafka_access("h:1").security, SASLScram256)
    key, cert = tmp_path / "ca.key", tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=test-ca"], check=True, capture_output=True)
    monkeypatch.setenv("CITYOPS_KAFKA_SSL_CAFILE", str(cert))
    access = kafka_access("h:1")
    assert access.protocol == "SASL_SSL" and isinstance(access.options["ssl_context"], ssl.SSLContext)
    assert access.security is not None and access.security.use_ssl


def test_an_unknown_mechanism_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOPS_KAFKA_USERNAME", "x")
    monkeypatch.setenv("CITYOPS_KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(ValueError, match="unsupported SASL mechanism"):
        _ = kafka_access("h:1").security
