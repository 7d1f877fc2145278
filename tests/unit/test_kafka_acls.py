"""Kafka principals and ACLs come from the topic catalogue alone (tools/kafka/acls.py), and say what issue 11 asks:
each service reads what it consumes and writes what it produces, each unit only its own task topic and the
unit reports, the archiver reads everything, only intake, discover and the archiver read the intake topics.
Area units (streets, communities, grids) share one task topic (issue 14): none of them has a principal, and no
unit principal may read that topic; only the simulated units, the bridge and the archiver do."""

from __future__ import annotations

from contracts import topics as catalogue
from contracts.topics import (
    ARCHIVER,
    AREA_TASKS,
    CHANNEL_INTAKE,
    INTAKE,
    UNIT_REPORTS,
    WORKFLOW_TOPICS,
    TopicSpec,
    all_topics,
    own_task_topic,
    unit_topic_spec,
)
from domain.catalogue import load_catalogue
from tools.kafka.acls import (
    ADMIN,
    Acl,
    can,
    deployment_acls,
    deployment_principals,
    derive_acls,
    principals,
    service_group_prefix,
    unit_principal,
)

UNITS = ["water", "hotline"]  # units with a task topic of their own
GRID = "grid-east-1-a-1"  # an area unit: its tasks are on AREA_TASKS
ACLS = derive_acls(UNITS)
SPECS = all_topics(UNITS)
SERVICES = ["intake", "discover", "triage", "consult", "act", "evaluate", "sla", "projections", "archiver", "units", "console"]
CALLER_DATA_TOPICS = [INTAKE.name, CHANNEL_INTAKE.name]  # callers' names and phones
CALLER_DATA_READERS = {"intake", "discover", ARCHIVER}


def readers_of(topic: str) -> set[str]:
    return {p for p in principals(UNITS) if can(ACLS, p, "read", "topic", topic)}


def writers_of(topic: str) -> set[str]:
    return {p for p in principals(UNITS) if can(ACLS, p, "write", "topic", topic)}


def test_one_principal_per_service_and_per_unit_and_the_admin() -> None:
    names = principals(UNITS)
    assert set(SERVICES) | {ADMIN, "channels", "bridge", "registry", "unit-water", "unit-hotline"} == set(names)
    assert len(names) == len(set(names))


def expected_readers(spec: TopicSpec) -> set[str]:
    """The catalogue's readers as principals: the units' party is the simulated-units service, plus the one
    unit whose task topic it is."""
    names = {"units" if r == catalogue.UNITS else r for r in spec.readers}
    return names | {unit_principal(u) for u in UNITS if spec.name == own_task_topic(u) and catalogue.UNITS in spec.readers}


def test_every_reader_of_a_topic_can_read_it_and_nobody_else() -> None:
    for spec in [*WORKFLOW_TOPICS, AREA_TASKS, unit_topic_spec("water"), unit_topic_spec("hotline")]:
        assert readers_of(spec.name) == expected_readers(spec), spec.name
    assert readers_of(catalogue.SLA.dlq) == {ARCHIVER}


def test_the_writer_writes_and_nobody_else_but_the_units() -> None:
    def principals_of(writer: str) -> set[str]:
        if writer == catalogue.EXTERNAL_CHANNELS:
            return {"channels"}
        if writer == catalogue.UNITS:
            return {"units", *(unit_principal(u) for u in UNITS)}
        return {writer}

    for spec in [*WORKFLOW_TOPICS, catalogue.AUDIT]:
        assert writers_of(spec.name) == set().union(*(principals_of(w) for w in spec.writers)), spec.name
    assert writers_of(own_task_topic("water")) == {"act"}


def test_a_service_writes_the_dlqs_of_what_it_reads_and_the_archiver_none() -> None:
    assert writers_of(catalogue.TICKETS.dlq) == {"triage", "evaluate", "sla", "intake", "projections"}
    assert writers_of(own_task_topic("water") + ".dlq") == {"units", "bridge"}
    assert not any(a.principal in (ARCHIVER, "console") and a.operation == "write" for a in ACLS)


