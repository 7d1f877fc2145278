"""Issue 15's manual scenario, end to end: the real broker, every service as its own OS process, complaints
over HTTP as a new operator would submit them.

Three callers describe one broken street light at one address in their own words, minutes apart: one ticket,
two repeats merged into it. Two callers report one overflowing bin: merged. A noise complaint at the street
light's address: a ticket of its own. The repeats close with their masters, and the simulated callback desk
(units with callbacks on) answers every callback request: the merged callers are called back too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from contracts import events as ev
from domain.catalogue import load_catalogue
from tests.e2e.test_workflow import HTTP_PORT, SERVICES, Hub, Story, wait_status
from tests.harness.auth import bearer
from tests.harness.http import wait_healthy
from tests.harness.topics import fresh_hub_topics

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

RUN = uuid.uuid4().hex[:8]
LIGHT_AT = {"grid": "grid-east-1-a-1", "district": "district-east", "address": f"幸福路12号 ({RUN})"}
BIN_AT = {"grid": "grid-east-1-a-2", "district": "district-east", "address": f"和平小区3栋 ({RUN})"}
LIGHTS = ["幸福路12号门口的路灯不亮了，晚上走路看不清",
          "我们这边那盏街灯坏了，天一黑就黑漆漆的，老人出门很危险",
          "反映一下幸福路12号那根灯杆，连着几个晚上都没亮"]
BINS = ["和平小区3栋楼下的垃圾桶满了好几天没人清，都堆到地上了", "3栋旁边垃圾箱早就装不下了，臭得很，环卫一直不来收"]
NOISE = "幸福路12号楼下有人半夜放音乐，吵得睡不着"


@pytest.fixture(scope="module")
def hub(kafka_bootstrap: str, kafka_node: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    asyncio.run(fresh_hub_topics(kafka_bootstrap))
    h = Hub(kafka_bootstrap, tmp_path_factory.mktemp("repeats-hub"), kafka_node)
    # Every unit simulated, and the hotline's callback desk too (every CallbackRequested is answered, satisfied);
    # units take a few seconds per task, so the masters are still open when their repeats arrive.
    h.env.update(CITYOPS_UNIT_UNITS="[" + ",".join(f'"{u}"' for u in load_catalogue().units_for_topics()) + "]",
                 CITYOPS_UNIT_CALLBACKS="true", CITYOPS_UNIT_HOTLINE_URL=f"http://127.0.0.1:{HTTP_PORT}",
                 CITYOPS_UNIT_P_SATISFIED="1", CITYOPS_UNIT_WORK_DELAY_S="6")
    try:
        for name in [*SERVICES, "units", "intake"]:
            h.start(name)
        asyncio.run(wait_healthy(HTTP_PORT))
        for name in SERVICES:  # discover trains its guessing model at start: repeats must find their masters registered
            h.supervisor.wait_started(name)
        yield h
    finally:
        h.stop_all()


async def _submit(client: httpx.AsyncClient, text: str, location: dict[str, str], n: int) -> str:
    body = {"text": text, "caller_name": "李四", "caller_phone": f"1390000{n:04d}", "location": location}
    r = await client.post("/tickets", json=body, headers={"Idempotency-Key": f"repeats-{RUN}-{n}"})
    assert r.status_code == 202, r.text
    return str(r.json()["ticket_id"])


async def _final_status(client: httpx.AsyncClient, ticket_id: str) -> dict[str, Any]:
    """The status once discover has registered it (registered or merged; triage may have moved it on)."""
    return await wait_status(client, ticket_id, {"merged", "registered", "manual-triage", "dispatched", "consulting",
                                                 "handled", "closed"})


async def _scenario(hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{HTTP_PORT}", timeout=10,
                                 headers=bearer("operator", "op-15")) as client:
        lights = [await _submit(client, text, LIGHT_AT, i) for i, text in enumerate(LIGHTS)]
        bins = [await _submit(client, text, BIN_AT, 10 + i) for i, text in enumerate(BINS)]
        noise = await _submit(client, NOISE, LIGHT_AT, 20)
        rows = {t: await _final_status(client, t) for t in [*lights, *bins, noise]}
        masters = {t: rows[t]["master_ticket_id"] for t in rows}

        light_masters = [t for t in lights if masters[t] is None]
        assert len(light_masters) == 1, rows  # 3 paraphrases -> 1 ticket + 2 merged into it
        assert all(masters[t] == light_masters[0] for t in lights if t != light_masters[0]), rows
        bin_masters = [t for t in bins if masters[t] is None]
        assert len(bin_masters) == 1 and all(masters[t] == bin_masters[0] for t in bins if t != bin_masters[0]), rows
        assert masters[noise] is None, rows  # another problem at the same address: not merged

        repeats = [t for t in [*lights, *bins] if masters[t] is not None]
        for t in [*light_masters, *bin_masters, noise, *repeats]:
            await wait_status(client, t, {"closed"}, timeout=180)

    for _ in range(60):  # the callback desk answers the repeats' requests after their masters closed
        story, missing = Story(hub.bootstrap), []
        for t in repeats:
            events = await story.events(t)
            if not any(isinstance(e.data, ev.CallbackRecorded) for e in events):
                missing.append(t)
        if not missing:
            break
        await asyncio.sleep(1)
    for t in repeats:
        events = await story.events(t)
        kinds = [type(e.data).__name__ for e in events]
        assert kinds[:2] == ["TicketRegistered", "TicketMerged"], kinds
        assert not any(isinstance(e.data, ev.TicketClassified | ev.TaskAssigned) for e in events), kinds  # never dispatched
        requested = [e.data for e in events if isinstance(e.data, ev.CallbackRequested)]
        assert requested and (requested[0].caller.masked_phone or "").startswith("139"), kinds  # its own caller
        closed = [e.data for e in events if isinstance(e.data, ev.TicketClosed)]
        assert closed and closed[0].outcome == "merged" and closed[0].master_ticket_id == masters[t]
        assert any(isinstance(e.data, ev.CallbackRecorded) for e in events), kinds  # the merged caller was called back


def test_paraphrased_repeats_merge_and_merged_callers_are_called_back(hub: Hub) -> None:
    try:
        asyncio.run(asyncio.wait_for(_scenario(hub), timeout=400))
    except BaseException:
        print(hub.logs())
        raise

