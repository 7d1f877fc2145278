"""Kafka principals and their ACLs, derived from the topic catalogue (contracts/topics.py) and nothing else.

Each party the catalogue names as a topic's writer or reader gets one principal: a service by its
service name (`triage`), the machine channels as `channels`; every unit with a task topic of its own
(departments, district branches and centres, the hotline) gets its own `unit-<unit id>` (the catalogue's
`units` party is also the simulated-units service, which answers for all of them). Area units (street
offices, communities, grids) get no Kafka principal: their tasks share `cityops.area.tasks.v1`, and reading
it would show one grid every other grid's tasks, so they reach their work through the unit HTTP bridge,
each with its own identity there; only the bridge, the simulated units and the archiver read that topic.
`admin` is the launcher's super user: it formats the broker, creates the topics and these ACLs, and is
the identity the test session and operators' tools use.

What a principal may do (nothing else: the broker runs with allow.everyone.if.no.acl.found=false):
* READ a topic it is a reader of, and the consumer groups starting with `cityops-<service>`
  (a unit: `cityops-unit-<unit id>`);
* WRITE a topic it is a writer of, and the DLQ of every topic it reads (a reader dead-letters what it
  cannot handle; the archiver, which stores records undecoded, and the console, which only shows them, never do);
* a unit reads only its own task topic and writes only the unit reports (never the shared area topic);
* nobody but the admin creates topics (the hub creates the catalogue's topics at start, as admin).

A principal that reads every topic of the deployment (the archiver) gets one prefixed ACL on `cityops.`
instead of one per topic; consumer groups are prefixed ACLs; everything else is literal, so a service
never reaches a topic by sharing a name prefix with one it may use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from contracts.topics import EXTERNAL_CHANNELS, NO_DEAD_LETTERS, UNITS, TopicSpec, all_topics, own_task_topic

ADMIN = "admin"
CHANNELS = "channels"
TOPIC_PREFIX = "cityops."
# Parties the catalogue names by description rather than by service name.
_PRINCIPAL_OF_PARTY = {EXTERNAL_CHANNELS: CHANNELS}


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: `principal` may `operation` the `resource` (topic or group) `name`, matched as `pattern`."""

    principal: str  # without the "User:" prefix
    resource: str  # "topic" | "group"
    name: str
    pattern: str  # "literal" | "prefixed"
    operation: str  # "read" | "write"

    def describe(self) -> str:
        match = "" if self.pattern == "literal" else "*"
        return f"User:{self.principal} {self.operation.upper()} {self.resource} {self.name}{match}"


def parties(value: str | Sequence[str]) -> tuple[str, ...]:
    """A spec's writer(s) or readers as a tuple: the catalogue may name one writer or several."""
    return (value,) if isinstance(value, str) else tuple(value)


def principal_of(party: str) -> str:
    return _PRINCIPAL_OF_PARTY.get(party, party)


def unit_principal(unit_id: str) -> str:
    return f"unit-{unit_id}"


def service_group_prefix(principal: str) -> str:
    return f"cityops-{principal}"


def unit_of_topic(topic: str, unit_ids: Iterable[str]) -> str | None:
    return next((u for u in unit_ids if own_task_topic(u) == topic), None)


def _sources(specs: Sequence[TopicSpec]) -> list[TopicSpec]:
    """The topics that have a DLQ: every spec that is not itself one."""
    dlqs = {s.dlq for s in specs}
    return [s for s in specs if s.name not in dlqs]


def service_principals(specs: Sequence[TopicSpec]) -> list[str]:
    """Every party named as a writer or reader of a topic, as a principal name, sorted."""
    names = {principal_of(p) for s in specs for p in (*parties(s.writer), *parties(s.readers))}
    names -= {principal_of(p) for s in specs if s.name.endswith(".dlq") for p in parties(s.writer)}
    return sorted(n for n in names if n and " " not in n)


def principals(unit_ids: Sequence[str]) -> list[str]:
    """Every principal of a deployment whose units with their own task topics are `unit_ids`: admin, one per
    service, one per such unit."""
    return [ADMIN, *service_principals(all_topics(list(unit_ids))), *(unit_principal(u) for u in unit_ids)]


def _party_acls(party: str, specs: Sequence[TopicSpec], sources: Sequence[TopicSpec]) -> set[Acl]:
    who = principal_of(party)
    read = [s.name for s in specs if party in parties(s.readers)]
    write = [s.name for s in specs if party in parties(s.writer)]
    if party not in NO_DEAD_LETTERS:
        write += [s.dlq for s in sources if party in parties(s.readers)]
    acls = {Acl(who, "topic", t, "literal", "write") for t in write}
    if read and set(read) == {s.name for s in specs}:
        acls.add(Acl(who, "topic", TOPIC_PREFIX, "prefixed", "read"))
    else:
        acls |= {Acl(who, "topic", t, "literal", "read") for t in read}
    if read:
        acls.add(Acl(who, "group", service_group_prefix(who), "prefixed", "read"))
    return acls


def _unit_acls(unit_id: str, specs: Sequence[TopicSpec], unit_ids: Sequence[str]) -> set[Acl]:
    """What the catalogue gives the units' party, narrowed to one unit: its own task topic, not the others' nor
    the shared area topic (a topic owned by no unit is read only by the units' service as a whole)."""
    who = unit_principal(unit_id)
    acls: set[Acl] = set()
    for spec in specs:
        owner = unit_of_topic(spec.name, unit_ids)
        if UNITS in parties(spec.readers) and owner == unit_id:
            acls.add(Acl(who, "topic", spec.name, "literal", "read"))
        if UNITS in parties(spec.writer) and owner in (None, unit_id):
            acls.add(Acl(who, "topic", spec.name, "literal", "write"))
    acls.add(Acl(who, "group", service_group_prefix(who), "prefixed", "read"))
    return acls


def derive_acls(unit_ids: Sequence[str], specs: Sequence[TopicSpec] | None = None) -> list[Acl]:
    """Every ACL of a deployment whose units with their own task topics are `unit_ids` (`Catalogue.own_topic_units`),
    from the catalogue (`specs`, default: all its topics)."""
    specs = list(specs if specs is not None else all_topics(list(unit_ids)))
    sources = _sources(specs)
    party_names = {p for s in sources for p in (*parties(s.writer), *parties(s.readers))}
    acls: set[Acl] = set()
    for party in sorted(party_names):
        if principal_of(party) in service_principals(specs):
            acls |= _party_acls(party, specs, sources)
    if any(UNITS in (*parties(s.writer), *parties(s.readers)) for s in sources):
        for unit_id in unit_ids:
            acls |= _unit_acls(unit_id, sources, unit_ids)
    return sorted(acls)


def can(acls: Iterable[Acl], principal: str, operation: str, resource: str, name: str) -> bool:
    """Whether these ACLs let `principal` do `operation` on a resource, as the broker matches them."""
    for acl in acls:
        if (acl.principal, acl.operation, acl.resource) != (principal, operation, resource):
            continue
        if name == acl.name if acl.pattern == "literal" else name.startswith(acl.name):
            return True
    return False


def deployment_units() -> list[str]:
    """The units of the responsibility catalogue with a task topic, a principal and ACLs of their own (area
    units have none: they share one topic only the bridge and the simulated units read)."""
    from domain.catalogue import load_catalogue

    return list(load_catalogue().own_topic_units())


def deployment_principals() -> list[str]:
    """Every principal of the deployment the launcher's brokers serve (the catalogue's units)."""
    return principals(deployment_units())


def deployment_acls() -> list[Acl]:
    return derive_acls(deployment_units())
