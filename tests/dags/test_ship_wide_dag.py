"""ship_wide_build as a DAG: dag.test() on small generated data ends with wide = narrow; rollback DAG restores readers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.dags.conftest import load_dag as _dag
from tests.dags.conftest import mapped_states as _states

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SCHEMA = "sw_dagtest_ship_wide"




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
    chain = {f"unit_batch.{t}" for t in ("prepare", "copy", "finalize", "verify")}
    assert {t.task_id for t in build.tasks} == {"plan", "report"} | chain
    copy = build.get_task("unit_batch.copy")  # one mapped group per batch of ships
    assert copy.upstream_task_ids == {"plan", "unit_batch.prepare"} and copy.task_group.group_id == "unit_batch"
    assert copy.trigger_rule == "all_done"  # a ship that failed to prepare stops alone; the batch goes on
    assert copy.map_index_template == "{{ cutover_units }}"  # the grid names the ships, not 0/1/2
    assert build.get_task("report").trigger_rule == "all_done"
    # no route to a switch in the build: cutover is ship_wide_cutover's, behind its approval
    assert set(build.params) == {"units", "schema", "text_columns", "chunk_rows", "pivot", "parallelism", "copy_connections", "batch_rows", "orphans", "dry_run"}
    assert build.params.get_param("units").schema["type"] == "array"
    assert build.max_active_runs == 1 and build.default_args["retries"] >= 2
    sync = _dag("ship_wide_sync")
    assert sync.max_active_runs == 1
    assert _dag("ship_wide_rollback").default_args["retry_exponential_backoff"] is True


def test_build_then_cutover_then_rollback(airflow_db: None, narrow: Any, pg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL", "off")  # this test switches without a human: policy off
    from cutover import control

    dr = _dag("ship_wide_build").test(run_conf={
        "units": [], "schema": SCHEMA, "text_columns": False, "chunk_rows": 1000, "pivot": "auto", "parallelism": 2,
        "copy_connections": 2, "dry_run": False, "cutover": True,  # an old form's toggle: ignored, never switches
    })
    assert str(dr.state) == "success", _states(dr)
    units = control.list_units(pg, dr.run_id)
    assert len(units) == 2 and all(u["state"] == "verified" for u in units)
    assert all(u["checksum_source"] == u["checksum_target"] for u in units)
    assert all(u["rows_read"] > 0 and u["rows_written"] == 20 for u in units)  # narrow rows read, wide rows written
    run = control.get_run(pg, dr.run_id)
    assert run["state"] == "success" and run["planned_units"] == 2 and run["evidence"]["report"]["green"] is True
    assert run["dag_id"] == "ship_wide_build" and run["started_at"] == dr.start_date
    for s in narrow.ships:  # the build never switched readers
        assert control.get_switch(pg, "ship_wide_build", f"{SCHEMA}.tbl_data_timeseries:{s}").backend == "narrow"
    pg.commit()

    cut = _dag("ship_wide_cutover").test(run_conf={"units": [], "schema": SCHEMA})
    assert str(cut.state) == "success", _states(cut)
    for s in narrow.ships:
        sw = control.get_switch(pg, "ship_wide_build", f"{SCHEMA}.tbl_data_timeseries:{s}")
        assert sw is not None and sw.backend == "wide"
    assert {u["state"] for u in control.list_units(pg, cut.run_id)} == {"cut_over"}
    pg.commit()

    rb = _dag("ship_wide_rollback").test(run_conf={"units": [], "schema": SCHEMA, "drop": False})
    assert str(rb.state) == "success", _states(rb)
    assert {u["state"] for u in control.list_units(pg, rb.run_id)} == {"rolled_back"}
    assert control.get_run(pg, rb.run_id)["kind"] == "rollback"
    for s in narrow.ships:
        assert control.get_switch(pg, "ship_wide_build", f"{SCHEMA}.tbl_data_timeseries:{s}").backend == "narrow"
        definition = pg.execute("SELECT pg_get_viewdef(%s::regclass)", (f"{SCHEMA}.ts_reader_{s}",)).fetchone()[0]
        assert f"tbl_data_timeseries_{s}" not in definition
    pg.commit()


def test_dry_run_plans_only(airflow_db: None, narrow: Any, pg: Any) -> None:
    dr = _dag("ship_wide_build").test(run_conf={
        "units": [narrow.ships[0]], "schema": SCHEMA, "text_columns": True, "chunk_rows": 1000, "parallelism": 1,
        "dry_run": True,
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
        "units": [good, wide_ship], "schema": SCHEMA, "text_columns": False, "chunk_rows": 1000,
        "pivot": "auto", "parallelism": 2, "dry_run": False,
    })
    states = _states(dr)
    assert str(dr.state) == "failed", states
    assert sorted(v for k, v in states.items() if k.startswith("unit_batch.prepare")) == ["failed", "success"]
    assert states["report[-1]"] == "failed"  # it ran (all_done), recorded the run, and turned it red
    run = control.get_run(pg, dr.run_id)
    assert run is not None and run["state"] == "failed"
    units = {u["unit_key"]: u for u in control.list_units(pg, dr.run_id)}
    assert units[f"{SCHEMA}.tbl_data_timeseries:{good}"]["state"] == "verified"
    bad = units[f"{SCHEMA}.tbl_data_timeseries:{wide_ship}"]
    assert bad["state"] == "failed" and bad["failed_stage"] == "prepare" and "ChannelLimitExceeded" in bad["error"]
    assert wide_ship in run["evidence"]["report"]["reason"]
    pg.commit()


def test_a_failing_plan_makes_the_run_red(airflow_db: None, pg: Any) -> None:
    """Planning raises (the narrow table is missing): no unit exists, yet the run must not be green."""
    from cutover import control

    dr = _dag("ship_wide_build").test(run_conf={"units": [], "schema": "sw_dagtest_no_such_schema", "dry_run": False})
    states = _states(dr)
    assert str(dr.state) == "failed", states
    assert states["plan[-1]"] == "failed" and states["report[-1]"] == "failed"
    run = control.get_run(pg, dr.run_id)
    assert run is not None and run["state"] == "failed" and run["planned_at"] is None
    assert "planning did not finish" in run["evidence"]["report"]["reason"]
    pg.commit()


def test_more_ships_than_max_map_length_run_in_batches(airflow_db: None, pg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """max_map_length 2, seven ships: two mapped batches work through them all, every ship verified, run green."""
    from cutover import control
    from cutover.samples import ship
    from tests.integration.test_ship_wide import _clean

    schema = "sw_dagtest_batches"
    _clean(pg, schema)
    sample = ship.generate(pg, schema, ships=7, channels=3, timestamps=6)
    pg.commit()
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    try:
        dr = _dag("ship_wide_build").test(run_conf={"units": [], "schema": schema, "chunk_rows": 1000, "dry_run": False})
        states = _states(dr)
        assert str(dr.state) == "success", states
        assert sorted(k for k in states if k.startswith("unit_batch.verify")) == ["unit_batch.verify[0]", "unit_batch.verify[1]"]
        units = control.list_units(pg, dr.run_id)
        assert sorted(u["unit_key"].split(":")[-1] for u in units) == sorted(sample.ships)
        assert {u["state"] for u in units} == {"verified"}
        assert {u["detail"]["batch"] for u in units} == {0, 1}  # which mapped task worked on it (UI log links)
        # the grid names each batch by its ships
        labels = {ti.rendered_map_index for ti in dr.get_task_instances() if ti.task_id == "unit_batch.verify"}
        assert all(label and sample.ships[0][:3] in label for label in labels), labels
    finally:
        pg.commit()
        _clean(pg, schema)
