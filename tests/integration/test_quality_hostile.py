"""The quality gate on tables, columns and schemas named with every hostile name (a ship id like `vessel-7`).

Each name reaches GX as the table name, as the column an expectation names and as the schema name;
the gate must pass where the data is right and fail, naming the expectation, where it is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from cutover import connections
from cutover.identifiers import pg_ident
from cutover.quality import gate
from cutover.samples.hostile import HOSTILE_NAMES

pytestmark = pytest.mark.integration

# the schema of the table-and-column cases: hostile too (space, quotes, dot, hyphen, unicode)
SCHEMA = 'cutover_it quality."hostile"-Ω.1'
# the table of the schema cases, which put it in a schema named after each hostile name
TABLE = "cutover_it_quality_hostile"
ROWS = 3


@pytest.fixture(scope="module")
def gx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One GX file context for the whole module, outside the project's great_expectations/."""
    return tmp_path_factory.mktemp("gx")


@pytest.fixture(autouse=True)
def _isolated_gx(gx_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # gate.py reads CUTOVER_GX_ROOT once, at import: point its module global at the temp context
    monkeypatch.setattr(gate, "GX_ROOT", gx_root)


@pytest.fixture(scope="module")
def schema() -> Iterator[str]:
    def drop() -> None:
        with connections.pg_connect() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pg_ident(SCHEMA)))
            conn.commit()

    drop()
    with connections.pg_connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(pg_ident(SCHEMA)))
        conn.commit()
    yield SCHEMA
    drop()


def _create_table(pg: Any, schema: str, table: str, column: str) -> None:
    """``schema.table`` with ``column`` (integers 1..ROWS) and ``created_time`` (unless that is ``column``), ROWS rows."""
    columns = {column: ("integer", "g")}
    columns.setdefault("created_time", ("timestamptz", "timestamptz '2024-01-01' + g * interval '15 seconds'"))
    ident = pg_ident(schema, table)
    pg.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    pg.execute(
        sql.SQL("CREATE TABLE {} ({})").format(
            ident,
            sql.SQL(", ").join(sql.SQL("{} {} NOT NULL").format(pg_ident(c), sql.SQL(t)) for c, (t, _) in columns.items()),
        )
    )
    pg.execute(
        # no parameters: psycopg would read a "%" inside a quoted name as a placeholder
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM generate_series(1, {}) g").format(
            ident,
            sql.SQL(", ").join(pg_ident(c) for c in columns),
            sql.SQL(", ").join(sql.SQL(v) for _, v in columns.values()),
            sql.Literal(ROWS),
        ),
    )
    pg.commit()


def _between(column: str, low: int, high: int) -> dict[str, Any]:
    return {"type": "expect_column_values_to_be_between", "kwargs": {"column": column, "min_value": low, "max_value": high}}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_gate_on_hostile_table_and_column(pg: Any, schema: str, gx_root: Path, name: str) -> None:
    _create_table(pg, schema, name, name)

    not_null = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}}
                for c in dict.fromkeys([name, "created_time"])]
    passed = gate.run_gate(
        "generated__it_hostile_pass", schema=schema, table=name, run_id="it_quality_hostile",
        expectations=[*not_null, {"type": "expect_table_row_count_to_equal", "kwargs": {"value": ROWS}}, _between(name, 1, ROWS)],
    )
    assert passed.success, passed.failures
    assert (passed.evaluated, passed.failed) == (len(not_null) + 2, 0)
    assert passed.result_id is not None
    assert passed.docs_index and Path(passed.docs_index).is_relative_to(gx_root)
    label = passed.asset.split(":", 1)[1]
    assert label.isascii() and label.startswith("cutover_it_quality._hostile_-")  # readable in the data docs

    failed = gate.run_gate(
        "generated__it_hostile_fail", schema=schema, table=name, raise_on_failure=False,
        expectations=[{"type": "expect_table_row_count_to_equal", "kwargs": {"value": ROWS}}, _between(name, 10, 20)],
    )
    assert not failed.success
    assert (failed.evaluated, failed.failed) == (2, 1)
    assert len(failed.failures) == 1
    assert failed.failures[0].startswith("expect_column_values_to_be_between(")
    assert repr(name) in failed.failures[0] and f"{ROWS} unexpected" in failed.failures[0]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_gate_on_hostile_schema(pg: Any, name: str) -> None:
    """The hostile name as the schema (created here unless it exists; dropped again only if left empty)."""
    pg.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pg_ident(name)))
    _create_table(pg, name, TABLE, name)
    try:
        with pytest.raises(gate.QualityGateFailed) as err:
            gate.run_gate(
                "generated__it_hostile_schema", schema=name, table=TABLE,
                expectations=[
                    {"type": "expect_table_row_count_to_equal", "kwargs": {"value": ROWS}},
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": name}},
                    _between(name, ROWS + 1, ROWS + 10),
                ],
            )
        result = err.value.result
        assert (result.evaluated, result.failed) == (3, 1)
        assert len(result.failures) == 1 and result.failures[0].startswith("expect_column_values_to_be_between(")
        assert result.statistics.get("successful_expectations") == 2
    finally:
        pg.rollback()
        pg.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(pg_ident(name, TABLE)))
        pg.commit()
        try:
            pg.execute(sql.SQL("DROP SCHEMA {}").format(pg_ident(name)))  # RESTRICT: only when empty
            pg.commit()
        except Exception:
            pg.rollback()


