"""Through Airflow itself (``dag.test()``, the Task SDK, Airflow's metadata): a permanent plan error
fails the plan task on its first try with the reason on the run; a build killed by ``kill -9`` mid-copy
is closed once its Airflow run has ended — by the next run's plan (asking Airflow through the Task SDK)
and by the status page's lookup in Airflow's metadata."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cutover import control
from cutover.samples.hostile import HOSTILE_NAMES
from tests.dags.conftest import load_dag
from tests.dags.conftest import mapped_states as _states

pytestmark = [pytest.mark.dags, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
SCHEMA = f"kr_dag {HOSTILE_NAMES[0]}"


@pytest.fixture
def narrow(pg: Any) -> Any:
    from cutover.samples import ship
    from tests.integration.test_ship_wide import _clean

    _clean(pg, SCHEMA)
    sample = ship.generate(pg, SCHEMA, ships=2, channels=6, timestamps=20)
    pg.commit()
    yield sample
    _clean(pg, SCHEMA)


def test_a_missing_schema_fails_the_plan_on_its_first_try(airflow_db: None, pg: Any) -> None:
    missing = f"kr_dag missing {HOSTILE_NAMES[1]}"
    dr = load_dag("ship_wide_build").test(run_conf={"units": [], "schema": missing, "dry_run": False})
    assert str(dr.state) == "failed", _states(dr)
    (plan_ti,) = [ti for ti in dr.get_task_instances() if ti.task_id == "plan"]
    assert str(plan_ti.state) == "failed" and plan_ti.try_number == 1  # AirflowFailException: no retries
    run = control.get_run(pg, dr.run_id)
    assert run["state"] == "failed" and "NarrowTableError" in run["error"] and missing in run["error"]
    assert missing in run["evidence"]["report"]["reason"]
    pg.commit()


def _kill_mid_copy() -> str:
    proc = subprocess.Popen([sys.executable, "-m", "tests.dags.killed_build", SCHEMA], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("COPYING "):
                run_id = line.split(" ", 1)[1].strip()
                break
        else:
            pytest.fail(f"the build exited ({proc.wait()}) before it copied a chunk")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    return run_id


def _end_in_airflow(run_id: str) -> None:
    """What the scheduler does with a run whose task died: the DAG run ends failed."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        dr = session.query(DagRun).filter(DagRun.dag_id == "ship_wide_build", DagRun.run_id == run_id).one()
        assert str(dr.state) == "running"  # nobody told Airflow either
        dr.state = DagRunState.FAILED


def test_a_build_killed_mid_copy_is_closed_by_the_next_plan(airflow_db: None, narrow: Any, pg: Any) -> None:
    killed = _kill_mid_copy()
    run = control.get_run(pg, killed)
    assert run["state"] == "running" and "copying" in {u["state"] for u in control.list_units(pg, killed)}
    pg.commit()
    _end_in_airflow(killed)
    dr = load_dag("ship_wide_build").test(run_conf={"units": [], "schema": SCHEMA, "dry_run": True})
    assert str(dr.state) == "success", _states(dr)
    run = control.get_run(pg, killed)
    assert run["state"] == "failed" and run["closed_by"] == f"plan of {dr.run_id}", run
    assert {u["state"] for u in control.list_units(pg, killed)} == {"failed"}
    pg.commit()


def test_the_status_page_closes_a_killed_run_from_airflows_metadata(airflow_db: None, narrow: Any, pg: Any) -> None:
    from cutover.ui.app import airflow_dagrun_state, close_ended_runs

    killed = _kill_mid_copy()
    assert airflow_dagrun_state("ship_wide_build", killed) == "running"
    assert killed not in {c["run_id"] for c in close_ended_runs(None)}  # still running in Airflow: left alone
    _end_in_airflow(killed)
    assert airflow_dagrun_state("ship_wide_build", killed) == "failed"
    assert killed in {c["run_id"] for c in close_ended_runs(None)}
    run = control.get_run(pg, killed)
    assert run["state"] == "failed" and run["closed_by"] == "status page"
    pg.commit()
