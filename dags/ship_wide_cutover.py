"""
### ship_wide_cutover — switch readers of verified ships to their wide tables, after an approval

The publish step of write → audit → publish for `ship_wide_build` (the shared life cycle's cutover):
**ready** (only ships whose latest verification passed — counts, full checksum, GX gate — and whose
readers are still on the narrow table) → **ask** → **approve** (a Human-in-the-Loop approval under
*Required Actions*, listing the ships, their rows and checksums; *Reject* skips the switch; asked
when the deployment's approval policy requires one, see below) →
**switch** (reader view `<schema>.ts_reader_<ship>` → the wide table, recorded in
`cutover.switches` / `switch_history` with the approver; it refuses to run without an *Approve*
when approval is required, whatever route led to it) → **report** (the run, its units `cut_over`,
the approval and the switches in one evidence bundle; a rejection is recorded, nothing switched).

**Params**

| param | meaning |
|---|---|
| `units` | ship ids, one per line; empty = every verified ship. A listed ship that is not ready fails the run |
| `schema` | schema of the narrow table |

**Approval** is the deployment's policy, not a form field: the env var `CUTOVER_REQUIRE_APPROVAL` or the
Airflow Variable `cutover_require_approval` (`on` / `off`; per pipeline with the suffix `_ship_wide_build`),
default on, read when the run runs. `require_approval: true` in the conf asks for an approval the policy
does not require; `false` is ignored (logged, noted in the evidence). Who triggered the run and who
approved are recorded with every switch (`cutover.switch_history`) and in the run's evidence.

Readers of a ship read one view, so they switch all at once (no canary share): to go gradually, cut
over a few ships first by listing them. Review first: *Plugins → Cutover → Migration status* (units, checksums, gate results) and *Data
docs*. **Roll back**: trigger `ship_wide_rollback`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from cutover.dag_defaults import default_args
from cutover.lifecycle.tasks import cutover_tasks, units_param

SPEC = "cutover.ship_wide.spec:SPEC"


@dag(
    dag_id="ship_wide_cutover",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "ship_wide", "cutover"],
    params={
        "units": units_param("ship"),
        "schema": Param("tenant", type="string", minLength=1, title="Schema", description="Schema of the narrow table."),
    },
)
def ship_wide_cutover() -> None:
    cutover_tasks(SPEC)


ship_wide_cutover()
