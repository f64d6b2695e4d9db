"""Approval is deployment policy, not a form field (issue #19).

The policy (env ``CUTOVER_REQUIRE_APPROVAL[_<PIPELINE>]`` or Variable ``cutover_require_approval[_<pipeline>]``,
default on) is read when the run runs; a trigger form's ``require_approval: false`` never turns it off
(the real ``ship_wide_cutover`` run still waits for the *Required Actions* answer); the policy off lets it
switch; the library route (``cutover_ship``) obeys it too; who triggered and who approved are recorded.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.dags.conftest import load_dag
from tests.dags.test_ship_wide_cutover_dag import _Reviewer

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SCHEMA = "sw_dagtest_policy"
SPEC = "cutover.ship_wide.spec:SPEC"
PIPELINE_ENV = "CUTOVER_REQUIRE_APPROVAL_SHIP_WIDE_BUILD"
PIPELINE_VAR = "AIRFLOW_VAR_CUTOVER_REQUIRE_APPROVAL_SHIP_WIDE_BUILD"
ALL = ("CUTOVER_REQUIRE_APPROVAL", PIPELINE_ENV, "AIRFLOW_VAR_CUTOVER_REQUIRE_APPROVAL", PIPELINE_VAR)


@pytest.fixture(autouse=True)
def _policy_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from no setting at all (the default: approval required)."""
    for name in ALL:
        monkeypatch.delenv(name, raising=False)


