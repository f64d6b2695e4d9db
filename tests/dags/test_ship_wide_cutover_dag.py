"""ship_wide_cutover: only verified ships switch; the approval sits between the audit and the publish,
and approve, reject and "no approval given" each end as they must (the real ApprovalOperator, answered
by its timeout default)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.dags.conftest import load_dag

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SCHEMA = "sw_dagtest_cutover"
SPEC = "cutover.ship_wide.spec:SPEC"
POLICY_OFF = "CUTOVER_REQUIRE_APPROVAL_SHIP_WIDE_BUILD"


@pytest.fixture(autouse=True)
def _policy_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from the default approval policy (on), whatever the shell has set."""
    for name in ("CUTOVER_REQUIRE_APPROVAL", POLICY_OFF, "AIRFLOW_VAR_CUTOVER_REQUIRE_APPROVAL",
                 "AIRFLOW_VAR_CUTOVER_REQUIRE_APPROVAL_SHIP_WIDE_BUILD"):
        monkeypatch.delenv(name, raising=False)


def _dag() -> Any:
    return load_dag("ship_wide_cutover")


class _Reviewer(threading.Thread):
    """A reviewer answering the approval as the *Required Actions* UI does: the same API function, on the
    metadata DB that ``dag.test()`` polls (``dag.test()`` never answers a Human-in-the-loop task itself)."""

    def __init__(self, dag_id: str, answer: str, name: str = "reviewer@example.com") -> None:
        super().__init__(daemon=True)
        self.dag_id, self.answer, self.name, self.answered, self.error = dag_id, answer, name, False, None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # surfaced by the test; the approval is failed so that dag.test() returns
            self.error = exc
            self._give_up()

    def _give_up(self) -> None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import update

        with create_session() as session:
            session.execute(update(TaskInstance).where(
                TaskInstance.dag_id == self.dag_id, TaskInstance.task_id == "approve",
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT).values(state=TaskInstanceState.FAILED))

    def _run(self) -> None:
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        name = self.name

        class User:
            def get_id(self) -> str:
                return name

            def get_name(self) -> str:
                return name

        deadline = time.monotonic() + 120  # never let dag.test() wait forever for a human
        while not self.stop.is_set() and not self.answered:
            if time.monotonic() > deadline:
                raise TimeoutError("the approval never reached AWAITING_INPUT")
            with create_session() as session:
                ti = session.scalars(select(TaskInstance).where(
                    TaskInstance.dag_id == self.dag_id, TaskInstance.task_id == "approve",
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT)).first()
                if ti is not None:
                    update_hitl_detail(dag_id=self.dag_id, dag_run_id=ti.run_id, task_id="approve",
                                       update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[self.answer]),
                                       user=User(), session=session, map_index=-1)
                    self.answered = True
            time.sleep(0.3)


