"""
### mysql_to_postgres_build — MySQL tables (read-only source) → PostgreSQL, every type exact, verified

Copies the tables of `source_database`, read through a **read-only** MySQL user (proven at the
start: its grants allow no write and a harmless `UPDATE … WHERE FALSE` is refused — the run stops
otherwise, unless `allow_writable_source`), into `target_schema` on PostgreSQL.

**Life cycle** (the shared one, `cutover.lifecycle`): **plan** (the catalog read, every column's type
mapped — UNSIGNED without overflow, DECIMAL exact, zero dates and the empty ENUM value by stated rules,
DATETIME wall clock, TIMESTAMP instants, TIME as interval, JSON text exact, defaults as expressions,
`ON UPDATE CURRENT_TIMESTAMP` as a trigger; the override file applied) → **unit_batch**, one table per
unit: **prepare** (the table, no keys yet) → **copy** (keyset chunks on the primary key of any shape,
rendered by MySQL as COPY text and loaded with `COPY`, each chunk with its checkpoint: a killed task
resumes; rows PostgreSQL refuses → dead letters; tables without a key from one snapshot) →
**finalize** (primary key, indexes, identity sequences past the max, the ON UPDATE trigger, ANALYZE) →
**verify** (binlog catch-up, then every row compared through the consistency engine; the GX gate;
data docs) → **report** (foreign keys between the tables, pairs registered for `consistency_checks`,
the **type-mapping report** linked from the run's evidence page).

**Params**: `tables` / `table_pattern`, `overrides` (YAML per column: type, kind, skip, rules,
default), `zero_date`, `enum_empty`, `chunk_rows`, `parallelism`, `sync_mode` (`binlog` sees deletes;
`watermark` does not), `watermark_column`, `gx_gate`, `allow_writable_source`, `dry_run` (plan and
type-mapping report only), `units` (re-run some tables).

Keep the tables fresh with `mysql_to_postgres_sync`; switch readers with `mysql_to_postgres_cutover`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from cutover.dag_defaults import default_args
from cutover.lifecycle.tasks import build_tasks, units_param
from cutover.mysql_to_postgres.params import source_params, tables_params

SPEC = "cutover.mysql_to_postgres.spec:SPEC"


@dag(
    dag_id="mysql_to_postgres_build",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "mysql_to_postgres", "plan", "copy", "verify"],
    params={
        **source_params(),
        **tables_params(),
        "units": units_param("table"),
        "overrides": Param("mappings/mysql_to_postgres.yaml", type="string", title="Override file",
                           description="YAML of per-column overrides (type, kind, skip, zero_date, enum_empty, default)."),
        "zero_date": Param("null", type="string", enum=["null", "dead_letter"], title="Zero dates",
                           description="What 0000-00-00, partial dates and year 0 become: NULL, or the row is a dead letter."),
        "enum_empty": Param("dead_letter", type="string", enum=["dead_letter", "null", "keep"], title="Empty ENUM value",
                            description="MySQL's invalid empty ENUM value: dead letter, NULL, or kept as ''."),
        "chunk_rows": Param(10_000, type="integer", minimum=100, maximum=1_000_000, title="Chunk rows",
                            description="Rows per committed chunk (memory: two chunks per copying task)."),
        "parallelism": Param(4, type="integer", minimum=1, maximum=64, title="Parallelism",
                             description="Tables copied at once in this run (source connections)."),
        "sync_mode": Param("auto", type="string", enum=["auto", "binlog", "watermark"], title="Sync mode",
                           description="binlog: inserts, updates, deletes; watermark: no deletes; auto: binlog when logged."),
        "watermark_column": Param("updated_at", type="string", title="Watermark column",
                                  description="The column the watermark sync follows."),
        "gx_gate": Param(True, type="boolean", title="GX gate", description="Great Expectations gate per table."),
        "allow_writable_source": Param(False, type="boolean", title="Allow a writable source",
                                       description="Run even though the source user can write (not recommended)."),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Plan and type-mapping report only."),
    },
)
def mysql_to_postgres_build() -> None:
    build_tasks(SPEC)


mysql_to_postgres_build()
