"""benchmarks/replay_micro.py --passes applies a run's log again as other tickets: every ticket id and UUID in keys,
values and headers is renamed the same way, none is left as it was, and nothing else changes."""

from __future__ import annotations

import importlib.util
import re
import sys

from services.common.settings import REPO_ROOT


def _replay_micro():
    spec = importlib.util.spec_from_file_location("replay_micro", REPO_ROOT / "benchmarks" / "replay_micro.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("replay_micro", module)  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_a_later_pass_renames_every_ticket_and_event_id_consistently_and_nothing_else():
    m = _replay_micro()
    ticket, event = "T-1F00000000000ABC", "1b245a1b-5f14-4828-9b4a-bbabb129a10d"
    value = f'{{"ticket_id":"{ticket}","task_id":"{ticket}:water:1","text":"T-shirt on the road","n":1}}'.encode()
    record = m.Rec("cityops.act.v1", 0, 7, ticket.encode(), value, [("ce_id", event.encode()), ("ce_type", b"x.v1")], 123)
    for n in (1, 15, 16 + 1):
        again = m.renamed([record], n)[0]
        new_ticket = again.key.decode()
        assert new_ticket != ticket and re.fullmatch(r"T-[0-9A-F]{16}", new_ticket)
        assert again.value == value.replace(ticket.encode(), again.key)  # the task id too; the text untouched
        headers = dict(again.headers)
        assert headers["ce_id"] != event.encode() and headers["ce_id"][1:] == event.encode()[1:]
        assert headers["ce_type"] == b"x.v1"
        assert (again.topic, again.partition, again.offset, again.timestamp) == ("cityops.act.v1", 0, 7, 123)
    assert m.renamed([record], 1)[0].key != m.renamed([record], 2)[0].key  # each pass its own tickets
