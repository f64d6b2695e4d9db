"""
### tenant_split_sync — keep every built tenant database current from the binary log

Every minute (trigger by hand too): one binary-log reader from the lowest stored position of the
built tenants that are not cut over yet; each transaction's changes of a tenant (inserts, updates,
deletes; the tenant column in the before or after image) are applied to its database together with
its new position, so a killed run resumes exactly. Triggers are set aside while changes apply and
restored, proven equal, afterwards. The source must log ROW images (`log_bin`, `binlog_format=ROW`,
`binlog_row_image=FULL`); without that the task fails saying so — use the weaker mode (copy + verify,
writes paused at cutover).

**Reverse replication** (the same run, task `reverse`): every tenant already cut over has a reverse
stream started at its switch; its database's changes are applied back to the shared tables (with the
stream's position, exactly once), so a rollback loses nothing. Writes that still reach the shared tables
for a cut-over tenant (a client that did not re-read its route) are **stray writes**: reported with their
keys (status page, `cutover.stray_writes`) and, with `forward_stray_writes`, applied to the tenant's
database too. Lag and rows applied per tenant are on the status page (streams).

**Params**: `source_database`, `mapping`, `database_prefix`, `tenants` (empty = every built one),
`max_seconds` (stop a long catch-up and continue next run), `forward_stray_writes` (also apply
stray writes to the tenant database).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from cutover.dag_defaults import default_args
from cutover.tenant_split.params import source_params, tenants_param


@dag(
    dag_id="tenant_split_sync",
    schedule="* * * * *",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay=timedelta(seconds=5), max_retry_delay=timedelta(minutes=1)),
    doc_md=__doc__,
    tags=["cutover", "tenant_split", "sync"],
    params={
        **source_params(),
        "tenants": tenants_param(),
        "max_seconds": Param(600, type="integer", minimum=10, title="Max seconds",
                             description="Stop after this long; the next run continues from the stored positions."),
        "forward_stray_writes": Param(False, type="boolean", title="Forward stray writes",
                                      description="Writes to the shared tables for a cut-over tenant are reported; "
                                                  "also apply them to the tenant's database."),
    },
)
def tenant_split_sync() -> None:
    @task
    def catch_up(params: dict | None = None) -> dict:
        """Apply the built tenants' changes from the binary log up to its end now."""
        from cutover.tenant_split.config import TenantSplitConfig
        from cutover.tenant_split.sync import built_tenants
        from cutover.tenant_split.sync import catch_up as run

        p = dict(params or {})
        cfg = TenantSplitConfig.from_params(p)
        tenants = built_tenants(cfg)
        if cfg.tenants:
            tenants = {t: db for t, db in tenants.items() if t in set(cfg.tenants)}
        return run(cfg, tenants, max_seconds=float(p.get("max_seconds") or 600))

    @task
    def reverse(params: dict | None = None) -> dict:
        """Apply the cut-over tenants' database changes back to the shared tables; report stray writes."""
        from cutover.tenant_split import reverse as rev
        from cutover.tenant_split.config import TenantSplitConfig

        p = dict(params or {})
        cfg = TenantSplitConfig.from_params(p)
        return rev.run(cfg, list(cfg.tenants) or None, forward_stray_writes=bool(p.get("forward_stray_writes")),
                       max_seconds=float(p.get("max_seconds") or 600))

    catch_up()
    reverse()


tenant_split_sync()
