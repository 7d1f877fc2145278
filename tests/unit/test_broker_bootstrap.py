"""A service's FastStream broker connects to every address of a comma-separated bootstrap (the 3-broker
cluster's), not to one host named "a:1,b:2" (found by `cityops chaos --cluster`: no service could start)."""

from __future__ import annotations

from typing import ClassVar

from services.common.kafka import make_broker
from services.common.settings import ServiceSettings


class _Settings(ServiceSettings):
    service_name: ClassVar[str] = "probe"


def test_each_address_of_a_comma_separated_bootstrap_is_its_own_host() -> None:
    broker = make_broker(_Settings(kafka_bootstrap="127.0.0.1:1,127.0.0.1:3,127.0.0.1:5"))
    assert broker._connection_kwargs["bootstrap_servers"] == ["127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:5"]
