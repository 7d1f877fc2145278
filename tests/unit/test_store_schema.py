"""A service's own store made by an older version is refused at start, with what to do, instead of the
service failing later on its first batch (its stores have no migrations: they are rebuilt from the log)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from services.common.store import StoreSchemaMismatch, create_tables, make_engine
from services.evaluate.models import EvalTask, EvalTicket, Rates


def test_a_store_whose_table_lacks_columns_is_refused_with_the_way_out(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'evaluate.db'}")
    with engine.begin() as connection:  # evaluate_tasks as the first version of this table had it
        connection.execute(text("CREATE TABLE evaluate_tasks (task_id VARCHAR PRIMARY KEY, unit VARCHAR, "
                                "sign_for_due DATETIME, judged BOOLEAN)"))
    with pytest.raises(StoreSchemaMismatch, match=r"evaluate_tasks lacks assigned, signed_for_at, breached.*delete the store"):
        create_tables(engine, [EvalTicket.__table__, EvalTask.__table__, Rates.__table__])


def test_a_new_or_current_store_is_created_and_accepted_again(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'evaluate.db'}")
    tables = [EvalTicket.__table__, EvalTask.__table__, Rates.__table__]
    create_tables(engine, tables)
    create_tables(engine, tables)  # a restart
