"""Plan and prepare of ``ship_wide_build`` (the life cycle's hooks in :mod:`cutover.ship_wide.spec` call them)."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import Any

from psycopg import sql

from cutover import control
from cutover.connections import pg_connect
from cutover.lifecycle.spec import BatchSession
from cutover.ship_wide.config import PIPELINE, TIME_COLUMN, ShipWideConfig
from cutover.ship_wide.copy import get_state, open_pair
from cutover.ship_wide.cutover import current_backend, refresh_reader_view
from cutover.ship_wide.ddl import create_wide_table, load_wide
from cutover.ship_wide.plan import (
    OrphanRowsError,
    OutsideRows,
    ShipPlan,
    check_narrow,
    outside_rows,
    plan_ships,
)

log = logging.getLogger(__name__)


def plan_run(cfg: ShipWideConfig, ships: list[str] | None = None) -> list[dict[str, Any]]:
    """Plan the ships (all, or ``ships``), smallest first, and log each one's report.

    Returns :meth:`ShipPlan.to_dict` per ship. The life cycle records the run and its units. When no
    ships are listed, rows with a NULL ``ship_id`` (they belong to no ship) are counted: with
    ``cfg.orphans == "error"`` the plan raises :class:`OrphanRowsError` naming their count and sample
    ingest ids; with ``report`` it logs them (the run's report records them, see :func:`orphan_report`).
    """
    with pg_connect(cfg.source_conn_id) as src:
        plans = plan_ships(src, cfg, ships)
        outside = outside_rows(src, cfg) if not ships else OutsideRows(0, [])
    if outside.rows:
        if cfg.orphans == "error":
            raise OrphanRowsError(outside.describe(cfg) + ": they would be copied nowhere. Give them a ship, "
                                  "delete them, or trigger with orphans=report to build without them (counted in the "
                                  "run's evidence)")
        log.warning("%s: not copied (orphans=report), recorded in the run's evidence", outside.describe(cfg))
    for p in plans:
        s = p.summary()
        log.info("ship %s: %s rows, %s channels (%s conflicting → text), %s … %s", s["ship_id"], f"{s['rows']:,}",
                 s["channels"], s["conflicting_channels"], s["first_time"], s["last_time"])
        if len(p.channels) > cfg.max_channels:
            log.warning("ship %s has %d channels, over the %d a table holds: its prepare will fail",
                        p.ship_id, len(p.channels), cfg.max_channels)
    return [p.to_dict() for p in plans]


def prepare_ship(cfg: ShipWideConfig, plan: dict[str, Any], *, run_id: str | None = None,
                 session: BatchSession | None = None) -> dict[str, Any]:
    """Create the ship's wide table and map, set its key aside (a small ship keeps it), give readers
    the (narrow) view. ``session``: the batch's shared connections (else its own), committed here."""
    p = ShipPlan.from_dict(plan)
    with ExitStack() as own:
        src, tgt = open_pair(cfg, session, own)
        time_type = check_narrow(src, cfg)[TIME_COLUMN]
        control.ensure_schema(tgt)
        leftover = load_wide(tgt, cfg, p.ship_id)
        if leftover is not None and get_state(tgt, cfg, p.ship_id) is None:
            if current_backend(tgt, leftover.unit) == "wide":
                raise RuntimeError(f"ship {p.ship_id!r}: readers are on {leftover.table} but its state is lost; "
                                   "roll back first")
            # Built by a prepare whose copy never started (or whose state was removed): start clean.
            log.warning("ship %s: dropping leftover %s.%s (no copy state)", p.ship_id, leftover.schema, leftover.table)
            tgt.execute(sql.SQL("DROP TABLE {}").format(leftover.ident))
        wide = create_wide_table(tgt, cfg, p, time_type=time_type)
        backend = current_backend(tgt, wide.unit)
        has_view = refresh_reader_view(tgt, cfg, wide, backend)
        if control.get_switch(tgt, PIPELINE, wide.unit) is None:
            control.switch_backend(tgt, PIPELINE, wide.unit, "narrow", run_id=run_id, reason="prepare: readers on narrow")
        renamed = {ch: col for ch, col in wide.columns.items() if ch != col}
        tgt.commit()
    for ch, col in renamed.items():
        log.info("ship %s: channel %r → column %r (stored in cutover.name_map)", p.ship_id, ch, col)
    return {"ship_id": p.ship_id, "table": f"{wide.schema}.{wide.table}", "view": wide.view if has_view else None,
            "columns": len(wide.types), "renamed_channels": renamed, "backend": backend}


def orphan_report(cfg: ShipWideConfig) -> dict[str, Any]:
    """The run report's account of narrow rows outside every ship (``ship_id`` NULL), counted now:
    ``{"rows": n, "sample_ids": [...], "rule": cfg.orphans}``."""
    with pg_connect(cfg.source_conn_id) as src:
        out = outside_rows(src, cfg)
    return {**out.to_dict(), "rule": cfg.orphans}
