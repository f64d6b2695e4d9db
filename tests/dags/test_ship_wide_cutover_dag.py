"""ship_wide_cutover: only verified ships switch; the approval sits between the audit and the publish."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SCHEMA = "sw_dagtest_cutover"


def _dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.conftest import DAGS_DIR

    bag = DagBag(dag_folder=str(DAGS_DIR / "ship_wide_cutover.py"), bundle_path=DAGS_DIR)
    dag = bag.get_dag("ship_wide_cutover")
    assert dag is not None, bag.import_errors
    return dag


@pytest.fixture
def built(pg: Any) -> list[str]:
    """Two ships in the narrow table; the first is built and verified, the second only planned."""
    from cutover.samples import ship as samples
    from cutover.ship_wide import (
        ShipWideConfig,
        copy_history,
        finalize_ship,
        plan_run,
        prepare_ship,
        rollback_ship,
        verify_ship,
    )

    pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
    sample = samples.generate(pg, SCHEMA, ships=2, channels=4, timestamps=12, seed=3)
    pg.commit()
    cfg = ShipWideConfig(schema=SCHEMA, chunk_rows=1000)
    for ship in sample.ships:
        rollback_ship(cfg, ship, drop=True)  # a clean slate in the control schema
    plans = {p["ship_id"]: p for p in plan_run(cfg, run_id="sw-dagtest-cutover-build")}
    first, second = sample.ships
    prepare_ship(cfg, plans[first], run_id="sw-dagtest-cutover-build")
    copy_history(cfg, first, run_id="sw-dagtest-cutover-build", rows_total=plans[first]["rows"])
    finalize_ship(cfg, first, run_id="sw-dagtest-cutover-build")
    verify_ship(cfg, first, run_id="sw-dagtest-cutover-build")
    return list(sample.ships)


def test_approval_sits_between_ready_and_switch(airflow_db: None) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = _dag()
    approve = dag.get_task("approve")
    assert isinstance(approve, ApprovalOperator)
    assert approve.upstream_task_ids == {"ask"} and approve.downstream_task_ids == {"switch"}
    assert dag.get_task("switch").trigger_rule == "none_failed_min_one_success"
    assert dag.params["require_approval"] is True  # approval is the default


def test_verified_ship_switches_and_unverified_ship_blocks(airflow_db: None, built: list[str], pg: Any) -> None:
    from cutover import control
    from cutover.ship_wide import PIPELINE, ShipWideConfig

    first, second = built
    cfg = ShipWideConfig(schema=SCHEMA)
    dag = _dag()

    blocked = dag.test(run_conf={"ships": f"{first},{second}", "schema": SCHEMA, "require_approval": False})
    states = {ti.task_id: str(ti.state) for ti in blocked.get_task_instances()}
    assert str(blocked.state) == "failed" and states["ready"] == "failed"
    assert states["switch"] == "upstream_failed"
    assert control.get_switch(pg, PIPELINE, cfg.unit(first)).backend == "narrow"  # nothing switched

    dr = dag.test(run_conf={"ships": first, "schema": SCHEMA, "require_approval": False})
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    assert str(dr.state) == "success", states
    assert states["approve"] == "skipped" and states["switch"] == "success"
    pg.commit()
    sw = control.get_switch(pg, PIPELINE, cfg.unit(first))
    assert sw is not None and sw.backend == "wide"
    hist = control.switch_history(pg, PIPELINE, cfg.unit(first))
    assert hist[-1]["to_backend"] == "wide" and hist[-1]["actor"] == "ship_wide_cutover"
    evidence = control.get_run(pg, dr.run_id)["evidence"]
    assert evidence["approval"] == {"approved": "not required"} and evidence["switched"][0]["to"] == "wide"
    # readers now read the wide table through the view
    view_def = pg.execute(
        "SELECT definition FROM pg_views WHERE schemaname = %s AND viewname LIKE 'ts_reader_%%'", (SCHEMA,)
    ).fetchall()
    assert any("tbl_data_timeseries_" in v[0] for v in view_def)

    again = dag.test(run_conf={"ships": first, "schema": SCHEMA, "require_approval": False})
    assert str(again.state) == "failed"  # already on the wide table: nothing to cut over
