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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cutover import binlog, control
from cutover.connections import pg_connect
from cutover.lifecycle.model import UnitKey
from cutover.mysql_to_postgres import load, sync
from cutover.mysql_to_postgres.config import PIPELINE, MysqlToPostgresConfig
from cutover.mysql_to_postgres.typemap import TableMap

log = logging.getLogger(__name__)

#: the longest the pause waits for read-write transactions in flight to end (seconds)
DRAIN_S = 2.0


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
    """Wait (at most ``bound_s``) until the transactions that have written ``tables`` (of the source
    database) and are still open end: :func:`cutover.write_drain.drain_table_writers` through the source
    connection, then the reverse writer's (``reverse_conn_id``). Returns what it returns (``how``:
    ``table locks`` or ``innodb_trx``, ``waited_s``, ``timed_out``; ``skipped`` when neither may)."""
    from cutover.write_drain import drain_table_writers

    return drain_table_writers([cfg.source_conn_id, getattr(cfg, "reverse_conn_id", None) or ""],
                               [(cfg.source_database, t) for t in tables], bound_s)


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


def drain_pg_writers(cfg: MysqlToPostgresConfig, maps: dict[str, TableMap], bound_s: float = DRAIN_S) -> dict[str, Any]:
    """Wait (at most ``bound_s``) until the PostgreSQL transactions that have written the tables end: a
    rollback's write pause, the mirror of :func:`drain_in_flight`.

    ``LOCK TABLE … IN SHARE MODE`` in a transaction of its own, released at once: it conflicts with the
    ROW EXCLUSIVE lock every writing transaction holds until it ends, and with no reader. Returns ``{"how":
    "share lock", "waited_s", "timed_out"}``."""
    import psycopg

    targets = ", ".join(load.target_name(cfg.target_schema, tm) for tm in maps.values())
    with pg_connect(cfg.target_conn_id) as conn:
        conn.execute(f"SET LOCAL lock_timeout = '{max(1, int(bound_s * 1000))}ms'")
        t0 = time.monotonic()
        timed_out = False
        try:
            conn.execute(f"LOCK TABLE {targets} IN SHARE MODE".replace("%", "%%"))
        except psycopg.errors.LockNotAvailable:
            timed_out = True
            log.warning("rollback pause: writers of %s still open after %.1f s", sorted(maps), bound_s)
        waited = time.monotonic() - t0
        conn.rollback()
    return {"how": "share lock", "waited_s": round(waited, 4), "timed_out": timed_out}


