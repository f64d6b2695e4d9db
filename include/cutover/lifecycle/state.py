"""Runs and units of the shared life cycle over the control schema, with checked transitions.

Every function takes an open psycopg connection and never commits (the contract of
:mod:`cutover.control`): a copy calls :func:`chunk_done` in the transaction that wrote the chunk and
its checkpoint, so the unit's progress and the data land together. A stage that fails records the
failure on a fresh transaction (:func:`fail`), since the work's own transaction is rolled back.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cutover import control
from cutover.connections import pg_connect
from cutover.lifecycle.model import (
    BUILD_END_STATES,
    TRANSITIONS,
    InvalidTransition,
    PlannedUnit,
    UnitState,
    check_transition,
)

log = logging.getLogger(__name__)
SCHEMA = control.SCHEMA
_FINISHED = ("verified", "cut_over", "failed", "rolled_back")


def start(
    conn: Connection[Any], run_id: str, pipeline: str, *, kind: str = "build", params: dict[str, Any] | None = None,
    dag_id: str | None = None, started_at: dt.datetime | None = None,
) -> None:
    """Open (or reopen, on a rerun) a run; ``started_at`` is the Airflow DAG run's start."""
    control.ensure_schema(conn)
    control.start_run(conn, run_id, pipeline, params, kind=kind, dag_id=dag_id, started_at=started_at)


def record_plan(
    conn: Connection[Any], run_id: str, pipeline: str, units: Sequence[PlannedUnit], *,
    state: UnitState = UnitState.PLANNED,
) -> int:
    """Record the run's planned units in one statement and mark its plan complete; returns the count.

    A rerun of the run id plans again: units it had are reset to ``state`` (their progress and error
    cleared), units no longer planned are removed, so the report judges exactly this plan. Cost: one
    ``INSERT … SELECT FROM unnest`` for any number of units (5,000 units in well under a second).
    """
    keys = [str(u.key) for u in units]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})[:5]
        raise ValueError(f"plan of run {run_id} has duplicate unit keys: {dup}")
    conn.execute(f"DELETE FROM {SCHEMA}.units WHERE run_id = %s AND NOT unit_key = ANY(%s)", (run_id, keys))
    conn.execute(
        f"""INSERT INTO {SCHEMA}.units AS u (run_id, pipeline, unit_key, state, rows_total, detail)
            SELECT %(run)s, %(pipeline)s, k, %(state)s, r, d
            FROM unnest(%(keys)s::text[], %(rows)s::bigint[], %(details)s::jsonb[]) AS t(k, r, d)
            ON CONFLICT (run_id, unit_key) DO UPDATE SET state = EXCLUDED.state, rows_total = EXCLUDED.rows_total,
                rows_read = 0, rows_written = 0, rows_done = 0, error = NULL, failed_stage = NULL,
                detail = EXCLUDED.detail, started_at = NULL, finished_at = NULL, updated_at = now()""",
        {"run": run_id, "pipeline": pipeline, "state": str(state), "keys": keys,
         "rows": [u.rows for u in units], "details": [Jsonb({"plan": u.detail}) for u in units]},
    )
    conn.execute(f"UPDATE {SCHEMA}.runs SET planned_units = %s, planned_at = now() WHERE run_id = %s",
                 (len(keys), run_id))
    return len(keys)


def get_unit(conn: Connection[Any], run_id: str, unit_key: str) -> dict[str, Any] | None:
    """One unit's row, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT * FROM {SCHEMA}.units WHERE run_id = %s AND unit_key = %s",
                           (run_id, unit_key)).fetchone()


def units_in(conn: Connection[Any], run_id: str, unit_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """unit key → row, for the given keys of a run (one query, whatever the batch size)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT * FROM {SCHEMA}.units WHERE run_id = %s AND unit_key = ANY(%s)",
                           (run_id, list(unit_keys))).fetchall()
    return {r["unit_key"]: r for r in rows}


