"""ship_wide_build as a DAG: dag.test() on small generated data ends with wide = narrow; rollback DAG restores readers."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SCHEMA = "sw_dagtest_ship_wide"


def _dag(name: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.conftest import DAGS_DIR

    bag = DagBag(dag_folder=str(DAGS_DIR / f"{name}.py"), bundle_path=DAGS_DIR)
    dag = bag.get_dag(name)
    assert dag is not None, bag.import_errors
    return dag


def _states(dr: Any) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dr.get_task_instances()}


@pytest.fixture
def narrow(pg: Any) -> Any:
    from cutover.samples import ship
    from tests.integration.test_ship_wide import _clean

    _clean(pg, SCHEMA)
    sample = ship.generate(pg, SCHEMA, ships=2, channels=6, timestamps=20, odd_names=True, mismatches=1, duplicates=2)
    pg.commit()
    yield sample
    _clean(pg, SCHEMA)


def test_dags_are_wired_as_documented(airflow_db: None) -> None:
    build = _dag("ship_wide_build")
    chain = {f"ship_chain.{t}" for t in ("prepare", "copy", "verify", "cutover")}
    assert {t.task_id for t in build.tasks} == {"plan", "report"} | chain
    copy = build.get_task("ship_chain.copy")  # one mapped group per ship: a failed ship stops alone
    assert copy.upstream_task_ids == {"ship_chain.prepare"} and copy.task_group.group_id == "ship_chain"
    assert set(build.params) == {"ships", "schema", "text_columns", "chunk_rows", "pivot", "parallelism", "copy_connections", "dry_run", "cutover"}
    assert build.max_active_runs == 1 and build.default_args["retries"] >= 2
    sync = _dag("ship_wide_sync")
    assert sync.max_active_runs == 1
    assert _dag("ship_wide_rollback").default_args["retry_exponential_backoff"] is True


def test_build_dag_run_cuts_over_with_wide_equal_to_narrow(airflow_db: None, narrow: Any, pg: Any) -> None:
    from cutover import control

    dr = _dag("ship_wide_build").test(run_conf={
        "ships": "all", "schema": SCHEMA, "text_columns": False, "chunk_rows": 1000, "pivot": "auto", "parallelism": 2, "copy_connections": 2,
        "dry_run": False, "cutover": True,
    })
    assert str(dr.state) == "success", _states(dr)
    units = control.list_units(pg, dr.run_id)
    assert len(units) == 2 and all(u["state"] == "verified" for u in units)
    assert all(u["checksum_source"] == u["checksum_target"] for u in units)
    for s in narrow.ships:
        sw = control.get_switch(pg, "ship_wide_build", f"{SCHEMA}.tbl_data_timeseries:{s}")
        assert sw is not None and sw.backend == "wide"
    pg.commit()

    rb = _dag("ship_wide_rollback").test(run_conf={"ships": "all", "schema": SCHEMA, "drop_wide": False})
    assert str(rb.state) == "success", _states(rb)
    for s in narrow.ships:
        assert control.get_switch(pg, "ship_wide_build", f"{SCHEMA}.tbl_data_timeseries:{s}").backend == "narrow"
        definition = pg.execute("SELECT pg_get_viewdef(%s::regclass)", (f"{SCHEMA}.ts_reader_{s}",)).fetchone()[0]
        assert f"tbl_data_timeseries_{s}" not in definition
    pg.commit()


def test_dry_run_plans_only(airflow_db: None, narrow: Any, pg: Any) -> None:
    dr = _dag("ship_wide_build").test(run_conf={
        "ships": narrow.ships[0], "schema": SCHEMA, "text_columns": True, "chunk_rows": 1000, "parallelism": 1,
        "dry_run": True, "cutover": False,
    })
    assert str(dr.state) == "success", _states(dr)
    assert pg.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.tbl_data_timeseries_{narrow.ships[0]}",)).fetchone()[0] is None
    pg.commit()


def test_a_failing_ship_stops_alone(airflow_db: None, narrow: Any, pg: Any) -> None:
    from cutover import control
    from cutover.samples import ship

    good = narrow.ships[0]
    wide_ship = "9199999"  # 1017 Decimal channels: its row cannot fit a page, prepare refuses it
    ship.insert_rows(pg, SCHEMA, [
        {"ship_id": wide_ship, "data_channel_id": f"s{i}", "created_time": ship.time_at(0), "value_format": "Decimal",
         "double_v": float(i)} for i in range(1017)
    ])
    pg.commit()
    dr = _dag("ship_wide_build").test(run_conf={
        "ships": f"{good},{wide_ship}", "schema": SCHEMA, "text_columns": False, "chunk_rows": 1000,
        "pivot": "auto", "parallelism": 2, "dry_run": False, "cutover": True,
    })
    states = _states(dr)
    assert str(dr.state) == "failed", states
    assert sorted(v for k, v in states.items() if k.startswith("ship_chain.prepare")) == ["failed", "success"]
    assert states["report[-1]"] == "failed"  # it ran (all_done), recorded the run, and turned it red
    run = control.get_run(pg, dr.run_id)
    assert run is not None and run["state"] == "failed"
    units = {u["unit_key"]: u for u in control.list_units(pg, dr.run_id)}
    assert units[f"{SCHEMA}.tbl_data_timeseries:{good}"]["state"] == "verified"
    assert units[f"{SCHEMA}.tbl_data_timeseries:{wide_ship}"]["state"] == "failed"
    assert control.get_switch(pg, "ship_wide_build", f"{SCHEMA}.tbl_data_timeseries:{good}").backend == "wide"
    pg.commit()
