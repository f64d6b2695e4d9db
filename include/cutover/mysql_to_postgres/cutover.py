"""Cut a table over from MySQL to PostgreSQL while it is written: a short write pause at a fence.

The life cycle's ``around_switch`` (:func:`table_switch`) for the tables switched together. Each table
has a **routing entry** (``cutover.routes``, pipeline ``mysql_to_postgres``, the table's name) that
cooperative writers read: location backend ``mysql`` → write MySQL; ``postgres`` → write PostgreSQL;
state ``paused`` → wait and read it again. The contract, as in Ghostferry's cutover lock, is that a
writer reads the entry again after its transaction's first statement (from then on the transaction
holds a metadata lock on the table until it ends) and starts over when it changed — so every transaction
either began before the pause and is waited for, or sees the pause.

1. **Before the pause** (the heavy part, writes flowing): the keys changed since the verification's
   fence P0 (``units.detail.verify.fence.position``) are re-proved at a new fence P_pre — the unit
   locked, a consistent snapshot at P_pre, the table caught up to exactly P_pre from it, then only the
   rows of those keys compared through the consistency engine (:func:`cutover.consistency.diff.diff_keys`).
   Together with the full proof at P0 the whole table is then proven at P_pre. A table without a key,
   or one verified without a fence (watermark mode), is compared whole here.
2. **The pause**: the entry → ``paused`` (location still MySQL); the read-write transactions in flight
   that wrote the table are waited for (a ``LOCK TABLES … READ`` taken and released at once: it waits for
   exactly those; :func:`drain_in_flight`), bounded (:data:`DRAIN_S`); the fence P1 (a consistent snapshot); the
   table caught up to exactly P1 from that snapshot; the keys changed in (P_pre, P1] re-proved (the whole
   table when it has no key). A difference raises :class:`CutoverCheckFailed`: the entry goes back to
   MySQL, active, nothing switched.
3. **The switch** (the ``yield``): the life cycle routes the table (:func:`cutover.mysql_to_postgres.
   build.route_unit` keeps the entry paused while it points it at PostgreSQL) and records the switch.
   Then the reverse stream starts (PostgreSQL → MySQL, :func:`cutover.mysql_to_postgres.reverse.start`,
   with P1 as the MySQL position where stray-write detection begins) and the entry becomes ``postgres``
   active: writers resume, on PostgreSQL. The forward stream of the table is marked ``stopped`` (the
   forward sync leaves switched tables alone, :func:`cutover.mysql_to_postgres.sync.switched_units`).

The unit's advisory lock is held from P1 until the entry is active, so no forward sync applies MySQL
rows to the table in between. The evidence (what the context yields, recorded with the switch) names
P0, P_pre, P1, PostgreSQL's WAL position at the switch (``pg_lsn``), the rows re-proved before and under
the pause, the drain, and ``paused_s`` (from the entry set paused to the entry active again).

**Watermark mode** (no binary log: no position to stand on) has no proof before the pause: under it each
table is caught up by watermark and compared whole with MySQL read then (the writes are held, so that
is one moment) — the pause then grows with the table, and a table with deletes (which a watermark does
not see) refuses; ``info["mode"]`` says so and ``fence`` is None.

Rollback routes the entry back to MySQL (``route_unit(…, "mysql")``, active), after the life cycle has
drained the reverse stream.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cutover import binlog, control
from cutover.connections import mysql_connect, pg_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle.model import UnitKey
from cutover.mysql_to_postgres import load, sync
from cutover.mysql_to_postgres.config import PIPELINE, MysqlToPostgresConfig
from cutover.mysql_to_postgres.typemap import TableMap

log = logging.getLogger(__name__)

#: the longest the pause waits for read-write transactions in flight to end (seconds)
DRAIN_S = 2.0
#: how often the drain looks again (seconds)
DRAIN_POLL_S = 0.005


class CutoverCheckFailed(RuntimeError):
    """The table differs from MySQL at the cutover's fence: nothing was switched (the message names the keys)."""