def advance(
    conn: Connection[Any], run_id: str, unit_key: str, new: UnitState, *,
    rows_total: int | None = None, rows_read: int | None = None, rows_written: int | None = None,
    checksum_source: str | None = None, checksum_target: str | None = None, detail: dict[str, Any] | None = None,
    pipeline: str | None = None, error: str | None = None, failed_stage: str | None = None,
) -> UnitState:
    """Move a unit to ``new`` if the life cycle allows it from its stored state; returns ``new``.

    The check is the UPDATE's own WHERE clause, so check and write are one step (and one round trip). A unit the run does
    not have is created only when ``pipeline`` is given (cutover and rollback runs record the units
    they touch). Counts left as None keep their stored values; ``error`` / ``failed_stage`` go with
    a move to ``failed`` (any other move clears them). Raises :class:`InvalidTransition`, or
    ``LookupError`` for an unknown unit without ``pipeline``.
    """
    target = UnitState(new)
    allowed_from = [str(s) for s, to in TRANSITIONS.items() if target in to]
    # one round trip: the transition check is the WHERE clause (the row lock makes check and write one step)
    row = conn.execute(
        f"""UPDATE {SCHEMA}.units SET state = %(new)s,
                rows_total = coalesce(%(total)s, rows_total),
                rows_read = coalesce(%(rr)s, rows_read), rows_done = coalesce(%(rr)s, rows_done),
                rows_written = coalesce(%(rw)s, rows_written),
                checksum_source = coalesce(%(cs)s, checksum_source), checksum_target = coalesce(%(ct)s, checksum_target),
                detail = detail || %(detail)s, error = %(error)s, failed_stage = %(fs)s,
                started_at = coalesce(started_at, CASE WHEN %(new)s <> 'planned' THEN now() END),
                finished_at = CASE WHEN %(new)s = ANY(%(finished)s) THEN now() END,
                updated_at = now()
            WHERE run_id = %(run)s AND unit_key = %(unit)s AND state = ANY(%(allowed)s)
            RETURNING state""",
        {"new": str(target), "total": rows_total, "rr": rows_read, "rw": rows_written, "cs": checksum_source,
         "ct": checksum_target, "detail": Jsonb(detail or {}), "finished": list(_FINISHED), "run": run_id,
         "unit": unit_key, "error": error, "fs": failed_stage, "allowed": allowed_from},
    ).fetchone()
    if row is not None:
        return target
    current = conn.execute(f"SELECT state FROM {SCHEMA}.units WHERE run_id = %s AND unit_key = %s",
                           (run_id, unit_key)).fetchone()
    if current is None:
        if pipeline is None:
            raise LookupError(f"unit {unit_key} is not part of run {run_id} (was it planned?)")
        control.set_unit(conn, run_id, pipeline, unit_key, str(target), rows_total=rows_total, rows_read=rows_read,
                         rows_written=rows_written, checksum_source=checksum_source,
                         checksum_target=checksum_target, detail=detail, error=error, failed_stage=failed_stage)
        return target
    check_transition(unit_key, current[0], target)  # raises InvalidTransition with both states
    raise InvalidTransition(f"unit {unit_key}: {current[0]} → {target} refused")  # pragma: no cover - unreachable


