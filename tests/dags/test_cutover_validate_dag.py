"""The quality gate as a DAG: it passes on good data, and on bad data fails and blocks the publish task."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SCHEMA = "cutover_dagtest_gate"


def _run(table: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.conftest import DAGS_DIR

    bag = DagBag(dag_folder=str(DAGS_DIR / "cutover_validate.py"), bundle_path=DAGS_DIR)
    dag = bag.get_dag("cutover_validate")
    assert dag is not None, bag.import_errors
    return dag.test(run_conf={"conn_id": "postgres_target", "schema": SCHEMA, "table": table, "suite": "cutover_keyed_table"})


@pytest.fixture
def tables(pg: Any) -> None:
    pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
    pg.execute(f"CREATE TABLE {SCHEMA}.good (id int, name text)")
    pg.execute(f"INSERT INTO {SCHEMA}.good SELECT g, 'n' || g FROM generate_series(1, 50) g")
    pg.execute(f"CREATE TABLE {SCHEMA}.bad (id int, name text)")
    pg.execute(f"INSERT INTO {SCHEMA}.bad SELECT g, 'n' || g FROM generate_series(1, 50) g")
    pg.execute(f"INSERT INTO {SCHEMA}.bad VALUES (7, NULL)")  # a duplicate id and a null name
    pg.commit()


def _states(dr: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def test_gate_passes_and_publishes(airflow_db: None, tables: None, pg: Any) -> None:
    dr = _run("good")
    assert str(dr.state) == "success", _states(dr)
    assert _states(dr) == {"validate": "success", "publish": "success"}
    row = pg.execute(
        "SELECT success, evaluated, failed FROM cutover.quality_results WHERE run_id = %s", (dr.run_id,)
    ).fetchone()
    assert row == (True, 4, 0)
    evidence = pg.execute("SELECT evidence FROM cutover.runs WHERE run_id = %s", (dr.run_id,)).fetchone()[0]
    assert evidence["published"] is True


def test_gate_fails_and_blocks_downstream(airflow_db: None, tables: None, pg: Any) -> None:
    from cutover.quality.gate import docs_dir

    dr = _run("bad")
    assert str(dr.state) == "failed"
    states = _states(dr)
    assert states["validate"] == "failed"
    assert states["publish"] == "upstream_failed"
    row = pg.execute(
        "SELECT success, failed, statistics FROM cutover.quality_results WHERE run_id = %s", (dr.run_id,)
    ).fetchone()
    assert row[0] is False and row[1] == 2
    assert any("expect_column_values_to_be_unique" in f for f in row[2]["failures"])
    assert pg.execute("SELECT count(*) FROM cutover.runs WHERE run_id = %s", (dr.run_id,)).fetchone()[0] == 0
    assert (docs_dir() / "index.html").exists()
    assert list((docs_dir() / "validations" / "cutover_keyed_table").rglob("*.html")), "no validation page in docs"
