"""Cut over and roll back one tenant: a short write pause, the final catch-up, a last check, the route.

**Write pause** (the documented mechanism): the tenant's routing entry is set ``paused`` — the
application's contract, as with Ghostferry's cutover lock, is to hold the tenant's writes while its
entry says so — and Cutover enforces it in the database too, scoped to the tenant by construction
(:mod:`cutover.tenant_split.pause`): one READ COMMITTED source transaction takes ``SELECT … FOR UPDATE``
record locks on the tenant's rows through an index led by the tenant column (no gap locks, so no other
tenant's insert waits); tables without such an index are not locked and warned about at plan. Inserts
of new rows cannot be held without gap locks: the binlog fence (:func:`_fence`) applies whatever the
tenant still wrote after the final position, before and after the route moves.

While paused: the final catch-up from the binary log to the position taken *inside* the pause (every
write of the tenant committed before is at or before it), then counts and checksums of every table of
the tenant against the source; then the routes are written (``cutover.routes`` + history) and the
pause ends. The paused time is measured and recorded with the switch. Without a binary log (the weaker
mode) nothing can be caught up: the check under the pause must pass as it is, or the cutover of that
tenant fails, nothing routed — run ``tenant_split_build`` for it again first.

**Rollback** routes the tenant back to the shared tables and, with ``drop``, drops its table (and its
database once the last table is gone) and the copy's checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from psycopg import Connection

from cutover import control
from cutover.connections import mysql_connect, pg_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle.model import UnitKey
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


@contextmanager
def write_pause(cfg: TenantSplitConfig, tenant: str, lock_wait_s: int = 10) -> Iterator[dict[str, Any]]:
    """Hold the tenant's writes on the source (routing entry ``paused`` + next-key locks on its rows).

    Yields a dict that receives ``paused_s`` (seconds writes were held) when the pause ends.
    """
    from cutover.mysql_schema import read_database
    from cutover.tenant_split.plan import load_rules

    info: dict[str, Any] = {}
    with pg_connect(cfg.control_conn_id) as conn:
        db = _database(conn, cfg, tenant)
        before = control.get_route(conn, PIPELINE, cfg.scope, tenant)
        control.set_route(conn, PIPELINE, cfg.scope, tenant, (before or {}).get("location") or location(cfg, "shared", db),
                          state="paused", reason="cutover: write pause")
    import MySQLdb

    from cutover.connections import resolve

    lock = MySQLdb.connect(**resolve(cfg.source_conn_id).mysql_kwargs(""))
    t0 = time.monotonic()
    try:
        cur = lock.cursor()
        schema = read_database(cur, cfg.source_database, with_create=False)
        _, rules = load_rules(cfg, schema)
        plan = pause.pause_plan(schema, rules)
        order = [plan[r.source] for r in _parents_first(schema, rules) if r.source in plan]
        cur.execute(f"SET SESSION innodb_lock_wait_timeout = {int(lock_wait_s)}")
        # record locks only: REPEATABLE READ's gap locks reached into the next tenant's key range
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cur.execute("START TRANSACTION")
        t0 = time.monotonic()
        locks = pause.lock_tenant(cur, cfg.source_database, order, tenant)
        warnings = pause.pause_warnings(plan)
        info.update({"database": db, "locked_rows": locks["locked_rows"], "lock_s": round(time.monotonic() - t0, 3),
                     "locks": locks["tables"], "pause_warnings": warnings})
        for w in warnings:
            log.warning("tenant %s: write pause: %s", tenant, w)
        log.info("tenant %s: writes paused (%d rows locked in %.2f s)", tenant, locks["locked_rows"], info["lock_s"])
        yield info
    finally:
        try:
            lock.rollback()
        finally:
            lock.close()
        info["paused_s"] = round(time.monotonic() - t0, 3)
        with pg_connect(cfg.control_conn_id) as conn:
            now = control.get_route(conn, PIPELINE, cfg.scope, tenant)
            if now is not None and now["state"] == "paused":  # not routed: back to active where it was
                control.set_route(conn, PIPELINE, cfg.scope, tenant, now["location"], reason="cutover: pause ended, not routed")
        log.info("tenant %s: writes resumed after %.2f s", tenant, info["paused_s"])


@contextmanager
def tenant_switch(cfg: TenantSplitConfig, keys: list[UnitKey], run_id: str) -> Iterator[dict[str, Any]]:
    """The life cycle's ``around_switch`` for one tenant: pause, final catch-up, check, (route), resume."""
    from cutover.binlog import BinlogUnavailable, current_position
    from cutover.tenant_split import sync
    from cutover.tenant_split.verify import verify_unit

    tenant = keys[0].parts[0]
    with write_pause(cfg, tenant) as info:
        db = info["database"]
        try:
            with mysql_connect(cfg.source_conn_id, database="") as s:
                stop = current_position(s.cursor())
            info["catch_up"] = sync.catch_up(cfg, {tenant: db}, stop_at=stop)
            info["catch_up"]["stopped_at"] = str(stop)
        except (BinlogUnavailable, LookupError) as exc:
            info["catch_up"] = {"unavailable": str(exc)}
            log.warning("tenant %s: no catch-up at cutover (%s): the check below must pass as it is", tenant, exc)
        failures: list[str] = []
        with pg_connect(cfg.control_conn_id) as conn:
            rows = {r[0]: r[1] for r in conn.execute(
                f"""SELECT DISTINCT ON (unit_key) unit_key, detail FROM {control.SCHEMA}.units u
                    WHERE pipeline = %s AND unit_key = ANY(%s) AND detail -> 'plan' ? 'database' ORDER BY unit_key, updated_at DESC""",
                (PIPELINE, [str(k) for k in keys])).fetchall()}
            rows = {k: d["plan"] for k, d in rows.items()}
        checks = {}
        nocheck = replace(cfg, gx_gate=False)  # counts and checksums only: the pause is not for GX
        for k in keys:
            detail = rows.get(str(k))
            if detail is None:
                failures.append(f"{k.label}: no plan detail found")
                continue
            v = verify_unit(nocheck, detail, str(k), run_id=run_id)
            checks[k.parts[1]] = {"rows": v.rows_target, "match": v.passed}
            failures += v.failures
        info["checks"] = checks
        if failures:
            raise CutoverCheckFailed(f"tenant {tenant!r}: the target differs from the source under the write pause, "
                                     "nothing routed: " + "; ".join(failures[:5]))
        if "stopped_at" in info.get("catch_up", {}):  # the fence: what the locks could not hold (new rows)
            info["fence"] = _fence(cfg, tenant, db)
            if info["fence"]["applied"]:
                log.warning("tenant %s: %d change(s) reached the source after the final position although the tenant "
                            "was paused (inserts the locks cannot hold): caught up before the route moved",
                            tenant, info["fence"]["applied"])
        yield info
        if "fence" in info:  # the route has moved: whatever a writer that ignored the pause still sent
            after = _fence(cfg, tenant, db)
            info["fence"]["after_switch"] = after["applied"]
            if after["applied"]:
                log.error("tenant %s: %d change(s) were written to the shared tables after the switch by a writer that "
                          "ignored the paused route: applied to the tenant database", tenant, after["applied"])


def _fence(cfg: TenantSplitConfig, tenant: str, database: str) -> dict[str, Any]:
    """Catch the tenant's tables up to the source's binary-log end now; returns ``{"applied", "position"}``.

    Inside the pause it applies the tenant's writes that the locks cannot hold (an insert of a new row:
    holding it would need gap locks that reach other tenants) and that landed after the final position."""
    from cutover.binlog import current_position
    from cutover.tenant_split import sync

    with mysql_connect(cfg.source_conn_id, database="") as s:
        now = current_position(s.cursor())
    out = sync.catch_up(cfg, {tenant: database}, stop_at=now)
    return {"applied": int(out.get("applied") or 0), "position": str(now)}