def test_triage_may_not_read_the_intake_topics() -> None:
    for topic in CALLER_DATA_TOPICS:
        assert not can(ACLS, "triage", "read", "topic", topic)
    assert can(ACLS, "triage", "read", "topic", catalogue.TICKETS.name)


def test_only_intake_discover_and_the_archiver_read_the_intake_topics() -> None:
    for topic in CALLER_DATA_TOPICS:
        assert readers_of(topic) <= CALLER_DATA_READERS, (topic, readers_of(topic))


def test_the_archiver_reads_what_it_archives_and_not_the_plain_channel() -> None:
    # The machine channel's plain JSON is not archived (docs/privacy.md), so no prefix covers it.
    assert all(can(ACLS, ARCHIVER, "read", "topic", s.name) == (ARCHIVER in s.readers) for s in SPECS)
    assert not can(ACLS, ARCHIVER, "read", "topic", catalogue.CHANNEL_INTAKE.name)
    assert can(ACLS, ARCHIVER, "read", "topic", catalogue.AUDIT.name)


def test_a_unit_reads_only_its_own_tasks_and_writes_only_unit_reports() -> None:
    water = [a for a in ACLS if a.principal == "unit-water"]
    assert sorted(water) == sorted([
        Acl("unit-water", "topic", own_task_topic("water"), "literal", "read"),
        Acl("unit-water", "topic", UNIT_REPORTS.name, "literal", "write"),
        Acl("unit-water", "group", "cityops-unit-water", "prefixed", "read")])
    assert not can(ACLS, "unit-water", "read", "topic", own_task_topic("hotline"))
    assert not can(ACLS, "unit-water", "read", "topic", AREA_TASKS.name)
    assert not can(ACLS, "unit-water", "write", "topic", own_task_topic("water"))
    assert not can(ACLS, "unit-water", "read", "topic", INTAKE.name)


def test_area_units_have_no_principal_and_only_the_bridge_the_simulator_and_the_archiver_read_their_topic() -> None:
    cat = load_catalogue()
    acls, names = deployment_acls(), deployment_principals()
    assert {unit_principal(u) for u in cat.area_units()}.isdisjoint(names)
    assert {p for p in names if can(acls, p, "read", "topic", AREA_TASKS.name)} == {"units", "bridge", ARCHIVER}
    assert not any(a.principal == unit_principal(GRID) for a in acls)
    # Even a grid given a principal by mistake reads neither the shared topic nor another unit's
    mistaken = derive_acls([*UNITS, GRID])
    assert not can(mistaken, unit_principal(GRID), "read", "topic", AREA_TASKS.name)
    assert not can(mistaken, unit_principal(GRID), "read", "topic", own_task_topic("water"))


def test_a_department_reads_exactly_its_own_task_topic() -> None:
    cat = load_catalogue()
    acls = deployment_acls()
    topics = [s.name for s in all_topics(cat.own_topic_units())]
    for unit in cat.own_topic_units():
        readable = {t for t in topics if can(acls, unit_principal(unit), "read", "topic", t)}
        assert readable == {own_task_topic(unit)}, unit


def test_each_service_has_its_own_consumer_groups_and_nobody_creates_topics() -> None:
    for service in SERVICES:
        assert can(ACLS, service, "read", "group", f"cityops-{service}") or service == "channels"
        assert not can(ACLS, service, "read", "group", "cityops-someone-else")
    assert {a.operation for a in ACLS} == {"read", "write"}  # no CREATE, DELETE, ALTER for anyone but the admin
    assert ADMIN not in {a.principal for a in ACLS}  # the admin is the super user


def test_no_units_group_prefix_is_another_units() -> None:
    """Groups are prefixed ACLs: unit a's prefix must not also match unit b's groups."""
    units = list(load_catalogue().units_for_topics())
    prefixes = {u: service_group_prefix(unit_principal(u)) for u in units}
    clashes = [(a, b) for a in units for b in units if a != b and prefixes[b].startswith(prefixes[a])]
    assert not clashes, clashes


