"""The task bodies of the life cycle, as plain functions (the DAG tasks in :mod:`.tasks` call these).

``plan`` → per batch of units: ``prepare`` → ``copy`` → ``finalize`` → ``verify`` → ``report``.
Each unit stage works through its batch one unit at a time: it takes the units whose state it
accepts (and those that failed in this very stage: a retry resumes them), moves each along the life
cycle as the work happens, records any exception as the unit's error, and goes on with the next
unit; at the end it raises :class:`UnitsFailed` when a unit of the batch failed, so the task is red
while the other units of the run went on.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from cutover import control
from cutover.connections import POSTGRES_TARGET, pg_connect, pg_open
from cutover.lifecycle import state
from cutover.lifecycle.batching import make_batches
from cutover.lifecycle.model import BUILD_END_STATES, PlannedUnit, UnitState
from cutover.lifecycle.spec import BatchSession, CopyResult, PipelineSpec, UnitContext, Verification

log = logging.getLogger(__name__)
S = UnitState


class UnitsFailed(RuntimeError):
    """Some units of a batch failed in a stage (each recorded with its error); ``permanent`` when
    every one of them failed with an error that fails the same on every try."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class PlanFailed(RuntimeError):
    """Planning raised; the error is recorded on the run (``cutover.runs.error``). ``permanent`` when it
    fails the same on every try (a config or mapping error, a missing schema or source database): the
    plan task then fails at once instead of being retried."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


#: MySQL / MariaDB server errors that a retry cannot fix: unknown database, table, column
_MYSQL_PERMANENT = frozenset({1049, 1146, 1054})
#: PostgreSQL SQLSTATEs a retry cannot fix: database / schema / table / column does not exist
_PG_PERMANENT = frozenset({"3D000", "3F000", "42P01", "42703"})


def is_permanent(spec: PipelineSpec, exc: BaseException) -> bool:
    """Whether ``exc`` fails the same on every try: one of the pipeline's ``permanent_errors``, or a
    server saying the database, schema, table or column does not exist (MySQL 1049 / 1146 / 1054,
    PostgreSQL 3D000 / 3F000 / 42P01 / 42703). Anything else (a lost connection, a lock timeout) may
    pass on a retry."""
    if isinstance(exc, spec.permanent_errors):
        return True
    if getattr(exc, "sqlstate", None) in _PG_PERMANENT:
        return True
    args = getattr(exc, "args", ())
    if type(exc).__module__.startswith(("MySQLdb", "pymysql")) and args and args[0] in _MYSQL_PERMANENT:
        return True
    return False


class RunFailed(RuntimeError):
    """The run's report is red: planning did not finish, or a planned unit did not reach its end state
    (``report`` is the verdict, as recorded)."""

    def __init__(self, message: str, report: state.Report) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Stage:
    """One unit stage: the states it takes units from, the state it holds while working, where it leaves them."""

    name: str
    accepts: frozenset[UnitState]
    working: UnitState | None
    leaves: UnitState


STAGES: dict[str, Stage] = {
    "prepare": Stage("prepare", frozenset({S.PLANNED, S.PREPARED}), None, S.PREPARED),
    "copy": Stage("copy", frozenset({S.PREPARED, S.COPYING}), S.COPYING, S.COPIED),
    "finalize": Stage("finalize", frozenset({S.COPIED}), None, S.COPIED),
    "verify": Stage("verify", frozenset({S.COPIED, S.VERIFIED}), None, S.VERIFIED),
}
UNIT_STAGES = tuple(STAGES)


def plan(
    spec: PipelineSpec, params: dict[str, Any], run_id: str, *, max_batches: int, dag_id: str | None = None,
    started_at: dt.datetime | None = None, dagrun_state: state.DagRunState | None = None,
) -> list[dict[str, Any]]:
    """Open the run, plan its units, record them (state ``planned``), return them in ≤ ``max_batches`` batches.

    ``params["units"]`` (a list; empty = all) narrows the plan; ``params["dry_run"]`` records the
    plan in the run's evidence and returns no batch. Before planning, earlier runs of the pipeline
    whose Airflow run ended without closing them (a killed task) are closed (:func:`state.close_ended_runs`,
    with ``dagrun_state`` as the lookup; None skips it). Anything that raises here leaves the run
    unplanned, its error recorded on the run (shown on the status page) and its report red; raises
    :class:`PlanFailed` (``permanent`` for a config error, a ``LookupError`` — something named that
    does not exist — or :func:`is_permanent`).
    """
    try:
        cfg = spec.config(params)
    except Exception as exc:  # a form value the config refuses: the same on every try
        text = f"invalid parameters: {state.format_error(exc)}"
        with pg_connect(str(params.get("control_conn_id") or POSTGRES_TARGET)) as conn:
            state.start(conn, run_id, spec.name, kind="build", params=params, dag_id=dag_id, started_at=started_at)
            control.set_run_error(conn, run_id, text)
        raise PlanFailed(text, permanent=True) from exc
    conn_id = spec.control_conn_id(cfg)
    with pg_connect(conn_id) as conn:
        state.start(conn, run_id, spec.name, kind="build", params={**params, "config": cfg.to_dict()},
                    dag_id=dag_id, started_at=started_at)
    if dagrun_state is not None:
        try:
            state.close_ended_runs(conn_id, dagrun_state, pipeline=spec.name, closed_by=f"plan of {run_id}",
                                   exclude=run_id)
        except Exception:  # noqa: BLE001 - closing others' runs never stops this one
            log.exception("%s: could not close earlier runs left running", spec.name)
    try:
        return _plan_units(spec, cfg, params, run_id, max_batches)
    except Exception as exc:
        text = f"plan failed: {state.format_error(exc)}"
        with pg_connect(conn_id) as conn:
            control.set_run_error(conn, run_id, text)
        # a plan raises LookupError for a named thing that does not exist (a wanted unit, the source
        # database, a tenant): the same on every try
        raise PlanFailed(text, permanent=is_permanent(spec, exc) or isinstance(exc, LookupError)) from exc


def _plan_units(spec: PipelineSpec, cfg: Any, params: dict[str, Any], run_id: str,
                max_batches: int) -> list[dict[str, Any]]:
    wanted = [str(u) for u in (params.get("units") or [])] or None
    t0 = time.monotonic()
    units = spec.plan(cfg, wanted)
    dry = bool(params.get("dry_run"))
    if spec.max_batches is not None and units:
        max_batches = max(1, min(max_batches, spec.max_batches(cfg, units)))
    batches = [] if dry else make_batches(units, max_batches)
    with pg_connect(spec.control_conn_id(cfg)) as conn:  # the plan, its batches and its evidence: one transaction
        n = state.record_plan(conn, run_id, spec.name, [] if dry else units)
        pairs = [(u["unit"], b["batch"]) for b in batches for u in b["units"]]
        conn.execute(  # which mapped task works on each unit (the UI links to its log)
            f"""UPDATE {control.SCHEMA}.units u SET detail = u.detail || jsonb_build_object('batch', t.b)
                FROM unnest(%s::text[], %s::int[]) AS t(k, b) WHERE u.run_id = %s AND u.unit_key = t.k""",
            ([k for k, _ in pairs], [b for _, b in pairs], run_id))
        control.add_evidence(conn, run_id, {"plan": {
            "units": len(units), "rows": sum(u.rows for u in units), "dry_run": dry,
            "seconds": round(time.monotonic() - t0, 3),
            "largest": [{"unit": u.key.label, "rows": u.rows} for u in sorted(units, key=lambda u: -u.rows)[:20]],
        }})
    log.info("%s: planned %d %s(s), %s rows%s", spec.name, len(units), spec.unit_noun,
             f"{sum(u.rows for u in units):,}", " (dry run: nothing else runs)" if dry else "")
    if batches:
        log.info("%s: %d units in %d mapped batch(es) (at most %d)", spec.name, n, len(batches), max_batches)
    return batches


def _result_fields(stage: Stage, out: Any, base: dict[str, int] | None = None) -> dict[str, Any]:
    if isinstance(out, CopyResult):  # this run's counters: the copy's running totals less what came before
        b = base or {}
        return {"rows_read": max(out.rows_read - b.get("rows_read", 0), 0),
                "rows_written": max(out.rows_written - b.get("rows_written", 0), 0), "detail": {"copy": out.detail}}
    if isinstance(out, Verification):
        return {"rows_written": out.rows_target, "checksum_source": out.checksum_source,
                "checksum_target": out.checksum_target, "detail": {"verify": out.detail}}
    if stage.name == "finalize":
        return {"detail": {"finalize": out or {}, "finalized": True}}
    return {"detail": {stage.name: out or {}}}


class _ControlConnection:
    """The stage's connection to the control schema, reopened when it broke (a server restart or an
    idle timeout during an hours-long copy must not leave a unit ``copying`` with no error)."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self._conn: Any = None

    def get(self) -> Any:
        """A live connection (a new one when the last one closed or broke)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = pg_open(self.conn_id)
            # state transitions only (a stage's data goes through the pipeline's own connections):
            # committed without waiting for the WAL flush, see _commit_bookkeeping
            self._conn.execute("SET synchronous_commit = off")
            self._conn.commit()
        return self._conn

    def rollback(self) -> None:
        """Roll back, or drop the connection when even that fails."""
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.rollback()
        except Exception:  # noqa: BLE001 - broken: the next get() reconnects
            self.close()

    def close(self) -> None:
        """Close it, whatever its state."""
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._conn = None


def _commit_bookkeeping(conn: Any) -> None:
    """Commit a unit's state transition on the stage's control connection, whose session has
    ``synchronous_commit = off`` (PostgreSQL, "Asynchronous Commit"): the commit does not wait for the
    WAL flush. A server crash may lose the last such transitions, never reorder them: each later
    synchronous commit (a chunk's data, a finalize) flushes them first. What a lost one leaves is
    always on the safe side — the unit looks less advanced, its checkpoint knows better, and a run
    with a unit short of its end state is red. It spares one WAL flush per unit and stage: 1–2 ms
    each on a local disk, the cost of a small ship's whole pivot."""
    conn.commit()


def run_unit_stage(spec: PipelineSpec, stage_name: str, params: dict[str, Any], batch: dict[str, Any],
                   run_id: str) -> dict[str, Any]:
    """Run one stage over a batch's units; returns ``{"done": [...], "skipped": {...}, "failed": {...}}``.

    Raises :class:`UnitsFailed` after the whole batch was worked through when a unit failed.
    """
    stage = STAGES[stage_name]
    cfg = spec.config(params)
    units = [PlannedUnit.from_dict(u) for u in batch["units"]]
    hook = getattr(spec, stage.name)
    done: list[str] = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    permanent = True
    conn_id = spec.control_conn_id(cfg)
    with pg_connect(conn_id) as conn:
        rows = state.units_in(conn, run_id, [str(u.key) for u in units])
    control_conn = _ControlConnection(conn_id)
    session = BatchSession()
    try:
        for unit in units:
            key = str(unit.key)
            row = rows.get(key)
            if row is None:
                skipped[key] = "not planned in this run"
                continue
            current = UnitState(row["state"])
            retry = current == S.FAILED and row.get("failed_stage") == stage.name
            if current not in stage.accepts and not retry:
                skipped[key] = f"{current}" + (f" in {row['failed_stage']}" if row.get("failed_stage") else "")
                log.info("%s %s: %s skipped (%s)", spec.unit_noun, unit.key.label, stage.name, skipped[key])
                continue
            if stage.name == "verify" and current == S.COPIED and not (row.get("detail") or {}).get("finalized"):
                skipped[key] = "copied but not finalized"
                continue
            ctx = UnitContext(run_id, spec.name, unit, conn_id, log, session)
            t0 = time.monotonic()
            try:
                base: dict[str, int] | None = None
                if stage.working is not None:
                    conn = control_conn.get()
                    if stage.name == "copy":  # counters per run: what the unit's checkpoint held before
                        base = state.copy_base(conn, spec.name, key, row)
                    state.advance(conn, run_id, key, stage.working, detail={"copy_base": base} if base else None)
                    _commit_bookkeeping(conn)
                out = hook(cfg, unit, ctx)
                fields = _result_fields(stage, out, base)
                seconds = dict(((row.get("detail") or {}).get("seconds")) or {})  # each stage adds its own
                seconds[stage.name] = round(time.monotonic() - t0, 3)
                fields["detail"] = {**fields["detail"], "seconds": seconds}
                conn = control_conn.get()
                if isinstance(out, Verification) and not out.passed:
                    error = "; ".join(out.failures)
                    state.advance(conn, run_id, key, S.FAILED, error=error, failed_stage=stage.name, **fields)
                    conn.commit()
                    failed[key] = error
                    permanent = False
                    log.error("%s %s: verification failed: %s", spec.unit_noun, unit.key.label, error)
                    continue
                state.advance(conn, run_id, key, stage.leaves, **fields)
                _commit_bookkeeping(conn)
                done.append(key)
                log.info("%s %s: %s done in %.1f s → %s", spec.unit_noun, unit.key.label, stage.name,
                         time.monotonic() - t0, stage.leaves)
            except Exception as exc:  # any error: recorded on the unit, the batch goes on
                control_conn.rollback()
                session.reset()
                text = state.format_error(exc)
                state.fail(run_id, key, stage.name, text, conn_id=conn_id, pipeline=spec.name)
                failed[key] = text
                permanent = permanent and is_permanent(spec, exc)
                log.exception("%s %s: %s failed", spec.unit_noun, unit.key.label, stage.name)
    finally:
        session.close()
        control_conn.close()
    summary = {"stage": stage.name, "done": done, "skipped": skipped, "failed": failed}
    if failed:
        raise UnitsFailed(
            f"{stage.name}: {len(failed)} of {len(units)} {spec.unit_noun}(s) failed: "
            + "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:10]),
            permanent=permanent,
        )
    return summary


def report(spec: PipelineSpec, params: dict[str, Any], run_id: str,
           end_states: frozenset[UnitState] = BUILD_END_STATES) -> state.Report:
    """Judge the run from its units, close it in the control schema; raise :class:`RunFailed` when red.

    Runs after every stage task of the run: units still planned / prepared / copying / copied (their
    task was killed) fail first (:func:`state.fail_stranded`), so none stays "copying" forever."""
    try:
        cfg = spec.config(params)
    except Exception:  # noqa: BLE001 - the plan failed on these Params and said so on the run: judge it
        cfg = None
    conn_id = spec.control_conn_id(cfg) if cfg is not None else str(params.get("control_conn_id") or POSTGRES_TARGET)
    if spec.close is not None and cfg is not None and _planned(conn_id, run_id):  # a failed plan left nothing to check
        close_run(spec, cfg, run_id)
    with pg_connect(conn_id) as conn:
        control.ensure_schema(conn)
        # every stage task is done: a unit still in a working state was left by a task that died
        # without a word (kill -9, a lost worker), and nothing will move it any more
        state.fail_stranded(conn, run_id, "its stage task ended without recording a result (killed?)")
        rep = state.judge(conn, run_id, end_states=end_states)
        state.finish(conn, run_id, rep)
    log.info("%s run %s: %s (%s)", spec.name, run_id, "green" if rep.green else "RED",
             ", ".join(f"{k} {v}" for k, v in rep.states.items()) or "no units")
    if not rep.green:
        raise RunFailed(f"run {run_id} is not green: {rep.reason}", rep)
    return rep


def _planned(conn_id: str, run_id: str) -> bool:
    with pg_connect(conn_id) as conn:
        control.ensure_schema(conn)
        run = control.get_run(conn, run_id)
    return run is not None and run.get("planned_at") is not None


def close_run(spec: PipelineSpec, cfg: Any, run_id: str) -> dict[str, Any]:
    """The pipeline's run-level ``close`` hook over the run's units: the units it names fail (stage
    ``close``) and what else it returns goes into the run's evidence under ``close``. An exception
    from the hook fails every unit that had reached an end state (the checks did not run)."""
    assert spec.close is not None
    conn_id = spec.control_conn_id(cfg)
    with pg_connect(conn_id) as conn:
        control.ensure_schema(conn)
        units = control.list_units(conn, run_id)
    t0 = time.monotonic()
    try:
        out = dict(spec.close(cfg, run_id, units) or {})
    except Exception as exc:  # the run-level checks did not run: nothing they gate may pass
        log.exception("%s run %s: close failed", spec.name, run_id)
        text = f"run-level checks failed: {state.format_error(exc)}"
        out = {"failed": {u["unit_key"]: text for u in units if u["state"] in (S.VERIFIED, S.CUT_OVER)}, "error": text}
    failed = dict(out.pop("failed", {}) or {})
    for key, error in failed.items():
        state.fail(run_id, key, "close", error, conn_id=conn_id, pipeline=spec.name)
        log.error("%s %s: %s", spec.unit_noun, key, error)
    with pg_connect(conn_id) as conn:
        control.add_evidence(conn, run_id, {"close": {**out, "failed": failed, "seconds": round(time.monotonic() - t0, 3)}})
    return {**out, "failed": failed}


def run_build(spec: PipelineSpec, params: dict[str, Any], run_id: str, *, max_batches: int = 1024,
              raise_on_red: bool = True) -> state.Report:
    """A whole build run without Airflow (scripts, tests, the CLI): plan, every batch through every unit
    stage (a stage's failure does not stop the other stages or batches, as in the DAG), then the report.

    Raises :class:`RunFailed` when the report is red (unless ``raise_on_red`` is off).
    """
    try:
        batches = plan(spec, params, run_id, max_batches=max_batches)
    except Exception:
        log.exception("%s run %s: planning failed", spec.name, run_id)
        batches = []
    for batch in batches:
        for stage in UNIT_STAGES:
            try:
                run_unit_stage(spec, stage, params, batch, run_id)
            except UnitsFailed as exc:
                log.error("%s", exc)
    try:
        return report(spec, params, run_id)
    except RunFailed as exc:
        if raise_on_red:
            raise
        return exc.report
