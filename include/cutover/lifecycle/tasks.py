"""DAG wiring of the life cycle: the same tasks for every pipeline (the only ``airflow.sdk`` import here).

A pipeline's DAG file declares its Params and docs and calls one of these inside its ``@dag``::

    build_tasks("cutover.ship_wide.spec:SPEC")      # plan → unit_batch (prepare → copy → finalize → verify) → report
    cutover_tasks("cutover.ship_wide.spec:SPEC")    # ready → ask → approve | no_approval → switch → report
    rollback_tasks("cutover.ship_wide.spec:SPEC")   # roll_back

The spec is named by import path and loaded inside the tasks, so parsing a DAG file imports nothing
heavy. Units are mapped in batches (never more than ``[core] max_map_length`` mapped tasks, whatever
the number of units); the grid names each mapped task by its units (``map_index_template``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, task, task_group

#: the context key each batch task sets to name its units in the grid
_LABEL = "cutover_units"
#: the XCom key under which the approval keeps its answer (approve and reject alike)
ANSWER_KEY = "answer"


def units_param(noun: str, **kw: Any) -> Param:
    """The one ``units`` Param every pipeline has: an array of unit names, empty = all."""
    return Param([], type="array", items={"type": "string"}, title=f"{noun.capitalize()}s",
                 description=f"The {noun}s to work on, one per line; empty = every {noun}.", **kw)


def _fail_fast(exc: Exception) -> Exception:
    """A failure that fails the same on every try (a batch whose units all failed permanently, a plan
    that failed permanently) becomes AirflowFailException (no retries)."""
    from airflow.sdk.exceptions import AirflowFailException

    from cutover.lifecycle.stages import PlanFailed, UnitsFailed

    if isinstance(exc, UnitsFailed | PlanFailed) and exc.permanent:
        return AirflowFailException(str(exc))
    return exc


def _airflow_dagrun_state(dag_id: str, run_id: str) -> str | None:
    """Airflow's state of a DAG run, asked from inside a task through the Task SDK (the execution API)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    value = RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id)  # a DagRunState enum
    return str(getattr(value, "value", value) or "") or None


def _name_batch(batch: dict[str, Any]) -> None:
    from airflow.sdk import get_current_context

    get_current_context()[_LABEL] = batch.get("label") or f"batch {batch.get('batch')}"  # type: ignore[literal-required]


def _stage_task(stage: str, spec_ref: str, **task_kw: Any) -> Any:
    @task(task_id=stage, map_index_template="{{ " + _LABEL + " }}", **task_kw)
    def run(batch: dict, params: dict | None = None, run_id: str | None = None) -> dict:
        from cutover.lifecycle.spec import load_spec
        from cutover.lifecycle.stages import UnitsFailed, run_unit_stage

        _name_batch(batch)
        try:
            return run_unit_stage(load_spec(spec_ref), stage, dict(params or {}), batch, run_id or "")
        except UnitsFailed as exc:
            raise _fail_fast(exc) from exc

    run.__doc__ = f"The {stage} stage over this batch's units (each unit's state and error in cutover.units)."
    return run


def build_tasks(spec_ref: str, *, copy_pool: str | None = None) -> Any:
    """plan → ``unit_batch`` (mapped: prepare → copy → finalize → verify) → report. Returns the report task.

    Every stage after prepare runs ``all_done``: a unit that failed stops alone (the stage skips it),
    the rest of its batch goes on. ``report`` judges the run from the control schema: red when
    planning did not finish or any planned unit did not reach ``verified``.
    """

    @task
    def plan(params: dict | None = None, run_id: str | None = None, dag_run: Any = None) -> list[dict]:
        """Plan the units, record them, hand them out in batches (never more than max_map_length); close
        earlier runs of the pipeline whose Airflow run ended without closing them. A permanent error (a
        config or mapping error, a missing schema or source database) fails at once, recorded on the run."""
        from cutover.lifecycle.batching import max_map_length
        from cutover.lifecycle.spec import load_spec
        from cutover.lifecycle.stages import PlanFailed
        from cutover.lifecycle.stages import plan as plan_units

        try:
            return plan_units(load_spec(spec_ref), dict(params or {}), run_id or "", max_batches=max_map_length(),
                              dag_id=getattr(dag_run, "dag_id", None), started_at=getattr(dag_run, "start_date", None),
                              dagrun_state=_airflow_dagrun_state)
        except PlanFailed as exc:
            raise _fail_fast(exc) from exc

    prepare = _stage_task("prepare", spec_ref)
    copy = _stage_task("copy", spec_ref, trigger_rule="all_done", **({"pool": copy_pool} if copy_pool else {}))
    finalize = _stage_task("finalize", spec_ref, trigger_rule="all_done")
    verify = _stage_task("verify", spec_ref, trigger_rule="all_done")

    @task_group
    def unit_batch(batch: dict) -> Any:
        """One batch of units through prepare → copy → finalize → verify."""
        prepared, copied, finalized, verified = prepare(batch), copy(batch), finalize(batch), verify(batch)
        prepared >> copied >> finalized >> verified
        return verified

    @task(trigger_rule="all_done")
    def report(params: dict | None = None, run_id: str | None = None) -> dict:
        """Close the run with its evidence; red when planning failed or a planned unit did not reach its end."""
        from airflow.sdk.exceptions import AirflowFailException

        from cutover.lifecycle.spec import load_spec
        from cutover.lifecycle.stages import RunFailed
        from cutover.lifecycle.stages import report as judge_run

        try:
            return judge_run(load_spec(spec_ref), dict(params or {}), run_id or "").summary()
        except RunFailed as exc:  # the verdict is final: retrying the report changes nothing
            raise AirflowFailException(str(exc)) from exc

    batches = unit_batch.expand(batch=plan())
    done = report()
    batches >> done
    return done


