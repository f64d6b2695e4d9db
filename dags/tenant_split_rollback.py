"""
### tenant_split_rollback — route tenants back to the shared tables; optionally drop their databases

Per tenant (or `tenant / table`): its routing entry back to the shared tables (history kept). With
`drop`, each table of the tenant's database is dropped with its copy checkpoints, and the database
once its last table is gone, so a new `tenant_split_build` starts it from scratch.

Before anything moves, every table of a tenant routed to its database is compared row by row with the
tenant's rows in the shared tables (the consistency engine, as verify does): rows written in the tenant
database after the cutover (inserted, updated, deleted) would be lost, since changes do not flow back
yet. If any, the rollback **refuses**, nothing moved, and the run's evidence (`target_writes`) names per
table the counts and sample keys. With `discard_target_writes` it goes on and records the discarded
writes (evidence, `cutover.switch_history`).

**Params**: `units` (tenant ids or `tenant / table`; empty = every tenant ever built),
`source_database`, `mapping`, `database_prefix`, `drop`, `discard_target_writes`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from cutover.dag_defaults import default_args
from cutover.lifecycle.tasks import discard_param, rollback_tasks, units_param
from cutover.tenant_split.params import source_params

SPEC = "cutover.tenant_split.spec:SPEC"


@dag(
    dag_id="tenant_split_rollback",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "tenant_split", "rollback"],
    params={
        "units": units_param("tenant"),
        **source_params(),
        "drop": Param(False, type="boolean", title="Drop tenant databases",
                      description="Also drop each tenant's tables (and database) and copy checkpoints."),
        "discard_target_writes": discard_param(),
    },
)
def tenant_split_rollback() -> None:
    rollback_tasks(SPEC)


tenant_split_rollback()
