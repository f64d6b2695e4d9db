"""``ship_wide_build`` on the shared life cycle: its hooks, one ship per unit.

Unit key: ``<schema>.<narrow table>:<ship id>`` (:meth:`ShipWideConfig.unit`). Backends: ``narrow``
(readers on the pivot view over the narrow table) and ``wide`` (readers on the ship's wide table).
Everything else — states, progress, batching, report, cutover with approval, rollback — is
:mod:`cutover.lifecycle`'s.
"""

from __future__ import annotations

from typing import Any

from psycopg import Connection

from cutover.lifecycle.model import PlannedUnit, UnitKey
from cutover.lifecycle.spec import CopyResult, PipelineSpec, UnitContext, Verification
from cutover.ship_wide.config import PIPELINE, ShipWideConfig
from cutover.ship_wide.ddl import ChannelLimitExceeded
from cutover.ship_wide.plan import NarrowTableError, OrphanRowsError


def _plan(cfg: ShipWideConfig, wanted: list[str] | None) -> list[PlannedUnit]:
    from cutover.ship_wide.pipeline import plan_run

    plans = plan_run(cfg, wanted)
    return [PlannedUnit(UnitKey(cfg.scope, (p["ship_id"],)), int(p["rows"]), p) for p in plans]


def _ship(unit: PlannedUnit) -> str:
    return unit.key.parts[0]


def _prepare(cfg: ShipWideConfig, unit: PlannedUnit, ctx: UnitContext) -> dict[str, Any]:
    from cutover.ship_wide.pipeline import prepare_ship

    return prepare_ship(cfg, unit.detail, run_id=ctx.run_id, session=ctx.session)


def _copy(cfg: ShipWideConfig, unit: PlannedUnit, ctx: UnitContext) -> CopyResult:
    from cutover.lifecycle.state import parallel_slot
    from cutover.ship_wide.copy import copy_history

    slot = parallel_slot(ctx.run_id, PIPELINE, cfg.parallelism, conn_id=cfg.target_conn_id)
    if ctx.session is not None:  # a batch copies its ships one after another: one slot for all of them
        ctx.session.hold("ship_wide.parallel_slot", slot)
        out = copy_history(cfg, _ship(unit), run_id=ctx.run_id, rows_total=unit.rows, on_chunk=ctx.chunk_done,
                           session=ctx.session)
    else:
        with slot:
            out = copy_history(cfg, _ship(unit), run_id=ctx.run_id, rows_total=unit.rows, on_chunk=ctx.chunk_done)
    return CopyResult(int(out["rows_done"]), int(out["rows_written"]), out)


def _finalize(cfg: ShipWideConfig, unit: PlannedUnit, ctx: UnitContext) -> dict[str, Any]:
    from cutover.ship_wide.copy import finalize_ship

    return finalize_ship(cfg, _ship(unit), run_id=ctx.run_id, session=ctx.session)


def _max_batches(cfg: ShipWideConfig, units: list[PlannedUnit]) -> int:
    """Mapped batches for a plan: ``parallelism`` batches at least (ships copied at once), more when the
    narrow rows exceed ``batch_rows`` per batch — never one task per small ship."""
    rows = sum(max(u.rows, 0) for u in units)
    return max(cfg.parallelism, -(-rows // cfg.batch_rows))


def _verify(cfg: ShipWideConfig, unit: PlannedUnit, ctx: UnitContext) -> Verification:
    from cutover.ship_wide.verify import verify_ship

    res = verify_ship(cfg, _ship(unit), run_id=ctx.run_id, raise_on_failure=False, update_docs=False)
    narrow, wide = res["narrow"], res["wide"]
    return Verification(
        rows_source=int(narrow["times"]), rows_target=int(wide["rows"]), checksum_source=narrow["checksum"],
        checksum_target=wide["checksum"], failures=list(res["failures"]),
        detail={"narrow_times": narrow["times"], "cells": narrow["cells"], "wide_rows": wide["rows"],
                "upto_seq": res["upto_seq"], "gate": res.get("gate"), "readers": res.get("readers")},
    )


def _close(cfg: ShipWideConfig, run_id: str, units: list[dict[str, Any]]) -> dict[str, Any]:
    """Rebuild the data docs once for the run (each ship's gate left them alone: see ``run_gate``); record the
    narrow rows that belong to no ship (``ship_id`` NULL, counted now) under ``orphans``."""
    import time

    from cutover.ship_wide.pipeline import orphan_report

    outside = orphan_report(cfg)  # rows of no ship (ship_id NULL): every narrow row is accounted for
    extra = {"orphans": outside} if outside["rows"] else {}
    if not any((u.get("detail") or {}).get("verify") for u in units):
        return {"failed": {}, **extra}
    from cutover.quality.gate import rebuild_docs

    t0 = time.monotonic()
    index = rebuild_docs()
    return {"failed": {}, "data_docs": str(index), "data_docs_seconds": round(time.monotonic() - t0, 3), **extra}


def _route(conn: Connection[Any], cfg: ShipWideConfig, key: UnitKey, backend: str) -> dict[str, Any]:
    from cutover.ship_wide.cutover import route_readers

    return route_readers(conn, cfg, key.parts[0], backend)


def _drop(conn: Connection[Any], cfg: ShipWideConfig, key: UnitKey) -> dict[str, Any]:
    from cutover.ship_wide.cutover import drop_ship

    return drop_ship(conn, cfg, key.parts[0])


def _known(cfg: ShipWideConfig) -> list[UnitKey]:
    from cutover.ship_wide.cutover import known_ships

    return [UnitKey(cfg.scope, (s,)) for s in known_ships(cfg)]


SPEC = PipelineSpec(
    name=PIPELINE,
    unit_noun="ship",
    config=ShipWideConfig.from_params,
    plan=_plan,
    prepare=_prepare,
    copy=_copy,
    finalize=_finalize,
    verify=_verify,
    route=_route,
    drop=_drop,
    known_units=_known,
    scope=lambda cfg: cfg.scope,
    unit_key=lambda cfg, name: UnitKey(cfg.scope, (name,)),
    control_conn_id=lambda cfg: cfg.target_conn_id,
    backends=("narrow", "wide"),
    permanent_errors=(ChannelLimitExceeded, NarrowTableError, OrphanRowsError),
    max_batches=_max_batches,
    close=_close,
)
