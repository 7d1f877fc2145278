"""The Kafka encoding of every event, and the privacy rule, without a broker."""

from __future__ import annotations

import json

import pytest

from contracts import codec
from contracts.events import TicketRegistered, TicketSubmitted
from contracts.examples import all_examples
from contracts.registry import EVENT_TYPES
from contracts.topics import AREA_TASKS, all_topics, own_task_topic, topic_for_event

EXAMPLES = all_examples()


@pytest.mark.parametrize("envelope", EXAMPLES, ids=lambda e: e.type)
def test_encode_decode_round_trip(envelope):
    key, value, headers = codec.encode(envelope)
    names = dict(headers)
    assert key == envelope.ticket_id.encode()
    assert names["ce_type"] == envelope.type.encode() and names["ce_id"] == envelope.id.encode()
    assert json.loads(value)  # the body is plain JSON data
    assert codec.decode(key, value, headers) == envelope


def test_unknown_type_missing_header_and_bad_json_are_decode_errors():
    key, value, headers = codec.encode(EXAMPLES[0])
    with pytest.raises(codec.DecodeError, match="unknown event type"):
        codec.decode(key, value, [(k, b"cityops.nope.thing.happened.v1" if k == "ce_type" else v) for k, v in headers])
    with pytest.raises(codec.DecodeError, match="ce_id"):
        codec.decode(key, value, [(k, v) for k, v in headers if k != "ce_id"])
    with pytest.raises(codec.DecodeError, match="invalid"):
        codec.decode(key, b"{not json", headers)


def test_only_the_intake_record_carries_caller_contact_fields():
    carrying = [t for t, m in EVENT_TYPES.items() if "caller" in m.model_fields
                and "Caller" == getattr(m.model_fields["caller"].annotation, "__name__", "")]
    assert carrying == [TicketSubmitted.event_type]
    masked_fields = set(TicketRegistered.model_json_schema()["$defs"]["CallerRef"]["properties"])
    assert masked_fields.isdisjoint({"name", "phone"})


def test_every_event_type_has_a_topic_and_every_topic_a_dlq():
    for event_type in EVENT_TYPES:
        topic_for_event(event_type)
    names = {s.name for s in all_topics(["water"])}
    assert own_task_topic("water") in names and AREA_TASKS.name in names
    assert all(n + ".dlq" in names for n in names if not n.endswith(".dlq"))
