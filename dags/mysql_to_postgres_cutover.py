"""
### mysql_to_postgres_cutover — point readers of verified tables at PostgreSQL

Takes tables whose latest verification passed (`mysql_to_postgres_build`), asks for an approval
(*Required Actions*; the body lists each table's counts), then routes each table's readers to its
PostgreSQL copy (`cutover.routes`, with history). MySQL stays the system of record:
`mysql_to_postgres_sync` keeps the copies fresh afterwards too.

**Params**: `units` (table names; empty = every ready table), the source / target Params,
`require_approval`. **Roll back**: `mysql_to_postgres_rollback`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from cutover.dag_defaults import default_args
from cutover.lifecycle.tasks import cutover_tasks, units_param
from cutover.mysql_to_postgres.params import source_params

SPEC = "cutover.mysql_to_postgres.spec:SPEC"


@dag(
    dag_id="mysql_to_postgres_cutover",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "mysql_to_postgres", "cutover"],
    params={
        "units": units_param("table"),
        **source_params(),
        "require_approval": Param(True, type="boolean", title="Require approval", description="Ask a human first."),
    },
)
def mysql_to_postgres_cutover() -> None:
    cutover_tasks(SPEC)


mysql_to_postgres_cutover()