def cutover_tasks(spec_ref: str, *, approval_timeout: timedelta = timedelta(days=1),
                  approval_defaults: list[str] | None = None) -> Any:
    """ready → ask → (approve | no_approval) → switch. Returns the switch task.

    ``ask`` reads the deployment's approval policy (:func:`cutover.lifecycle.switch.approval_policy`:
    env ``CUTOVER_REQUIRE_APPROVAL`` / Variable ``cutover_require_approval``, default on) when the run
    runs, never at parse time; a ``require_approval`` in the run's conf can ask for an approval the
    policy does not require, never skip one (``false`` is ignored, with a warning in the log and the
    evidence). ``approve`` is Airflow's ``ApprovalOperator`` (under *Required Actions*); on *Reject* it
    skips ``switch``, and ``report`` records the rejection. ``switch`` reads the policy again itself
    and refuses to run without an *Approve* where one is required, so no route (a cleared task, a
    task marked success by hand) switches without one. Who triggered the run
    (``dag_run.triggering_user_name``) and who approved are recorded with every switch.
    ``approval_defaults`` is what a timeout answers (None: a timeout fails the approval, nothing is
    switched).
    """
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    @task
    def ready(params: dict | None = None) -> list[dict]:
        """Units whose latest verification passed; fails naming every requested unit that is not ready."""
        from airflow.sdk.exceptions import AirflowFailException

        from cutover.lifecycle.spec import load_spec
        from cutover.lifecycle.switch import split_ready

        spec = load_spec(spec_ref)
        p = dict(params or {})
        wanted = [str(u) for u in p.get("units") or []] or None
        ok, blocked = split_ready(spec, spec.config(p), wanted)
        if wanted is not None and blocked:
            raise AirflowFailException("not ready for cutover: " + "; ".join(f"{k}: {v}" for k, v in blocked.items()))
        if not ok:
            raise AirflowFailException(f"no {spec.unit_noun} is ready for cutover ({blocked or 'nothing built'})")
        return ok

    @task.branch
    def ask(params: dict | None = None) -> str:
        """Go through the approval when the deployment's policy (or the run's conf) asks for one."""
        from airflow.sdk.exceptions import AirflowFailException

        from cutover.lifecycle.spec import load_spec
        from cutover.lifecycle.switch import PolicyInvalid, approval_decision

        try:
            decision = approval_decision(load_spec(spec_ref).name, dict(params or {}))
        except PolicyInvalid as exc:
            raise AirflowFailException(str(exc)) from exc
        return "approve" if decision["required"] else "no_approval"

    class RecordedApproval(ApprovalOperator):
        """Airflow's ApprovalOperator that also keeps the answer (who, what, when) in XCom ``answer``:
        on *Reject* the operator skips its downstream tasks and pushes no return value, yet the
        rejection must reach the run's evidence."""

        def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
            if "chosen_options" in event:
                context["ti"].xcom_push(key=ANSWER_KEY, value={
                    "chosen_options": list(event.get("chosen_options") or []),
                    "responded_by_user": event.get("responded_by_user"),
                    "responded_at": str(event.get("responded_at") or "")})
            return super().execute_complete(context, event)

    approve = RecordedApproval(
        task_id="approve",
        subject="Cut over {{ ti.xcom_pull(task_ids='ready') | length }} unit(s) of {{ dag.dag_id }}?",
        body=(
            "Verified (counts, checksums, GX gate):\n\n"
            "{% for u in ti.xcom_pull(task_ids='ready') %}- `{{ u.name }}`: {{ u.rows_read }} source rows read, "
            "{{ u.rows_written }} target rows, checksums match, verified in run {{ u.run_id }}\n{% endfor %}\n"
            "Readers switched: {{ params.get('canary_pct', 100) }} %. Review *Migration status* and *Data docs* "
            "(Plugins → Cutover) before approving."
        ),
        response_timeout=approval_timeout,
        defaults=approval_defaults,
    )
    no_approval = EmptyOperator(task_id="no_approval")

    @task(trigger_rule="none_failed_min_one_success")
    def switch(units: Any, params: dict | None = None, run_id: str | None = None, ti: Any = None,
               dag_run: Any = None) -> dict:
        """Point each unit's readers at the target; record the approval and the switches in the evidence."""
        from airflow.sdk.exceptions import AirflowFailException

        from cutover.lifecycle.spec import load_spec
        from cutover.lifecycle.switch import (
            ApprovalMissing,
            CanaryUnsupported,
            NotReady,
            PolicyInvalid,
            SwitchFailed,
        )
        from cutover.lifecycle.switch import switch as do_switch

        spec = load_spec(spec_ref)
        p = dict(params or {})
        # whatever the policy said at `ask`, the switch decides again and needs the answer when it requires one
        approval = ti.xcom_pull(task_ids="approve", key=ANSWER_KEY) if ti is not None else None
        try:
            return do_switch(spec, spec.config(p), units, run_id or "", approval=approval,
                             canary_pct=int(p.get("canary_pct", 100)), triggered_by=_triggered_by(dag_run),
                             params=p, dag_id=getattr(dag_run, "dag_id", None))
        except (ApprovalMissing, CanaryUnsupported, NotReady, PolicyInvalid, SwitchFailed) as exc:
            raise AirflowFailException(str(exc)) from exc  # no retries: a retry would pause writes again

    @task(trigger_rule="all_done")
    def report(params: dict | None = None, run_id: str | None = None, ti: Any = None,
               dag_run: Any = None) -> dict:
        """The cutover run's verdict: a *Reject* is recorded (nothing switched, the run stays green);
        anything else that did not switch every ready unit makes the run red."""
        from airflow.sdk.exceptions import AirflowFailException

        from cutover import control
        from cutover.connections import pg_connect
        from cutover.lifecycle.spec import load_spec
        from cutover.lifecycle.switch import rejected
        from cutover.lifecycle.switch import switch as do_switch

        spec = load_spec(spec_ref)
        p = dict(params or {})
        cfg = spec.config(p)
        approval = ti.xcom_pull(task_ids="approve", key=ANSWER_KEY) if ti is not None else None
        if rejected(approval):
            units = ti.xcom_pull(task_ids="ready") or []
            return do_switch(spec, cfg, units, run_id or "", require_approval=True, approval=approval,
                             triggered_by=_triggered_by(dag_run), params=p, dag_id=getattr(dag_run, "dag_id", None))
        with pg_connect(spec.control_conn_id(cfg)) as conn:
            control.ensure_schema(conn)
            run = control.get_run(conn, run_id or "")
        if run is None or run["state"] != "success":
            raise AirflowFailException(
                f"cutover run {run_id} did not switch: " + (f"run {run['state']}" if run else
                                                            "nothing was ready or the switch never ran (see ready / switch logs)"))
        return {"state": run["state"], "switched": len((run.get("evidence") or {}).get("switched") or [])}

    units = ready()
    done = switch(units)
    units >> ask() >> [approve, no_approval] >> done
    verdict = report()
    done >> verdict
    return verdict


