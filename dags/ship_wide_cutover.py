"""
### ship_wide_cutover — switch readers of verified ships to their wide tables, after an approval

The publish step of write → audit → publish for `ship_wide_build`: **ready** (only ships whose
latest verification passed — counts, full checksum, GX gate — and whose readers are still on the
narrow table) → **approve** (a Human-in-the-Loop approval: it appears under *Required Actions* in the
UI with the ships, their rows and checksums; *Reject* skips the switch) → **switch** (reader view
`<schema>.ts_reader_<ship>` → the wide table, recorded in `cutover.switches` / `switch_history`
with the approver) → the approval and the switches go into the run's evidence.

**Params**

| param | meaning |
|---|---|
| `ships` | `all` (every verified ship) or a comma-separated list; a listed ship that is not ready fails the run |
| `schema` | schema of the narrow table |
| `require_approval` | ask a human before switching (default on); off switches at once |

Review first: *Cutover → Migration status* (units, checksums, gate results) and *Cutover → Data
docs*. **Roll back**: trigger `ship_wide_rollback`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, dag, task

from cutover.dag_defaults import default_args


@dag(
    dag_id="ship_wide_cutover",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "ship_wide", "cutover"],
    params={
        "ships": Param("all", type="string", minLength=1, title="Ships", description="all, or a comma-separated list"),
        "schema": Param("tenant", type="string", minLength=1, title="Schema", description="Schema of the narrow table."),
        "require_approval": Param(True, type="boolean", title="Require approval", description="Ask a human first."),
    },
)
def ship_wide_cutover() -> None:
    @task
    def ready(params: dict | None = None) -> list[dict]:
        """Ships whose latest verification passed; fails naming every requested ship that is not ready."""
        from airflow.sdk.exceptions import AirflowFailException

        from cutover.ship_wide import ShipWideConfig
        from cutover.ship_wide.readiness import split_ready

        assert params is not None
        cfg = ShipWideConfig(schema=params["schema"])
        listed = None if params["ships"].strip().lower() == "all" else [s.strip() for s in params["ships"].split(",") if s.strip()]
        ok, blocked = split_ready(cfg, listed)
        if listed is not None and blocked:
            raise AirflowFailException("not ready for cutover: " + "; ".join(f"{k}: {v}" for k, v in blocked.items()))
        if not ok:
            raise AirflowFailException(f"no ship is ready for cutover ({blocked or 'nothing built'})")
        return ok

    @task.branch
    def ask(params: dict | None = None) -> str:
        """Go through the approval when `require_approval` is on."""
        assert params is not None
        return "approve" if params["require_approval"] else "no_approval"

    approve = ApprovalOperator(
        task_id="approve",
        subject="Cut over {{ ti.xcom_pull(task_ids='ready') | length }} ship(s) to their wide tables?",
        body=(
            "Ships verified (counts, full checksum, GX gate):\n\n"
            "{% for s in ti.xcom_pull(task_ids='ready') %}- `{{ s.ship_id }}`: {{ s.rows_done }} narrow rows, "
            "checksums match, verified in run {{ s.run_id }}\n{% endfor %}\n"
            "Review *Cutover → Migration status* and *Cutover → Data docs* before approving."
        ),
        response_timeout=timedelta(days=1),
    )

    @task(trigger_rule="none_failed_min_one_success")
    def switch(ships: list[dict], params: dict | None = None, run_id: str | None = None, ti=None) -> list[dict]:  # noqa: ANN001
        """Point each ship's readers at its wide table; record the approval in the evidence bundle."""
        from cutover import control
        from cutover.connections import pg_connect
        from cutover.ship_wide import PIPELINE, ShipWideConfig, cutover_ship

        assert params is not None and ti is not None
        approval = ti.xcom_pull(task_ids="approve") if params["require_approval"] else None
        actor = (approval or {}).get("responded_by_user") or "ship_wide_cutover"
        actor = actor.get("name", str(actor)) if isinstance(actor, dict) else str(actor)
        cfg = ShipWideConfig(schema=params["schema"])
        done = [cutover_ship(cfg, s["ship_id"], run_id=run_id, actor=actor) for s in ships]
        with pg_connect() as conn:
            control.start_run(conn, run_id or "", f"{PIPELINE}:cutover", params)
            control.finish_run(conn, run_id or "", "success", {
                "approval": {k: str(v) for k, v in (approval or {"approved": "not required"}).items()},
                "switched": done,
            })
        return done

    no_approval = EmptyOperator(task_id="no_approval")
    ships = ready()
    done = switch(ships)
    ships >> ask() >> [approve, no_approval] >> done


ship_wide_cutover()
