"""
### tenant_split_cutover — route verified tenants to their own database, after a short write pause

Takes tenants whose every table's latest verification passed (`tenant_split_build`), asks for an
approval (*Required Actions*; the body lists each table's counts), then per tenant: **write pause**
(its routing entry `paused` — the application holds the tenant's writes while it says so — and
Cutover's own next-key locks on the tenant's rows in the source), **final catch-up** from the binary
log to the position taken inside the pause, **counts and checksums** of every table again, then the
**route** (`cutover.routes`, with history: tenant → database) and the pause ends. The paused seconds
are in the run's evidence. A tenant whose check fails is not routed; the others go on.

**Params**: `units` (tenant ids, or `tenant / table`; empty = every ready tenant), `source_database`,
`mapping`, `database_prefix`, `require_approval`. **Roll back**: `tenant_split_rollback`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from cutover.dag_defaults import default_args
from cutover.lifecycle.tasks import cutover_tasks, units_param
from cutover.tenant_split.params import source_params

SPEC = "cutover.tenant_split.spec:SPEC"


@dag(
    dag_id="tenant_split_cutover",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "tenant_split", "cutover"],
    params={
        "units": units_param("tenant"),
        **source_params(),
        "require_approval": Param(True, type="boolean", title="Require approval", description="Ask a human first."),
    },
)
def tenant_split_cutover() -> None:
    cutover_tasks(SPEC)


tenant_split_cutover()
