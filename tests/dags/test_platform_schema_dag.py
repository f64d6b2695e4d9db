"""platform_schema as a DAG: its Params, then dag.test() runs — a dry run writes nothing, a run migrates,
a second run is a no-op, and a refused run (other role names) fails at once, without retries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from cutover import connections
from cutover.platform.config import PLATFORM_TABLES
from cutover.platform.schema import load_migrations
from tests.dags.conftest import load_dag

pytestmark = [pytest.mark.dags, pytest.mark.integration]


def _dag(dag_id: str = "platform_schema") -> Any:
    return load_dag(dag_id)


def _states(dr: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


@pytest.fixture
def schema() -> Iterator[str]:
    """A unique schema with an awkward name, dropped after the test."""
    name = f"plat dag.{uuid.uuid4().hex[:8]}"
    yield name
    with connections.pg_connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _applied(schema: str) -> list[int] | None:
    with connections.pg_connect() as conn:
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
            return None
        rows = conn.execute(sql.SQL("SELECT version FROM {} ORDER BY version")
                            .format(sql.Identifier(schema, "schema_migrations"))).fetchall()
        return [r[0] for r in rows]


def test_dag_is_wired_as_documented(airflow_db: None) -> None:
    dag = _dag()
    assert [t.task_id for t in dag.tasks] == ["apply_migrations"]
    assert set(dag.params) == {"conn_id", "schema", "service_role", "app_role", "dry_run"}
    assert dag.params["schema"] == "platform" and dag.params["dry_run"] is False
    assert dag.params["service_role"] == "cutover_service" and dag.params["app_role"] == "cutover_app"
    assert dag.max_active_runs == 1 and type(dag.timetable).__name__ == "NullTimetable"  # manual trigger only
    assert {"cutover", "mysql_to_postgres"} <= set(dag.tags)
    assert "request.jwt.claims" in dag.doc_md


def test_dry_run_then_migrate_then_noop_then_refusal(airflow_db: None, schema: str) -> None:
    shipped = [m.version for m in load_migrations()]

    dry = _dag().test(run_conf={"schema": schema, "dry_run": True})
    assert str(dry.state) == "success", _states(dry)
    assert _applied(schema) is None  # a dry run creates nothing

    dr = _dag().test(run_conf={"schema": schema})
    assert str(dr.state) == "success", _states(dr)
    assert _applied(schema) == shipped
    with connections.pg_connect() as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND rowsecurity", (schema,)).fetchall()}
        assert set(PLATFORM_TABLES) <= tables

    again = _dag().test(run_conf={"schema": schema})
    assert str(again.state) == "success", _states(again)
    assert _applied(schema) == shipped

    refused = _dag().test(run_conf={"schema": schema, "app_role": "cutover_app_other"})
    assert str(refused.state) == "failed"
    (ti,) = refused.get_task_instances()
    assert str(ti.state) == "failed" and ti.try_number == 1  # AirflowFailException: no retry
    assert _applied(schema) == shipped
