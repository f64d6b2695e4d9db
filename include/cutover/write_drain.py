"""Wait for the transactions in flight that wrote some MySQL tables: the drain of a write pause.

A write pause (a cutover's, a rollback's) first sets the routing entry ``paused``; cooperative writers
then start no new transaction, but one that began before may still be open. :func:`drain_table_writers`
waits for exactly those: ``LOCK TABLES … READ`` on a connection of its own, released at once, waits for
every transaction holding a write metadata lock on one of the tables (a transaction that changed a row
keeps it until it ends) and for no other, so a long transaction elsewhere on the server does not lengthen
the pause. Used by :mod:`cutover.mysql_to_postgres.cutover` (the source tables at a cutover) and
:mod:`cutover.tenant_split.cutover` (a tenant database's tables at a rollback).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from cutover.connections import mysql_connect
from cutover.identifiers import quote_mysql

log = logging.getLogger(__name__)

#: how often the INNODB_TRX fallback looks again (seconds)
POLL_S = 0.005


def drain_table_writers(conn_ids: list[str], tables: list[tuple[str, str]], bound_s: float) -> dict[str, Any]:
    """Wait (at most ``bound_s`` seconds) until the transactions that have written ``tables`` (``(database,
    table)`` pairs) and are still open end.

    Tries ``LOCK TABLES … READ`` on each of ``conn_ids`` in turn (it needs the LOCK TABLES privilege);
    without it, waits for the server's read-write transactions open now (``information_schema.INNODB_TRX``,
    needs PROCESS). Returns ``{"how": "table locks" | "innodb_trx", "waited_s", "via", "timed_out"?, …}``,
    or ``{"skipped": why}`` when no connection may do either. Never raises for a timeout (``timed_out``)."""
    errors = []
    targets = ", ".join(f"{quote_mysql(db)}.{quote_mysql(t)} READ" for db, t in tables)
    conn_ids = [c for c in dict.fromkeys(conn_ids) if c]
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
                return {"how": "table locks", "waited_s": round(waited, 3), "via": conn_id, "timed_out": False}
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
                    time.sleep(POLL_S)
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
