"""One writer per topic: the topic catalogue (contracts/topics.py) names each topic's writer and readers,
and the code agrees with it.

* Statically: every `Emit(topic, ...)`, `publish(topic, ...)` and producer `send*(topic, ...)` in a
  service package names a topic through the catalogue (a TopicSpec constant's `.name`, or
  `unit_task_topic(...)`, whichever unit task topic it picks), and that topic's writer is the package's service. Checked on the AST.
* At run time: the pipeline refuses to emit to a topic another service owns (NotTheWriter), DLQs and
  topics outside the catalogue excepted.
* Readers: the services subscribed to a topic (read from each app as built) are its catalogue readers.
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import topics as catalogue
from contracts.envelope import Envelope
from contracts.topics import (
    ARCHIVER,
    CHANNEL_INTAKE,
    COMMANDS,
    SLA,
    TRIAGE,
    UNIT_TASK_WRITER,
    WORKFLOW_TOPICS,
    NotTheWriter,
    all_topics,
    check_writer,
    dlq_spec,
    own_task_topic,
    writer_of,
)

REPO = Path(__file__).resolve().parents[2]
NOT_SERVICES = {"common", "ops", "importers"}  # plumbing, the CLI, and a tool (loads history as intake records)
UNIT_TOPIC = "cityops.unit.<unit>.tasks.v1"


# --- the static check ----------------------------------------------------------------------------

def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_publish(node: ast.Call) -> bool:
    """A call whose first argument is a topic: Emit(...), a plain publish(topic, ...) (intake's API), a producer's
    send / send_and_wait (aiokafka). A broker's .publish(value, topic) is not: its topic comes second and, in
    intake's app, from the plain publish above it."""
    name, func = _call_name(node), node.func
    if name in {"send", "send_and_wait"}:  # a producer's, not an object's own send(envelope) (the units' SDK)
        return isinstance(func, ast.Attribute) and not (isinstance(func.value, ast.Name) and func.value.id == "self")
    return name == "Emit" or (name == "publish" and isinstance(func, ast.Name))


def _topic_of(arg: ast.expr) -> str | None:
    """The catalogue topic an argument names, or None when it is not named through the catalogue."""
    if isinstance(arg, ast.Attribute) and arg.attr == "name" and isinstance(arg.value, ast.Name):
        spec = getattr(catalogue, arg.value.id, None)
        return spec.name if isinstance(spec, catalogue.TopicSpec) else None
    if isinstance(arg, ast.Call) and _call_name(arg) == "unit_task_topic":
        return UNIT_TOPIC
    return None


def _forwarding_publishes(tree: ast.AST) -> set[int]:
    """ids of the plain publish(topic, ...) calls that pass on a topic their function received as a parameter
    (intake's API notes each publish for the audit trail): the calls that chose the topic are checked instead."""
    forwarded: set[int] = set()
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            params = {a.arg for a in function.args.args}
            for node in ast.walk(function):
                if (isinstance(node, ast.Call) and _call_name(node) == "publish" and node.args
                        and isinstance(node.args[0], ast.Name) and node.args[0].id in params):
                    forwarded.add(id(node))
    return forwarded


def published_topics(root: Path) -> dict[str, list[tuple[str, str | None]]]:
    """Per service package: (file:line, topic or None) of every publishing call."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for svc_dir in sorted(p for p in (root / "services").iterdir() if p.is_dir()):
        if svc_dir.name in NOT_SERVICES or svc_dir.name.startswith((".", "_")):
            continue
        for path in sorted(svc_dir.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            forwarded = _forwarding_publishes(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and _is_publish(node) and node.args and id(node) not in forwarded:
                    where = f"{path.relative_to(root)}:{node.lineno}"
                    found.setdefault(svc_dir.name, []).append((where, _topic_of(node.args[0])))
    return found


def foreign_writes(root: Path) -> list[str]:
    problems = []
    for service, calls in published_topics(root).items():
        for where, topic in calls:
            if topic is None:
                problems.append(f"{where}: {service} publishes to a topic not named through contracts/topics.py")
                continue
            writers = (UNIT_TASK_WRITER,) if topic == UNIT_TOPIC else catalogue.writers_of(topic)
            if service not in writers:
                problems.append(f"{where}: {service} publishes to {topic}, whose only writer is {' or '.join(writers) or 'nobody'}")
    return problems


def test_every_service_publishes_only_to_the_topics_it_owns() -> None:
    problems = foreign_writes(REPO)
    assert not problems, "publishing to topics owned by someone else:\n" + "\n".join(problems)


def test_the_static_check_sees_the_writers() -> None:
    found = {svc: {t for _, t in calls} for svc, calls in published_topics(REPO).items()}
    assert found["intake"] >= {catalogue.INTAKE.name, COMMANDS.name}
    assert found["act"] == {catalogue.ACT.name, UNIT_TOPIC}
    assert found["sla"] == {SLA.name} and found["triage"] == {TRIAGE.name}
    assert found["units"] == {catalogue.UNIT_REPORTS.name}
    assert found["bridge"] == {catalogue.UNIT_REPORTS.name}


def test_a_foreign_emit_fails_the_static_check(tmp_path: Path) -> None:
    for rel in ("services/__init__.py", "services/consult/__init__.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "services/consult/handlers.py").write_text(
        "from contracts.topics import CONSULT, TRIAGE, unit_task_topic\n"
        "def ok(env):\n    return [Emit(CONSULT.name, env)]\n"
        "def foreign(env):\n    return [Emit(TRIAGE.name, env)]\n"
        "def to_a_unit(env):\n    return [Emit(unit_task_topic('water', 'city'), env)]\n"
        "def unnamed(env, topic):\n    return [Emit(topic, env)]\n"
        "async def passes_on(topic, env):\n    await publish(topic, env)\n"  # 10: its callers are checked
        "async def chooses(env, topic=TRIAGE.name):\n    await publish(TRIAGE.name, env)\n")  # 13
    problems = foreign_writes(tmp_path)
    assert [p.split(": ", 1)[0] for p in problems] == [f"services/consult/handlers.py:{n}" for n in (5, 7, 9, 13)], problems
    assert "cityops.triage.v1, whose only writer is triage" in problems[0]


# --- the catalogue -------------------------------------------------------------------------------

def test_every_topic_names_one_writer_and_its_readers() -> None:
    for spec in all_topics(["water"]):
        several = spec.name in (catalogue.AUDIT.name, catalogue.UNIT_REPORTS.name)  # named several writers
        assert spec.writers and (len(spec.writers) > 1) == several and all(spec.writers), spec.name
        plain_personal_data = spec.name.startswith(CHANNEL_INTAKE.name)  # the channel and its DLQ (docs/privacy.md)
        assert (ARCHIVER in spec.readers) != plain_personal_data, spec.name
    assert catalogue.AUDIT.writers == ("intake", catalogue.BRIDGE) and catalogue.AUDIT.readers == (ARCHIVER,)
    assert catalogue.AUDIT.config == catalogue.RETAIN_FOREVER
    assert writer_of(own_task_topic("water")) == "act" and writer_of(COMMANDS.name) == "intake"
    assert writer_of(catalogue.AREA_TASKS.name) == "act"
    assert catalogue.writers_of(catalogue.UNIT_REPORTS.name) == ("units", "bridge")
    assert writer_of(catalogue.CHANNEL_INTAKE.name) == catalogue.EXTERNAL_CHANNELS
    assert writer_of(SLA.dlq) is None and "readers of cityops.sla.v1" in catalogue.dlq_spec(SLA).writer


# --- the run-time check --------------------------------------------------------------------------

def test_check_writer_refuses_a_foreign_topic_but_not_a_dlq_or_a_test_topic() -> None:
    check_writer("triage", TRIAGE.name)
    check_writer("act", own_task_topic("water"))
    check_writer("consult", TRIAGE.dlq)
    check_writer("registrar", "test-topic-123")
    with pytest.raises(NotTheWriter, match="consult may not publish to cityops.triage.v1: its only writer is triage"):
        check_writer("consult", TRIAGE.name)
    with pytest.raises(NotTheWriter):
        check_writer("sla", own_task_topic("water"))
    check_writer("units", catalogue.UNIT_REPORTS.name)  # a topic with two writers: either may publish
    check_writer("bridge", catalogue.UNIT_REPORTS.name)
    with pytest.raises(NotTheWriter, match="its only writers are units, bridge"):
        check_writer("act", catalogue.UNIT_REPORTS.name)


def test_the_audit_topic_takes_its_named_writers_and_nobody_else() -> None:
    check_writer("intake", catalogue.AUDIT.name)
    check_writer(catalogue.BRIDGE, catalogue.AUDIT.name)
    for other in ("act", "units", "archiver", "intake-bridge", ""):
        with pytest.raises(NotTheWriter, match="its only writers are intake, bridge"):
            check_writer(other, catalogue.AUDIT.name)


def test_the_pipeline_dead_letters_an_emit_to_a_foreign_topic_and_publishes_nothing(tmp_path: Path) -> None:
    import asyncio

    from contracts import codec
    from contracts import events as ev
    from contracts.examples import build_example
    from services.common.pipeline import Emit, EventPipeline, HandlerSpec, NoDeps
    from services.common.store import create_tables, make_engine
    from services.consult.settings import ConsultSettings

    def foreign(ctx, envelope):  # consult writing triage's topic
        return [Emit(TRIAGE.name, envelope.caused(build_example(ev.TicketClassified), source=ctx.source))]

    class Broker:
        sent: list[str] = []

        async def publish(self, value, topic, **_):
            self.sent.append(topic)
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

    class Record:
        def __init__(self, rec):
            self.topic, self.partition, self.offset = COMMANDS.name, 0, 0
            self.key, self.value, self.headers = rec.key, rec.value, rec.headers

    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    create_tables(engine, [])
    spec = HandlerSpec(topics=[COMMANDS.name], event_types=None, deps=NoDeps(), handle=foreign)
    pipeline = EventPipeline(name="consult", settings=ConsultSettings(), engine=engine, spec=spec)
    pipeline.broker = Broker()  # type: ignore[assignment]
    command = Envelope.origin(build_example(ev.SupervisorDecisionSubmitted), source="/t", ticket_id="T-1",
                              time=datetime(2026, 3, 2, tzinfo=UTC))
    asyncio.run(pipeline.handle_records([Record(codec.encode(command))]))
    assert Broker.sent == [COMMANDS.dlq] and pipeline.stats["dead_lettered"] == 1


# --- readers ---------------------------------------------------------------------------------------

def _subscriptions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Service -> the topics its app subscribes to, read from each app as built (nothing connects)."""
    from tools.run import SERVICES, load_factory

    monkeypatch.setenv("CITYOPS_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("CITYOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CITYOPS_UNIT_CALLBACKS", "true")
    monkeypatch.setenv("CITYOPS_UNIT_SUPERVISOR", "true")
    # a department (its own topic) and a grid (the shared area topic)
    monkeypatch.setenv("CITYOPS_UNIT_UNITS", '["water", "grid-east-1-a-1"]')
    monkeypatch.setenv("CITYOPS_BRIDGE_UNITS", '["water", "grid-east-1-a-1"]')
    monkeypatch.setenv("CITYOPS_AUTH_KEY", "k" * 40)  # the HTTP apps' token verifier needs a hub key to be built
    subscribed: dict[str, set[str]] = {}
    for name in SERVICES:
        if name == ARCHIVER:
            continue  # a pattern subscription: every cityops topic (checked above: ARCHIVER reads them all)
        app = load_factory(name)()
        pipelines = app.state.pipelines.values() if hasattr(app, "state") else [app.context.get("pipeline")]  # HTTP apps: the bridge
        subscribed[name] = {t for p in pipelines for t in p.topics}
    from services.intake.app import create_app as intake_app

    subscribed["intake"] = {t for p in intake_app().state.pipelines.values() for t in p.topics}
    return subscribed


def test_each_topics_readers_are_the_services_subscribed_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    subscribed = _subscriptions(tmp_path, monkeypatch)
    for spec in [*WORKFLOW_TOPICS, catalogue.AREA_TASKS, catalogue.unit_topic_spec("water")]:
        readers = {svc for svc, topics in subscribed.items() if spec.name in topics}
        assert readers == set(spec.readers) - {ARCHIVER}, f"{spec.name}: subscribed {sorted(readers)}, catalogue {spec.readers}"


# --- the table in docs/architecture.md -----------------------------------------------------------

BEGIN, END = "<!-- topics:begin -->", "<!-- topics:end -->"


def table_in(markdown: str) -> str:
    """What lies between the markers (each exactly once), without the newline after the begin marker."""
    assert markdown.count(BEGIN) == 1 and markdown.count(END) == 1, "one topics:begin and one topics:end marker"
    inside = markdown.split(BEGIN, 1)[1].split(END, 1)[0]
    return inside[1:] if inside.startswith("\n") else inside


def test_docs_architecture_holds_exactly_the_catalogue_table() -> None:
    from contracts.topics import catalogue_markdown

    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert table_in(doc) == catalogue_markdown(), "docs/architecture.md is stale: paste `cityops topics --markdown` between the markers"


def test_the_docs_check_sees_a_stale_table() -> None:
    from contracts.topics import catalogue_markdown

    table = catalogue_markdown()
    assert table_in(f"x\n{BEGIN}\n{table}{END}\n") == table
    stale = table.replace("| `cityops.sla.v1` | sla |", "| `cityops.sla.v1` | act |")
    assert table_in(f"{BEGIN}\n{stale}{END}") != table


def test_cityops_topics_markdown_prints_the_table() -> None:
    from typer.testing import CliRunner

    from contracts.topics import catalogue_markdown
    from tools.topics_cli import app

    result = CliRunner().invoke(app, ["--markdown"])
    assert result.exit_code == 0 and result.output == catalogue_markdown()
    lines = result.output.splitlines()
    assert lines[0] == "| topic | writer | readers | events | partitions |"
    assert "| `cityops.intake.commands.v1` | intake | discover, triage, consult, evaluate, archiver |" in result.output


def test_the_archiver_reads_every_topic_but_the_plain_personal_data_of_the_machine_channel() -> None:
    """An archived copy of the channel's plain JSON would outlive an erasure; the channel keeps it one day."""
    import re

    from services.archiver.settings import ArchiverSettings

    pattern = re.compile(ArchiverSettings().pattern())
    archived = {spec.name for spec in all_topics(["water"]) if pattern.match(spec.name)}
    assert archived == {spec.name for spec in all_topics(["water"]) if ARCHIVER in spec.readers}
    assert CHANNEL_INTAKE.name not in archived and CHANNEL_INTAKE.dlq not in archived
    assert int(CHANNEL_INTAKE.config["retention.ms"]) <= 24 * 3600 * 1000
    assert dlq_spec(CHANNEL_INTAKE).config == CHANNEL_INTAKE.config