def chunk_done(conn: Connection[Any], run_id: str, unit_key: str, *, rows_read: int, rows_written: int) -> None:
    """Record a committed chunk's progress: the unit is ``copying`` with these running totals.

    Call it inside the chunk's transaction (beside its checkpoint): the totals are what the
    checkpoint says, so the status page never runs ahead of, or behind, what is committed. The
    counters are this run's: the copy's totals run over every run (and sync) that worked on the unit,
    so what its checkpoint held when this run's copy began (``detail.copy_base``, see
    :func:`copy_base`) is taken off — a rebuild never adds to what an earlier run read. The chunk's own
    rows (the difference) go to ``cutover.progress`` for the rows/s chart.
    """
    base_read = "coalesce((detail -> 'copy_base' ->> 'rows_read')::bigint, 0)"
    base_written = "coalesce((detail -> 'copy_base' ->> 'rows_written')::bigint, 0)"
    # the chunk's own rows (running totals minus what the unit had), for rows/s over time in the UI
    conn.execute(
        f"""INSERT INTO {SCHEMA}.progress (run_id, unit_key, rows_read, rows_written)
            SELECT run_id, unit_key, greatest(%(rr)s - {base_read} - rows_read, 0),
                   greatest(%(rw)s - {base_written} - rows_written, 0) FROM {SCHEMA}.units
            WHERE run_id = %(run)s AND unit_key = %(unit)s AND state IN ('prepared', 'copying')""",
        {"rr": rows_read, "rw": rows_written, "run": run_id, "unit": unit_key},
    )
    row = conn.execute(
        f"""UPDATE {SCHEMA}.units SET state = 'copying', rows_read = greatest(%(rr)s - {base_read}, 0),
                rows_done = greatest(%(rr)s - {base_read}, 0), rows_written = greatest(%(rw)s - {base_written}, 0),
                started_at = coalesce(started_at, now()), updated_at = now()
            WHERE run_id = %(run)s AND unit_key = %(unit)s AND state IN ('prepared', 'copying') RETURNING state""",
        {"rr": rows_read, "rw": rows_written, "run": run_id, "unit": unit_key},
    ).fetchone()
    if row is None:
        current = get_unit(conn, run_id, unit_key)
        raise InvalidTransition(
            f"unit {unit_key}: a chunk was copied while the unit is "
            f"{current['state'] if current else 'not part of run ' + run_id}, not prepared or copying")


def copy_base(conn: Connection[Any], pipeline: str, unit_key: str, row: dict[str, Any] | None) -> dict[str, int]:
    """What the unit's copy totals held before this run's copy began: ``{"rows_read", "rows_written"}``
    from its checkpoint in the control schema (the totals a copy hook reports run over every run and
    sync that worked on the unit), or what this run already stored (a retried copy task of the same run
    keeps its base). Zeros for a unit without such a checkpoint (a fresh copy, a pipeline that keeps its
    checkpoints elsewhere)."""
    stored = ((row or {}).get("detail") or {}).get("copy_base")
    if isinstance(stored, dict):
        return {"rows_read": int(stored.get("rows_read") or 0), "rows_written": int(stored.get("rows_written") or 0)}
    cp = control.get_checkpoint(conn, pipeline, unit_key)
    return {"rows_read": int(cp.rows_done or 0) if cp else 0, "rows_written": int(cp.rows_written or 0) if cp else 0}


def fail(run_id: str, unit_key: str, stage: str, error: BaseException | str, *, conn_id: str | None = None,
         pipeline: str | None = None) -> None:
    """Mark a unit failed in ``stage`` with the error, on its own connection and transaction.

    Whatever raised (a data check, a driver error, a bug), the unit ends ``failed`` with the error
    text, so the status page and the report say what happened. Never raises for a unit that is not
    there (it is created when ``pipeline`` is given).
    """
    text = error if isinstance(error, str) else format_error(error)
    with pg_connect(*([conn_id] if conn_id else []), autocommit=False) as conn:
        control.ensure_schema(conn)
        row = conn.execute(
            f"""UPDATE {SCHEMA}.units SET state = 'failed', error = %s, failed_stage = %s, finished_at = now(),
                    updated_at = now() WHERE run_id = %s AND unit_key = %s RETURNING 1""",
            (text[:8000], stage, run_id, unit_key),
        ).fetchone()
        if row is None and pipeline:
            control.set_unit(conn, run_id, pipeline, unit_key, "failed", error=text[:8000], failed_stage=stage)


@dataclass
class Report:
    """A run's verdict: green only when the plan finished and every planned unit reached an end state."""

    run_id: str
    planned: int | None
    states: dict[str, int] = field(default_factory=dict)
    not_done: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""

    @property
    def green(self) -> bool:
        """Whether the run succeeded."""
        return not self.reason

    def summary(self) -> dict[str, Any]:
        """The report as stored in the run's evidence."""
        return {"planned_units": self.planned, "states": self.states, "green": self.green, "reason": self.reason,
                "not_done": self.not_done[:100]}


