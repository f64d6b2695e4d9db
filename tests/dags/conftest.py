"""DAG-tier fixtures: a throw-away Airflow metadata database (SQLite under the test AIRFLOW_HOME)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_DIR))


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Migrate the session's Airflow metadata DB once, so that ``dag.test()`` can run DAGs for real."""
    from airflow.utils import db

    db.resetdb(skip_init=False) if os.environ.get("CUTOVER_RESET_AIRFLOW_DB") else db.initdb()
