"""
### tenant_split_rollback — route tenants back to the shared tables; optionally drop their databases

Per tenant (or `tenant / table`): its routing entry back to the shared tables (history kept). With
`drop`, each table of the tenant's database is dropped with its copy checkpoints, and the database
once its last table is gone, so a new `tenant_split_build` starts it from scratch.

**Params**: `units` (tenant ids or `tenant / table`; empty = every tenant ever built),
`source_database`, `mapping`, `database_prefix`, `drop`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from cutover.dag_defaults import default_args
from cutover.lifecycle.tasks import rollback_tasks, units_param
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
    },
)
def tenant_split_rollback() -> None:
    rollback_tasks(SPEC)


tenant_split_rollback()
