"""The shared life cycle on the real control schema: plan and bookkeeping of 5,000 units, truthful unit
states during a copy and after any failure, verdicts, and the control schema's migration from version 2."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from cutover import connections, control
from cutover.lifecycle import state
from cutover.lifecycle.model import InvalidTransition, PlannedUnit, UnitKey, UnitState
from cutover.lifecycle.stages import (
    UNIT_STAGES,
    RunFailed,
    UnitsFailed,
    plan,
    report,
    run_build,
    run_unit_stage,
)
from cutover.samples import ship
from cutover.samples.hostile import HOSTILE_NAMES
from tests.integration.test_ship_wide import _clean

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)
S = UnitState


def _run_id(tag: str) -> str:
    return f"lc_it_{tag}_{uuid.uuid4().hex[:8]}"


def test_five_thousand_units_bookkeeping_is_correct_and_fast(pg: Any) -> None:
    run_id = _run_id("5000")
    names = [*HOSTILE_NAMES, *(f"t{i:04d}" for i in range(5000 - len(HOSTILE_NAMES)))]
    units = [PlannedUnit(UnitKey("lc_it_db", (n, "orders")), rows=i) for i, n in enumerate(names)]
    t0 = time.perf_counter()
    state.start(pg, run_id, "lc_it")
    assert state.record_plan(pg, run_id, "lc_it", units) == 5000
    pg.commit()
    t_plan = time.perf_counter() - t0
    keys = [str(u.key) for u in units]
    t0 = time.perf_counter()
    for k in keys:  # what the unit stages do for every unit, one transition at a time
        for s in (S.PREPARED, S.COPYING, S.COPIED, S.VERIFIED):
            state.advance(pg, run_id, k, s, rows_read=10, rows_written=5)
    pg.commit()
    t_advance = time.perf_counter() - t0
    log.info("5,000 units: plan recorded in %.3f s, 20,000 transitions in %.2f s", t_plan, t_advance)
    rep = state.judge(pg, run_id)
    assert rep.green and rep.states == {"verified": 5000} and rep.planned == 5000
    # one unit that did not make it turns the run red, and the reason names it
    state.advance(pg, run_id, keys[3], S.FAILED, error="boom", failed_stage="verify")
    pg.commit()
    rep = state.judge(pg, run_id)
    assert not rep.green and keys[3] in rep.reason and "1 of 5000" in rep.reason
    assert rep.not_done == [{"unit_key": keys[3], "state": "failed", "failed_stage": "verify", "error": "boom"}]
    # a rerun plans again: states reset, progress cleared
    state.record_plan(pg, run_id, "lc_it", units[:10])
    pg.commit()
    assert state.judge(pg, run_id).states == {"planned": 10}
    with pytest.raises(InvalidTransition, match="planned → verified"):
        state.advance(pg, run_id, keys[0], S.VERIFIED)
    pg.rollback()
    with pytest.raises(LookupError):
        state.advance(pg, run_id, "lc_it_db:nope", S.PREPARED)
    pg.rollback()


def test_a_run_never_planned_is_red(pg: Any) -> None:
    run_id = _run_id("noplan")
    rep = state.judge(pg, run_id)
    assert not rep.green and "planning did not finish" in rep.reason
    state.finish(pg, run_id, rep)
    pg.commit()
    assert control.get_run(pg, run_id)["state"] == "failed"


SCHEMA = "lc_it_ship_wide"


@pytest.fixture
def narrow(pg: Any) -> Iterator[Any]:
    _clean(pg, SCHEMA)
    sample = ship.generate(pg, SCHEMA, ships=2, channels=5, timestamps=40)
    pg.commit()
    yield sample
    _clean(pg, SCHEMA)


def _params(**kw: Any) -> dict[str, Any]:
    return {"schema": SCHEMA, "chunk_rows": 1000, "units": [], "pivot": "client", "copy_connections": 1, **kw}


def test_unit_is_copying_with_growing_counts_while_the_copy_runs(pg: Any, narrow: Any) -> None:
    """Seen from a second connection at every committed chunk: ``copying``, rows read and written growing."""
    from cutover.ship_wide.copy import copy_history
    from cutover.ship_wide.spec import SPEC

    seen: list[tuple[str, int, int]] = []
    run_id = _run_id("progress")

    def copy(cfg: Any, unit: PlannedUnit, ctx: Any) -> Any:
        def watch(stage: str, chunk: int) -> None:
            if stage == "committed":
                with connections.pg_connect(cfg.target_conn_id) as other:
                    row = state.get_unit(other, run_id, ctx.key)
                    assert row is not None
                    seen.append((row["state"], row["rows_read"], row["rows_written"]))

        from cutover.lifecycle.spec import CopyResult

        out = copy_history(cfg, unit.key.parts[0], run_id=ctx.run_id, rows_total=unit.rows, on_chunk=ctx.chunk_done,
                           hook=watch)
        return CopyResult(out["rows_done"], out["rows_written"], out)

    spec = dataclasses.replace(SPEC, copy=copy)
    from cutover.ship_wide import ShipWideConfig

    params = _params(units=[narrow.ships[0]])
    # the trigger form's minimum is 1,000 rows a chunk; the library takes 50 (200 narrow rows → 4 chunks)
    spec = dataclasses.replace(spec, config=lambda p: dataclasses.replace(ShipWideConfig.from_params(p), chunk_rows=50))
    rep = run_build(spec, params, run_id)
    assert rep.green
    chunks = list(seen)
    assert len(chunks) >= 4
    assert all(s == "copying" for s, _, _ in chunks)
    reads = [r for _, r, _ in chunks]
    writes = [w for _, _, w in chunks]
    assert reads == sorted(reads) and reads[0] > 0 and reads[-1] == 200
    assert writes == sorted(writes) and writes[-1] == 40
    assert sorted(set(reads)) == [50, 100, 150, 200]  # one step per committed chunk (the last reads what is left)
    steps = pg.execute("SELECT rows_read, rows_written FROM cutover.progress WHERE run_id = %s ORDER BY at",
                       (run_id,)).fetchall()
    assert len(steps) == len(chunks) and sum(r for r, _ in steps) == 200 and sum(w for _, w in steps) == 40
    u = state.get_unit(pg, run_id, str(UnitKey(f"{SCHEMA}.tbl_data_timeseries", (narrow.ships[0],))))
    assert u is not None and u["state"] == "verified" and u["rows_read"] == 200 and u["rows_written"] == 40
    pg.commit()


def test_an_unexpected_error_in_verify_fails_the_unit_with_its_error(pg: Any, narrow: Any) -> None:
    from cutover.ship_wide.spec import SPEC

    def verify(cfg: Any, unit: PlannedUnit, ctx: Any) -> Any:
        raise KeyError("gate result without 'success'")

    spec = dataclasses.replace(SPEC, verify=verify)
    run_id = _run_id("verifyerr")
    params = _params(units=[narrow.ships[1]])
    batches = plan(spec, params, run_id, max_batches=4)
    for stage in UNIT_STAGES[:-1]:
        run_unit_stage(spec, stage, params, batches[0], run_id)
    with pytest.raises(UnitsFailed, match="KeyError") as err:
        run_unit_stage(spec, "verify", params, batches[0], run_id)
    assert not err.value.permanent  # a retry may succeed
    (u,) = control.list_units(pg, run_id)
    assert u["state"] == "failed" and u["failed_stage"] == "verify" and "KeyError" in u["error"]
    assert "gate result without 'success'" in u["error"] and u["rows_read"] == 200  # the copy's counts stay
    pg.commit()
    with pytest.raises(RunFailed, match="did not reach"):
        report(spec, params, run_id)
    assert control.get_run(pg, run_id)["state"] == "failed"
    # a retry of the stage resumes the unit that failed in it
    assert run_unit_stage(SPEC, "verify", params, batches[0], run_id)["done"] == [u["unit_key"]]
    assert report(SPEC, params, run_id).green
    pg.commit()


# --- control schema migrations ---------------------------------------------------------------------


@pytest.fixture
def scratch_db() -> Iterator[str]:
    """An empty database on the same server, for the migration from version 2."""
    server = connections.resolve(connections.POSTGRES_TARGET)
    name = "cutover_migration_test"
    with psycopg.connect(server.pg_conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    yield dataclasses.replace(server, schema=name).pg_conninfo()
    with psycopg.connect(server.pg_conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_upgrade_from_version_2_keeps_and_maps_the_rows(scratch_db: str) -> None:
    with psycopg.connect(scratch_db) as conn:
        assert control.ensure_schema(conn, upto=2) == 2
        # data as version 2 stored it
        conn.execute("""INSERT INTO cutover.runs (run_id, pipeline, state) VALUES
                            ('b1', 'ship_wide_build', 'success'), ('c1', 'ship_wide_build:cutover', 'success')""")
        conn.execute("""INSERT INTO cutover.units (run_id, pipeline, unit_key, state, rows_total, rows_done) VALUES
                            ('b1', 'ship_wide_build', 's:1', 'verified', 10, 10),
                            ('b1', 'ship_wide_build', 's:2', 'prepared', 50, 40),
                            ('b1', 'ship_wide_build', 's:3', 'done', 5, 5),
                            ('b1', 'ship_wide_build', 's:4', 'skipped', 5, 0)""")
        conn.execute("""INSERT INTO cutover.checkpoints (pipeline, unit_key, watermark, rows_done)
                        VALUES ('ship_wide_build', 's:2', '{"phase": "copied"}', 40)""")
        conn.execute("""INSERT INTO cutover.switches (pipeline, unit_key, backend) VALUES ('ship_wide_build', 's:1', 'wide')""")
        conn.commit()
        assert control.ensure_schema(conn) == control.SCHEMA_VERSION == control.MIGRATIONS[-1].version
        assert control.ensure_schema(conn) == control.SCHEMA_VERSION  # idempotent
        conn.commit()
        units = {r[0]: r[1:] for r in conn.execute(
            "SELECT unit_key, state, rows_read, rows_written, error FROM cutover.units ORDER BY unit_key").fetchall()}
        assert units == {
            "s:1": ("verified", 0, 10, None),
            "s:2": ("copied", 40, 0, None),  # the checkpoint said copied
            "s:3": ("verified", 0, 5, None),  # done → verified first, so its rows count as written
            "s:4": ("failed", 0, 0, "legacy state skipped"),
        }
        runs = dict(conn.execute("SELECT run_id, kind || '/' || pipeline FROM cutover.runs").fetchall())
        assert runs == {"b1": "build/ship_wide_build", "c1": "cutover/ship_wide_build"}
        assert conn.execute("SELECT backend FROM cutover.switches").fetchone() == ("wide",)
        assert conn.execute("SELECT rows_written FROM cutover.checkpoints").fetchone() == (0,)
        versions = [r[0] for r in conn.execute("SELECT version FROM cutover.schema_version ORDER BY 1").fetchall()]
        assert versions == [m.version for m in control.MIGRATIONS]
        assert conn.execute("SELECT count(*) FROM cutover.progress").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM cutover.routes").fetchone() == (0,)  # v5: routing entries
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE cutover.units SET state = 'done' WHERE unit_key = 's:1'")


def test_a_rerun_whose_planning_fails_is_red_even_after_a_green_attempt(pg: Any, narrow: Any) -> None:
    from cutover.ship_wide.spec import SPEC

    run_id = _run_id("rerun")
    params = _params(units=[narrow.ships[0]])
    assert run_build(SPEC, params, run_id).green

    def broken_plan(cfg: Any, wanted: Any) -> Any:
        raise ConnectionError("source unreachable")

    rep = run_build(dataclasses.replace(SPEC, plan=broken_plan), params, run_id, raise_on_red=False)
    assert not rep.green and "planning did not finish" in rep.reason
    assert control.get_run(pg, run_id)["state"] == "failed"
    pg.commit()


# --- batches: the session a batch's units share, and how many batches a plan needs ----------------------


@pytest.fixture
def fleet(pg: Any) -> Iterator[Any]:
    _clean(pg, SCHEMA)
    sample = ship.generate(pg, SCHEMA, ships=6, channels=4, timestamps=10)
    pg.commit()
    yield sample
    _clean(pg, SCHEMA)


def test_a_batch_shares_connections_and_a_failed_unit_leaves_them_clean(pg: Any, fleet: Any) -> None:
    """The units of a stage share the batch session's connections (one backend for all), a unit that
    fails mid-transaction is rolled back without touching the others, and the session's cache is emptied."""
    from cutover.lifecycle.spec import CopyResult
    from cutover.ship_wide.spec import SPEC

    pids: dict[str, int] = {}
    broken = fleet.ships[2]

    def copy(cfg: Any, unit: PlannedUnit, ctx: Any) -> CopyResult:
        assert ctx.session is not None
        conn = ctx.session.pg(cfg.target_conn_id)
        pids[unit.key.parts[0]] = conn.info.backend_pid
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # nothing left by the unit before
        assert "poison" not in ctx.session.cache
        if unit.key.parts[0] == broken:
            ctx.session.cache["poison"] = True
            conn.execute(f"CREATE TABLE {SCHEMA}.left_by_a_failed_unit (x int)")  # uncommitted
            raise RuntimeError("the copy broke half-way")
        return SPEC.copy(cfg, unit, ctx)

    spec = dataclasses.replace(SPEC, copy=copy)
    run_id = _run_id("session")
    params = {**_params(pivot="auto"), "parallelism": 1}
    batches = plan(spec, params, run_id, max_batches=1024)
    assert len(batches) == 1  # six small ships, parallelism 1: one batch (four task instances, not 24)
    run_unit_stage(spec, "prepare", params, batches[0], run_id)
    with pytest.raises(UnitsFailed, match="half-way"):
        run_unit_stage(spec, "copy", params, batches[0], run_id)
    assert len(pids) == 6 and len(set(pids.values())) == 1  # one target connection for the whole batch
    gone = pg.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.left_by_a_failed_unit",)).fetchone()
    assert gone == (None,)  # the failed unit's transaction was rolled back
    states = {u["unit_key"].rsplit(":", 1)[1]: u["state"] for u in control.list_units(pg, run_id)}
    assert states.pop(broken) == "failed" and set(states.values()) == {"copied"}
    pg.commit()


