"""Settings shared by every service; each service subclasses `ServiceSettings` with its own prefix.

A field is read from `CITYOPS_<SERVICE>_<FIELD>` first, then from the hub-wide `CITYOPS_<FIELD>`,
so one `CITYOPS_KAFKA_BOOTSTRAP` serves every process while a single service can still be
pointed elsewhere. Only settings classes read the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from domain.calendar import DEFAULT_TIMEZONE, DEFAULT_WORKING_HOURS_TEXT, CalendarSettings, WorkCalendar, calendar_for
from domain.catalogue import CITY_CATALOGUES, DEFAULT_CITY, catalogue_path_for_city

REPO_ROOT = Path(__file__).resolve().parents[2]
HUB_PREFIX = "CITYOPS_"
# The read side's default niceness: its processes get about a tenth of a core's share against a workflow step's.
READ_SIDE_NICE = 10
READ_SIDE_GC_FULL_PASS_EVERY_S = 600.0


class KafkaClientSettings(BaseSettings):
    """How a client reaches and authenticates to Kafka (hub-wide env `CITYOPS_KAFKA_*`).

    With a username the client speaks SASL (SCRAM-SHA-512 by default) as that principal; without one it
    speaks PLAINTEXT, so a broker of one's own without authentication still works.
    services/common/kafka.py turns these into FastStream's `security=` and aiokafka's keyword arguments."""

    model_config = SettingsConfigDict(env_prefix=HUB_PREFIX, extra="ignore")

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated.")
    kafka_username: str | None = Field(default=None, description="SASL principal (e.g. triage, unit-water); none = no authentication.")
    kafka_password: SecretStr | None = Field(default=None, description="The principal's password.")
    kafka_sasl_mechanism: str = Field(default="SCRAM-SHA-512", description="SASL mechanism (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN).")
    kafka_security_protocol: str | None = Field(
        default=None, description="PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL; default: SASL_PLAINTEXT with a username "
                                  "(SASL_SSL when kafka_ssl_cafile is set), else PLAINTEXT.")
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA certificate that signed the brokers' TLS certificates (turns TLS on).")

    def security_protocol(self) -> str:
        if self.kafka_security_protocol:
            return self.kafka_security_protocol
        tls = self.kafka_ssl_cafile is not None
        if self.kafka_username:
            return "SASL_SSL" if tls else "SASL_PLAINTEXT"
        return "SSL" if tls else "PLAINTEXT"


class ServiceSettings(KafkaClientSettings):
    model_config = SettingsConfigDict(env_prefix="CITYOPS_SERVICE_", extra="ignore")

    service_name: ClassVar[str] = "service"
    # Views, archive and timers: work that may lag the workflow by a moment, and yields the CPU to it.
    read_side: ClassVar[bool] = False

    mode: Literal["demo", "production"] = Field(
        default="production", description="demo (`cityops up`, the tests) accepts the built-in secrets; production refuses to start with them.")
    state_dir: Path = Field(default=REPO_ROOT / ".state", description="Where embedded state (SQLite files) lives.")
    db_url: str | None = Field(default=None, description="SQLAlchemy URL of this service's store; default a SQLite file in state_dir.")
    log_level: str = Field(default="INFO", description="Log level (DEBUG shows one line per handled event).")
    log_json: bool | None = Field(default=None, description="JSON logs; default: JSON when stderr is not a terminal.")
    batch_max_records: int = Field(default=500, ge=1, description="Most records handled in one batch.")
    # An empty poll waits this long for records; one that arrives ends the wait at once (kafka.py
    # `poll_without_naps`), so this is only how often an idle consumer wakes up (and how long a stop waits).
    batch_timeout_ms: int = Field(default=200, ge=1, description="How long an empty poll waits for records before polling again.")
    # How much a fetch gathers before the broker answers, by how busy the consumer is (kafka.py `FetchPacing`: why
    # neither fixed choice works). A poll that returned at least fetch_busy_records records makes the next fetches
    # gather fetch_busy_min_bytes for up to fetch_busy_max_wait_ms; a quieter one answers at once again.
    fetch_max_wait_ms: int = Field(default=500, ge=0, description="Longest the broker holds a quiet consumer's fetch (no record yet).")
    fetch_busy_min_bytes: int = Field(default=16_384, ge=1, description="Least data a busy consumer's fetch gathers before the broker "
                                                                         "answers (1 = never gather: answer at once).")
    fetch_busy_max_wait_ms: int = Field(default=20, ge=0, description="Longest a busy consumer's fetch waits to gather it.")
    fetch_busy_records: int = Field(default=2, ge=1, description="Records a poll must return for the consumer to count as busy.")
    # Every record of a batch is sent before any acknowledgement is awaited, so they share produce requests
    # even at linger 0; a longer linger only delays the last one (same hop: p50 23.5 ms at 5 ms, 18.8 at 1).
    linger_ms: int = Field(default=1, ge=0, description="Producer linger: small batches of output records.")
    # A batch this small is applied on the event loop when the store is SQLite (pipeline.py `_apply_where_cheapest`):
    # the hop to a worker thread cost more than the batch. 0: every batch in a worker thread.
    apply_on_loop_max_records: int = Field(default=8, ge=0, description="Batches of at most this many records are applied "
                                           "on the event loop on a SQLite store (0: always in a worker thread).")
    # On a machine the services share, the kernel then serves a workflow step first when both are ready to run:
    # the read side is throughput work that catches up in idle time, while each step's wait for a core is what
    # a ticket's latency is made of. A process never raises its own priority, and a process running several
    # services takes its most urgent member's (tools/run.py).
    cpu_nice: int | None = Field(default=None, ge=0, le=19, description="How much this service's process yields the CPU "
                                 f"to others (Unix niceness 0-19); default {READ_SIDE_NICE} for the read side (sla, "
                                 "projections, archiver), 0 for the rest. Applied by `cityops service run`.")
    # The read side's state (the projections' memo of facts, sla's clocks) was re-read by each of the collector's
    # full scans; the workflow steps hold little, and in the whole hub freezing their batches measured nothing to
    # win and some CPU to lose (services/common/collector.py, docs/performance.md "Stop 36").
    gc_full_pass_every_s: float | None = Field(
        default=None, ge=0, description="A running service freezes what survives each batch out of Python's cyclic "
        "collector's scans and scans everything once every this many seconds (freeing reference cycles among the "
        f"frozen); 0 = off, the collector's own thresholds. Default {READ_SIDE_GC_FULL_PASS_EVERY_S:g} for the read "
        "side (sla, projections, archiver), 0 for the rest. Applied by `cityops service run` and `cityops intake serve`.")
    outbox_clear_delay_s: float = Field(default=0.25, ge=0, le=60, description="How long confirmed outbox rows wait "
                                       "to be deleted together (one transaction for several batches).")
    consumer_group: str | None = Field(default=None, description="Consumer group id; default cityops-<service>.")
    instance_id: str | None = Field(default=None, description="Name of this instance in logs.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Port of this process's Prometheus metrics endpoint "
                              "(GET /metrics, no token: no personal data there); 0 = none. `cityops up` gives each process its own.")
    metrics_host: str = Field(default="127.0.0.1", description="Address the metrics endpoint listens on.")
    # A failed batch is redelivered at once by the consumer; without a pause a database that is down or full
    # would be hammered in a tight loop. Doubles per consecutive failure, capped well below max.poll.interval.ms.
    retry_backoff_s: float = Field(default=0.2, ge=0, description="Pause before a failed batch is redelivered (doubles per consecutive failure).")
    retry_backoff_max_s: float = Field(default=30.0, ge=0, description="Longest pause between redeliveries of a failing batch.")
    max_record_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest output record (batch overhead included) a handler may produce; a larger one "
                                                "dead-letters its event. At most the broker's max.message.bytes.")
    parked_timeout_s: float = Field(default=6 * 3600, gt=0, description="A parked event whose dependency has not arrived after this long is dead-lettered.")
    processed_retention_s: float = Field(
        default=30 * 86400, gt=0, description="How long an applied event's id is kept to drop its duplicates (longer than any redelivery).")
    upkeep_every_s: float = Field(default=60.0, gt=0, description="How often parked events are expired and old applied-event ids pruned.")
    # One name for the whole hub (CITYOPS_CITY), so every service that reads the catalogue reads the same city.
    city: str = Field(default=DEFAULT_CITY, description=f"Which city the hub runs: {', '.join(sorted(CITY_CATALOGUES))} "
                                                        "(demo: the small packaged city; yantai: the city at real scale).")
    catalogue_path: Path | None = Field(default=None, description="Responsibility catalogue YAML of your own; wins over `city`.")

    @field_validator("city")
    @classmethod
    def _known_city(cls, name: str) -> str:
        catalogue_path_for_city(name)  # raises, listing the known cities; pydantic names the field
        return name.strip().lower()

    def catalogue_file(self) -> Path:
        """The catalogue this service reads: an explicit `catalogue_path`, else the one of `city`."""
        return self.catalogue_path or catalogue_path_for_city(self.city)

    def niceness(self) -> int:
        """The niceness this service's process asks for: `cpu_nice`, else the read side's or 0."""
        if self.cpu_nice is not None:
            return self.cpu_nice
        return READ_SIDE_NICE if self.read_side else 0

    def full_pass_every_s(self) -> float:
        """How often this service's process scans its whole heap, batches' survivors frozen in between; 0: off."""
        if self.gc_full_pass_every_s is not None:
            return self.gc_full_pass_every_s
        return READ_SIDE_GC_FULL_PASS_EVERY_S if self.read_side else 0.0

    @property
    def group_id(self) -> str:
        return self.consumer_group or f"cityops-{self.service_name}"

    def store_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.state_dir / (self.service_name + '.db')}"

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        hub_wide = EnvSettingsSource(settings_cls, env_prefix=HUB_PREFIX)
        return init_settings, env_settings, hub_wide, dotenv_settings, file_secret_settings


DEFAULT_PSEUDONYM_KEY = "change-me-in-production"
MIN_SECRET_LENGTH = 32


class UnsafeSettings(ValueError):
    """A setting is not fit for production (a built-in or too short secret): the service refuses to start."""


def require_secret(settings: ServiceSettings, field: str, *, default: str) -> None:
    """In production mode, refuse the built-in value of the secret `field`, an empty one or a short one;
    the error names the environment variables that set it. Demo mode accepts anything."""
    if settings.mode == "demo":
        return
    value = str(getattr(settings, field) or "")
    if value and value != default and len(value) >= MIN_SECRET_LENGTH:
        return
    problem = "is the built-in default" if value == default else "is empty" if not value else f"is shorter than {MIN_SECRET_LENGTH} characters"
    own = str(settings.model_config.get("env_prefix", "")) + field.upper()
    raise UnsafeSettings(
        f"{HUB_PREFIX}{field.upper()} (or {own}) {problem}: in production mode {settings.service_name} will not start "
        f"with it. Set it to a long random secret, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`, "
        f"the same for every service of the hub, or run a demo with {HUB_PREFIX}MODE=demo.")


class CalendarServiceSettings(ServiceSettings):
    """A service that computes deadlines: the working-day calendar's settings, shared by name.

    sla, consult and projections inherit these fields, so the hub-wide `CITYOPS_WORKING_HOURS`,
    `CITYOPS_TIMEZONE` and `CITYOPS_CALENDAR_*` give all of them the same calendar."""

    working_hours: str = Field(default=DEFAULT_WORKING_HOURS_TEXT, description="Working periods of a working day.")
    timezone: str = Field(default=DEFAULT_TIMEZONE, description="Zone of the working-day calendar (and of times shown).")
    calendar_path: Path | None = Field(default=None, description="National holiday file; default domain/calendar/cn.yaml.")
    calendar_overrides: tuple[Path, ...] = Field(default=(), description="The city's own holiday files, applied in order.")
    calendar_strict: bool = Field(
        default=False, description="Refuse deadlines in years without holiday data (dead-letters the event); "
                                   "default: count a plain Monday-Friday week there and log a warning.")

    def calendar_settings(self) -> CalendarSettings:
        return CalendarSettings(working_hours=self.working_hours, timezone=self.timezone, path=self.calendar_path,
                                overrides=tuple(self.calendar_overrides), strict=self.calendar_strict)

    def work_calendar(self) -> WorkCalendar:
        return calendar_for(self.calendar_settings())


def settings_env(settings: BaseSettings) -> dict[str, str]:
    """The environment that reproduces these settings in a child process (hub-wide prefix)."""
    out: dict[str, Any] = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        out[f"{HUB_PREFIX}{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return out