def _states(dr: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


@pytest.fixture
def built(pg: Any) -> str:
    """One ship built and verified in a schema of these tests only; returns its id."""
    from cutover.lifecycle.spec import load_spec
    from cutover.lifecycle.stages import run_build
    from cutover.samples import ship as samples
    from cutover.ship_wide import ShipWideConfig, rollback_ship

    pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
    sample = samples.generate(pg, SCHEMA, ships=1, channels=3, timestamps=6, seed=11)
    pg.commit()
    ship = sample.ships[0]
    rollback_ship(ShipWideConfig(schema=SCHEMA), ship, drop=True)  # a clean slate in the control schema
    run_build(load_spec(SPEC), {"schema": SCHEMA, "chunk_rows": 1000, "units": [ship]}, "sw-dagtest-policy-build")
    return ship


def test_policy_precedence_values_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from cutover.lifecycle.switch import PolicyInvalid, approval_decision, approval_policy

    assert approval_policy("ship_wide_build").to_dict() == {"required": True, "source": "default"}
    monkeypatch.setenv("AIRFLOW_VAR_CUTOVER_REQUIRE_APPROVAL", "off")  # the Airflow Variable, for every pipeline
    assert approval_policy("ship_wide_build").to_dict() == {"required": False, "source": "variable cutover_require_approval"}
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL", "on")  # the env var beats the Variable at the same level
    assert approval_policy("ship_wide_build").required is True
    monkeypatch.setenv(PIPELINE_VAR, "false")  # a pipeline's own setting beats the general one
    assert approval_policy("ship_wide_build").to_dict() == {
        "required": False, "source": "variable cutover_require_approval_ship_wide_build"}
    assert approval_policy("tenant_split").required is True  # … and only for that pipeline
    monkeypatch.setenv(PIPELINE_ENV, "maybe")
    with pytest.raises(PolicyInvalid, match="maybe"):
        approval_policy("ship_wide_build")
    monkeypatch.setenv(PIPELINE_ENV, "off")
    # the form can ask for more care (an approval the policy does not require), never less
    assert approval_decision("ship_wide_build", {"require_approval": True})["required"] is True
    monkeypatch.delenv(PIPELINE_ENV)
    monkeypatch.delenv(PIPELINE_VAR)
    decision = approval_decision("ship_wide_build", {"require_approval": False})
    assert decision["required"] is True and "ignored" in decision["ignored"]


def test_trigger_record_never_passes_off_a_non_person() -> None:
    from cutover.lifecycle.switch import trigger_record
    from cutover.lifecycle.tasks import _triggered_by

    assert trigger_record("alice@example.com", "manual")["user"] == "alice@example.com"
    for nobody in (None, "", "dag_test", "Anonymous"):
        rec = trigger_record(nobody, "manual")
        assert rec["user"] is None and rec["note"], rec
    # the task reads Airflow 3's DagRun.triggering_user_name (an object of that shape, as the SDK hands it over)
    run = SimpleNamespace(triggering_user_name="bob", run_type=SimpleNamespace(value="manual"), dag_id="ship_wide_cutover")
    assert _triggered_by(run) == {"user": "bob", "run_type": "manual", "via": "Airflow DAG run of ship_wide_cutover"}


def test_form_cannot_turn_approval_off(airflow_db: None, built: str, pg: Any) -> None:
    """``require_approval: false`` in the conf: the run still waits for the approval (answered *Reject*
    here, as the Required Actions UI does), nothing switches, and the evidence says it was ignored."""
    from cutover import control
    from cutover.ship_wide import PIPELINE, ShipWideConfig

    cfg = ShipWideConfig(schema=SCHEMA)
    dag = load_dag("ship_wide_cutover")
    assert "require_approval" not in dag.params
    reviewer = _Reviewer("ship_wide_cutover", "Reject", name="reviewer@example.com")
    reviewer.start()
    try:
        dr = dag.test(run_conf={"units": [built], "schema": SCHEMA, "require_approval": False})
    finally:
        reviewer.stop.set()
        reviewer.join(5)
    assert reviewer.error is None and reviewer.answered  # the approval reached AWAITING_INPUT: it waited
    states = _states(dr)
    assert states["approve"] == "success" and states["no_approval"] == "skipped" and states["switch"] == "skipped", states
    run = control.get_run(pg, dr.run_id)
    assert run["state"] == "rejected" and run["evidence"]["approval"]["required"] is True
    assert "ignored" in run["evidence"]["approval"]["ignored"]
    assert control.get_switch(pg, PIPELINE, cfg.unit(built)).backend == "narrow"
    pg.commit()


def test_switch_refuses_without_approval_on_every_route(built: str, pg: Any) -> None:
    """A task marked success by hand (the switch then finds no answer) and a direct library call both
    meet the policy: nothing switches without an *Approve*, whatever ``require_approval`` says."""
    from cutover import control
    from cutover.lifecycle.spec import load_spec
    from cutover.lifecycle.switch import ApprovalMissing, split_ready, switch
    from cutover.ship_wide import PIPELINE, ShipWideConfig, cutover_ship

    cfg = ShipWideConfig(schema=SCHEMA)
    ready, _ = split_ready(load_spec(SPEC), cfg, [built])
    with pytest.raises(ApprovalMissing, match="default"):
        switch(load_spec(SPEC), cfg, ready, "sw-dagtest-policy-marked", approval=None, require_approval=False,
               params={"require_approval": False})
    with pytest.raises(ApprovalMissing):
        cutover_ship(cfg, built, run_id="sw-dagtest-policy-lib", actor="script@example.com")
    assert control.get_switch(pg, PIPELINE, cfg.unit(built)).backend == "narrow"
    # the library route with an approval switches and records both people
    out = cutover_ship(cfg, built, run_id="sw-dagtest-policy-lib-ok", actor="script@example.com",
                       approval={"chosen_options": ["Approve"], "responded_by_user": {"id": "7", "name": "carol"}})
    assert out["to"] == "wide"
    hist = control.switch_history(pg, PIPELINE, cfg.unit(built))[-1]
    assert (hist["triggered_by"], hist["approved_by"], hist["actor"]) == ("script@example.com", "carol", "carol")
    pg.commit()


def test_policy_off_lets_it_switch_and_records_the_actor(airflow_db: None, built: str, pg: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from cutover import control
    from cutover.ship_wide import PIPELINE, ShipWideConfig

    monkeypatch.setenv(PIPELINE_VAR, "off")  # the operator's Variable (set through AIRFLOW_VAR_… here)
    cfg = ShipWideConfig(schema=SCHEMA)
    dr = load_dag("ship_wide_cutover").test(run_conf={"units": [built], "schema": SCHEMA})
    states = _states(dr)
    assert str(dr.state) == "success" and states["approve"] == "skipped" and states["switch"] == "success", states
    assert control.get_switch(pg, PIPELINE, cfg.unit(built)).backend == "wide"
    hist = control.switch_history(pg, PIPELINE, cfg.unit(built))[-1]
    assert hist["detail"]["policy"] == {"required": False, "source": "variable cutover_require_approval_ship_wide_build"}
    # dag.test() runs as no user (Airflow records 'dag_test'): unknown, said so, never the DAG's name
    assert hist["actor"] is None and hist["triggered_by"] is None
    assert "dag_test" in hist["detail"]["triggered_by"]["note"]
    run = control.get_run(pg, dr.run_id)
    assert run["evidence"]["approval"]["approved"] == "not required"
    assert run["evidence"]["triggered_by"]["user"] is None
    pg.commit()