def _triggered_by(dag_run: Any) -> dict[str, Any]:
    """Who triggered this DAG run, as :func:`cutover.lifecycle.switch.trigger_record` records it
    (Airflow 3's ``DagRun.triggering_user_name``; None where Airflow knows no user)."""
    from cutover.lifecycle.switch import trigger_record

    run_type = getattr(dag_run, "run_type", None)
    return trigger_record(getattr(dag_run, "triggering_user_name", None),
                          None if run_type is None else str(getattr(run_type, "value", run_type)),
                          via=f"Airflow DAG run of {getattr(dag_run, 'dag_id', '?')}")


def discard_param() -> Param:
    """The rollback DAGs' ``discard_target_writes`` Param (off: a rollback that would lose writes refuses)."""
    return Param(False, type="boolean", title="Discard target writes",
                 description="Roll back even where the target holds writes the source lacks (made after the "
                             "cutover): they are lost, and the run records them. Off: such a rollback refuses "
                             "and names the rows.")


def rollback_tasks(spec_ref: str) -> Any:
    """One ``roll_back`` task: readers of the chosen units (empty = all known) back on the source.

    It refuses (no retries) when the target holds writes the source lacks, unless the run's
    ``discard_target_writes`` is on (see :func:`cutover.lifecycle.switch.rollback`)."""

    @task
    def roll_back(params: dict | None = None, run_id: str | None = None, dag_run: Any = None) -> dict:
        """Readers back on the source per unit; optionally drop what was built; recorded as a rollback run."""
        from airflow.sdk.exceptions import AirflowFailException

        from cutover.lifecycle.spec import load_spec
        from cutover.lifecycle.switch import TargetWritesFound, rollback

        spec = load_spec(spec_ref)
        p = dict(params or {})
        wanted = [str(u) for u in p.get("units") or []] or None
        try:
            return rollback(spec, spec.config(p), wanted, run_id or "", drop=bool(p.get("drop", False)),
                            discard_target_writes=bool(p.get("discard_target_writes", False)),
                            triggered_by=_triggered_by(dag_run), params=p, dag_id=getattr(dag_run, "dag_id", None))
        except TargetWritesFound as exc:  # the same on every try: the user decides (discard_target_writes)
            raise AirflowFailException(str(exc)) from exc

    return roll_back()
