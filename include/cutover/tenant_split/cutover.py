"""Cut over and roll back one tenant: a proof at a fence, a short write pause, a re-proof of what changed, the route.

**The proof comes before the pause** (:func:`tenant_switch`): under the tenant's catch-up lock, a
consistent snapshot of the source at binlog position P0, the tenant's tables caught up to exactly P0,
and full counts and checksums of every table (the cost that grows with the tenant, paid while writes
go on). Then a catch-up close to now, then the pause.

**Write pause** (the documented mechanism, :func:`write_pause`): the tenant's routing entry is set
``paused`` — the application's contract, as with Ghostferry's cutover lock, is to hold the tenant's
writes while its entry says so (:mod:`cutover.samples.live_writer` is such a writer: it re-reads the
route after its transaction's first statement) — and the source transactions in flight are drained
(``information_schema.INNODB_TRX``, bounded by ``pause_drain_s``). Then a fence P1, the catch-up to
P1, and **only the rows changed since P0 are re-proved** (the keys the catch-ups touched; a keyless
or cascaded table whole): the pause follows the writes since P0, not the tenant's size.

``pause_locks: rows`` adds the former enforcement in the database: one READ COMMITTED source
transaction takes ``SELECT … FOR UPDATE`` record locks on the tenant's rows through an index led by
the tenant column (:mod:`cutover.tenant_split.pause`: no gap locks, so no other tenant waits). It also
holds writers that ignore the route (updates, deletes), at a cost that grows with the tenant (1.4 s
for 14k rows, 4.3 s for 278k measured) and with lock waits and deadlocks (1213) for the tenant's own
writers: not the default. Inserts of new rows are never held by locks: the binlog fence
(:func:`_fence_held`) applies whatever the tenant still wrote after P1, before and after the route moves.

Without a binary log (the weaker mode) nothing can be caught up: under the pause the full check must
pass as it is, or the cutover of that tenant fails, nothing routed — run ``tenant_split_build`` for it
again first.

After the route moves, reverse replication (tenant database → shared tables) starts from the target's
binlog position recorded before the switch, when :mod:`cutover.tenant_split.reverse` provides ``start``.

**Rollback** routes the tenant back to the shared tables and, with ``drop``, drops its table (and its
database once the last table is gone) and the copy's checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from psycopg import Connection

from cutover import control
from cutover.connections import mysql_connect, pg_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle.model import UnitKey
from cutover.mysql_schema import text_of
from cutover.tenant_split import pause
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.copy import clear_checkpoints
from cutover.tenant_split.plan import stored_database as _database

log = logging.getLogger(__name__)


class CutoverCheckFailed(RuntimeError):
    """The tenant's tables differ from the source under the write pause: nothing was routed."""


def location(cfg: TenantSplitConfig, backend: str, database: str) -> dict[str, Any]:
    """A routing entry's location: where the tenant's application connections go."""
    if backend == "tenant_db":
        return {"backend": backend, "conn_id": cfg.target_conn_id, "database": database}
    return {"backend": backend, "conn_id": cfg.source_conn_id, "database": cfg.source_database}


def route_unit(conn: Connection[Any], cfg: TenantSplitConfig, key: UnitKey, backend: str) -> dict[str, Any]:
    """Point the unit's tenant at ``backend`` (one routing entry per tenant; its tables move together)."""
    tenant = key.parts[0]
    db = _database(conn, cfg, tenant)
    loc = location(cfg, backend, db)
    cur = control.get_route(conn, PIPELINE, cfg.scope, tenant)
    if cur is None or cur["location"] != loc or cur["state"] != "active":
        control.set_route(conn, PIPELINE, cfg.scope, tenant, loc, reason=f"{key.parts[1]}: readers → {backend}")
    return {"routed": True, "tenant": tenant, "database": db, "backend": backend}


def drop_unit(conn: Connection[Any], cfg: TenantSplitConfig, key: UnitKey) -> dict[str, Any]:
    """Drop the unit's table in the tenant database, its checkpoints, and the database once it is empty."""
    tenant, table = key.parts
    db = _database(conn, cfg, tenant)
    with mysql_connect(cfg.target_conn_id, database="") as t:
        cur = t.cursor()
        cur.execute("SET SESSION foreign_key_checks = 0")
        cur.execute(f"DROP TABLE IF EXISTS {quote_mysql(db)}.{quote_mysql(table)}")
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (cfg.state_database,))
        if cur.fetchone():
            clear_checkpoints(cur, cfg.state_database, str(key), db)
            cur.execute(f"DELETE FROM {quote_mysql(cfg.state_database)}.binlog_positions "
                        "WHERE target_database = %s AND target_table = %s", (db, table))
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'", (db,))
        left = int(cur.fetchone()[0])
        dropped_db = False
        if left == 0:
            cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql(db)}")
            dropped_db = True
    conn.execute(f"DELETE FROM {control.SCHEMA}.object_backups WHERE pipeline = %s AND unit_key = %s", (PIPELINE, str(key)))
    return {"dropped_table": f"{db}.{table}", "dropped_database": db if dropped_db else None}


