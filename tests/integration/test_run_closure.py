"""Runs that end badly end recorded: a permanent plan error fails at once with its reason on the run; a
run whose task was killed by ``kill -9`` is closed with the right state, its units no longer
"copying"; dead letters and route history name their run.

Real servers throughout: the tests' control schema in PostgreSQL, a real ship_wide build in a real
subprocess killed with SIGKILL, hostile schema names from :mod:`cutover.samples.hostile`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover import control
from cutover.lifecycle import state
from cutover.lifecycle.stages import PlanFailed, RunFailed, is_permanent, plan, report
from cutover.samples import ship
from cutover.samples.hostile import HOSTILE_NAMES
from tests.integration import killable
from tests.integration.test_ship_wide import _clean

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
#: a schema name from the hostile list (slash, space, dot), unique to these tests
SCHEMA = f"rc_it {HOSTILE_NAMES.index('M/V Ocean.1')} M/V Ocean.1"


def _run_id(tag: str) -> str:
    return f"rc_it_{tag}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def narrow(pg: Any) -> Iterator[Any]:
    _clean(pg, SCHEMA)
    sample = ship.generate(pg, SCHEMA, ships=2, channels=5, timestamps=40)
    pg.commit()
    yield sample
    _clean(pg, SCHEMA)


# --- permanent errors at plan -------------------------------------------------------------------


def test_a_missing_schema_fails_the_plan_permanently_and_the_run_says_why(pg: Any) -> None:
    from cutover.ship_wide.spec import SPEC

    missing = f"rc_it missing {uuid.uuid4().hex[:6]} {HOSTILE_NAMES[0]}"
    run_id = _run_id("noschema")
    params = {"schema": missing, "units": []}
    with pytest.raises(PlanFailed) as err:
        plan(SPEC, params, run_id, max_batches=4, dag_id="ship_wide_build")
    assert err.value.permanent  # no retry: the plan task fails at once
    assert "does not exist" in str(err.value) and missing in str(err.value)
    run = control.get_run(pg, run_id)
    assert run is not None and run["error"] == str(err.value) and run["state"] == "running"
    pg.commit()
    with pytest.raises(RunFailed) as red:
        report(SPEC, params, run_id)
    run = control.get_run(pg, run_id)
    assert run["state"] == "failed"
    assert run["evidence"]["report"]["reason"] == f"planning did not finish: {err.value}" == red.value.report.reason
    pg.commit()


def test_a_bad_parameter_is_a_permanent_plan_error_recorded_on_the_run(pg: Any) -> None:
    from cutover.ship_wide.spec import SPEC

    run_id = _run_id("badparam")
    with pytest.raises(PlanFailed, match="parallelism must be at least 1") as err:
        plan(SPEC, {"schema": SCHEMA, "parallelism": -3}, run_id, max_batches=4, dag_id="ship_wide_build")
    assert err.value.permanent
    run = control.get_run(pg, run_id)
    assert run is not None and "invalid parameters" in run["error"] and run["dag_id"] == "ship_wide_build"
    pg.commit()
    with pytest.raises(RunFailed, match="parallelism must be at least 1"):  # the report closes it, once
        report(SPEC, {"schema": SCHEMA, "parallelism": -3}, run_id)
    assert control.get_run(pg, run_id)["state"] == "failed"
    pg.commit()


def test_a_missing_source_database_is_permanent(mysql: Any) -> None:
    from cutover.tenant_split.spec import SPEC

    run_id = _run_id("nodb")
    missing = f"rc_it_nodb_{uuid.uuid4().hex[:6]}"
    with pytest.raises(PlanFailed) as err:
        plan(SPEC, {"source_database": missing, "database_prefix": "rcit_"}, run_id, max_batches=4,
             dag_id="tenant_split_build")
    assert err.value.permanent, str(err.value)
    assert missing in str(err.value)


def test_a_lost_connection_is_not_permanent() -> None:
    from cutover.ship_wide.spec import SPEC

    assert not is_permanent(SPEC, ConnectionError("server closed the connection unexpectedly"))
    assert not is_permanent(SPEC, TimeoutError("lock wait timeout"))


def test_the_plan_task_fails_without_retries_on_a_permanent_error() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from cutover.lifecycle.tasks import _fail_fast

    assert isinstance(_fail_fast(PlanFailed("plan failed: NarrowTableError", permanent=True)), AirflowFailException)
    transient = PlanFailed("plan failed: OperationalError: server closed the connection", permanent=False)
    assert _fail_fast(transient) is transient  # retried


# --- runs killed by kill -9 -----------------------------------------------------------------------


def _start_and_kill(run_id: str) -> None:
    """Run a real build in a subprocess and SIGKILL it while its first ship is copying."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.killable", run_id, SCHEMA], cwd=ROOT,
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "COPYING":
                break
        else:
            pytest.fail(f"the build exited ({proc.wait()}) before it copied a chunk")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_a_run_killed_mid_copy_is_closed_once_its_airflow_run_ended(pg: Any, narrow: Any) -> None:
    killed, alive = _run_id("killed"), _run_id("alive")
    _start_and_kill(killed)
    _start_and_kill(alive)
    for run_id in (killed, alive):  # what kill -9 leaves: the run running, a unit copying, forever
        assert control.get_run(pg, run_id)["state"] == "running"
        assert "copying" in {u["state"] for u in control.list_units(pg, run_id)}
    pg.commit()
    airflow = {("ship_wide_build", killed): "failed", ("ship_wide_build", alive): "running"}
    closed = state.close_ended_runs(None, lambda dag_id, run_id: airflow.get((dag_id, run_id)),
                                    pipeline="ship_wide_build", closed_by="test")
    assert [c["run_id"] for c in closed] == [killed] and closed[0]["state"] == "failed"
    run = control.get_run(pg, killed)
    assert run["state"] == "failed" and run["finished_at"] is not None and run["closed_by"] == "test"
    assert "Airflow run ended (failed)" in run["error"] or "did not reach" in run["error"]
    units = control.list_units(pg, killed)
    assert {u["state"] for u in units} == {"failed"}
    copying = [u for u in units if u["failed_stage"] == "copy"]
    assert copying and all("(it was copying)" in u["error"] or "(it was prepared)" in u["error"] for u in copying)
    assert control.get_run(pg, alive)["state"] == "running"  # Airflow still runs it: left alone
    # its Airflow run ends later: the next look closes it too, and a second look changes nothing
    airflow[("ship_wide_build", alive)] = "failed"
    assert [c["run_id"] for c in state.close_ended_runs(None, lambda d, r: airflow.get((d, r)),
                                                        pipeline="ship_wide_build", closed_by="test")] == [alive]
    assert state.close_ended_runs(None, lambda d, r: airflow.get((d, r)), pipeline="ship_wide_build",
                                  closed_by="test") == []
    pg.commit()