def mysql_location(cfg: MysqlToPostgresConfig, table: str) -> dict[str, Any]:
    """The routing entry's location of a table read and written in MySQL."""
    return {"backend": "mysql", "conn_id": cfg.source_conn_id, "database": cfg.source_database, "table": table}


def verified_fence(cfg: MysqlToPostgresConfig, unit_key: str) -> binlog.BinlogPosition | None:
    """The fence position of the unit's latest verification at a fence (None: never verified at one)."""
    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        row = conn.execute(
            f"""SELECT detail -> 'verify' -> 'fence' ->> 'position' FROM {control.SCHEMA}.units
                WHERE pipeline = %s AND unit_key = %s AND state IN ('verified', 'cut_over')
                  AND detail -> 'verify' -> 'fence' ? 'position'
                ORDER BY updated_at DESC LIMIT 1""", (PIPELINE, unit_key)).fetchone()
    return binlog.BinlogPosition.parse(row[0]) if row and row[0] else None


def changed_keys(cfg: MysqlToPostgresConfig, tm: TableMap, since: binlog.BinlogPosition,
                 until: binlog.BinlogPosition) -> list[tuple[Any, ...]]:
    """The keys of ``tm`` changed by the transactions in (``since``, ``until``]: both images of every row
    change, and the target's child rows of a parent change that a cascading foreign key reaches (not in
    the log). ``tm`` must have a key."""
    cascading = [fk for fk in tm.foreign_keys if {str(fk.get("on_delete")).upper(), str(fk.get("on_update")).upper()}
                 & {"CASCADE", "SET NULL", "SET DEFAULT"}]
    tables = sorted({tm.source, *(fk["ref_table"] for fk in cascading)})
    keys: list[tuple[Any, ...]] = []
    if not since < until:
        return keys
    with pg_connect(cfg.target_conn_id, autocommit=True) as pconn:
        for batch in binlog.read_changes(cfg.source_conn_id, since, schemas=[cfg.source_database], tables=tables,
                                         stop_at=until):
            for ch in batch:
                if ch.table == tm.source:
                    keys.extend(tuple(image.get(c) for c in tm.key) for image in (ch.before, ch.after) if image is not None)
                for fk in cascading:
                    if ch.table != fk["ref_table"] or ch.before is None:
                        continue
                    if ch.after is not None and all(ch.before.get(c) == ch.after.get(c) for c in fk["ref_columns"]):
                        continue
                    keys.extend(sync._child_keys(pconn, cfg, tm, fk, [ch.before.get(c) for c in fk["ref_columns"]]))
    return list(dict.fromkeys(keys))


def _prove(cfg: MysqlToPostgresConfig, tm: TableMap, key: str, src: Any, keys: list[tuple[Any, ...]] | None,
           run_id: str) -> dict[str, Any]:
    """Compare the rows of ``keys`` (None: the whole table) with the source read through ``src`` (the
    fence's snapshot). Raises :class:`CutoverCheckFailed` on a difference."""
    from cutover.consistency.diff import diff_keys
    from cutover.mysql_to_postgres.verify import compare_table, pair_spec

    if keys is None:
        v = compare_table(cfg, tm, key, run_id, source_session=src)
        if not v.passed:
            raise CutoverCheckFailed(f"table {tm.source}: the target differs from MySQL at the fence, nothing switched: "
                                     + "; ".join(v.failures[:3]))
        return {"compared": "whole table", "rows": v.rows_source}
    if not keys:
        return {"compared": "keys", "rows": 0}
    res = diff_keys(pair_spec(cfg, tm), keys, source_session=src)
    if not res.equal:
        d = res.details(max_keys=10)
        raise CutoverCheckFailed(
            f"table {tm.source}: {len(res.missing)} missing, {len(res.extra)} extra, {len(res.changed)} changed of the "
            f"{len(keys)} key(s) changed since the last proof, nothing switched; first keys: "
            f"{(d['changed_keys'] or d['missing_keys'] or d['extra_keys'])[:5]}")
    return {"compared": "keys", "rows": len(keys), "source_rows": res.source_rows, "target_rows": res.target_rows}


