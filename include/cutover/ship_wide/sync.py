"""Sync: move what arrived since the watermark into the wide tables, upserting, while both sides live.

**What "arrived" means.** The watermark of the sync is the narrow table's ingest sequence
(``seq_column``, default ``id``), not ``created_time``: a late row (a reading older than what was
already copied) has a new sequence number, so it is picked up like any other; nothing depends on the
clock (no ``now()``). Each run reads ``seq > watermark - sync_overlap``: the overlap re-reads the last
rows so that a row whose transaction committed after a higher number was already read (sequences
are handed out before commit) is still found. Re-reading is harmless: the write is an upsert and
the latest valid row of a cell always wins (its sequence is the highest, so it is in any window
that holds an older one). Dead letters are stored once per row.

**How it writes.** Per chunk (``ORDER BY seq LIMIT chunk_rows``): pivot in the client, ``COPY`` into a
temporary staging table, ``INSERT … ON CONFLICT (created_time) DO UPDATE SET col =
coalesce(EXCLUDED.col, col)`` for the columns the chunk holds (a cell the chunk does not carry keeps
its value), then the watermark — one transaction.

**New channels.** A channel seen for the first time gets its column (``ALTER TABLE … ADD COLUMN``, a
catalog-only change) and the reader view is recreated with it, in the chunk's transaction: nothing
stops, readers see the column when the data is there.

A ship is synced only once built (history copied, key restored); a per-ship advisory lock keeps a
sync and a verification of the same ship from interleaving.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import Connection, sql

from cutover import control
from cutover.connections import pg_connect
from cutover.identifiers import pg_ident
from cutover.ship_wide.config import PIPELINE, TIME_COLUMN, ShipWideConfig
from cutover.ship_wide.copy import (
    ShipWatermark,
    copy_in,
    copy_out,
    narrow_select,
    pivot_chunk,
    store_dead_letters,
)
from cutover.ship_wide.cutover import refresh_reader_view
from cutover.ship_wide.ddl import WideTable, load_wide
from cutover.ship_wide.pivot import PivotResult
from cutover.ship_wide.plan import session_setup
from cutover.streaming import Progress

log = logging.getLogger(__name__)


def lock_key(cfg: ShipWideConfig, ship_id: str) -> str:
    """The text of the ship's advisory lock (``pg_advisory_lock(hashtextextended(key, 0))``): the minute
    sync, a verification and the live follower (:mod:`cutover.ship_wide.live`) all take this one."""
    return f"{PIPELINE}:{cfg.unit(ship_id)}"


@contextmanager
def ship_lock(conn: Connection[Any], cfg: ShipWideConfig, ship_id: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold the ship's advisory lock (session level) for the block: one sync or verify at a time.

    Yields True when held; with ``wait=False`` it only tries, and yields False (holding nothing)
    when another session has the ship.
    """
    key = lock_key(cfg, ship_id)
    if wait:
        conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
    else:
        row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()
        if not (row and row[0]):
            conn.rollback()
            yield False
            return
    try:
        yield True
    finally:
        if not conn.closed:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
            conn.commit()