def test_small_ships_are_few_batches_and_finalized_with_their_copy(pg: Any, fleet: Any) -> None:
    from cutover.ship_wide.copy import get_state
    from cutover.ship_wide.ddl import has_primary_key, load_wide
    from cutover.ship_wide.spec import SPEC

    cfg_params = {**_params(pivot="auto"), "parallelism": 2}
    run_id = _run_id("fewbatches")
    batches = plan(SPEC, cfg_params, run_id, max_batches=1024)
    assert len(batches) == 2 and sorted(len(b["units"]) for b in batches) == [3, 3]
    # a plan larger than batch_rows per batch gets more batches, never more than its units
    assert len(plan(SPEC, {**cfg_params, "batch_rows": 100}, _run_id("more"), max_batches=1024)) == 3  # 240 rows
    assert len(plan(SPEC, {**cfg_params, "batch_rows": 1}, _run_id("most"), max_batches=1024)) == 6
    cfg = SPEC.config(cfg_params)
    for b in batches:
        run_unit_stage(SPEC, "prepare", cfg_params, b, run_id)
        run_unit_stage(SPEC, "copy", cfg_params, b, run_id)
    for s in fleet.ships:  # one chunk each: key, pair and the finalized mark came with the copy
        wide = load_wide(pg, cfg, s)
        st = get_state(pg, cfg, s)
        assert wide is not None and has_primary_key(pg, wide) and st is not None and st.finalized
    for b in batches:
        out = run_unit_stage(SPEC, "finalize", cfg_params, b, run_id)
        assert len(out["done"]) == 3
        run_unit_stage(SPEC, "verify", cfg_params, b, run_id)
    assert report(SPEC, cfg_params, run_id).green
    fin = [u["detail"]["finalize"] for u in control.list_units(pg, run_id)]
    assert {f.get("finalized") for f in fin} == {"with the copy"}
    pg.commit()