@contextmanager
def _fence(cfg: MysqlToPostgresConfig, maps: dict[str, TableMap], lock: Any) -> Iterator[tuple[Any, binlog.BinlogPosition]]:
    """Under the units' session locks on ``lock``: a source snapshot at fence P, the tables caught up to
    exactly P from it. Yields ``(snapshot session, P)``; the snapshot ends after the block."""
    with load.source_session(cfg.source_conn_id) as src:
        cur = src.cursor()
        position = binlog.consistent_snapshot(cur)
        cur.close()
        try:
            sync.sync_units(cfg, list(maps), maps, stop_at=position, source=src, target=lock)
            yield src, position
        finally:
            src.rollback()


def prove_since(cfg: MysqlToPostgresConfig, maps: dict[str, TableMap], since: dict[str, binlog.BinlogPosition | None],
                run_id: str, lock: Any) -> tuple[binlog.BinlogPosition, dict[str, Any]]:
    """Prove the tables at a new fence P, comparing only the keys changed since each one's ``since``
    position (None, or a table without a key: the whole table). ``lock``: the autocommit target
    connection holding the units' session locks. Returns ``(P, {unit key: what was compared})``; raises
    :class:`CutoverCheckFailed`."""
    out: dict[str, Any] = {}
    with _fence(cfg, maps, lock) as (src, position):
        for key, tm in maps.items():
            start = since.get(key)
            keys = changed_keys(cfg, tm, start, position) if tm.key and start is not None else None
            out[key] = _prove(cfg, tm, key, src, keys, run_id)
    return position, out


def drain_in_flight(cfg: MysqlToPostgresConfig, tables: list[str], bound_s: float = DRAIN_S) -> dict[str, Any]:
    """Wait (at most ``bound_s``) until the transactions that have written ``tables`` and are still open end.

    ``LOCK TABLES … READ`` on a connection of its own, released at once: it waits exactly for the
    transactions holding a write metadata lock on one of the tables (every transaction that changed a
    row keeps it until it ends), and for no other — a long transaction elsewhere on the server does not
    lengthen the pause. Needs LOCK TABLES: the source connection is tried first, then the reverse
    writer's (``reverse_conn_id``). Without it, the server's read-write transactions open now
    (``information_schema.INNODB_TRX``, needs PROCESS) are waited for instead.

    Returns ``{"how": "table locks" | "innodb_trx", "waited_s", …}``, ``{"timed_out": …}`` when the bound
    passed, or ``{"skipped": why}`` when no connection may do either."""
    errors = []
    targets = ", ".join(f"{quote_mysql(cfg.source_database)}.{quote_mysql(t)} READ" for t in tables)
    conn_ids = [c for c in dict.fromkeys([cfg.source_conn_id, getattr(cfg, "reverse_conn_id", None)]) if c]
    for conn_id in conn_ids:
        try:
            with mysql_connect(conn_id, database="") as conn:
                cur = conn.cursor()
                cur.execute(f"SET SESSION lock_wait_timeout = {max(1, math.ceil(bound_s))}")
                t0 = time.monotonic()
                try:
                    cur.execute(f"LOCK TABLES {targets}".replace("%", "%%"), ())
                except Exception as exc:
                    if getattr(exc, "args", [None])[0] == 1205:  # lock wait timeout: still open after the bound
                        log.warning("write pause: transactions on %s still open after %.1f s", tables, bound_s)
                        return {"how": "table locks", "timed_out": True, "waited_s": round(time.monotonic() - t0, 3),
                                "via": conn_id}
                    raise
                waited = time.monotonic() - t0
                cur.execute("UNLOCK TABLES")
                return {"how": "table locks", "waited_s": round(waited, 3), "via": conn_id}
        except Exception as exc:  # noqa: BLE001 - no LOCK TABLES privilege there: try the next connection
            errors.append(f"{conn_id}: {exc}")
    sql = ("SELECT trx_id FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id <> CONNECTION_ID() "
           "AND trx_is_read_only = 0 AND (trx_rows_modified > 0 OR trx_rows_locked > 0 OR trx_tables_locked > 0)")
    for conn_id in conn_ids:
        try:
            with mysql_connect(conn_id, database="") as conn:
                cur = conn.cursor()
                t0 = time.monotonic()
                cur.execute(sql)
                first = {str(r[0]) for r in cur.fetchall()}
                left = set(first)
                while left and time.monotonic() - t0 < bound_s:
                    time.sleep(DRAIN_POLL_S)
                    cur.execute(sql)
                    left &= {str(r[0]) for r in cur.fetchall()}
                if left:
                    log.warning("write pause: %d transaction(s) still open after %.1f s: %s", len(left), bound_s,
                                sorted(left)[:10])
                return {"how": "innodb_trx", "in_flight": len(first), "waited_s": round(time.monotonic() - t0, 3),
                        "left": sorted(left), "timed_out": bool(left), "via": conn_id}
        except Exception as exc:  # noqa: BLE001 - no PROCESS privilege there: try the next connection
            errors.append(f"{conn_id}: {exc}")
    log.warning("write pause: in-flight transactions not drained (%s)", "; ".join(errors))
    return {"skipped": "; ".join(errors)}


