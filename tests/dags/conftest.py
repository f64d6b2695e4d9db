"""DAG-tier fixtures: a throw-away Airflow metadata database (SQLite under the test AIRFLOW_HOME)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_DIR))


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Migrate the session's Airflow metadata DB once, so that ``dag.test()`` can run DAGs for real."""
    from airflow.utils import db

    db.resetdb(skip_init=False) if os.environ.get("CUTOVER_RESET_AIRFLOW_DB") else db.initdb()


def load_dag(dag_id: str) -> Any:
    """The DAG ``dag_id`` parsed from ``dags/<dag_id>.py`` as the dag-processor parses it (import errors shown)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR / f"{dag_id}.py"), bundle_path=DAGS_DIR)
    dag = bag.get_dag(dag_id)
    assert dag is not None, bag.import_errors
    return dag


def mapped_states(dr: Any) -> dict[str, str]:
    """``{"task_id[map_index]": state}`` of a DAG run's task instances (-1: not mapped)."""
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dr.get_task_instances()}
