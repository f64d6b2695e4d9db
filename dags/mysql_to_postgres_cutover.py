"""
### mysql_to_postgres_cutover — point readers of verified tables at PostgreSQL

Takes tables whose latest verification passed (`mysql_to_postgres_build`), asks for an approval
(*Required Actions*; the body lists each table's counts), then routes each table's readers to its
PostgreSQL copy (`cutover.routes`, with history). MySQL stays the system of record:
`mysql_to_postgres_sync` keeps the copies fresh afterwards too.

**Params**: `units` (table names; empty = every ready table), the source / target Params.
**Approval** is the deployment's policy, not a form field: the env var `CUTOVER_REQUIRE_APPROVAL` or the
Airflow Variable `cutover_require_approval` (`on` / `off`; per pipeline with the suffix `_mysql_to_postgres`),
default on, read when the run runs. `require_approval: true` in the conf asks for an approval the policy
does not require; `false` is ignored (logged, noted in the evidence). Who triggered the run and who
approved are recorded with every switch (`cutover.switch_history`) and in the run's evidence.
**Roll back**: `mysql_to_postgres_rollback`.
"""

from __future__ import annotations

from airflow.sdk import dag

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
    },
)
def mysql_to_postgres_cutover() -> None:
    cutover_tasks(SPEC)


mysql_to_postgres_cutover()