def judge(conn: Connection[Any], run_id: str, *, end_states: frozenset[UnitState] = BUILD_END_STATES) -> Report:
    """Judge a run from the control schema alone: its plan and every unit's state.

    Red when the run was never planned (planning failed or never ran), when the number of units
    differs from the plan, or when any unit is not in ``end_states`` (failed, or stopped half way
    because a task died before it could say so).
    """
    run = control.get_run(conn, run_id)
    states = {r[0]: int(r[1]) for r in conn.execute(
        f"SELECT state, count(*) FROM {SCHEMA}.units WHERE run_id = %s GROUP BY state ORDER BY state", (run_id,)
    ).fetchall()}
    planned = run.get("planned_units") if run else None
    rep = Report(run_id, planned, states)
    if run is None or run.get("planned_at") is None:
        rep.reason = "planning did not finish: " + (str(run["error"]) if run and run.get("error") else
                                                    "no unit was planned (see the plan task's log)")
        return rep
    total = sum(states.values())
    if total != planned:
        rep.reason = f"the plan has {planned} units, the run recorded {total}"
    with conn.cursor(row_factory=dict_row) as cur:
        rep.not_done = cur.execute(
            f"""SELECT unit_key, state, failed_stage, error FROM {SCHEMA}.units
                WHERE run_id = %s AND NOT state = ANY(%s) ORDER BY (state = 'failed') DESC, unit_key LIMIT 1000""",
            (run_id, [str(s) for s in end_states]),
        ).fetchall()
    if rep.not_done:
        n = sum(v for k, v in states.items() if UnitState(k) not in end_states)
        first = ", ".join(f"{u['unit_key']} ({u['state']}{' in ' + u['failed_stage'] if u['failed_stage'] else ''})"
                          for u in rep.not_done[:10])
        rep.reason = (rep.reason + "; " if rep.reason else "") + (
            f"{n} of {total} units did not reach {' / '.join(sorted(end_states))}: {first}"
            + (" …" if n > 10 else ""))
    return rep


#: a unit state that a task holds while it works → the stage that would have moved it on
_STRANDED_STAGE = {"planned": "prepare", "prepared": "copy", "copying": "copy", "copied": "verify"}


def fail_stranded(conn: Connection[Any], run_id: str, why: str) -> int:
    """Fail every unit of a run still in a working state (planned, prepared, copying, or copied but not
    verified) once no task of the run can move it any more (its stages are done, or its Airflow run
    ended): a task killed by ``kill -9`` left it there without a word. Each gets ``why`` as its error
    and the stage that would have moved it as ``failed_stage``. Returns how many; never commits."""
    rows = conn.execute(
        f"""UPDATE {SCHEMA}.units SET state = 'failed', failed_stage = CASE state
                    WHEN 'copied' THEN CASE WHEN (detail ->> 'finalized')::boolean THEN 'verify' ELSE 'finalize' END
                    ELSE (%s::jsonb ->> state) END,
                error = %s || ' (it was ' || state || ')', finished_at = now(), updated_at = now()
            WHERE run_id = %s AND state = ANY(%s) RETURNING unit_key""",
        (Jsonb(_STRANDED_STAGE), why, run_id, list(_STRANDED_STAGE)),
    ).fetchall()
    return len(rows)


#: ``dagrun_state(dag_id, run_id)`` → Airflow's state of that DAG run (``"running"``, ``"success"``,
#: ``"failed"`` …), or None when Airflow does not know it
DagRunState = Callable[[str, str], "str | None"]
_AIRFLOW_ENDED = ("success", "failed")


