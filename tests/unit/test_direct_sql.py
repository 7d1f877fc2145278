"""services.common.direct_sql: the hot paths' INSERTs and DELETEs on SQLite's cursor store exactly what
SQLAlchemy's own statements store, belong to the caller's transaction, and fall back where they must."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, MetaData, String, Table, bindparam, event, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.types import TypeDecorator

from services.common import direct_sql
from services.common.direct_sql import (
    delete_where_in,
    insert_ignoring_stored,
    insert_new,
    insert_rows,
    insert_values,
    select_rows,
    update_rows,
    upsert_rows,
)
from services.common.store import make_engine

AT = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)


def _table(metadata: MetaData, name: str = "things") -> Table:
    return Table(
        name, metadata,
        Column("key", String, primary_key=True),
        Column("payload", JSON),
        Column("at", DateTime),
        Column("flag", Boolean, default=False),
        Column("count", Integer, default=7),
        Column("stamped", DateTime, default=lambda: datetime(2026, 1, 1)),  # noqa: DTZ001 - a naive column
    )


@pytest.fixture
def store(tmp_path: Any) -> tuple[Any, Table, Table]:
    """An engine as the services make it, and the same table twice: one written by SQLAlchemy, one directly."""
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    metadata = MetaData()
    direct, reference = _table(metadata), _table(metadata, "reference")
    metadata.create_all(engine)
    return engine, direct, reference


def _stored(connection: Any, table: Table) -> list[tuple[Any, ...]]:
    """The rows as SQLite holds them (text, numbers), not as SQLAlchemy would convert them back."""
    return connection.exec_driver_sql(f'SELECT * FROM "{table.name}" ORDER BY "key"').all()


ROWS = [
    {"key": "a", "payload": {"text": "路灯不亮", "n": [1, 2]}, "at": AT, "flag": True, "count": 3},
    {"key": "b", "payload": None, "at": None, "flag": False, "count": 0},  # None: JSON null, SQL NULL
    {"key": "c", "payload": [], "at": AT.replace(microsecond=0), "flag": None, "count": None},
]


def test_inserted_rows_are_stored_exactly_as_sqlalchemy_stores_them(store):
    engine, direct, reference = store
    with engine.begin() as connection:
        insert_rows(connection, direct, ROWS)
        connection.execute(insert(reference), ROWS)
        assert _stored(connection, direct) == _stored(connection, reference)
        assert len(_stored(connection, direct)) == 3


def test_a_column_left_out_gets_its_constant_default_and_a_computed_default_is_left_to_sqlalchemy(store):
    engine, direct, reference = store
    rows = [{"key": "a", "payload": {"x": 1}, "at": AT}, {"key": "b", "payload": {"y": 2}, "at": AT}]
    with engine.begin() as connection:
        insert_rows(connection, direct, rows)
        connection.execute(insert(reference), rows)
        stored = _stored(connection, direct)
        assert stored == _stored(connection, reference)
    assert [(r[3], r[4]) for r in stored] == [(0, 7), (0, 7)]  # flag False, count 7
    assert all(r[5] is not None for r in stored)  # the callable default ran (through SQLAlchemy's path)


def test_rows_with_different_keys_are_each_written_whole(store):
    engine, direct, reference = store
    rows = [{"key": "a", "count": 1}, {"key": "b", "flag": True}, {"key": "c", "count": 2}]
    with engine.begin() as connection:
        insert_rows(connection, direct, rows)
        for row in rows:
            connection.execute(insert(reference), row)
        assert _stored(connection, direct) == _stored(connection, reference)


def test_direct_statements_are_part_of_the_callers_transaction(store):
    engine, direct, _ = store
    with engine.connect() as connection:
        with connection.begin():
            insert_values(connection, direct, ("key", "count"), [("kept", 1)])
        transaction = connection.begin()
        insert_values(connection, direct, ("key", "count"), [("undone", 2), ("undone too", 3)])
        delete_where_in(connection, direct, "key", ["kept"])
        transaction.rollback()
        assert [r[0] for r in _stored(connection, direct)] == ["kept"]


def test_delete_removes_exactly_the_given_keys_over_many_chunks(store):
    engine, direct, _ = store
    keys = [f"k{i:04d}" for i in range(1_234)]
    with engine.begin() as connection:
        insert_values(connection, direct, ("key",), [(k,) for k in keys])
        delete_where_in(connection, direct, "key", keys[:1_100] + ["not there"])
        assert [r[0] for r in _stored(connection, direct)] == keys[1_100:]


def test_statements_go_to_the_driver_inside_a_transaction_and_through_sqlalchemy_outside_one(store):
    engine, direct, _ = store
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    with engine.begin() as connection:
        insert_values(connection, direct, ("key", "stamped"), [("a", AT), ("b", AT)])  # every computed default given
    assert not [s for s in seen if s.startswith("INSERT")]  # SQLAlchemy never saw it: it went to the cursor
    with engine.connect() as connection:  # no transaction begun: the driver would autocommit it
        insert_values(connection, direct, ("key", "stamped"), [("c", AT)])
        connection.commit()
    assert [s for s in seen if s.startswith("INSERT")]
    with engine.connect() as connection:
        assert connection.execute(select(direct.c.key).order_by(direct.c.key)).scalars().all() == ["a", "b", "c"]


def test_a_column_the_table_does_not_have_is_refused(store):
    engine, direct, _ = store
    with engine.begin() as connection, pytest.raises(KeyError, match="colour"):
        insert_rows(connection, direct, [{"key": "a", "colour": "red"}])


def test_the_statement_cache_stays_bounded():
    dialect = sqlite.dialect()
    for _ in range(direct_sql._CACHE_MAX + 20):  # a caller making a new table object each time: a new shape
        assert direct_sql._insert_of(dialect, _table(MetaData()), ("key", "stamped")) is not None
    assert len(direct_sql._INSERTS) <= direct_sql._CACHE_MAX


def test_a_select_of_text_columns_comes_from_the_driver_with_each_in_list_expanded(store):
    engine, direct, _ = store
    statement = select(direct.c.key, direct.c.count).where(
        direct.c.key.in_(bindparam("keys", expanding=True)), direct.c.count >= bindparam("least")).order_by(direct.c.key)
    seen: list[str] = []
    with engine.begin() as connection:
        insert_values(connection, direct, ("key", "count", "stamped"), [(f"k{i}", i, AT) for i in range(10)])
        event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
        for keys in (["k1", "k2", "k8"], ["k9"], ["k1", "k2", "k8"], [f"k{i}" for i in range(10)]):
            assert select_rows(connection, statement, {"keys": keys, "least": 2}) == [
                tuple(r) for r in connection.execute(statement, {"keys": keys, "least": 2})]
        assert len(seen) == 4  # only SQLAlchemy's own four: the direct ones never went through it
        assert select_rows(connection, statement, {"keys": [], "least": 0}) == []  # an empty list: SQLAlchemy's path


class _Aware(TypeDecorator):
    """An aware datetime stored naive (as the services' UtcDateTime): a conversion of SQLAlchemy's and one of ours."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else value.replace(tzinfo=UTC)


def _store_with_an_aware_column(tmp_path: Any) -> tuple[Any, Table]:
    """The services' kind of engine and the test table with one more column, an aware time stored naive."""
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    metadata = MetaData()
    table = _table(metadata)
    table.append_column(Column("aware", _Aware()))
    metadata.create_all(engine)
    return engine, table


def test_a_select_whose_columns_need_converting_comes_from_the_driver_converted_as_sqlalchemy_converts_them(tmp_path):
    engine, table = _store_with_an_aware_column(tmp_path)
    statement = select(table).where(table.c.key.in_(bindparam("keys", expanding=True))).order_by(table.c.key)
    seen: list[str] = []
    with engine.begin() as connection:
        insert_rows(connection, table, [{**row, "aware": row["at"]} for row in ROWS])
        event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
        rows = select_rows(connection, statement, {"keys": ["a", "b", "c"]})
        assert seen == []  # not through SQLAlchemy
        reference = [tuple(r) for r in connection.execute(statement, {"keys": ["a", "b", "c"]})]
    assert rows == reference
    assert [type(v) for v in rows[0]] == [type(v) for v in reference[0]]  # True, not 1; a datetime, not its text
    assert rows[0][1] == ROWS[0]["payload"] and rows[0][3] is True and rows[0][6] == AT  # the JSON, flag and aware time
    assert rows[1][1] is None and rows[1][6] is None


def test_insert_new_skips_stored_keys_and_returns_what_it_inserted_over_several_statements(store):
    engine, direct, reference = store
    first = [{"key": f"k{i:03d}", "payload": {"i": i}, "at": AT, "stamped": AT} for i in range(0, 300, 2)]
    every = [{"key": f"k{i:03d}", "payload": {"i": i}, "at": AT, "stamped": AT} for i in range(300)]
    with engine.begin() as connection:
        assert sorted(insert_new(connection, direct, first, "key")) == [r["key"] for r in first]
        added = insert_new(connection, direct, every, "key")  # 300 rows of 6 columns: two statements
        assert sorted(added) == [f"k{i:03d}" for i in range(1, 300, 2)]
        assert insert_new(connection, direct, every[:1], "key") == []
        connection.execute(insert(reference), every)
        assert _stored(connection, direct) == _stored(connection, reference)


def test_insert_ignoring_stored_counts_what_it_inserted_and_stores_what_sqlalchemy_stores(store):
    engine, direct, reference = store
    first = [{"key": f"k{i:03d}", "payload": {"i": i}, "at": AT, "stamped": AT} for i in range(0, 300, 2)]
    every = [{"key": f"k{i:03d}", "payload": {"i": i}, "at": AT, "stamped": AT} for i in range(300)]
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    with engine.begin() as connection:
        assert insert_ignoring_stored(connection, direct, first) == 150
        assert insert_ignoring_stored(connection, direct, every) == 150  # the stored half is skipped
        assert insert_ignoring_stored(connection, direct, every) == 0
        assert seen == []  # every INSERT went to the cursor (as the store's own BEGIN)
        connection.execute(insert(reference), every)
        assert _stored(connection, direct) == _stored(connection, reference)


def test_insert_ignoring_stored_outside_a_transaction_goes_through_sqlalchemy_and_counts_alike(store):
    engine, direct, _ = store
    rows = [{"key": "a", "stamped": AT}, {"key": "b", "stamped": AT}]
    with engine.connect() as connection:
        assert insert_ignoring_stored(connection, direct, rows) == 2
        assert insert_ignoring_stored(connection, direct, rows + [{"key": "c", "stamped": AT}]) == 1
        connection.commit()
    with engine.connect() as connection:
        assert connection.execute(select(direct.c.key).order_by(direct.c.key)).scalars().all() == ["a", "b", "c"]


def _sqlalchemy_upsert(table: Table) -> Any:
    stmt = sqlite_insert(table)
    return stmt.on_conflict_do_update(index_elements=["key"], set_={c.name: stmt.excluded[c.name] for c in table.columns
                                                                     if c.name != "key"})


def test_upsert_inserts_then_replaces_every_other_column_as_sqlalchemys_upsert_does(store):
    engine, direct, reference = store
    later = [{"key": "a", "payload": {"changed": True}, "at": None, "count": 9},  # flag left out: back to its default
             {"key": "d", "payload": [1], "at": AT, "count": 1}]
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    with engine.begin() as connection:
        for table in (direct, reference):
            for rows in (ROWS, later, later[:1]):  # many rows, then conflicts, then one row alone
                if table is direct:
                    upsert_rows(connection, table, [{**r, "stamped": AT} for r in rows], ["key"])
                else:
                    connection.execute(_sqlalchemy_upsert(table), [{**r, "stamped": AT} for r in rows])
        stored = _stored(connection, direct)
        assert stored == _stored(connection, reference)
    assert [r[0] for r in stored] == ["a", "b", "c", "d"]
    assert stored[0][3:5] == (0, 9)  # the update set the left-out flag to its default, the count to the new value
    assert not [s for s in seen if s.startswith("INSERT INTO things")]  # the direct rows went to the cursor


def test_upsert_outside_a_transaction_goes_through_sqlalchemy_and_stores_alike(store):
    engine, direct, reference = store
    for rows in ([{**r, "stamped": AT} for r in ROWS], [{"key": "a", "count": 5, "stamped": AT}]):
        with engine.connect() as connection:  # no transaction begun yet: the driver would autocommit
            assert not connection.in_transaction()
            upsert_rows(connection, direct, rows, ["key"])
            connection.execute(_sqlalchemy_upsert(reference), rows)
            connection.commit()
    with engine.connect() as connection:
        assert _stored(connection, direct) == _stored(connection, reference)
        assert [r[4] for r in _stored(connection, direct)] == [5, 0, None]


def test_upsert_on_a_key_the_table_does_not_have_is_refused(store):
    engine, direct, _ = store
    with engine.begin() as connection, pytest.raises(KeyError, match="colour"):
        upsert_rows(connection, direct, [{"key": "a", "stamped": AT}], ["colour"])


def _sqlalchemy_update(table: Table, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> tuple[Any, list[dict[str, Any]]]:
    statement = update(table).where(*(table.c[k] == bindparam(f"k_{k}") for k in keys))
    return statement, [{(f"k_{c}" if c in keys else c): v for c, v in row.items()} for row in rows]


def test_update_sets_the_given_columns_of_the_rows_the_keys_match_as_sqlalchemys_update_does(store):
    engine, direct, reference = store
    changes = [{"payload": {"changed": ["路灯"]}, "at": None, "flag": True, "count": 9, "key": "a", "stamped": AT},
               {"payload": None, "at": AT, "flag": False, "count": 3, "key": "c", "stamped": AT},
               {"payload": [], "at": AT, "flag": None, "count": 1, "key": "nobody", "stamped": AT}]  # matches no row
    seen: list[str] = []
    with engine.begin() as connection:
        for table in (direct, reference):
            insert_rows(connection, table, [{**r, "stamped": AT} for r in ROWS])
        event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
        for rows in (changes, changes[1:2]):  # several rows, then one alone
            update_rows(connection, direct, rows, ["key"])
            connection.execute(*_sqlalchemy_update(reference, rows, ("key",)))
        stored = _stored(connection, direct)
        assert stored == _stored(connection, reference)
    assert [r[0] for r in stored] == ["a", "b", "c"]
    assert stored[0][3:5] == (1, 9) and stored[2][4] == 3  # the changes are there
    assert not [s for s in seen if s.startswith("UPDATE things")]  # the direct rows went to the cursor


def test_update_on_a_two_column_key_changes_only_the_row_matching_both(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    table = Table("clocks", MetaData(), Column("task", String, primary_key=True), Column("clock", String, primary_key=True),
                  Column("n", Integer))
    table.metadata.create_all(engine)
    with engine.begin() as connection:
        insert_rows(connection, table, [{"task": t, "clock": c, "n": 0} for t in ("t1", "t2") for c in ("a", "b")])
        update_rows(connection, table, [{"task": "t1", "clock": "b", "n": 5}, {"task": "t2", "clock": "a", "n": 7}],
                    ("task", "clock"))
        assert connection.exec_driver_sql("SELECT task, clock, n FROM clocks ORDER BY task, clock").all() == [
            ("t1", "a", 0), ("t1", "b", 5), ("t2", "a", 7), ("t2", "b", 0)]


def test_update_outside_a_transaction_goes_through_sqlalchemy_and_stores_alike(store):
    engine, direct, reference = store
    rows = [{"key": "b", "count": 5, "payload": {"x": 1}}]
    with engine.connect() as connection:
        for table in (direct, reference):
            insert_rows(connection, table, [{**r, "stamped": AT} for r in ROWS])
        connection.commit()
        assert not connection.in_transaction()
        update_rows(connection, direct, rows, ["key"])
        connection.execute(*_sqlalchemy_update(reference, rows, ("key",)))
        connection.commit()
    with engine.connect() as connection:
        assert _stored(connection, direct) == _stored(connection, reference)
        assert [r[4] for r in _stored(connection, direct)] == [3, 5, None]


def test_rows_to_update_without_their_key_are_refused(store):
    engine, direct, _ = store
    with engine.begin() as connection, pytest.raises(KeyError, match="lack their key columns"):
        update_rows(connection, direct, [{"count": 1}], ["key"])


def test_a_select_with_a_time_parameter_comes_from_the_driver_with_the_time_converted_as_sqlalchemy_binds_it(tmp_path):
    # The time must be bound as the column stores it (text in SQLAlchemy's format on SQLite): the driver's own
    # adaptation of a datetime ("...T...+00:00") would compare wrongly with the stored text.
    engine, table = _store_with_an_aware_column(tmp_path)
    statement = select(table.c.key).where(table.c.aware >= bindparam("since"), table.c.aware < bindparam("until"),
                                          table.c.key.in_(bindparam("keys", expanding=True))).order_by(table.c.key)
    times = [AT.replace(hour=h) for h in range(24)]
    seen: list[str] = []
    with engine.begin() as connection:
        insert_rows(connection, table, [{"key": f"k{h:02d}", "aware": t} for h, t in enumerate(times)])
        event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
        params = {"since": times[5].astimezone(timezone(timedelta(hours=8))), "until": times[9], "keys": ["k04", "k05", "k09", "k06"]}
        rows = select_rows(connection, statement, params)
        assert seen == []  # not through SQLAlchemy
        assert rows == [tuple(r) for r in connection.execute(statement, params)] == [("k05",), ("k06",)]


def test_a_select_comparing_with_constants_binds_the_statements_own_values(tmp_path):
    # "status = 'open'" in a statement is a parameter SQLAlchemy fills in itself: select_rows must too, converted.
    engine, table = _store_with_an_aware_column(tmp_path)
    statement = select(table.c.key).where(table.c.count == 3, table.c.aware <= AT.replace(hour=12),
                                          table.c.flag == bindparam("flag")).order_by(table.c.key)
    seen: list[str] = []
    with engine.begin() as connection:
        insert_rows(connection, table, [{"key": f"k{h:02d}", "count": 3 + h % 2, "flag": h % 3 == 0,
                                         "aware": AT.replace(hour=h)} for h in range(24)])
        event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
        rows = select_rows(connection, statement, {"flag": True})
        assert seen == []  # not through SQLAlchemy
        assert rows == [tuple(r) for r in connection.execute(statement, {"flag": True})] == [("k00",), ("k06",), ("k12",)]


class _NaiveUtc(TypeDecorator[datetime]):
    """As sla's UtcDateTime: an aware time stored as naive UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def _times_table(metadata: MetaData, name: str) -> Table:
    from sqlmodel.sql.sqltypes import UTCDateTime
    return Table(
        name, metadata,
        Column("key", Integer, primary_key=True),
        Column("plain", DateTime),
        Column("aware", UTCDateTime()),
        Column("naive_utc", _NaiveUtc()),
        Column("own_format", sqlite.DATETIME(storage_format="%(year)04d/%(month)02d/%(day)02d %(hour)02d:%(minute)02d")),
    )


EAST8 = timezone(timedelta(hours=8))
TIMES = [AT, AT.replace(microsecond=0), AT.astimezone(EAST8), datetime(1, 1, 1, tzinfo=UTC),
         datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(2026, 2, 28, 23, 0, tzinfo=timezone(timedelta(hours=-5))), None]


def test_times_are_stored_exactly_as_sqlalchemy_stores_them_whatever_their_zone_and_column_type(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'times.db'}")
    metadata = MetaData()
    direct, reference = _times_table(metadata, "direct"), _times_table(metadata, "reference")
    metadata.create_all(engine)
    rows = [{"key": i, "plain": t, "aware": t, "naive_utc": t, "own_format": t} for i, t in enumerate(TIMES)]
    rows.append({"key": 99, "plain": AT.date(), "aware": None, "naive_utc": None, "own_format": AT.date()})  # a date
    with engine.begin() as connection:
        insert_rows(connection, direct, rows)
        connection.execute(insert(reference), rows)
        stored = connection.exec_driver_sql('SELECT * FROM "direct" ORDER BY "key"').all()
        assert stored == connection.exec_driver_sql('SELECT * FROM "reference" ORDER BY "key"').all()
        assert stored[2][2] == stored[0][2] == "2026-03-02 09:30:15.123456"  # +08:00 stored as its UTC instant
        # Read back through the direct SELECT, converted as SQLAlchemy converts them (a text of its own format
        # would need its own pattern to be read: left out).
        def readable(table: Table) -> Any:
            return select(table.c.key, table.c.plain, table.c.aware, table.c.naive_utc).order_by(table.c.key)
        assert select_rows(connection, readable(direct), {}) == [tuple(r) for r in connection.execute(readable(reference))]


def test_a_naive_time_for_an_aware_column_is_refused_as_sqlalchemy_refuses_it(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'times.db'}")
    metadata = MetaData()
    table = _times_table(metadata, "direct")
    metadata.create_all(engine)
    with engine.begin() as connection, pytest.raises(ValueError, match="timezone"):
        insert_rows(connection, table, [{"key": 1, "aware": datetime(2026, 1, 1)}])  # noqa: DTZ001 - the point
    with pytest.raises(Exception, match="timezone"), engine.begin() as connection:
        connection.execute(insert(table), [{"key": 1, "aware": datetime(2026, 1, 1)}])  # noqa: DTZ001


def test_a_column_whose_conversion_turns_none_into_a_value_still_gets_it(store):
    engine, direct, _ = store
    with engine.begin() as connection:
        insert_rows(connection, direct, [{"key": "n", "payload": None}, {"key": "m", "payload": None}])
        assert [r[1] for r in _stored(connection, direct)] == ["null", "null"]  # JSON null, not SQL NULL
