"""
### ship_wide_rollback — put readers of one ship, a list, or all back on the narrow table

For every chosen ship of `ship_wide_build` (the shared life cycle's rollback): the reader view
`<schema>.ts_reader_<ship>` is recreated over the narrow table and the routing entry goes back to
`narrow` (recorded in `cutover.switch_history`), in one transaction per ship. With `drop` on, the
wide table, its channel → column map, its set-aside key backup and its watermark are removed too, so
a later `ship_wide_build` starts from scratch. Pause `ship_wide_sync` first if you drop. The run is
recorded as a rollback run (each ship `rolled_back`, or `failed` with its error).

**Params**

| param | meaning |
|---|---|
| `units` | ship ids, one per line; empty = every ship with a wide table or a routing entry |
| `schema` | schema of the narrow table |
| `drop` | also drop the wide table and its state |

Running it twice changes nothing the second time (the switch is recorded again). Nothing written
after the cutover is lost: readers only ever read the wide tables, writers keep writing the narrow table
(kept in sync by `ship_wide_sync`), so no check of target writes is needed here (unlike
`tenant_split_rollback` and `mysql_to_postgres_rollback`). Who triggered the run is recorded with
each switch (`cutover.switch_history`).
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from cutover.dag_defaults import default_args
from cutover.lifecycle.tasks import rollback_tasks, units_param

SPEC = "cutover.ship_wide.spec:SPEC"


@dag(
    dag_id="ship_wide_rollback",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "ship_wide", "rollback"],
    params={
        "units": units_param("ship"),
        "schema": Param("tenant", type="string", minLength=1, title="Schema", description="Schema of the narrow table."),
        "drop": Param(False, type="boolean", title="Drop wide tables",
                      description="Also drop each ship's wide table, column map and watermark."),
    },
)
def ship_wide_rollback() -> None:
    rollback_tasks(SPEC)


ship_wide_rollback()