def test_asset_labels_are_readable_and_distinct() -> None:
    """Asset / checkpoint names: ASCII file names, one per distinct schema.table, stable for plain names."""
    pairs = [(SCHEMA, n) for n in HOSTILE_NAMES] + [(n, TABLE) for n in HOSTILE_NAMES]
    pairs += [("a", "b.c"), ("a.b", "c"), ("public", "tbl_data_timeseries_9100001")]
    labels = [gate._asset_label(s, t, "suite") for s, t in pairs]
    assert len(set(labels)) == len(pairs)
    assert all(label.isascii() and not gate._SAFE.search(label) for label in labels)
    assert gate._asset_label("public", "tbl_data_timeseries_9100001", "suite") == "public.tbl_data_timeseries_9100001"
    assert gate._asset_label(None, "vessel-7", "suite") == "vessel-7"
    assert gate._asset_label(None, None, "consistency_results") == "consistency_results"


def test_gates_leave_no_connection_open(pg: Any, schema: str) -> None:
    """Many gates in one process (a worker, a test session) must not pile up pooled connections."""
    name = HOSTILE_NAMES[0]
    _create_table(pg, schema, name, name)
    pg.commit()

    def open_connections() -> int:  # client sessions only (an autovacuum worker may come and go)
        return int(pg.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                              "AND backend_type = 'client backend'").fetchone()[0])

    before = open_connections()
    pg.commit()
    for _ in range(6):
        gate.run_gate("generated__it_hostile_leak", schema=schema, table=name, raise_on_failure=False,
                      expectations=[{"type": "expect_table_row_count_to_equal", "kwargs": {"value": ROWS}}])
    # a leak kept 2 connections per gate (12 here); one session of slack for a connection closing late
    assert open_connections() <= before + 1
    pg.commit()


def test_types_of_columns_whose_names_differ_only_in_case(pg: Any, schema: str) -> None:
    """GX reads PostgreSQL column types by case-insensitive name: the gate checks such columns itself."""
    ident = pg_ident(schema, "case_pair")
    pg.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    pg.execute(sql.SQL('CREATE TABLE {} ("Mixed Case" text, "mixed case" boolean, "MIXED CASE" bigint)').format(ident))
    pg.execute(sql.SQL("INSERT INTO {} VALUES ('a', true, 1)").format(ident))
    pg.commit()

    def types(**want: str) -> list[dict[str, Any]]:
        return [{"type": "expect_column_values_to_be_of_type", "kwargs": {"column": c, "type_": t}} for c, t in want.items()]

    right = {"Mixed Case": "TEXT", "mixed case": "BOOLEAN", "MIXED CASE": "BIGINT"}
    ok = gate.run_gate("generated__it_case_pair", schema=schema, table="case_pair", raise_on_failure=False,
                       expectations=[*types(**right), {"type": "expect_column_values_to_not_be_null",
                                                       "kwargs": {"column": "mixed case"}}])
    assert ok.success, ok.failures
    assert (ok.evaluated, ok.failed) == (4, 0) and ok.statistics.get("checked_by_cutover") == 3
    wrong = gate.run_gate("generated__it_case_pair", schema=schema, table="case_pair", raise_on_failure=False,
                          expectations=types(**{**right, "mixed case": "TEXT"}))
    assert not wrong.success and wrong.failed == 1
    assert "'mixed case'" in wrong.failures[0] and "BOOLEAN" in wrong.failures[0]
    assert gate.split_case_collisions(types(a="TEXT", b="TEXT"))[1] == []  # no collision: GX checks them