def close_ended_runs(conn_id: str | None, dagrun_state: DagRunState, *, pipeline: str | None = None,
                     closed_by: str, exclude: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Close the runs still ``running`` in ``cutover.runs`` whose Airflow DAG run has ended (a task or
    the whole run killed by ``kill -9``, a run marked failed in the UI, a scheduler that died): their
    stranded units fail (:func:`fail_stranded`), a build run is judged from its units, any other kind
    takes Airflow's state, and ``closed_by`` says what closed it. A run Airflow still runs, or does not
    know (a CLI or test run), is left alone. Each run commits on its own. Returns the closed runs
    (``run_id``, ``dag_id``, ``airflow_state``, ``state``)."""
    closed: list[dict[str, Any]] = []
    with pg_connect(*([conn_id] if conn_id else [])) as conn:
        control.ensure_schema(conn)
        running = conn.execute(
            f"""SELECT run_id, dag_id, kind FROM {SCHEMA}.runs
                WHERE state = 'running' AND dag_id IS NOT NULL AND (%s::text IS NULL OR pipeline = %s)
                  AND run_id IS DISTINCT FROM %s ORDER BY started_at LIMIT %s""",
            (pipeline, pipeline, exclude, limit)).fetchall()
        conn.commit()
        for run_id, dag_id, kind in running:
            try:
                value = dagrun_state(dag_id, run_id)
            except Exception as exc:  # noqa: BLE001 - a run Airflow does not know (another metadata DB)
                log.info("run %s of %s: Airflow's state unknown (%s): left as it is", run_id, dag_id, exc)
                continue
            airflow_state = str(getattr(value, "value", value) or "") or None  # a DagRunState enum or its text
            if airflow_state not in _AIRFLOW_ENDED:
                continue
            with conn.transaction():
                locked = conn.execute(f"SELECT 1 FROM {SCHEMA}.runs WHERE run_id = %s AND state = 'running' FOR UPDATE",
                                      (run_id,)).fetchone()
                if locked is None:  # closed meanwhile (its report ran)
                    continue
                why = f"its Airflow run ended ({airflow_state}) while no task could record this unit (killed?)"
                stranded = fail_stranded(conn, run_id, why)
                evidence = {"closed": {"by": closed_by, "airflow_state": airflow_state, "stranded_units": stranded}}
                if kind in (None, "build"):
                    rep = judge(conn, run_id)
                    final = "success" if rep.green and airflow_state == "success" else "failed"
                    evidence["report"] = rep.summary()
                    reason = rep.reason or f"Airflow run {airflow_state}"
                else:
                    final = airflow_state
                    reason = f"its Airflow run ended ({airflow_state}) before the {kind} run recorded its end"
                control.finish_run(conn, run_id, final, evidence)
                conn.execute(f"UPDATE {SCHEMA}.runs SET closed_by = %s, error = coalesce(error, %s) WHERE run_id = %s",
                             (closed_by, None if final == "success" else reason, run_id))
            log.warning("run %s of %s was still running after its Airflow run ended (%s): closed %s by %s, "
                        "%d stranded unit(s) failed", run_id, dag_id, airflow_state, final, closed_by, stranded)
            closed.append({"run_id": run_id, "dag_id": dag_id, "airflow_state": airflow_state, "state": final})
    return closed


def finish(conn: Connection[Any], run_id: str, report: Report, evidence: dict[str, Any] | None = None) -> None:
    """Close the run as its report says (``success`` / ``failed``), with the report in its evidence."""
    if control.get_run(conn, run_id) is None:  # planning failed before it could open the run
        control.start_run(conn, run_id, "unknown")
    control.finish_run(conn, run_id, "success" if report.green else "failed",
                       {**(evidence or {}), "report": report.summary()})


@contextmanager
def parallel_slot(run_id: str, name: str, slots: int, *, conn_id: str | None = None,
                  poll_s: float = 2.0) -> Iterator[int]:
    """Hold one of ``slots`` advisory locks of this run while the block runs: at most ``slots`` units
    of the run do this at once (e.g. the ``parallelism`` Param of a trigger form, applied at run time:
    pools and ``max_active_tis_per_dagrun`` are fixed when the DAG is parsed). The lock lives on its
    own connection, released when the block ends or the task dies."""
    with pg_connect(*([conn_id] if conn_id else []), autocommit=True) as conn:
        while True:
            for slot in range(max(slots, 1)):
                key = f"{name}:slot:{run_id}:{slot}"
                got = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()
                if got and got[0]:
                    try:
                        yield slot
                    finally:
                        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
                    return
            time.sleep(poll_s)


def format_error(exc: BaseException) -> str:
    """``Type: message`` plus the innermost frame, for a unit's ``error`` column."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


__all__ = ["TRANSITIONS", "DagRunState", "InvalidTransition", "Report", "advance", "chunk_done", "close_ended_runs",
           "copy_base", "fail",
           "fail_stranded", "finish", "format_error", "get_unit", "judge", "parallel_slot", "record_plan", "start",
           "units_in"]