def test_the_report_fails_the_units_a_killed_task_left_copying(pg: Any, narrow: Any) -> None:
    """The report runs after every stage task (trigger rule all_done), also after one was killed."""
    run_id = _run_id("report")
    _start_and_kill(run_id)
    with pytest.raises(RunFailed, match="did not reach"):
        report(killable._spec(), killable.params(SCHEMA), run_id)
    assert control.get_run(pg, run_id)["state"] == "failed"
    states = {u["state"] for u in control.list_units(pg, run_id)}
    assert states == {"failed"}, states  # none "copying" or "prepared" forever
    pg.commit()


# --- every record names its run -------------------------------------------------------------------


def test_dead_letters_and_route_history_name_the_airflow_run(pg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _run_id("records")
    name = f"rc_it {HOSTILE_NAMES[2]}"
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", run_id)  # what Airflow's task runner exports to every task
    control.add_dead_letters(pg, "rc_it", None, name, [control.DeadLetter("t", "k1", "bad value")])
    control.set_route(pg, "rc_it", "rc_it_scope", name, {"database": name})
    assert [d["run_id"] for d in control.list_dead_letters(pg, "rc_it", name)] == [run_id]
    assert [h["run_id"] for h in control.route_history(pg, "rc_it", "rc_it_scope", name)] == [run_id]
    # a run id given explicitly wins
    control.add_dead_letters(pg, "rc_it", "explicit", name, [control.DeadLetter("t", "k2", "bad value")])
    assert [d["run_id"] for d in control.list_dead_letters(pg, "rc_it", name)] == [run_id, "explicit"]
    pg.rollback()


# --- counters per run ------------------------------------------------------------------------------


def test_a_rebuild_counts_only_what_it_read_itself(pg: Any, narrow: Any) -> None:
    """The copy's totals (the checkpoint's) run over every run and sync of a ship; each run's counters
    are its own: a rebuild after a sync does not add the first build's rows, nor the sync's."""
    from cutover import ship_wide as sw
    from cutover.lifecycle.stages import run_build
    from cutover.ship_wide.spec import SPEC

    params = {**killable.params(SCHEMA), "units": [narrow.ships[0]]}
    first, again = _run_id("build1"), _run_id("build2")
    assert run_build(SPEC, params, first).green
    (u1,) = control.list_units(pg, first)
    assert u1["rows_read"] == u1["rows_total"] == 200 and u1["rows_written"] == 40
    pg.commit()
    ship.append_minute(pg, SCHEMA, [narrow.ships[0]], narrow.channels, minute=50)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=SCHEMA)
    sw.sync_ship(cfg, narrow.ships[0])  # the checkpoint's totals grow by what the sync read
    cp = control.get_checkpoint(pg, SPEC.name, u1["unit_key"])
    assert cp is not None and cp.rows_done > 200
    pg.commit()
    assert run_build(SPEC, params, again).green  # history already copied: this run reads nothing
    (u2,) = control.list_units(pg, again)
    assert u2["rows_read"] == 0, u2  # before: 200 + what the sync read
    assert u2["rows_written"] == 44  # verify records the target's rows: 40 built + 4 synced
    (u1_after,) = control.list_units(pg, first)
    assert (u1_after["rows_read"], u1_after["rows_written"]) == (200, 40)  # the first run's stay its own
    steps = pg.execute("SELECT coalesce(sum(rows_read), 0) FROM cutover.progress WHERE run_id = %s", (again,)).fetchone()
    assert steps == (0,)
    pg.commit()
