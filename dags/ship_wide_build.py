"""
### ship_wide_build — narrow time series → one wide table per ship, verified (cut over with `ship_wide_cutover`)

Moves `<schema>.tbl_data_timeseries(ship_id, data_channel_id, created_time, value_format, double_v,
long_v, str_v, bool_v)` into one table per ship, `<schema>.tbl_data_timeseries_<ship>`: primary key
`created_time`, one column per channel (Decimal → double precision, Integer → bigint, String → text,
Boolean → boolean; a channel with conflicting formats → text; or every column text). Live data keeps
arriving: `ship_wide_sync` (every minute) keeps built ships up to date.

**Life cycle** (the shared one, `cutover.lifecycle`): **plan** (rows, channels, time range per ship;
units recorded `planned`) → **unit_batch**, mapped over batches of ships (never more mapped tasks
than Airflow's `max_map_length`, however many ships; the grid names each batch's ships):
**prepare** (wide table, channel → column map in `cutover.name_map`, key set aside, reader view
`ts_reader_<ship>` on the narrow table) → **copy** (chunks of `chunk_rows` narrow rows, each
committed with its watermark and the ship's progress: `copying`, narrow rows read, wide rows
written; a killed task resumes with no duplicate and no gap; bad rows → `cutover.dead_letters`.
When narrow and wide share a database PostgreSQL pivots the chunks, `copy_connections` at a time;
otherwise COPY out → pyarrow → COPY in) → **finalize** (primary key restored, ANALYZE) → **verify**
(catch-up sync, distinct times = wide rows, checksum of every cell, GX suite; data docs rebuilt) →
**report** (the run is green only when every planned ship is `verified`; a failure anywhere,
planning included, makes it red and names the ships). A ship that fails stops alone; its error is
on *Migration status*.

**Params**

| param | meaning |
|---|---|
| `units` | ship ids, one per line; empty = every ship |
| `schema` | schema of the narrow table (and of the wide tables) |
| `text_columns` | every column `text`, as the legacy readers expect (default: typed) |
| `chunk_rows` | narrow rows per chunk: memory is bounded by it (default 200,000) |
| `pivot` | `auto` (in the database when source and target are one database), `server`, or `client` |
| `parallelism` | ships copied at the same time (also the least number of mapped batches) |
| `batch_rows` | narrow rows per mapped batch: 1,000 small ships are a few batches, not 4,000 task instances |
| `copy_connections` | chunks of one ship worked on at the same time, a connection each |
| `orphans` | narrow rows whose `ship_id` is NULL belong to no ship: `error` (default: the plan fails, naming how many and sample ids) or `report` (built without them, counted in the run's evidence) |
| `dry_run` | plan only: report and stop |

**Cut over**: this DAG never switches readers. Trigger `ship_wide_cutover`: it takes the verified
ships, asks for an approval (*Required Actions*) and switches `<schema>.ts_reader_<ship>` to the wide
table, recorded in `cutover.switches` / `cutover.switch_history`.

**Roll back**: trigger `ship_wide_rollback` (readers back to the narrow table; optionally drop the
wide table and its state).
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from cutover.dag_defaults import default_args
from cutover.lifecycle.tasks import build_tasks, units_param

SPEC = "cutover.ship_wide.spec:SPEC"


@dag(
    dag_id="ship_wide_build",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "ship_wide", "plan", "copy", "verify"],
    params={
        "units": units_param("ship"),
        "schema": Param("tenant", type="string", minLength=1, title="Schema", description="Schema of the narrow table."),
        "text_columns": Param(False, type="boolean", title="Text columns", description="Every wide column text (legacy readers)."),
        "chunk_rows": Param(200_000, type="integer", minimum=1000, maximum=5_000_000, title="Chunk rows",
                            description="Narrow rows per committed chunk; the copy's memory is bounded by it."),
        "pivot": Param("auto", type="string", enum=["auto", "server", "client"], title="Pivot",
                       description="Where chunks are pivoted: auto = inside PostgreSQL when narrow and wide share a database."),
        "parallelism": Param(4, type="integer", minimum=1, maximum=32, title="Parallelism", description="Ships copied at once."),
        "batch_rows": Param(5_000_000, type="integer", minimum=1000, maximum=1_000_000_000, title="Narrow rows per batch",
                            description="Ships are mapped in batches: max(parallelism, narrow rows / this) task groups."),
        "copy_connections": Param(2, type="integer", minimum=1, maximum=16, title="Connections per ship",
                                  description="Chunks of one ship worked on at once, a connection each."),
        "orphans": Param("error", type="string", enum=["error", "report"], title="Rows of no ship",
                         description="Narrow rows with ship_id NULL: error = the plan fails naming them; report = "
                                     "build without them, counted in the run's evidence."),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Plan only: report and stop."),
    },
)
def ship_wide_build() -> None:
    build_tasks(SPEC)


ship_wide_build()