def known_units(cfg: TenantSplitConfig) -> list[UnitKey]:
    """Every unit of this source database ever planned (rollback of "all")."""
    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        rows = conn.execute(f"SELECT DISTINCT unit_key FROM {control.SCHEMA}.units WHERE pipeline = %s "
                            "AND starts_with(unit_key, %s) ORDER BY 1", (PIPELINE, cfg.scope + ":")).fetchall()
    return [UnitKey.parse(r[0], 2) for r in rows]


def _parents_first(schema: Any, rules: dict[str, Any]) -> list[Any]:
    """The rules in foreign-key order (referenced tables first), the order writers usually lock in,
    so that taking the pause's locks rarely deadlocks with a writer (InnoDB would roll one back)."""
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...] = ()) -> None:
        if name in done or name in path or name not in rules:
            return
        for fk in schema.tables[name].foreign_keys:
            visit(fk.ref_table, (*path, name))
        done.append(name)

    for name in sorted(rules):
        visit(name)
    return [rules[n] for n in done]


#: InnoDB refreshes its ``information_schema.INNODB_TRX`` cache only when it has not been read for 0.1 s:
#: polled faster, it shows the same (ended) transactions for ever, and a read right after another
#: session's may miss a transaction that just began (hence the freshness token in :func:`drain_transactions`)
TRX_CACHE_S = 0.1


def drain_transactions(cfg: TenantSplitConfig, wait_s: float, conn_id: str | None = None) -> dict[str, Any]:
    """Wait (at most ``wait_s`` seconds) for the source's (``conn_id``'s: a rollback drains the tenant
    database's server) read-write transactions open now to end.

    A cooperative writer that read the route before it was paused may have a transaction in flight; once
    that one ends, every write of the tenant is either committed (so before the fence the pause takes
    next) or waits on the route. Read-only transactions are not waited for. Returns ``{"waited_for":
    transactions open at the start, "left": still open at the end, "s": seconds, "fresh": whether
    InnoDB's transaction list was seen refreshed after the pause began, "exceeded": bool}``;
    a transaction still open is warned about: what it writes later lands after the fence and is applied
    by the binlog fence after the switch (:func:`tenant_switch`); ``open`` then describes up to 5 of
    them (thread, start, rows modified, user, database, statement). Transactions that have neither
    written nor locked a row are not waited for either: the cooperative writer re-reads the route after
    its first write, so one that has not written yet sees the pause."""
    t0 = time.monotonic()
    server = conn_id or cfg.source_conn_id
    with mysql_connect(server, database="") as c:
        cur = c.cursor()
        cur.execute("SELECT CONNECTION_ID()")
        me = int(cur.fetchone()[0])
        # a freshness token: InnoDB serves INNODB_TRX from a cache; once this session's own transaction
        # shows in it, the cache was filled after every transaction that began before this one
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        fresh = False
        while True:
            # read-write transactions that wrote or locked something (a cooperative writer re-reads the
            # route after its first write: one that has not written yet will see the pause)
            cur.execute("SELECT trx_id, trx_mysql_thread_id, trx_is_read_only = 0 AND (trx_rows_modified > 0 OR "
                        "trx_lock_structs > 0) FROM information_schema.INNODB_TRX")
            rows = cur.fetchall()
            fresh = any(int(r[1]) == me for r in rows)
            if fresh or time.monotonic() - t0 >= wait_s:
                break
            time.sleep(TRX_CACHE_S + 0.001)
        open_ = {r[0] for r in rows if int(r[1]) != me and r[2]}
        initial = len(open_)
        while open_ and time.monotonic() - t0 < wait_s:
            time.sleep(min(TRX_CACHE_S, max(0.0, wait_s - (time.monotonic() - t0))) + 0.001)
            cur.execute("SELECT trx_id FROM information_schema.INNODB_TRX WHERE trx_id IN ("
                        + ", ".join(["%s"] * len(open_)) + ")", tuple(open_))
            open_ = {r[0] for r in cur.fetchall()}
        c.rollback()
    out: dict[str, Any] = {"waited_for": initial, "left": len(open_), "s": round(time.monotonic() - t0, 4),
                           "exceeded": bool(open_) or not fresh, "fresh": fresh}
    if not fresh:
        log.warning("write pause: INNODB_TRX was not refreshed within %.1f s (another session reads it all the time): "
                    "transactions in flight may have been missed; the binlog fence after the switch applies them", wait_s)
    if open_:
        with mysql_connect(server, database="") as c:
            cur = c.cursor()
            cur.execute("SELECT t.trx_id, t.trx_mysql_thread_id, t.trx_started, t.trx_rows_modified, p.USER, p.DB, "
                        "LEFT(COALESCE(t.trx_query, p.INFO, ''), 120) FROM information_schema.INNODB_TRX t LEFT JOIN "
                        "information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id WHERE t.trx_id IN ("
                        + ", ".join(["%s"] * len(open_)) + ")", tuple(open_))
            out["open"] = [{"trx_id": str(r[0]), "thread": int(r[1]), "started": str(r[2]), "rows_modified": int(r[3]),
                            "user": text_of(r[4] or ""), "db": text_of(r[5] or ""), "query": text_of(r[6] or "")}
                           for r in cur.fetchall()[:5]]
        log.warning("write pause: %d source transaction(s) still open after %.1f s (what they write is applied by the "
                    "binlog fence after the switch)", len(open_), wait_s)
    return out