def upsert(conn: Connection[Any], wide: WideTable, res: PivotResult) -> int:
    """Stage the pivoted rows and merge them into the wide table; returns the wide rows written."""
    if not res.wide_rows:
        return 0
    cols = sql.SQL(", ").join(pg_ident(c) for c in res.columns)
    conn.execute("DROP TABLE IF EXISTS pg_temp.ship_wide_stage")
    conn.execute(sql.SQL("CREATE TEMP TABLE ship_wide_stage ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        cols, wide.ident))
    copy_in(conn, sql.Identifier("ship_wide_stage"), res)
    sets = sql.SQL(", ").join(
        sql.SQL("{c} = coalesce(EXCLUDED.{c}, w.{c})").format(c=pg_ident(c)) for c in res.columns if c != TIME_COLUMN
    )
    cur = conn.execute(
        sql.SQL("INSERT INTO {} AS w ({}) SELECT {} FROM ship_wide_stage ON CONFLICT ({}) DO UPDATE SET {}").format(
            wide.ident, cols, cols, pg_ident(TIME_COLUMN), sets)
    )
    return cur.rowcount


def sync_ship(cfg: ShipWideConfig, ship_id: str, *, run_id: str | None = None, wait: bool = True) -> dict[str, Any]:
    """Move the ship's rows that arrived since its watermark (new, late, new channels) into its wide table.

    With ``wait=False`` a ship whose lock another session holds (a verification, the other sync) is
    left alone: ``{"skipped": True, "why": "locked"}``.
    """
    with pg_connect(cfg.source_conn_id, autocommit=True) as src, pg_connect(cfg.target_conn_id) as tgt:
        session_setup(src)
        session_setup(tgt)
        tgt.commit()
        with ship_lock(tgt, cfg, ship_id, wait=wait) as held:
            if not held:
                return {"ship_id": ship_id, "skipped": True, "why": "locked"}
            return _sync_locked(src, tgt, cfg, ship_id, run_id)


def _sync_locked(src: Connection[Any], tgt: Connection[Any], cfg: ShipWideConfig, ship_id: str, run_id: str | None) -> dict[str, Any]:
    unit = cfg.unit(ship_id)
    cp = control.get_checkpoint(tgt, PIPELINE, unit)
    state = ShipWatermark.from_json(cp.watermark) if cp else None
    if state is None or not state.finalized:
        why = "never copied" if state is None else "history copy not finished" if not state.history_complete else "not finalized"
        return {"ship_id": ship_id, "skipped": True, "why": why}
    wide = load_wide(tgt, cfg, ship_id)
    if wide is None:
        return {"ship_id": ship_id, "skipped": True, "why": "no wide table"}
    since = state.sync_seq if state.sync_seq is not None else state.seq_start
    lo, top = max(since - cfg.sync_overlap, 0), since
    stats: dict[str, Any] = {"chunks": 0, "narrow_rows": 0, "wide_rows": 0, "dead_letters": 0, "new_columns": [],
                             "from_seq": lo}
    progress = Progress(f"ship {ship_id} sync", None)
    base = narrow_select(cfg)
    while True:
        q = base + sql.SQL(" WHERE ship_id = %s AND {seq} > %s ORDER BY {seq} LIMIT %s").format(seq=pg_ident(cfg.seq_column))
        data = copy_out(src, q, [ship_id, lo, cfg.chunk_rows])
        res, added = pivot_chunk(tgt, cfg, wide, data)
        if res.narrow_rows == 0:
            tgt.rollback()
            break
        if added:
            refresh_reader_view(tgt, cfg, wide)
            from cutover.ship_wide.pair import register_ship

            register_ship(tgt, cfg, wide)  # the consistency pair compares the new column too
            stats["new_columns"] += list(added.values())
        written = upsert(tgt, wide, res)
        dead = store_dead_letters(tgt, unit, run_id, res.dead)
        lo = int(res.max_seq or lo)
        top = max(top, lo)
        state.sync_seq = top
        rows_done = cp.rows_done + stats["narrow_rows"] + res.narrow_rows if cp else None
        control.set_checkpoint(tgt, PIPELINE, unit, state.to_json(), rows_done=rows_done, run_id=run_id)
        tgt.commit()
        stats["chunks"] += 1
        stats["narrow_rows"] += res.narrow_rows
        stats["wide_rows"] += written
        stats["dead_letters"] += dead
        progress.add(res.narrow_rows)
        if res.narrow_rows < cfg.chunk_rows:
            break
    progress.finish()
    return {"ship_id": ship_id, "skipped": False, "sync_seq": top, **stats}


def built_ships(cfg: ShipWideConfig) -> list[str]:
    """Ships whose wide table is built (the ones a sync keeps up to date)."""
    with pg_connect(cfg.target_conn_id) as conn:
        control.ensure_schema(conn)
        rows = conn.execute(
            f"SELECT unit_key FROM {control.SCHEMA}.checkpoints WHERE pipeline = %s"
            " AND (watermark->>'finalized' = 'true' OR watermark->>'phase' = 'built')"
            " AND starts_with(unit_key, %s) ORDER BY unit_key",
            (PIPELINE, cfg.unit("")),
        ).fetchall()
    return [r[0][len(cfg.unit("")):] for r in rows]
