"""Which ships may be cut over: the latest verification of each must have passed.

The ``ship_wide_cutover`` DAG asks this before it asks a human: a ship is *ready* when the most recent
``ship_wide_build`` unit recorded for it is ``verified`` (counts, full checksum and GX gate passed)
and no switch has already sent its readers to the wide table.
"""

from __future__ import annotations

from typing import Any

from cutover import control
from cutover.connections import pg_connect
from cutover.ship_wide.config import PIPELINE, ShipWideConfig


def latest_units(cfg: ShipWideConfig, ships: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """ship id → its most recent unit row (state, rows, checksums, run id) of ``ship_wide_build``."""
    prefix = cfg.unit("")
    with pg_connect(cfg.target_conn_id) as conn:
        control.ensure_schema(conn)
        rows = conn.execute(
            f"""SELECT DISTINCT ON (unit_key) unit_key, state, run_id, rows_done, checksum_source, checksum_target,
                       updated_at
                FROM {control.SCHEMA}.units WHERE pipeline = %s AND starts_with(unit_key, %s)
                ORDER BY unit_key, updated_at DESC""",
            (PIPELINE, prefix),
        ).fetchall()
        switches = {
            r[0]: r[1]
            for r in conn.execute(
                f"SELECT unit_key, backend FROM {control.SCHEMA}.switches WHERE pipeline = %s AND starts_with(unit_key, %s)",
                (PIPELINE, prefix),
            ).fetchall()
        }
    out: dict[str, dict[str, Any]] = {}
    for unit_key, state, run_id, rows_done, cs, ct, updated_at in rows:
        ship = unit_key[len(prefix):]
        if ships is not None and ship not in ships:
            continue
        out[ship] = {
            "ship_id": ship, "unit": unit_key, "state": state, "run_id": run_id, "rows_done": rows_done,
            "checksums_match": cs is not None and cs == ct, "updated_at": str(updated_at),
            "backend": switches.get(unit_key, "narrow"),
        }
    return out


def split_ready(cfg: ShipWideConfig, ships: list[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(ready ships, {ship: why not}) for the requested ships (``None``: every ship ever built)."""
    units = latest_units(cfg, ships)
    ready: list[dict[str, Any]] = []
    blocked: dict[str, str] = {}
    for ship in ships if ships is not None else sorted(units):
        u = units.get(ship)
        if u is None:
            blocked[ship] = "never built: run ship_wide_build first"
        elif u["state"] != "verified":
            blocked[ship] = f"latest verification is {u['state']!r} (run {u['run_id']}), not 'verified'"
        elif not u["checksums_match"]:
            blocked[ship] = "checksums of narrow and wide differ"
        elif u["backend"] == "wide":
            blocked[ship] = "readers already on the wide table"
        else:
            ready.append(u)
    return ready, blocked