@contextmanager
def write_pause(cfg: TenantSplitConfig, tenant: str, lock_wait_s: int = 10, locks: str | None = None, *,
                drain_conn_id: str | None = None, reason: str = "cutover",
                drain: Callable[[], dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """Hold the tenant's writes on the source: routing entry ``paused``, a drain of the transactions in
    flight, and with ``locks="rows"`` record locks on every row of the tenant.

    ``drain_conn_id``: the server whose transactions are drained (default the source; a rollback pauses
    the writers of the tenant database: ``cfg.target_conn_id``); ``drain``: called instead of
    :func:`drain_transactions` (e.g. :func:`cutover.write_drain.drain_table_writers` over the tenant's
    tables), its result in ``drain``; ``reason``: what the route history says.

    ``locks``: ``none`` / ``rows`` (default: ``cfg.pause_locks``; see :class:`TenantSplitConfig`).
    ``none`` holds cooperative writers (they wait while the entry says ``paused``) at a cost that does
    not grow with the tenant; ``rows`` also holds writers that ignore the route (updates and deletes of
    existing rows; inserts of new rows cannot be held without gap locks) at a cost that grows with the
    tenant (one locking read per table over all its rows) and with lock waits for its own writers.

    Yields a dict with ``database``, ``pause_locks``, ``paused_at`` (``time.time()``), ``drain``
    (:func:`drain_transactions`), ``locked_rows`` / ``lock_s`` / ``locks`` / ``pause_warnings`` (rows
    mode; 0 / {} otherwise); it receives ``paused_s`` (seconds writes were held) when the pause ends.
    """
    from cutover.mysql_schema import read_database
    from cutover.tenant_split.plan import load_rules

    mode = cfg.pause_locks if locks is None else locks
    if mode not in ("none", "rows"):
        raise ValueError(f"pause locks must be 'none' or 'rows', not {mode!r}")
    info: dict[str, Any] = {"pause_locks": mode, "locked_rows": 0, "lock_s": 0.0, "locks": {}, "pause_warnings": []}
    with pg_connect(cfg.control_conn_id) as conn:
        db = _database(conn, cfg, tenant)
        before = control.get_route(conn, PIPELINE, cfg.scope, tenant)
        control.set_route(conn, PIPELINE, cfg.scope, tenant, (before or {}).get("location") or location(cfg, "shared", db),
                          state="paused", reason=f"{reason}: write pause")
    info["database"] = db
    info["paused_at"] = time.time()
    t0 = time.monotonic()
    lock: Any = None
    try:
        info["drain"] = drain() if drain is not None else drain_transactions(cfg, cfg.pause_drain_s, drain_conn_id)
        if mode == "rows":
            import MySQLdb

            from cutover.connections import resolve

            lock = MySQLdb.connect(**resolve(cfg.source_conn_id).mysql_kwargs(""))
            cur = lock.cursor()
            schema = read_database(cur, cfg.source_database, with_create=False)
            _, rules = load_rules(cfg, schema)
            plan = pause.pause_plan(schema, rules)
            order = [plan[r.source] for r in _parents_first(schema, rules) if r.source in plan]
            cur.execute(f"SET SESSION innodb_lock_wait_timeout = {int(lock_wait_s)}")
            # record locks only: REPEATABLE READ's gap locks reached into the next tenant's key range
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute("START TRANSACTION")
            t1 = time.monotonic()
            locks_out = pause.lock_tenant(cur, cfg.source_database, order, tenant)
            warnings = pause.pause_warnings(plan)
            info.update({"locked_rows": locks_out["locked_rows"], "lock_s": round(time.monotonic() - t1, 3),
                         "locks": locks_out["tables"], "pause_warnings": warnings})
            for w in warnings:
                log.warning("tenant %s: write pause: %s", tenant, w)
        log.info("tenant %s: writes paused (locks %s, %d rows locked, drained %s transaction(s) in %.3f s)", tenant, mode,
                 info["locked_rows"], info["drain"].get("waited_for", "the"),
                 float(info["drain"].get("s", info["drain"].get("waited_s")) or 0.0))
        yield info
    finally:
        if lock is not None:
            try:
                lock.rollback()
            finally:
                lock.close()
        info["paused_s"] = round(time.monotonic() - t0, 3)
        with pg_connect(cfg.control_conn_id) as conn:
            now = control.get_route(conn, PIPELINE, cfg.scope, tenant)
            if now is not None and now["state"] == "paused":  # not routed: back to active where it was
                control.set_route(conn, PIPELINE, cfg.scope, tenant, now["location"], reason=f"{reason}: pause ended, not routed")
        log.info("tenant %s: writes resumed after %.2f s", tenant, info["paused_s"])


#: the catch-up before the pause repeats (at most NEAR_ROUNDS times) until a round takes at most NEAR_ROUND_S seconds
NEAR_ROUND_S = 0.1
NEAR_ROUNDS = 4


def _plan_details(keys: list[UnitKey], cfg: TenantSplitConfig) -> dict[str, dict[str, Any]]:
    """Unit key → its plan detail (``database``, ``table``, ``tenant``, ``sources``), newest run's."""
    with pg_connect(cfg.control_conn_id) as conn:
        rows = {r[0]: r[1] for r in conn.execute(
            f"""SELECT DISTINCT ON (unit_key) unit_key, detail FROM {control.SCHEMA}.units u
                WHERE pipeline = %s AND unit_key = ANY(%s) AND detail -> 'plan' ? 'database' ORDER BY unit_key, updated_at DESC""",
            (PIPELINE, [str(k) for k in keys])).fetchall()}
    return {k: d["plan"] for k, d in rows.items()}


def _merge_touched(into: dict[str, set[tuple[Any, ...]] | None], tenant_out: dict[str, Any] | None) -> None:
    """Add a catch-up's ``touched`` (target table → keys or None) of one tenant to ``into``."""
    for table, keys in ((tenant_out or {}).get("touched") or {}).items():
        if keys is None or (table in into and into[table] is None):
            into[table] = None
        else:
            got = into.setdefault(table, set())
            assert got is not None
            got |= {tuple(k) for k in keys}


def _fail(tenant: str, failures: list[str], when: str) -> CutoverCheckFailed:
    return CutoverCheckFailed(f"tenant {tenant!r}: the target differs from the source {when}, nothing routed: "
                              + "; ".join(failures[:5]))


@contextmanager
def tenant_switch(cfg: TenantSplitConfig, keys: list[UnitKey], run_id: str) -> Iterator[dict[str, Any]]:
    """The life cycle's ``around_switch`` for one tenant: prove, catch up, pause, re-prove what changed, (route), resume.

    With a binary log (the default):

    1. **proof at a fence P0, before the pause** — under the tenant's catch-up lock a consistent snapshot
       of the source (position P0), the tenant's tables caught up to exactly P0, full counts and
       checksums of every unit (source read in the snapshot); a difference fails the cutover before
       anything is paused or routed;
    2. **catch-up close to now** (still no pause), under the lock held from here to the end;
    3. **the pause** (:func:`write_pause`): route ``paused``, in-flight source transactions drained
       (bounded by ``cfg.pause_drain_s``), a fence P1 (a snapshot), the tables caught up to P1, and
       **only the rows changed since P0 re-proved** — the keys the catch-ups of 2 and 3 touched, each
       row's canonical hash compared on both sides (source in the P1 snapshot); a table whose changed
       rows cannot be named (no key, a cascade) is checksummed whole, with a note. The pause's length
       follows the writes since P0, not the tenant's size;
    4. the binlog fence: whatever reached the source after P1 (a writer that ignored the route) is
       applied; ``reverse_start`` records the target's binlog position (and P1) for reverse
       replication; the life cycle moves the route when this yields; after it, the fence again (a
       writer that still wrote the shared tables), and :func:`cutover.tenant_split.reverse.start` when
       that module has it.

    What it yields (the switch's evidence): ``p0``, ``p1``, ``paused_s``, ``pause_to_route_s`` (pause
    start → yield), ``drain``, ``reproved`` (per table: mode, rows, note), ``reproved_rows``, ``phases``
    (seconds per phase), ``checks`` (the P0 proof per table), ``catch_up`` (rows applied in all),
    ``fence`` (applied before / after the switch), ``reverse_start``.

    Without a binary log (the weaker mode): nothing can be caught up; under the pause the full check
    must pass as it is, or the cutover of that tenant fails, nothing routed.
    """
    from cutover.binlog import BinlogUnavailable, consistent_snapshot, current_position
    from cutover.tenant_split import sync
    from cutover.tenant_split.verify import reprove_rows, verify_unit

    tenant = keys[0].parts[0]
    nocheck = replace(cfg, gx_gate=False)  # counts and checksums only: the switch is not for GX
    details = _plan_details(keys, cfg)
    missing = [f"{k.label}: no plan detail found" for k in keys if str(k) not in details]
    if missing:
        raise _fail(tenant, missing, "(no plan)")
    with pg_connect(cfg.control_conn_id) as conn:
        db = _database(conn, cfg, tenant)
    try:
        with mysql_connect(cfg.source_conn_id, database="") as s:
            current_position(s.cursor())
        has_binlog = True
    except BinlogUnavailable as exc:
        has_binlog = False
        log.warning("tenant %s: no binary log (%s): the full check under the pause must pass as it is", tenant, exc)
    checks: dict[str, Any] = {}
    failures: list[str] = []
    if not has_binlog:
        with write_pause(cfg, tenant) as info:
            info["catch_up"] = {"unavailable": True}
            for k in keys:
                v = verify_unit(nocheck, details[str(k)], str(k), run_id=run_id)
                checks[k.parts[1]] = {"rows": v.rows_target, "match": v.passed}
                failures += v.failures
            info["checks"] = checks
            if failures:
                raise _fail(tenant, failures, "under the write pause")
            yield info
        return

    phases: dict[str, float] = {}
    applied = 0
    # 1. the heavy proof, at P0, before the pause
    t = time.monotonic()
    with sync.catch_up_lock(cfg, [db]), mysql_connect(cfg.source_conn_id, database="") as s:
        scur = s.cursor()
        try:
            p0 = consistent_snapshot(scur)
            c0 = sync.catch_up_held(cfg, {tenant: db}, stop_at=p0)
            applied += int(c0.get("applied") or 0)
            for k in keys:
                v = verify_unit(nocheck, details[str(k)], str(k), run_id=run_id, source_cursor=scur)
                checks[k.parts[1]] = {"rows": v.rows_target, "match": v.passed}
                failures += v.failures
        finally:
            s.rollback()
    phases["proof_p0_s"] = round(time.monotonic() - t, 4)
    if failures:
        raise _fail(tenant, failures, f"at the fence {p0}")
    touched: dict[str, set[tuple[Any, ...]] | None] = {}
    started_reverse: dict[str, Any] | None = None
    with sync.catch_up_lock(cfg, [db]):
        # 2. close to now, still writing
        # 2. close to now, still writing: rounds until one is short (what the pause then reads is what
        # arrived during that round)
        t = time.monotonic()
        near_applied, rounds = 0, 0
        while True:
            r0 = time.monotonic()
            with mysql_connect(cfg.source_conn_id, database="") as s:
                near = current_position(s.cursor())
            c1 = sync.catch_up_held(cfg, {tenant: db}, stop_at=near)
            near_applied += int(c1.get("applied") or 0)
            _merge_touched(touched, (c1.get("tenants") or {}).get(tenant))
            rounds += 1
            if time.monotonic() - r0 <= NEAR_ROUND_S or rounds >= NEAR_ROUNDS:
                break
        applied += near_applied
        phases["catch_up_s"] = round(time.monotonic() - t, 4)
        phases["catch_up_rounds"] = rounds
        # 3. the pause
        with write_pause(cfg, tenant) as info:
            t_pause = time.monotonic()
            phases["pause_drain_s"] = info["drain"]["s"]
            phases["pause_locks_s"] = info["lock_s"]
            info.update({"p0": str(p0), "checks": checks})
            with mysql_connect(cfg.source_conn_id, database="") as s:
                scur = s.cursor()
                try:
                    t = time.monotonic()
                    p1 = consistent_snapshot(scur)
                    c2 = sync.catch_up_held(cfg, {tenant: db}, stop_at=p1)
                    applied += int(c2.get("applied") or 0)
                    _merge_touched(touched, (c2.get("tenants") or {}).get(tenant))
                    phases["pause_catch_up_s"] = round(time.monotonic() - t, 4)
                    t = time.monotonic()
                    reproved: dict[str, Any] = {}
                    for k in keys:
                        table = details[str(k)]["table"]
                        tk = touched.get(table, set())
                        r = reprove_rows(nocheck, details[str(k)], str(k), None if tk is None else sorted(tk, key=repr), scur)
                        reproved[k.parts[1]] = {kk: vv for kk, vv in r.items() if kk != "failures"}
                        failures += r["failures"]
                        if r.get("note"):
                            log.info("tenant %s: %s", tenant, r["note"])
                    phases["pause_reprove_s"] = round(time.monotonic() - t, 4)
                finally:
                    s.rollback()
            info.update({"p1": str(p1), "reproved": reproved,
                         "reproved_rows": sum(int(r.get("rows") or 0) for r in reproved.values()),
                         "catch_up": {"applied": applied, "stopped_at": str(p1), "p0": int(c0.get("applied") or 0),
                                      "near": near_applied, "p1": int(c2.get("applied") or 0)},
                         "phases": phases})
            if failures:
                raise _fail(tenant, failures, f"at the fence {p1} under the write pause")
            # 4. the binlog fence: what a writer that ignored the paused route wrote after P1
            t = time.monotonic()
            info["fence"] = _fence_held(cfg, tenant, db)
            if info["fence"]["applied"]:
                log.warning("tenant %s: %d change(s) reached the source after the fence %s although the tenant was "
                            "paused (a writer that ignores the route): caught up before the route moved",
                            tenant, info["fence"]["applied"], p1)
            with mysql_connect(cfg.target_conn_id, database="") as tc:
                target_pos = current_position(tc.cursor())
            info["reverse_start"] = {"target": str(target_pos), "source": str(p1)}
            phases["pause_fence_s"] = round(time.monotonic() - t, 4)
            info["pause_to_route_s"] = round(time.monotonic() - t_pause + info["drain"]["s"] + info["lock_s"], 4)
            yield info
            # the route has moved: whatever a writer that ignored the pause still sent to the shared tables
            after = _fence_held(cfg, tenant, db)
            info["fence"]["after_switch"] = after["applied"]
            if after["applied"]:
                log.error("tenant %s: %d change(s) were written to the shared tables after the switch by a writer that "
                          "ignored the paused route: applied to the tenant database", tenant, after["applied"])
            started_reverse = {"target_position": target_pos, "source_position": p1}
    if started_reverse is not None:
        info["reverse"] = _start_reverse(cfg, tenant, db, run_id, **started_reverse)


def _start_reverse(cfg: TenantSplitConfig, tenant: str, database: str, run_id: str, *, target_position: Any,
                   source_position: Any) -> dict[str, Any]:
    """Start reverse replication (tenant database → shared tables) when :mod:`cutover.tenant_split.reverse`
    has ``start``; its absence or failure is logged, never fails the switch (the route has moved)."""
    try:
        from cutover.tenant_split import reverse  # type: ignore[attr-defined, unused-ignore]
    except ImportError as exc:
        log.warning("tenant %s: no reverse replication module (%s): not started", tenant, exc)
        return {"started": False, "reason": f"no module: {exc}"}
    start = getattr(reverse, "start", None)
    if start is None:
        log.warning("tenant %s: cutover.tenant_split.reverse has no start(): reverse replication not started", tenant)
        return {"started": False, "reason": "reverse.start missing"}
    try:
        out = start(cfg, tenant, database, target_position=target_position, source_position=source_position, run_id=run_id)
    except Exception as exc:  # noqa: BLE001 - the route has moved; the failure is reported, not raised
        log.error("tenant %s: reverse replication did not start: %s", tenant, exc)
        return {"started": False, "reason": str(exc)}
    log.info("tenant %s: reverse replication started from target %s", tenant, target_position)
    return {"started": True, "result": out if isinstance(out, dict) else str(out)}


def _fence_held(cfg: TenantSplitConfig, tenant: str, database: str) -> dict[str, Any]:
    """Catch the tenant's tables up to the source's binary-log end now, for a caller holding the tenant's
    catch-up lock; returns ``{"applied", "position"}``. It applies what the pause could not hold (a writer
    that ignores the route; an insert the row locks cannot hold) and that landed after the fence."""
    from cutover.binlog import current_position
    from cutover.tenant_split import sync

    with mysql_connect(cfg.source_conn_id, database="") as s:
        now = current_position(s.cursor())
    out = sync.catch_up_held(cfg, {tenant: database}, stop_at=now)
    return {"applied": int(out.get("applied") or 0), "position": str(now)}


def _cascade_children(cfg: TenantSplitConfig) -> dict[str, set[str]]:
    """Target table → the target tables whose rows a delete or key change of its rows cascades to on the
    source (``ON DELETE`` / ``ON UPDATE`` ``CASCADE`` / ``SET NULL`` / ``SET DEFAULT``): a cascade is not in
    the binary log, so those rows cannot be named by key."""
    from cutover.tenant_split import reverse
    from cutover.tenant_split.sync import source_rules

    schema, rules = source_rules(cfg)
    routes = reverse.reverse_routes(cfg, (schema, rules))
    target_of = {r.source: t for t, r in routes.by_target.items()}
    out: dict[str, set[str]] = {}
    acting = {"CASCADE", "SET NULL", "SET DEFAULT"}
    for name, table in schema.tables.items():
        for fk in table.foreign_keys:
            if {fk.on_delete.upper(), fk.on_update.upper()} & acting and fk.ref_table in target_of and name in target_of:
                out.setdefault(target_of[fk.ref_table], set()).add(target_of[name])
    return out


#: a rollback's reverse rounds before its pause repeat until one applies at most ROLLBACK_NEAR_ROWS rows or takes
#: at most NEAR_ROUND_S seconds (at most ROLLBACK_NEAR_ROUNDS rounds): what the pause then drains is what the
#: writers wrote during the last round
ROLLBACK_NEAR_ROWS = 100
ROLLBACK_NEAR_ROUNDS = 12


def _reverse_round(cfg: TenantSplitConfig, tenant: str, run_id: str) -> tuple[int, Any]:
    """One run of the tenant's reverse stream up to the target's log end now (one reader for the stream
    and the stray scan where both sides are one server), for a caller holding its reverse lock: (rows
    applied, the :class:`cutover.tenant_split.reverse.Stream` run, None if none)."""
    from cutover.tenant_split import reverse

    ran: dict[str, Any] = {}
    out = reverse.run(cfg, [tenant], run_id=run_id, held=True, streams_out=ran)
    return int((out.get("tenants") or {}).get(tenant, {}).get("applied") or 0), ran.get(tenant)


@contextmanager
def tenant_rollback(cfg: TenantSplitConfig, keys: list[UnitKey], run_id: str) -> Iterator[dict[str, Any]]:
    """The life cycle's ``around_rollback`` for one tenant: compare, pause its writers on its database, drain
    the reverse stream to a fence, re-prove what it touched, (route back), resume.

    With a live reverse stream (:mod:`cutover.tenant_split.reverse`), under the tenant's reverse lock (no
    other reverse run moves the shared tables meanwhile):

    1. **before the pause** (writes flowing on the tenant database): the stream run up to the target's
       position now, then every unit compared whole with its shared table (the consistency engine,
       :func:`cutover.tenant_split.divergence.keyed_pair`): the keys that differ are the writes still in
       flight (and any real difference). This is the last proof; its cost grows with the tenant, paid
       while the writers write; then the stream run again, in rounds until one is short
       (:data:`ROLLBACK_NEAR_ROWS`, :data:`NEAR_ROUND_S`, at most :data:`ROLLBACK_NEAR_ROUNDS`): the keys
       these rounds apply changed after the proof and are re-proved in 3;
    2. **the pause** (:func:`write_pause` on the *tenant database*): route ``paused`` at its database, the
       transactions in flight that wrote its tables drained (:func:`cutover.write_drain.drain_table_writers`:
       ``LOCK TABLES … READ`` taken and released, bounded by ``cfg.pause_drain_s``), then the stream drained
       to the target's log end at that moment (the fence, :func:`cutover.tenant_split.reverse.drain`), the
       tenant's forward catch-up positions moved past it;
    3. **re-proof of only what changed since the proof**: the keys the later rounds and the drain applied
       and the keys 1 found differing, each row's canonical hash on both sides (:func:`cutover.tenant_split.verify.reprove_rows`);
       a keyless or merged table, a table a cascade reached, or one with more differing keys than the
       engine lists, is checksummed whole. Every row not re-proved was equal at 1 and unchanged since on
       both sides (the target's changes after 1 are in the drain; the shared rows were written by nobody
       but the stream, under its lock) — so the tenant's shared rows equal its database at the fence;
    4. the life cycle routes the tenant back to the shared tables (its writers resume there) unless
       ``target_writes`` names a unit that differs; when it does not route, the pause ends on the tenant
       database, active.

    Without a live stream (never started, stopped by hand) nothing names what changed: under the pause each
    unit is compared whole (:func:`cutover.tenant_split.divergence.target_divergence`), so its writes are
    found and the rollback refuses.

    Yields (the group's evidence): ``paused_s`` (filled at the end), ``paused_at``, ``drain`` (the in-flight
    drain: ``how``, ``waited_s``, ``timed_out``), ``fence`` (the target position drained to), ``drained`` (unit label → rows the stream
    applied: ``applied`` in all, ``applied_under_pause``, ``position``), ``reproved`` (unit label → mode,
    rows), ``reproved_rows``, ``pre_compare`` (unit label → keys differing before the pause, or
    ``"whole"``), ``phases`` (seconds), ``target_writes`` (unit label → the divergence report of a unit
    that differs; empty: none), ``mode``.
    """
    from cutover.consistency.diff import DiffOptions, diff_pair
    from cutover.tenant_split import reverse
    from cutover.tenant_split.divergence import keyed_pair, target_divergence
    from cutover.tenant_split.verify import reprove_rows
    from cutover.write_drain import drain_table_writers

    tenant = keys[0].parts[0]
    details = _plan_details(keys, cfg)
    missing = [f"{k.label}: no plan detail found" for k in keys if str(k) not in details]
    if missing:
        raise RuntimeError(f"tenant {tenant!r}: cannot roll back without the units' plans: {missing}")

    def divergence(k: UnitKey, why: str | None = None) -> dict[str, Any] | None:
        try:
            return target_divergence(cfg, k)
        except Exception as exc:  # noqa: BLE001 - unproven: counts as diverged (refused, named)
            log.exception("tenant %s: could not compare %s with the shared tables", tenant, k.label)
            return {"error": f"{type(exc).__name__}: {exc}" + (f" ({why})" if why else "")}

    stream = reverse.streams(cfg, [tenant]).get(tenant)
    if stream is None:
        with write_pause(cfg, tenant, locks="none", drain_conn_id=cfg.target_conn_id, reason="rollback") as info:
            t = time.monotonic()
            whole = {k.label: d for k in keys if (d := divergence(k))}
            info.update({"mode": "no live reverse stream: each unit compared whole under the pause", "drained": {},
                         "target_writes": whole, "phases": {"pause_compare_s": round(time.monotonic() - t, 4)}})
            yield info
        return

    phases: dict[str, float] = {}
    cascades = _cascade_children(cfg)
    db = details[str(keys[0])]["database"]
    tables = [(db, details[str(k)]["table"]) for k in keys]
    with reverse.reverse_lock(cfg, [tenant]):
        # 1. before the pause: the stream close to now, then the last proof (whole units, writes flowing)
        t = time.monotonic()
        near_applied = _reverse_round(cfg, tenant, run_id)[0]
        phases["pre_reverse_s"] = round(time.monotonic() - t, 4)
        t = time.monotonic()
        opts = DiffOptions()
        pre: dict[str, list[tuple[Any, ...]] | None] = {}
        for k in keys:
            pair = keyed_pair(cfg, details[str(k)])
            if pair is None:
                pre[str(k)] = None
                continue
            res = diff_pair(pair, options=opts)
            lists = (res.missing, res.extra, res.changed)
            pre[str(k)] = None if any(len(x) >= opts.max_reported for x in lists) else [tuple(x) for ks in lists for x in ks]
        phases["pre_compare_s"] = round(time.monotonic() - t, 4)
        # 1b. close to now again, rounds until one is short: what they apply changed after the proof
        t = time.monotonic()
        touched: dict[str, set[tuple[Any, ...]] | None] = {}
        removed: set[str] = set()
        rounds = 0
        while True:
            r0 = time.monotonic()
            n, ran = _reverse_round(cfg, tenant, run_id)
            near_applied += n
            if ran is not None:
                _merge_touched(touched, {"touched": ran.touched})
                removed |= ran.removed
            rounds += 1
            if time.monotonic() - r0 <= NEAR_ROUND_S or n <= ROLLBACK_NEAR_ROWS or rounds >= ROLLBACK_NEAR_ROUNDS:
                break
        phases["near_reverse_s"] = round(time.monotonic() - t, 4)
        phases["near_rounds"] = rounds
        # 2. the pause, on the tenant database
        with write_pause(cfg, tenant, locks="none", reason="rollback",
                         drain=lambda: drain_table_writers([cfg.target_conn_id], tables, cfg.pause_drain_s)) as info:
            t_pause = time.monotonic()
            phases["pause_drain_s"] = float(info["drain"].get("waited_s") or 0.0)
            t = time.monotonic()
            last: dict[str, reverse.Stream] = {}
            out = reverse.drain(cfg, keys, held=True, streams_out=last)
            phases["pause_reverse_s"] = round(time.monotonic() - t, 4)
            if (done := last.get(tenant)) is not None:
                _merge_touched(touched, {"touched": done.touched})
                removed |= done.removed
            for parent in removed:
                for child in cascades.get(parent, ()):
                    touched[child] = None
            # 3. re-proof of what changed since the proof: the drain's keys and the keys that differed at 1
            t = time.monotonic()
            reproved: dict[str, Any] = {}
            failing: dict[str, list[str]] = {}
            with mysql_connect(cfg.source_conn_id, database="") as s:
                scur = s.cursor()
                try:
                    for k in keys:
                        table = details[str(k)]["table"]
                        got = touched.get(table, set())
                        before = pre[str(k)]
                        named = None if got is None or before is None else sorted({*got, *before}, key=repr)
                        r = reprove_rows(replace(cfg, gx_gate=False), details[str(k)], str(k), named, scur)
                        reproved[k.label] = {kk: vv for kk, vv in r.items() if kk != "failures"}
                        if r["failures"]:
                            failing[k.label] = r["failures"]
                finally:
                    s.rollback()
            phases["pause_reprove_s"] = round(time.monotonic() - t, 4)
            found: dict[str, Any] = {}
            for k in keys:  # a difference: the exact report (rows in dead letters are not a loss)
                if k.label in failing and (d := divergence(k, "; ".join(failing[k.label])[:500])):
                    found[k.label] = d
            info.update({
                "mode": "reverse stream drained to a fence, touched rows re-proved",
                "fence": next((str(v.get("position")) for v in out.values() if v.get("position")), None),
                "drained": {label: {**v, "applied": int(v.get("applied") or 0) + near_applied,
                                    "applied_under_pause": int(v.get("applied") or 0)} for label, v in out.items()},
                "reproved": reproved, "reproved_rows": sum(int(r.get("rows") or 0) for r in reproved.values()),
                "pre_compare": {k.label: "whole" if pre[str(k)] is None else len(pre[str(k)] or []) for k in keys},
                "target_writes": found, "phases": phases})
            info["pause_to_route_s"] = round(time.monotonic() - t_pause + phases["pause_drain_s"], 4)
            if found:
                log.error("tenant %s: the tenant database differs from the shared tables after the drain: %s", tenant,
                          sorted(found))
            yield info