def _states(dr: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


@pytest.fixture
def built(pg: Any) -> list[str]:
    """Two ships in the narrow table; the first is built and verified, the second only planned."""
    from cutover.lifecycle.spec import load_spec
    from cutover.lifecycle.stages import run_build
    from cutover.samples import ship as samples
    from cutover.ship_wide import ShipWideConfig, rollback_ship

    pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
    sample = samples.generate(pg, SCHEMA, ships=2, channels=4, timestamps=12, seed=3)
    pg.commit()
    cfg = ShipWideConfig(schema=SCHEMA, chunk_rows=1000)
    for ship in sample.ships:
        rollback_ship(cfg, ship, drop=True)  # a clean slate in the control schema
    run_build(load_spec(SPEC), {"schema": SCHEMA, "chunk_rows": 1000, "units": [sample.ships[0]]}, "sw-dagtest-cutover-build")
    return list(sample.ships)


def test_approval_sits_between_ready_and_switch(airflow_db: None) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = _dag()
    approve = dag.get_task("approve")
    assert isinstance(approve, ApprovalOperator)
    assert approve.upstream_task_ids == {"ask"} and approve.downstream_task_ids == {"switch"}
    assert approve.defaults is None  # a timeout never approves in production: it fails the approval
    assert dag.get_task("switch").trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("report").trigger_rule == "all_done"
    assert "require_approval" not in dag.params  # approval is the deployment's policy, not a form field


def test_verified_ship_switches_and_unverified_ship_blocks(airflow_db: None, built: list[str], pg: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from cutover import control
    from cutover.ship_wide import PIPELINE, ShipWideConfig

    monkeypatch.setenv(POLICY_OFF, "off")  # the operator's policy: no approval for this pipeline

    first, second = built
    cfg = ShipWideConfig(schema=SCHEMA)
    dag = _dag()

    blocked = dag.test(run_conf={"units": [first, second], "schema": SCHEMA})
    states = _states(blocked)
    assert str(blocked.state) == "failed" and states["ready"] == "failed"
    assert states["switch"] == "upstream_failed" and states["report"] == "failed"
    assert control.get_switch(pg, PIPELINE, cfg.unit(first)).backend == "narrow"  # nothing switched

    dr = dag.test(run_conf={"units": [first], "schema": SCHEMA})
    states = _states(dr)
    assert str(dr.state) == "success", states
    assert states["approve"] == "skipped" and states["switch"] == "success"
    pg.commit()
    sw = control.get_switch(pg, PIPELINE, cfg.unit(first))
    assert sw is not None and sw.backend == "wide" and sw.canary_pct == 100
    hist = control.switch_history(pg, PIPELINE, cfg.unit(first))
    assert hist[-1]["to_backend"] == "wide"
    # dag.test() has no user (Airflow says 'dag_test'): recorded as unknown, never the DAG's name
    assert hist[-1]["actor"] is None and hist[-1]["triggered_by"] is None and hist[-1]["approved_by"] is None
    assert hist[-1]["detail"]["policy"] == {"required": False, "source": f"env {POLICY_OFF}"}
    assert "dag_test" in hist[-1]["detail"]["triggered_by"]["note"]
    run = control.get_run(pg, dr.run_id)
    assert run["kind"] == "cutover" and run["state"] == "success"
    assert run["evidence"]["approval"]["approved"] == "not required" and run["evidence"]["switched"][0]["to"] == "wide"
    assert run["evidence"]["triggered_by"]["user"] is None and run["evidence"]["triggered_by"]["run_type"] == "manual"
    [unit] = control.list_units(pg, dr.run_id)
    assert unit["state"] == "cut_over" and unit["checksum_source"] == unit["checksum_target"] is not None
    # readers now read the wide table through the view
    view_def = pg.execute(
        "SELECT definition FROM pg_views WHERE schemaname = %s AND viewname LIKE 'ts_reader_%%'", (SCHEMA,)
    ).fetchall()
    assert any("tbl_data_timeseries_" in v[0] for v in view_def)
    pg.commit()

    again = dag.test(run_conf={"units": [first], "schema": SCHEMA})
    assert str(again.state) == "failed"  # already on the wide table: nothing to cut over


@pytest.mark.parametrize("answer", ["Approve", "Reject"])
def test_approval_answer_decides_the_switch(airflow_db: None, built: list[str], pg: Any, answer: str) -> None:
    from cutover import control
    from cutover.ship_wide import PIPELINE, ShipWideConfig

    first, _ = built
    cfg = ShipWideConfig(schema=SCHEMA)
    reviewer = _Reviewer("ship_wide_cutover", answer)
    reviewer.start()
    try:
        dr = _dag().test(run_conf={"units": [first], "schema": SCHEMA})  # the policy's default asks
    finally:
        reviewer.stop.set()
        reviewer.join(5)
    assert reviewer.error is None and reviewer.answered
    states = _states(dr)
    run = control.get_run(pg, dr.run_id)
    backend = control.get_switch(pg, PIPELINE, cfg.unit(first)).backend
    pg.commit()
    assert states["approve"] == "success", states
    assert run is not None and run["kind"] == "cutover"
    assert run["evidence"]["approval"]["required"] is True
    assert run["evidence"]["approval"]["chosen"] == [answer]
    assert run["evidence"]["approval"]["by"] == "reviewer@example.com"
    if answer == "Approve":
        assert str(dr.state) == "success", states
        assert states["switch"] == "success" and backend == "wide"
        assert run["state"] == "success" and run["evidence"]["approval"]["approved"] is True
        hist = control.switch_history(pg, PIPELINE, cfg.unit(first))[-1]
        assert hist["actor"] == hist["approved_by"] == "reviewer@example.com"
        assert run["evidence"]["approval"]["policy"] == {"required": True, "source": "default"}
        assert [s["unit"] for s in run["evidence"]["switched"]] == [first]
    else:
        assert str(dr.state) == "success", states  # a rejection is an answer, recorded, not an error
        assert states["switch"] == "skipped" and backend == "narrow"
        assert run["state"] == "rejected" and run["evidence"]["switched"] == []
        assert run["evidence"]["not_switched"] == [first]


def test_switch_without_an_approval_never_switches(built: list[str], pg: Any) -> None:
    """Whatever route reaches the switch (a cleared task, one marked success by hand) with approval required
    and no *Approve*, nothing switches and the run records why."""
    from cutover import control
    from cutover.lifecycle.spec import load_spec
    from cutover.lifecycle.switch import ApprovalMissing, split_ready, switch
    from cutover.ship_wide import PIPELINE, ShipWideConfig

    first, _ = built
    cfg = ShipWideConfig(schema=SCHEMA)
    spec = load_spec(SPEC)
    ready, _ = split_ready(spec, cfg, [first])
    for i, approval in enumerate([None, {"chosen_options": []}, {"chosen_options": ["Maybe"]}]):
        with pytest.raises(ApprovalMissing):
            switch(spec, cfg, ready, f"sw-dagtest-no-approval-{i}", approval=approval)  # the default policy
        assert control.get_run(pg, f"sw-dagtest-no-approval-{i}")["state"] == "failed"
    assert control.get_switch(pg, PIPELINE, cfg.unit(first)).backend == "narrow"
    # refused switches recorded their runs, yet the unit is as ready as before (their "verified" plan
    # rows are not verifications)
    assert [u["unit"] for u in split_ready(spec, cfg, [first])[0]] == [cfg.unit(first)]
    pg.commit()


def test_a_unit_no_longer_ready_when_approved_is_not_switched(built: list[str], pg: Any) -> None:
    """While the approval waited, a rebuild failed its verification: the switch checks readiness again."""
    from cutover import control
    from cutover.lifecycle import state
    from cutover.lifecycle.model import PlannedUnit, UnitKey, UnitState
    from cutover.lifecycle.spec import load_spec
    from cutover.lifecycle.switch import NotReady, split_ready, switch
    from cutover.ship_wide import PIPELINE, ShipWideConfig

    first, _ = built
    cfg = ShipWideConfig(schema=SCHEMA)
    spec = load_spec(SPEC)
    ready, _ = split_ready(spec, cfg, [first])  # what the approval was asked about
    key = UnitKey(cfg.scope, (first,))
    state.start(pg, "sw-dagtest-rebuild-failed", PIPELINE)
    state.record_plan(pg, "sw-dagtest-rebuild-failed", PIPELINE, [PlannedUnit(key, 1)])
    state.advance(pg, "sw-dagtest-rebuild-failed", str(key), UnitState.FAILED, error="checksum", failed_stage="verify")
    pg.commit()
    with pytest.raises(NotReady, match="no longer ready"):
        switch(spec, cfg, ready, "sw-dagtest-stale-ready", require_approval=True,
               approval={"chosen_options": ["Approve"], "responded_by_user": {"name": "r"}})
    assert control.get_switch(pg, PIPELINE, cfg.unit(first)).backend == "narrow"
    assert control.get_run(pg, "sw-dagtest-stale-ready")["state"] == "failed"
    pg.commit()


def test_canary_share_only_where_readers_can_take_one(built: list[str], pg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """ship_wide's readers read one view: a 25 % canary is refused, nothing switched. A pipeline whose
    readers follow cutover.switches records the share with the switch."""
    import dataclasses

    from cutover import control
    from cutover.lifecycle.spec import load_spec
    from cutover.lifecycle.switch import CanaryUnsupported, split_ready, switch
    from cutover.ship_wide import PIPELINE, ShipWideConfig

    first, _ = built
    cfg = ShipWideConfig(schema=SCHEMA)
    spec = load_spec(SPEC)
    ready, _ = split_ready(spec, cfg, [first])
    monkeypatch.setenv(POLICY_OFF, "off")
    with pytest.raises(CanaryUnsupported, match="all at once"):
        switch(spec, cfg, ready, "sw-dagtest-canary-refused", approval=None, canary_pct=25)
    assert control.get_switch(pg, PIPELINE, cfg.unit(first)).backend == "narrow"
    pg.commit()
    follows = dataclasses.replace(spec, canary=True)
    out = switch(follows, cfg, ready, "sw-dagtest-canary", approval=None, canary_pct=25)
    assert out["switched"][0]["canary_pct"] == 25
    sw = control.get_switch(pg, PIPELINE, cfg.unit(first))
    assert sw.backend == "wide" and sw.canary_pct == 25
    assert control.switch_history(pg, PIPELINE, cfg.unit(first))[-1]["canary_pct"] == 25
    pg.commit()


def test_every_param_default_passes_its_own_schema(airflow_db: None) -> None:
    """The trigger form refuses, without a word, a run whose Param default fails its own schema (#19: "the
    first Trigger click on ship_wide_cutover created no run"): every DAG's defaults must validate as the
    form and the API validate them, so pressing Trigger on an untouched form always creates a run."""
    import jsonschema

    from tests.dags.conftest import DAGS_DIR

    checked = 0
    for path in sorted(DAGS_DIR.glob("*.py")):
        dag = load_dag(path.stem)
        for name, param in dag.params.items():
            try:
                jsonschema.validate(param.value, param.schema, format_checker=jsonschema.FormatChecker())
            except jsonschema.ValidationError as exc:
                raise AssertionError(f"{dag.dag_id}: Param {name!r} default {param.value!r} fails its schema: "
                                     f"{exc.message}") from exc
            checked += 1
        dag.params.validate()  # Airflow's own check of the defaults, as a triggered run gets them
    assert checked > 20
