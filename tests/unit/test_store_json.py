"""The stores' JSON columns read back with orjson's parser (services.common.store.read_json): every value the json
module writes reads back as the json module would read it, including what orjson alone refuses."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import JSON, Column, Integer, MetaData, Table, bindparam, select

from services.common.direct_sql import insert_rows, select_rows
from services.common.store import make_engine, read_json

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@given(_values)
@example(-(2**63) - 1)
@example({"n": [2**64, -(2**63)]})
def test_any_value_the_json_module_writes_reads_back_as_the_json_module_reads_it(value):
    text = json.dumps(value)
    assert read_json(text) == json.loads(text)


@pytest.mark.parametrize("text", ["NaN", '[Infinity, -Infinity]', str(2**70), '{"n": -' + str(2**65) + "}", '"\\ud800"',
                                  str(-(2**63) - 1), str(2**64), "12345678901234567890123", "0.12345678901234567890123"])
def test_what_orjson_refuses_and_the_json_module_reads_is_read_by_the_json_module(text):
    read, expected = read_json(text), json.loads(text)
    assert read == expected or (isinstance(read, float) and math.isnan(read) and math.isnan(expected))


def test_text_that_is_not_json_is_still_refused():
    with pytest.raises(json.JSONDecodeError):
        read_json("{not json")


def test_a_stores_json_column_reads_back_what_was_stored_both_through_sqlalchemy_and_on_the_cursor(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    table = Table("docs", MetaData(), Column("id", Integer, primary_key=True), Column("doc", JSON))
    table.metadata.create_all(engine)
    docs = [{"路灯": [1, 2.5, None], "big": 2**70}, [], {}, "text", None, float("inf")]
    statement = select(table.c.doc).where(table.c.id.in_(bindparam("ids", expanding=True))).order_by(table.c.id)
    with engine.begin() as connection:
        insert_rows(connection, table, [{"id": i, "doc": d} for i, d in enumerate(docs)])
        on_the_cursor = [doc for (doc,) in select_rows(connection, statement, {"ids": list(range(len(docs)))})]
        through_sqlalchemy = [doc for (doc,) in connection.execute(statement, {"ids": list(range(len(docs)))})]
    assert on_the_cursor == through_sqlalchemy == docs
