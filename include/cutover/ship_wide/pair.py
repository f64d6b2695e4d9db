"""Register each built ship with ``consistency_checks``: narrow (as loaded) vs its wide table, unpivoted.

The narrow side applies the pipeline's own rules — only valid rows whose format fits the channel's
column, and the latest row of each (created_time, channel) — so dead letters and superseded
duplicates are not reported as differences; the wide side is unpivoted back to (created_time,
channel, value) with the same text form the verification checksum uses. Both are SQL queries on the
pair's connections; the pair is re-registered whenever the ship gains a column.
"""

from __future__ import annotations

from typing import Any

from psycopg import Connection, sql

from cutover.consistency import registry
from cutover.consistency.spec import Endpoint, PairSpec
from cutover.ship_wide.config import PIPELINE, VALUE_TEXT_SQL, ShipWideConfig
from cutover.ship_wide.ddl import WideTable
from cutover.ship_wide.fragments import loadable_narrow, wide_cells


def pair_name(cfg: ShipWideConfig, ship_id: str) -> str:
    """The registry name of a ship's pair."""
    return f"{PIPELINE}:{cfg.unit(ship_id)}"


def ship_pair(conn: Connection[Any], cfg: ShipWideConfig, wide: WideTable) -> PairSpec:
    """The consistency pair of one ship (queries rendered with ``conn``'s quoting)."""
    narrow = sql.SQL("SELECT created_time, data_channel_id AS channel, val AS value FROM ({}) v").format(
        loadable_narrow(cfg, wide, sql.SQL("created_time, data_channel_id, {} AS val").format(sql.SQL(VALUE_TEXT_SQL))))
    unpivot = sql.SQL("SELECT w.created_time, v.ch AS channel, v.val AS value {}").format(wide_cells(wide))

    def text(q: sql.Composed) -> str:  # the engine takes driver-style SQL: a literal % is written %%
        return q.as_string(conn).replace("%", "%%")

    return PairSpec(
        name=pair_name(cfg, wide.ship_id),
        source=Endpoint(cfg.source_conn_id, query=text(narrow)),
        target=Endpoint(cfg.target_conn_id, query=text(unpivot)),
        key=("created_time", "channel"),
        columns=("value",),
        kinds={"created_time": "timestamp", "channel": "text", "value": "text"},
        window_column="created_time",
        recent_window_s=3600,
        settle_s=180,  # ship_wide_sync runs every minute: give it time before a row counts as missing
        repair="none",  # ship_wide_sync is the repair: it re-pivots what the checks find
        description=f"ship {wide.ship_id}: {cfg.schema}.{cfg.narrow_table} vs {wide.schema}.{wide.table}",
    )


def register_ship(conn: Connection[Any], cfg: ShipWideConfig, wide: WideTable, *, ensure: bool = True) -> str:
    """Register (or refresh) the ship's pair in ``cutover.sync_pairs``; returns its name. ``ensure``:
    check the registry's schema first (a batch does it for its first ship only)."""
    if ensure:
        registry.ensure_registry(conn)
    spec = ship_pair(conn, cfg, wide)
    registry.register_pair(conn, spec, pipeline=PIPELINE)
    return spec.name


def unregister_ship(conn: Connection[Any], cfg: ShipWideConfig, ship_id: str) -> None:
    """Remove the ship's pair (rollback that drops the wide table)."""
    registry.ensure_registry(conn)
    registry.unregister_pair(conn, pair_name(cfg, ship_id))