@contextmanager
def table_rollback(cfg: MysqlToPostgresConfig, keys: list[UnitKey], run_id: str) -> Iterator[dict[str, Any]]:
    """The life cycle's ``around_rollback``: compare, pause the table's writers on PostgreSQL, drain the
    reverse stream to a fence, re-prove what it touched, (route back to MySQL), resume.

    1. **Before the pause** (writes flowing on PostgreSQL): the reverse stream run
       (:func:`cutover.mysql_to_postgres.reverse.run`), then each table compared whole with MySQL
       (:func:`cutover.consistency.diff.diff_pair`, the pair verify uses): the keys that differ are the writes
       still in flight (and any real difference). The last proof; its cost grows with the table, paid while
       writers write.
    2. **The pause**: the routing entry ``paused`` (location still PostgreSQL); the PostgreSQL transactions
       that wrote the tables drained (:func:`drain_pg_writers`, bounded by :data:`DRAIN_S`); then the reverse
       stream drained (:func:`cutover.mysql_to_postgres.reverse.drain`: everything captured applied, the
       capture dropped — the fence: PostgreSQL's writes end there —, stray writes recorded and forwarded,
       the forward sync position moved).
    3. **Re-proof of what changed since the proof**: the keys the drain applied and the keys 1 found
       differing, compared row by row (:func:`cutover.consistency.diff.diff_keys`). A row not re-proved was
       equal at 1 and not written on PostgreSQL since (its change would have been captured and drained).
    4. The life cycle routes the table back to MySQL (active: writers resume there) unless
       ``target_writes`` names it; not routed, the entry goes back to PostgreSQL, active.

    A table without a running reverse stream (stopped by hand, never started) is compared whole under the
    pause (:func:`cutover.mysql_to_postgres.divergence.target_divergence`): its writes are found and the
    rollback refuses. Yields (the group's evidence): ``paused_s`` (filled at the end), ``drain``,
    ``drained`` (unit label → ``applied`` in all, ``applied_under_pause``, ``position``, …),
    ``reproved`` (unit label → rows compared), ``reproved_rows``, ``pre_compare`` (differing keys
    before the pause), ``phases`` (seconds), ``target_writes`` (unit label → the divergence report of a table
    that differs; empty: none). A concurrent ``reverse.run`` (the sync DAG) between 1 and 2 applies keys the
    re-proof does not name; those were written on PostgreSQL after 1 and applied by the same exactly-once
    batches (not re-proved).
    """
    from cutover.consistency.diff import DiffOptions, diff_keys, diff_pair
    from cutover.mysql_to_postgres import reverse
    from cutover.mysql_to_postgres.build import latest_plans
    from cutover.mysql_to_postgres.divergence import target_divergence
    from cutover.mysql_to_postgres.verify import pair_spec

    maps = latest_plans(cfg, [str(k) for k in keys])
    missing = [k.label for k in keys if str(k) not in maps]
    if missing:
        raise LookupError(f"tables {missing} were never planned: nothing to roll back")
    names = {str(k): k.parts[0] for k in keys}
    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        live = [k for k in keys if (st := control.get_stream(conn, PIPELINE, cfg.scope, names[str(k)], reverse.DIRECTION))
                and st["state"] == "running"]
    phases: dict[str, float] = {}
    info: dict[str, Any] = {"mode": "reverse stream drained to a fence, touched rows re-proved"}

    def divergence(k: UnitKey) -> dict[str, Any] | None:
        try:
            return target_divergence(cfg, k)
        except Exception as exc:  # noqa: BLE001 - unproven: counts as diverged (refused, named)
            log.exception("table %s: could not compare PostgreSQL with MySQL", k.label)
            return {"error": f"{type(exc).__name__}: {exc}"}

    # 1. before the pause: the stream close to now, then the last proof (whole tables, writes flowing)
    t = time.monotonic()
    near = reverse.run(cfg, live) if live else {"tables": {}}
    phases["pre_reverse_s"] = round(time.monotonic() - t, 4)
    t = time.monotonic()
    opts = DiffOptions()
    pre: dict[str, list[tuple[Any, ...]] | None] = {}
    for k in live:
        res = diff_pair(pair_spec(cfg, maps[str(k)]), options=opts)
        lists = (res.missing, res.extra, res.changed)
        pre[str(k)] = None if any(len(x) >= opts.max_reported for x in lists) else [tuple(x) for ks in lists for x in ks]
    phases["pre_compare_s"] = round(time.monotonic() - t, 4)
    # 2. the pause
    with pg_connect(cfg.control_conn_id) as conn:
        for n in names.values():
            loc: dict[str, Any] | None = (control.get_route(conn, PIPELINE, cfg.scope, n) or {}).get("location")
            if loc:
                control.set_route(conn, PIPELINE, cfg.scope, n, loc, state="paused", run_id=run_id,
                                  reason="rollback: write pause")
    t_pause = time.monotonic()
    info["paused_at"] = time.time()
    try:
        info["drain"] = drain_pg_writers(cfg, maps)
        phases["pause_drain_s"] = info["drain"]["waited_s"]
        t = time.monotonic()
        touched: dict[str, list[tuple[Any, ...]]] = {}
        drained = reverse.drain(cfg, live, touched=touched) if live else {}
        phases["pause_reverse_s"] = round(time.monotonic() - t, 4)
        # 3. re-proof of what changed since the proof
        t = time.monotonic()
        found: dict[str, Any] = {}
        reproved: dict[str, Any] = {}
        for k in keys:
            tm = maps[str(k)]
            named = pre.get(str(k)) if k in live else None
            if named is None:  # no stream, or more differences than listed: the whole table
                d = divergence(k)
                reproved[k.label] = {"compared": "whole table"}
            else:
                ks = list(dict.fromkeys([*touched.get(str(k), []), *named]))
                kres = diff_keys(pair_spec(cfg, tm), ks) if ks else None
                reproved[k.label] = {"compared": "keys", "rows": len(ks)}
                d = divergence(k) if kres is not None and not kres.equal else None  # the exact report (dead letters)
            if d:
                found[k.label] = d
        phases["pause_reprove_s"] = round(time.monotonic() - t, 4)
        near_by = near.get("tables") or {}
        info.update({
            "drained": {label: {**v, "applied": int(v.get("applied") or 0) + int((near_by.get(label) or {}).get("applied") or 0),
                                "applied_under_pause": int(v.get("applied") or 0)} for label, v in drained.items()},
            "reproved": reproved, "reproved_rows": sum(int(r.get("rows") or 0) for r in reproved.values()),
            "pre_compare": {k.label: "whole" if pre.get(str(k)) is None else len(pre[str(k)] or []) for k in keys},
            "target_writes": found, "phases": phases,
            "pause_to_route_s": round(time.monotonic() - t_pause, 4)})
        if found:
            log.error("rollback %s: PostgreSQL differs from MySQL after the drain: %s", sorted(names.values()), sorted(found))
        yield info
    finally:
        info["paused_s"] = round(time.monotonic() - t_pause, 3)
        with pg_connect(cfg.control_conn_id) as conn:  # not routed back: the writers resume where they were
            for n in names.values():
                now = control.get_route(conn, PIPELINE, cfg.scope, n)
                if now is not None and now["state"] == "paused":
                    control.set_route(conn, PIPELINE, cfg.scope, n, now["location"], run_id=run_id,
                                      reason="rollback: pause ended, not routed back")
        log.info("rollback %s: writes paused %.3f s", sorted(names.values()), info["paused_s"])
