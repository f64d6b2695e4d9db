"""
### mysql_to_postgres_rollback — route tables' readers back to MySQL; optionally drop the copies

Per table: its routing entry back to MySQL (history kept). With `drop`, the PostgreSQL table, its copy
checkpoint, its sync position and its consistency pair are removed, so a new build starts it afresh.

**Params**: `units` (table names; empty = every table ever built), the source / target Params, `drop`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from cutover.dag_defaults import default_args
from cutover.lifecycle.tasks import rollback_tasks, units_param
from cutover.mysql_to_postgres.params import source_params

SPEC = "cutover.mysql_to_postgres.spec:SPEC"


@dag(
    dag_id="mysql_to_postgres_rollback",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "mysql_to_postgres", "rollback"],
    params={
        "units": units_param("table"),
        **source_params(),
        "drop": Param(False, type="boolean", title="Drop the copies",
                      description="Also drop each table's PostgreSQL copy, checkpoint and sync position."),
    },
)
def mysql_to_postgres_rollback() -> None:
    rollback_tasks(SPEC)


mysql_to_postgres_rollback()
