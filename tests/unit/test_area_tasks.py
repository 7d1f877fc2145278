"""The shared area task topic (issue 14, point 3): records are keyed by the unit, readers keep their units' records
by key before decoding, the SDK refuses area units, and `cityops topics --count` counts the layout."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from contracts import codec
from contracts.topics import (
    AREA_TASKS,
    AUDIT,
    WORKFLOW_TOPICS,
    all_topics,
    own_task_topic,
    topic_counts,
    unit_task_topic,
)
from domain.catalogue import load_catalogue
from services.units.sdk import AreaUnitError, UnitClient
from tests.harness.bridge import assigned
from tests.harness.pipeline import Record, record_of, start

GRID, OTHER_GRID = "grid-east-1-a-1", "grid-east-1-a-2"


def test_street_community_and_grid_units_share_the_topic_and_the_others_keep_their_own() -> None:
    for level in ("street", "community", "grid"):
        assert unit_task_topic("x", level) == AREA_TASKS.name
    for level in ("district", "city", None):
        assert unit_task_topic("x", level) == own_task_topic("x") == "cityops.unit.x.tasks.v1"
    assert AREA_TASKS.key == "unit_id" and AREA_TASKS.partitions == 12 and AREA_TASKS.writers == ("act",)


def test_a_record_keyed_by_its_unit_still_decodes_to_its_ticket() -> None:
    task = assigned("T-KEY", GRID)
    rec = codec.encode(task, GRID)
    assert rec.key == GRID.encode() and codec.encode(task).key == b"T-KEY"
    assert codec.decode(rec.key, rec.value, rec.headers).ticket_id == "T-KEY"


def test_the_simulated_units_keep_only_their_grids_records_and_never_decode_the_others(tmp_path) -> None:
    units = start("units", tmp_path, units=[GRID], sign_delay_s=0, work_delay_s=0, p_return=0, p_extension=0)
    assert AREA_TASKS.name in units.topics and own_task_topic(GRID) not in units.topics
    mine = record_of(assigned("T-MINE", GRID), topic=AREA_TASKS.name, key=GRID)
    theirs = record_of(assigned("T-THEIRS", OTHER_GRID), topic=AREA_TASKS.name, offset=1, key=OTHER_GRID)
    garbage = Record(AREA_TASKS.name, 0, 2, OTHER_GRID.encode(), b"not an event", [])
    units.feed([mine, theirs, garbage])
    assert units.stats["skipped"] == 2 and units.stats["dead_lettered"] == 0 and units.stats["applied"] == 1
    # The same garbage keyed by our grid is ours: decoded, found wanting, dead-lettered.
    ours = Record(AREA_TASKS.name, 0, 3, GRID.encode(), b"not an event", [])
    out = units.feed([ours])
    assert units.stats["dead_lettered"] == 1 and [r.topic for r in out] == [AREA_TASKS.dlq]


def test_act_sends_a_grids_task_on_the_shared_topic_keyed_by_the_grid(tmp_path) -> None:
    from services.act.handlers import ActDeps, to_unit
    from services.common.handler import HandlerContext

    ctx = HandlerContext(session=None, now=lambda: None, source="/cityops/act", settings=None,  # type: ignore[arg-type]
                         deps=ActDeps(load_catalogue().level_of))
    task = assigned("T-ACT", GRID)
    assert (to_unit(ctx, GRID, task).topic, to_unit(ctx, GRID, task).key) == (AREA_TASKS.name, GRID)
    assert (to_unit(ctx, "water", task).topic, to_unit(ctx, "water", task).key) == (own_task_topic("water"), "water")
    assert to_unit(ctx, "not-in-the-catalogue", task).topic == own_task_topic("not-in-the-catalogue")


@pytest.mark.parametrize("unit", [GRID, "community-east-1-a", "street-east-1"])
def test_the_sdk_refuses_an_area_unit_and_points_to_the_bridge(unit: str) -> None:
    with pytest.raises(AreaUnitError, match="unit HTTP bridge") as refused:
        UnitClient("127.0.0.1:1", unit)
    assert unit in str(refused.value)
    with pytest.raises(AreaUnitError):
        UnitClient("127.0.0.1:1", "somewhere", level="grid")  # a level given by the caller is believed


def test_the_sdk_takes_a_department() -> None:
    async def build() -> str:  # the client's Kafka producer is made inside an event loop
        return UnitClient("127.0.0.1:1", "water").unit

    assert asyncio.run(build()) == "water"


def test_topic_counts_add_up_by_kind() -> None:
    cat = load_catalogue()
    counts = {c.kind.split(" (")[0]: c for c in topic_counts(cat.own_topic_units())}
    own = len(cat.own_topic_units())
    assert counts["own unit task topics"].topics == own == len(cat.units) - len(cat.area_units())
    assert counts["workflow"].topics == len(WORKFLOW_TOPICS) and counts["audit"].partitions == AUDIT.partitions
    assert counts["shared area task topic"].partitions == 12
    sources = len(WORKFLOW_TOPICS) + 2 + own
    assert counts["DLQs"].topics == sources
    assert counts["total"].topics == 2 * sources == len(all_topics(cat.own_topic_units()))
    assert counts["total"].partitions == sum(s.partitions for s in all_topics(cat.own_topic_units()))


def test_cityops_topics_count_prints_the_totals_of_a_catalogue_file(tmp_path) -> None:
    from tools.topics_cli import app

    cat = load_catalogue()
    result = CliRunner().invoke(app, ["--count"])
    assert result.exit_code == 0, result.output
    total = next(line for line in result.output.splitlines() if line.startswith("total"))
    assert total.split()[1:] == [str(len(all_topics(cat.own_topic_units()))),
                                 str(sum(s.partitions for s in all_topics(cat.own_topic_units())))]
    missing = CliRunner().invoke(app, ["--count", "--path", str(tmp_path / "nope.yaml")])
    assert missing.exit_code != 0 and "--path" in missing.output