def _start_reverse(cfg: MysqlToPostgresConfig, key: UnitKey, run_id: str, position: binlog.BinlogPosition | None) -> dict[str, Any]:
    """Start the table's reverse stream when :mod:`cutover.mysql_to_postgres.reverse` provides one."""
    try:
        from cutover.mysql_to_postgres import reverse
    except ImportError as exc:
        log.warning("table %s: no reverse replication module (%s): writes on PostgreSQL do not flow back", key.label, exc)
        return {"started": False, "why": f"no reverse module: {exc}"}
    start = getattr(reverse, "start", None)
    if start is None:
        log.warning("table %s: reverse replication has no start(): writes on PostgreSQL do not flow back", key.label)
        return {"started": False, "why": "reverse.start is missing"}
    try:
        return dict(start(cfg, key, run_id=run_id, source_position=position))
    except Exception as exc:  # noqa: BLE001 - the switch stands; rollback's divergence check guards what is lost
        log.exception("table %s: the reverse stream did not start", key.label)
        return {"started": False, "error": f"{type(exc).__name__}: {exc}"}


def _modes(cfg: MysqlToPostgresConfig, keys: list[str]) -> dict[str, str]:
    """unit key → its sync mode (``binlog`` / ``watermark``; ``none`` when it has no sync position)."""
    with pg_connect(cfg.target_conn_id) as conn:
        load.ensure_state(conn)
        rows = dict(conn.execute(f"SELECT unit_key, CASE WHEN mode = 'binlog' AND position IS NULL THEN 'none' ELSE mode END "
                                 f"FROM {load.STATE_SCHEMA}.m2p_positions WHERE unit_key = ANY(%s)", (keys,)).fetchall())
    return {k: str(rows.get(k) or "none") for k in keys}


