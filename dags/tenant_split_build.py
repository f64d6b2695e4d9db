"""
### tenant_split_build — shared multi-tenant MySQL tables → one database per tenant, verified

Splits the shared tables of `source_database` (connection `mysql_source`), told apart by a tenant
column, into one database per tenant on `mysql_target` (the same or another MySQL / MariaDB server),
consolidating tables on the way as the **mapping file** says (drop, rename, merge, shared reference
data; errors name the file and line). Cut over per tenant with `tenant_split_cutover`; keep the
tenants' databases current until then with `tenant_split_sync` (binary-log catch-up).

**Life cycle** (the shared one, `cutover.lifecycle`): **plan** (tenants and tables from
`information_schema`, the mapping applied, rows per (tenant, table), each tenant's database name —
mapped to a safe, stored, collision-free name — and the binary-log position to catch up from) →
**unit_batch**, mapped over batches of (tenant, table) units: **prepare** (the database and the table
from the source's DDL, foreign keys re-pointed, **triggers backed up and kept off**) → **copy**
(keyset chunks of `chunk_rows` on the primary key — integer, string or composite; a table without
one from one consistent snapshot — each chunk committed with its checkpoint on the target: a killed
task resumes with no duplicate and no gap; rows the target refuses → dead letters; at most
`parallelism` units at once per run) → **finalize** (triggers restored and proven equal to the
backup, AUTO_INCREMENT past the copied ids) → **verify** (count and checksum of every row against the
source's tenant rows; the GX gate; data docs) → **report** (per tenant: views and events recreated,
every foreign key proven; the **schema diff report** as a page and an xlsx workbook, linked from the
run's evidence page; green only when every planned unit is verified).

**Params**

| param | meaning |
|---|---|
| `tenants` | tenant ids; empty = every tenant |
| `tables` | source or target table names; empty = all the mapping keeps |
| `units` | `tenant / table` pairs, for a re-run of a few units |
| `source_database`, `mapping`, `database_prefix` | where from, how, where to |
| `copy_mode` | `auto` (in-server `INSERT … SELECT` when source and target share a server), `server`, `client` |
| `chunk_rows` | rows per committed chunk (the client copy's memory bound) |
| `parallelism` | units copied at once in this run (each holds one source connection) |
| `gx_gate` | run the Great Expectations gate per table (data docs) |
| `dry_run` | plan + schema diff report only |

Progress per unit: the task logs (rows, %, rows/s) and *Plugins → Cutover → Migration status*.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from cutover.dag_defaults import default_args
from cutover.lifecycle.tasks import build_tasks, units_param
from cutover.tenant_split.params import source_params, tenants_param

SPEC = "cutover.tenant_split.spec:SPEC"


@dag(
    dag_id="tenant_split_build",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "tenant_split", "plan", "copy", "verify"],
    params={
        "tenants": tenants_param(),
        "tables": Param([], type="array", items={"type": "string"}, title="Tables",
                        description="Source or target table names, one per line; empty = every table the mapping keeps."),
        "units": units_param("tenant / table"),
        **source_params(),
        "copy_mode": Param("auto", type="string", enum=["auto", "server", "client"], title="Copy mode",
                           description="auto: INSERT … SELECT inside the server when source and target share one."),
        "chunk_rows": Param(5_000, type="integer", minimum=100, maximum=1_000_000, title="Chunk rows",
                            description="Rows per committed chunk."),
        "parallelism": Param(4, type="integer", minimum=1, maximum=64, title="Parallelism",
                             description="Units copied at once in this run (source connections)."),
        "gx_gate": Param(True, type="boolean", title="GX gate", description="Great Expectations gate per table."),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Plan and schema diff report only."),
    },
)
def tenant_split_build() -> None:
    build_tasks(SPEC)


tenant_split_build()
