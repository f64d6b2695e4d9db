"""ship_wide_live (@continuous follower) and ship_wide_sync's builds of new ships, as DAGs: structure and dag.test()."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.dags.conftest import load_dag as _dag
from tests.dags.conftest import mapped_states as _states

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SCHEMA = "sw_dagtest_live"




def _clean(pg: Any) -> None:
    from tests.integration.test_ship_wide import _clean as clean_schema

    clean_schema(pg, SCHEMA)
    prefix = f"{SCHEMA}."
    pg.execute("DELETE FROM cutover.units WHERE pipeline = 'ship_wide_build' AND starts_with(unit_key, %s)", (prefix,))
    pg.execute("DELETE FROM cutover.runs WHERE params->>'schema' = %s OR params->'config'->>'schema' = %s",
               (SCHEMA, SCHEMA))
    pg.commit()


@pytest.fixture
def built(pg: Any) -> Iterator[Any]:
    """Two ships built (prepare → copy → finalize) from a small narrow table."""
    from cutover import ship_wide as sw
    from cutover.samples import ship
    from tests.integration.test_ship_wide import build

    _clean(pg)
    sample = ship.generate(pg, SCHEMA, ships=2, channels=4, timestamps=8)
    pg.commit()
    build(sw.ShipWideConfig(schema=SCHEMA))
    yield sample
    _clean(pg)


def test_dags_are_wired_as_documented(airflow_db: None) -> None:
    live = _dag("ship_wide_live")
    assert type(live.timetable).__name__ == "ContinuousTimetable" and live.max_active_runs == 1
    assert {t.task_id for t in live.tasks} == {"follow"}
    assert live.params["run_for_s"] == 600 and live.default_args["retries"] >= 2
    assert set(live.params) == {"schema", "run_for_s", "poll_s", "gap_timeout_s", "chunk_rows"}
    sync = _dag("ship_wide_sync")
    assert {t.task_id for t in sync.tasks} == {"sync", "new_ships", "build_new_ships"}
    trigger = sync.get_task("build_new_ships")
    assert trigger.partial_kwargs["trigger_dag_id"] == "ship_wide_build"
    assert trigger.partial_kwargs["skip_when_already_exists"] is True  # a retried request never doubles a build
    assert trigger.upstream_task_ids == {"sync", "new_ships"}
    assert sync.params["auto_build"] is True


def test_live_run_follows_for_run_for_s_and_moves_the_rows(airflow_db: None, built: Any, pg: Any) -> None:
    from cutover import ship_wide as sw
    from cutover.samples import ship
    from cutover.ship_wide.ddl import load_wide
    from tests.integration.test_ship_wide_live import assert_equal

    ship.append_minute(pg, SCHEMA, built.ships, [*built.channels, "new channel"], minute=10)
    pg.commit()
    dr = _dag("ship_wide_live").test(run_conf={"schema": SCHEMA, "run_for_s": 2, "poll_s": 0.1, "gap_timeout_s": 5,
                                                "chunk_rows": 200_000})
    assert str(dr.state) == "success", _states(dr)
    (ti,) = dr.get_task_instances()
    assert ti.duration is None or ti.duration >= 2  # it followed for run_for_s, then returned
    cfg = sw.ShipWideConfig(schema=SCHEMA)
    for s in built.ships:
        wide = load_wide(pg, cfg, s)
        pg.commit()
        assert wide is not None and "new channel" in wide.columns
        assert assert_equal(pg, cfg, s)["rows"] == 12


def test_minute_sync_asks_for_a_build_of_a_ship_that_appeared(airflow_db: None, built: Any, pg: Any) -> None:
    from cutover import control
    from cutover import ship_wide as sw
    from cutover.samples import ship

    new = "vessel-7"
    ship.insert_rows(pg, SCHEMA, [{"ship_id": new, "data_channel_id": "ch_0000", "created_time": ship.time_at(0),
                                   "value_format": "Decimal", "double_v": 1.0}])
    pg.commit()
    dr = _dag("ship_wide_sync").test(run_conf={"schema": SCHEMA, "chunk_rows": 200_000, "sync_overlap": 10_000,
                                                "auto_build": True})
    states = _states(dr)
    assert states["sync[-1]"] == "success" and states["new_ships[-1]"] == "success", states
    assert states.get("build_new_ships[0]") == "success", states
    cfg = sw.ShipWideConfig(schema=SCHEMA)
    run_id = f"new_ships__{dr.run_id}"
    units = control.list_units(pg, run_id)
    pg.commit()
    assert [u["unit_key"] for u in units] == [cfg.unit(new)] and units[0]["state"] == "planned"
    # the next minute finds nothing new: the ship is asked for
    again = _dag("ship_wide_sync").test(run_conf={"schema": SCHEMA, "auto_build": True})
    assert _states(again).get("build_new_ships[0]") is None, _states(again)