def test_the_derivation_takes_tuples_of_writers_and_new_parties() -> None:
    """Another team may give a topic several writers and add parties (the unit HTTP bridge, an audit topic)."""
    audit = TopicSpec("cityops.audit.v1", "audit", (), writer=("intake", "bridge"), readers=(ARCHIVER,))  # type: ignore[arg-type]
    reports = TopicSpec(UNIT_REPORTS.name, "reports", (), writer=(catalogue.UNITS, "bridge"),  # type: ignore[arg-type]
                        readers=(*UNIT_REPORTS.readers, "bridge"))
    water = TopicSpec(own_task_topic("water"), "tasks", (), partitions=1, writer="act", readers=(catalogue.UNITS, "bridge", ARCHIVER))
    specs = [audit, reports, water]
    specs += [catalogue.dlq_spec(s) for s in specs]
    acls = derive_acls(["water"], specs)
    assert can(acls, "bridge", "write", "topic", "cityops.audit.v1") and can(acls, "intake", "write", "topic", "cityops.audit.v1")
    assert can(acls, "bridge", "read", "topic", own_task_topic("water")) and can(acls, "bridge", "write", "topic", UNIT_REPORTS.name)
    assert can(acls, "bridge", "write", "topic", own_task_topic("water") + ".dlq")
    assert not can(acls, "bridge", "write", "topic", own_task_topic("water"))
    assert can(acls, "unit-water", "write", "topic", UNIT_REPORTS.name)
    assert can(acls, ARCHIVER, "read", "topic", "cityops.audit.v1")


def test_can_matches_as_the_broker_does() -> None:
    acls = [Acl("a", "topic", "x.", "prefixed", "read"), Acl("a", "topic", "y", "literal", "write")]
    assert can(acls, "a", "read", "topic", "x.1") and not can(acls, "a", "read", "topic", "y")
    assert can(acls, "a", "write", "topic", "y") and not can(acls, "a", "write", "topic", "y.dlq")
    assert not can(acls, "b", "read", "topic", "x.1")


# --- cityops kafka client-config ------------------------------------------------------------------

def test_client_config_prints_a_librdkafka_file_for_one_principal(tmp_path, monkeypatch) -> None:
    import json
    import stat

    from typer.testing import CliRunner

    from tools.kafka.cli import app
    from tools.kafka.security import Credentials

    monkeypatch.setenv("CITYOPS_KAFKA_STATE_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(app, ["client-config", "--principal", "unit-water"]).exit_code == 1  # no broker yet
    (tmp_path / "single").mkdir()
    (tmp_path / "single" / "node.json").write_text(json.dumps({"name": "single", "node_id": 1, "port": 19555}))
    credentials = Credentials.load_or_create(tmp_path / "single" / "credentials.json", ["admin", "unit-water"])
    assert stat.S_IMODE((tmp_path / "single" / "credentials.json").stat().st_mode) == 0o600

    printed = runner.invoke(app, ["client-config", "--principal", "unit-water"])
    assert printed.exit_code == 0, printed.output
    lines = dict(line.split("=", 1) for line in printed.output.splitlines() if "=" in line and not line.startswith("#"))
    assert lines == {"bootstrap.servers": "127.0.0.1:19555", "security.protocol": "SASL_PLAINTEXT",
                     "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "unit-water",
                     "sasl.password": credentials.password("unit-water")}
    out = tmp_path / "water.properties"
    assert runner.invoke(app, ["client-config", "--principal", "unit-water", "--out", str(out)]).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text() == printed.output
    assert runner.invoke(app, ["client-config", "--principal", "unit-nobody"]).exit_code == 1


def test_a_fresh_broker_forgets_principals_the_deployment_no_longer_has(tmp_path):
    """Area units once had principals; a broker started fresh must not recreate their users (tools/kafka/node.py)."""
    from tools.kafka.security import Credentials

    path = tmp_path / "credentials.json"
    before = Credentials.load_or_create(path, ["admin", "unit-water", "unit-grid-east-1-a-1"])
    Credentials.keep_only(path, ["admin", "unit-water", "bridge"])
    after = Credentials.load(path).passwords
    assert set(after) == {"admin", "unit-water"}  # the grid is gone; a new principal comes with load_or_create
    assert after["unit-water"] == before.password("unit-water")  # the others keep their passwords
