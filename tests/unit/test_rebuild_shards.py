"""benchmarks/rebuild_shards.py: the shards of a history, each rebuilt into its own database, add up to the
rebuild of the whole (its proof that a sharded rebuild is the same projection), and the check sees a difference."""

from __future__ import annotations

import importlib.util
import sys

from sqlalchemy import delete

from services.common.settings import REPO_ROOT
from services.common.store import make_engine
from services.projections.models import ProjTask


def _module(name: str):
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def test_shards_add_up_to_the_whole_rebuild_and_a_missing_row_is_seen(tmp_path):
    shards = _module("rebuild_shards")
    from tools.importers.synthetic import SyntheticHistory

    whole_url = f"sqlite:///{tmp_path}/whole.db"
    shards.run(whole_url, shards.MemoryLog(SyntheticHistory(40, seed=7).envelopes()), 500)
    urls = [f"sqlite:///{tmp_path}/s{k}.db" for k in range(2)]
    sizes = []
    for k, url in enumerate(urls):
        log = shards.shard_log(40, k, 2)
        sizes.append(sum(len(p) for p in log.parts.values()))
        shards.run(url, log, 500)
    whole = shards.tables_of(whole_url)
    assert all(sizes)  # both shards hold tickets
    assert shards.combined_tables(urls) == whole
    assert sum(rows for rows, _ in whole.values()) > 0

    engine = make_engine(urls[1])
    with engine.begin() as conn:
        conn.execute(delete(ProjTask).where(ProjTask.task_id == conn.execute(ProjTask.__table__.select().limit(1)).first().task_id))
    engine.dispose()
    assert shards.combined_tables(urls) != whole
