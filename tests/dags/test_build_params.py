"""Every number a build form takes is bounded: each integer Param of every ``*_build`` DAG has a
``minimum`` and a ``maximum``, and Airflow refuses a run whose conf is out of bounds (parallelism -3)
before any task runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dags.conftest import load_dag

pytestmark = pytest.mark.usefixtures("airflow_db")
BUILD_DAGS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "dags").glob("*_build.py"))


@pytest.mark.parametrize("dag_id", BUILD_DAGS)
def test_every_integer_param_is_bounded(dag_id: str) -> None:
    dag = load_dag(dag_id)
    integers = {k: p.schema for k, p in dag.params.items() if p.schema.get("type") == "integer"}
    assert "parallelism" in integers and "chunk_rows" in integers
    unbounded = {k: s for k, s in integers.items() if "minimum" not in s or "maximum" not in s}
    assert unbounded == {}


@pytest.mark.parametrize("dag_id", BUILD_DAGS)
def test_a_negative_parallelism_is_refused_before_the_run(dag_id: str) -> None:
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    dag = load_dag(dag_id)
    params = ParamsDict(dag.params)
    with pytest.raises(ParamValidationError, match="parallelism: -3 is less than the minimum of 1"):
        params.update({"parallelism": -3})  # what a trigger's conf goes through
        params.validate()
    ok = ParamsDict(dag.params)
    ok.update({"parallelism": 2})
    ok.validate()
