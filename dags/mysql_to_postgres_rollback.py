"""
### mysql_to_postgres_rollback — route tables' readers back to MySQL; optionally drop the copies

Per table: its routing entry back to MySQL (history kept). With `drop`, the PostgreSQL table, its copy
checkpoint, its sync position and its consistency pair are removed, so a new build starts it afresh.

Before anything moves, every table whose readers are on PostgreSQL is compared row by row with MySQL
(the consistency engine, as verify does): rows PostgreSQL holds that MySQL lacks (inserted), holds with other
values (updated) or lacks (deleted) would be lost, since changes do not flow back yet. If any, the rollback
**refuses**, nothing moved, and the run's evidence (`target_writes`) names per table the counts and sample
keys; run `mysql_to_postgres_sync` first if MySQL's own changes may still be on their way. With
`discard_target_writes` it goes on and records the discarded writes (evidence, `cutover.switch_history`).

**Params**: `units` (table names; empty = every table ever built), the source / target Params, `drop`,
`discard_target_writes`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from cutover.dag_defaults import default_args
from cutover.lifecycle.tasks import discard_param, rollback_tasks, units_param
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
        "discard_target_writes": discard_param(),
    },
)
def mysql_to_postgres_rollback() -> None:
    rollback_tasks(SPEC)


mysql_to_postgres_rollback()
