"""One SQLite store serves one process: a second instance on the same file refuses to start with a message
that names the file, the holder and what to do (issue 12, point 6)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services.common.store import StoreInUse, claim_store, make_engine, release_store

HOLD = textwrap.dedent("""
    import sys, time
    from services.common.store import claim_store, make_engine
    claim_store(make_engine("sqlite:///" + sys.argv[1]), "triage")
    print("claimed", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def other_instance(tmp_path: Path):
    """Another process serving `triage.db` (as a running triage would), killed at the end."""
    store = tmp_path / "triage.db"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(store)], stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[2])
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "claimed"
        yield store, process
    finally:
        process.kill()
        process.wait()


def test_a_second_instance_on_the_same_sqlite_file_refuses_to_start(other_instance) -> None:
    store, holder = other_instance
    with pytest.raises(StoreInUse) as refused:
        claim_store(make_engine(f"sqlite:///{store}"), "triage")
    message = str(refused.value)
    assert str(store) in message and f"pid {holder.pid}" in message and "CITYOPS_DB_URL" in message


def test_the_store_is_free_again_once_the_other_instance_is_gone_even_killed(other_instance) -> None:
    store, holder = other_instance
    holder.kill()
    holder.wait()
    engine = make_engine(f"sqlite:///{store}")
    claim_store(engine, "triage")  # no stale lock: the kernel released it with the process
    release_store(engine)


def test_claims_nest_within_one_process_and_the_last_release_frees_the_store(tmp_path: Path) -> None:
    store = tmp_path / "intake.db"
    first, second = make_engine(f"sqlite:///{store}"), make_engine(f"sqlite:///{store}")
    claim_store(first, "intake")
    claim_store(second, "intake")  # intake's two consumers, or a test's second app on one store
    release_store(first)
    assert _another_process_can_claim(store) is False
    release_store(second)
    assert _another_process_can_claim(store) is True


def test_postgresql_and_in_memory_stores_are_not_claimed() -> None:
    claim_store(make_engine("sqlite://"), "evaluate")
    claim_store(make_engine("postgresql+psycopg://u:p@127.0.0.1:1/db"), "evaluate")  # nothing connects


def _another_process_can_claim(store: Path) -> bool:
    code = ("import sys\nfrom services.common.store import claim_store, make_engine, StoreInUse\n"
            "try:\n    claim_store(make_engine('sqlite:///' + sys.argv[1]), 'intake')\nexcept StoreInUse:\n    sys.exit(3)\n")
    result = subprocess.run([sys.executable, "-c", code, str(store)], cwd=Path(__file__).resolve().parents[2], check=False)
    assert result.returncode in (0, 3)
    return result.returncode == 0