@contextmanager
def table_switch(cfg: MysqlToPostgresConfig, keys: list[UnitKey], run_id: str) -> Iterator[dict[str, Any]]:
    """The life cycle's ``around_switch``: proof before the pause, pause, drain, fence P1, catch-up and
    re-proof of what changed, (the switch), reverse stream, entry active on PostgreSQL. Yields the
    evidence dict (see the module docstring); raises :class:`CutoverCheckFailed` (nothing switched) when a
    table differs at a fence."""
    from cutover.mysql_to_postgres.build import latest_plans

    maps = latest_plans(cfg, [str(k) for k in keys])
    missing = [k.label for k in keys if str(k) not in maps]
    if missing:
        raise LookupError(f"tables {missing} were never planned: nothing to switch")
    names = {str(k): k.parts[0] for k in keys}
    by_key = {str(k): k for k in keys}
    info: dict[str, Any] = {"tables": {n: {} for n in names.values()}}
    t_start = time.monotonic()
    fenced = all(m == "binlog" for m in _modes(cfg, list(maps)).values())
    pre: binlog.BinlogPosition | None = None
    p1: binlog.BinlogPosition | None = None
    if fenced:
        # 1. before the pause: what changed since the verification's fence, proven at a fence of its own
        p0 = {str(k): verified_fence(cfg, str(k)) for k in keys}
        with pg_connect(cfg.target_conn_id, autocommit=True) as lock:
            sync.lock_units(lock, list(maps), session=True)
            try:
                pre, proved = prove_since(cfg, maps, p0, run_id, lock)
            finally:
                sync.unlock_units(lock, list(maps))
        info["pre_fence"] = str(pre)
        for k, name in names.items():
            info["tables"][name].update({"verify_fence": str(p0[k]) if p0[k] else None, "pre_proof": proved[k]})
    else:
        info["pre_fence"] = None
        info["mode"] = ("watermark: no binlog position to prove at; each table caught up and compared whole under "
                        "the pause (deletes are not seen by a watermark: a table with deletes refuses)")
    info["pre_s"] = round(time.monotonic() - t_start, 3)
    # 2. the pause
    with pg_connect(cfg.control_conn_id) as conn:
        for name in names.values():
            control.set_route(conn, PIPELINE, cfg.scope, name, mysql_location(cfg, name), state="paused",
                              run_id=run_id, reason="cutover: write pause")
    t_pause = time.monotonic()
    switched = False
    try:
        with pg_connect(cfg.target_conn_id, autocommit=True) as lock:
            sync.lock_units(lock, list(maps), session=True)
            try:
                info["drain"] = drain_in_flight(cfg, [tm.source for tm in maps.values()])
                if fenced and pre is not None:
                    with _fence(cfg, maps, lock) as (src, p1):
                        for k, tm in maps.items():
                            keys_b = changed_keys(cfg, tm, pre, p1) if tm.key else None
                            info["tables"][names[k]]["reproved"] = _prove(cfg, tm, k, src, keys_b, run_id)
                else:  # the writes are held: the source read now is the moment to compare with
                    sync.unlock_units(lock, list(maps))  # the watermark sync takes the units' locks itself
                    sync.sync_units(cfg, list(maps), maps)
                    sync.lock_units(lock, list(maps), session=True)
                    for k, tm in maps.items():
                        info["tables"][names[k]]["reproved"] = _prove(cfg, tm, k, None, None, run_id)
                info["fence"] = str(p1) if p1 else None
                info["pg_lsn"] = str(lock.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
                info["proof_s"] = round(time.monotonic() - t_pause, 3)
                info["rows_reproved"] = sum(int(t.get("reproved", {}).get("rows") or 0) for t in info["tables"].values())
                log.info("cutover %s: fence %s, %d row(s) re-proved under the pause in %.3f s", sorted(names.values()),
                         p1, info["rows_reproved"], info["proof_s"])
                # 3. the switch: the life cycle routes each table (the entry stays paused) and records it
                yield info
                switched = True
                for k, name in names.items():
                    info["tables"][name]["reverse"] = _start_reverse(cfg, by_key[k], run_id, p1)
                with pg_connect(cfg.control_conn_id) as conn:
                    for name in names.values():
                        now = control.get_route(conn, PIPELINE, cfg.scope, name)
                        loc = (now or {}).get("location") or {}
                        if loc.get("backend") == "postgres":
                            control.set_route(conn, PIPELINE, cfg.scope, name, loc, run_id=run_id,
                                              reason="cutover: switched, writes resume on PostgreSQL")
                        control.report_stream(conn, PIPELINE, cfg.scope, name, "forward", position=info["fence"],
                                              lag_s=None, state="stopped",
                                              detail={"switched_at": info["fence"], "run_id": run_id})
            finally:
                sync.unlock_units(lock, list(maps))
    finally:
        info["paused_s"] = round(time.monotonic() - t_pause, 3)
        if not switched:  # not switched (a check failed, the route failed): back to MySQL, active
            with pg_connect(cfg.control_conn_id) as conn:
                for name in names.values():
                    control.set_route(conn, PIPELINE, cfg.scope, name, mysql_location(cfg, name), run_id=run_id,
                                      reason="cutover: not switched, writes resume on MySQL")
        log.info("cutover %s: writes paused %.3f s (%s)", sorted(names.values()), info["paused_s"],
                 "switched" if switched else "not switched")
