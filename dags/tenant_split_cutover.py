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
`mapping`, `database_prefix`. **Approval** is the deployment's policy, not a form field: the env var `CUTOVER_REQUIRE_APPROVAL` or the
Airflow Variable `cutover_require_approval` (`on` / `off`; per pipeline with the suffix `_tenant_split`),
default on, read when the run runs. `require_approval: true` in the conf asks for an approval the policy
does not require; `false` is ignored (logged, noted in the evidence). Who triggered the run and who
approved are recorded with every switch (`cutover.switch_history`) and in the run's evidence.
**Roll back**: `tenant_split_rollback`.
"""

from __future__ import annotations

from airflow.sdk import dag

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
    },
)
def tenant_split_cutover() -> None:
    cutover_tasks(SPEC)


tenant_split_cutover()
