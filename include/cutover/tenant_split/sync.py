"""Catch-up: the tenants' changes made during and after the copy, from the source's binary log.

One reader (:func:`cutover.binlog.read_changes`, ROW images) serves every tenant of a sync: it starts
at the lowest stored position of the tenants and hands each committed transaction's row changes to
the tenants they belong to (the tenant column's value in the before or after image; shared tables
that are copied go to every tenant). The changes of whole source transactions (a commit group) are
applied in one target transaction **with the new positions of the tables they touched** (``cutover_state.binlog_positions``,
one per tenant database and table), so a killed catch-up resumes exactly: no change applied twice,
none skipped. A table takes part once its copy is done (until then the copy reads the live rows).

How a change is applied (every column set, so ``ON UPDATE CURRENT_TIMESTAMP`` columns keep the
source's value):

* keyed tables — changes are **netted per key** over a commit group (several source transactions,
  :data:`COMMIT_ROWS` / :data:`COMMIT_SECONDS`), per tenant and target table: the last change of a key
  wins, a key change is a delete of the old key and an upsert of the new one (:func:`buffer_change`).
  A flush (:func:`flush`, before each commit) deletes the deleted keys with ``DELETE … WHERE (key) IN
  (…)`` and writes the rows' last after images as multi-row ``INSERT … ON DUPLICATE KEY UPDATE``. A
  table with another unique key deletes every buffered key first and writes the images with
  ``REPLACE`` (an upsert meeting another row's unique value would update that row). The target session
  runs with ``foreign_key_checks = 0`` and triggers set aside, so these deletes cascade nowhere and fire
  nothing. Replaying a change the copy already saw is harmless: the last change of each row wins, as
  on the source;
* tables without a key — an insert inserts, an update or delete touches one row equal to the before
  image (``<=>``, ``LIMIT 1``); changes at or before the position of the table's copy snapshot are
  skipped (the copy already holds them); they are applied at once and in log order (only that table's own rows decide what they do: no netting);
* ``ON DELETE CASCADE`` — the servers do not log cascaded deletes; the catch-up deletes the children
  of a deleted parent itself (recursively), as the source did, after flushing the tenant's netted
  changes (the children it deletes are the rows the target holds at that point of the log).

After each commit the tenants it wrote report their forward stream (``control.report_stream``: the
position, lag = now − the commit time of the group's newest source transaction, rows applied): one
statement per tenant per commit group.

Triggers are set aside on the tenant's tables while changes are applied (the source's triggers already
made their changes, which are in the log) and restored and proven equal afterwards.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cutover.connections import mysql_connect, pg_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle.model import UnitKey
from cutover.mysql_schema import read_database, text_of
from cutover.tenant_split import target
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.copy import unit_hash

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8192)
def _q(name: str) -> str:
    """A quoted name for a statement **with parameters** (MySQLdb %-formats it: a ``%`` in the name is
    doubled). Cached: a catch-up quotes the same few names for every change."""
    return quote_mysql(name).replace("%", "%%")


@dataclass
class TableRoute:
    """Where one source table's changes go in a tenant database."""

    source: str
    target: str
    tenant_column: str | None
    key: tuple[str, ...]
    columns: dict[str, str]  # lower-case source column → target column
    snapshot: Any = None  # BinlogPosition of a keyless table's copy snapshot
    position: Any = None  # BinlogPosition this target table is caught up to
    cascades: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)  # (child, cols, parent cols)
    #: (parent source table, this table's FK columns, the parent's columns) of its ON DELETE CASCADE keys
    parents: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    #: the table has a unique key besides ``key``: an upsert could hit another row's unique value and
    #: update the wrong row, so its batched apply deletes the keys first and inserts (see :func:`_flush`)
    other_unique: bool = False


@dataclass
class TenantSync:
    """One tenant's share of a catch-up."""

    tenant: str
    database: str
    routes: dict[str, TableRoute]
    applied: int = 0
    transactions: int = 0
    #: parent source table → (child route, FK columns, parent columns) of ON DELETE CASCADE keys
    children: dict[str, list[tuple[TableRoute, tuple[str, ...], tuple[str, ...]]]] = field(default_factory=dict)
    #: target table → the keys (copy-key values, in ``route.key`` order) of the rows this catch-up
    #: changed, or None for a table whose changes cannot be named by key (no key, or a cascade)
    touched: dict[str, set[tuple[Any, ...]] | None] = field(default_factory=dict)
    #: rows applied since the stream was last reported (:func:`_report`)
    unreported: int = 0


def _touch(ts: TenantSync, route: TableRoute, change: Any) -> None:
    """Remember which of the route's rows ``change`` reached (see :attr:`TenantSync.touched`)."""
    if not route.key:
        ts.touched[route.target] = None
        return
    keys = ts.touched.setdefault(route.target, set())
    if keys is None:
        return
    for image in (change.before, change.after):
        if image is not None and _belongs(route, image, ts.tenant):
            low = {k.lower(): v for k, v in image.items()}
            keys.add(tuple(low.get(c.lower()) for c in route.key))



def source_rules(cfg: TenantSplitConfig) -> tuple[Any, dict[str, Any]]:
    """The source schema (no DDL text) and the mapping's rules, read once per catch-up."""
    from cutover.tenant_split.plan import load_rules

    with mysql_connect(cfg.source_conn_id, database="") as sconn:
        schema = read_database(sconn.cursor(), cfg.source_database, with_create=False)
    _, rules = load_rules(cfg, schema)
    return schema, rules


def routes_for(cfg: TenantSplitConfig, tenants: dict[str, str],
               source: tuple[Any, dict[str, Any]] | None = None) -> dict[str, dict[str, TableRoute]]:
    """tenant → its :class:`TableRoute` per source table, for the tables whose copy is done and that have
    a catch-up position. The target tables have the shape of their owner source table (the plan created
    them from its DDL), so nothing is read per tenant but two queries over the state database in all."""
    from cutover.binlog import BinlogPosition

    schema, rules = source or source_rules(cfg)
    kept = {n: r for n, r in rules.items()
            if r.action == "copy" or (r.action == "shared" and cfg.shared == "copy")}
    target_of = {n: r.target for n, r in kept.items()}
    owner_of = {r.target: n for n, r in kept.items() if not r.merged}
    sources_of: dict[str, list[str]] = {}
    for n, r in kept.items():
        sources_of.setdefault(r.target, []).append(n)
    keys = {(t, n): str(UnitKey(cfg.scope, (t, r.target))) for t in tenants for n, r in kept.items()}
    with mysql_connect(cfg.target_conn_id, database="") as tconn:
        tcur = tconn.cursor()
        state = quote_mysql(cfg.state_database)
        hashes = sorted({unit_hash(k) for k in keys.values()})
        done: dict[tuple[str, str, str], Any] = {}
        for i in range(0, len(hashes), 1000):
            part = hashes[i:i + 1000]
            tcur.execute(f"SELECT unit_hash, source_table, target_database, done, snapshot_position FROM {state}.copy_checkpoints "
                         f"WHERE unit_hash IN ({', '.join(['%s'] * len(part))})", part)
            for h, table, tdb, is_done, snap in tcur.fetchall():  # a checkpoint counts for its own target only
                if is_done:
                    done[(text_of(h), text_of(table), text_of(tdb))] = snap
        dbs = sorted(set(tenants.values()))
        tcur.execute(f"SELECT target_database, target_table, file, pos FROM {state}.binlog_positions "
                     f"WHERE target_database IN ({', '.join(['%s'] * len(dbs))})", dbs)
        positions = {(text_of(d), text_of(t)): BinlogPosition(text_of(f), int(p)) for d, t, f, p in tcur.fetchall()}
    out: dict[str, dict[str, TableRoute]] = {}
    for tenant, database in tenants.items():
        routes: dict[str, TableRoute] = {}
        for n, r in kept.items():
            snap = done.get((unit_hash(keys[(tenant, n)]), n, database), False)
            pos = positions.get((database, r.target))
            if snap is False or pos is None:
                continue  # copy not done (the copy reads the live rows; it joins later) or no log start
            src, owner = schema.tables[n], schema.tables[owner_of.get(r.target, n)]
            ocols = {c.lower(): c for c in owner.column_names}
            key = src.copy_key()
            routes[n] = TableRoute(n, r.target, r.tenant_column if r.action == "copy" else None, key,
                                   {c.name.lower(): ocols[c.name.lower()] for c in src.columns  # generated: recomputed
                                    if c.name.lower() in ocols and c.generation is None},
                                   snapshot=BinlogPosition.parse(text_of(snap)) if snap else None, position=pos,
                                   other_unique=any(i.kind in ("primary", "unique") and tuple(c.lower() for c in i.columns)
                                                    != tuple(c.lower() for c in key) for i in owner.indexes + src.indexes))
        for child_name, child in schema.tables.items():  # ON DELETE CASCADE keys, in target names
            if child_name not in target_of:
                continue
            for fk in child.foreign_keys:
                if fk.on_delete.upper() != "CASCADE" or fk.ref_table not in target_of:
                    continue
                child_target, parent_target = target_of[child_name], target_of[fk.ref_table]
                for route in routes.values():
                    if route.target == parent_target and (child_target, fk.columns, fk.ref_columns) not in route.cascades:
                        route.cascades.append((child_target, fk.columns, fk.ref_columns))
                    if route.target == child_target:
                        route.parents += [(p, fk.columns, fk.ref_columns) for p in sources_of.get(parent_target, [])
                                          if (p, fk.columns, fk.ref_columns) not in route.parents]
        if routes:
            out[tenant] = routes
    return out


_MISSING = object()


def _belongs(route: TableRoute, image: dict[str, Any] | None, tenant: str) -> bool:
    """Whether a row image is this tenant's (its tenant column holds ``tenant``; a table without one: yes).

    Called for every change × tenant of a catch-up: the column is looked up by its exact name first
    (the log names columns as the catalog does), by a case-blind scan only when that misses."""
    if image is None:
        return False
    column = route.tenant_column
    if column is None:
        return True
    v = image.get(column, _MISSING)
    if v is not _MISSING:
        return v == tenant if type(v) is str else (v is not None and text_of(v) == tenant)
    for k, v in image.items():
        if k.lower() == column.lower():
            return v is not None and text_of(v) == tenant
    return False


def _cols(route: TableRoute, image: dict[str, Any]) -> tuple[list[str], list[Any]]:
    names, values = [], []
    for k, v in image.items():
        t = route.columns.get(k.lower())
        if t is not None:
            names.append(t)
            values.append(v)
    return names, values


def _key_where(route: TableRoute, image: dict[str, Any]) -> tuple[str, list[Any]]:
    low = {k.lower(): v for k, v in image.items()}
    cols = [route.columns[c.lower()] for c in route.key]
    return " AND ".join(f"{_q(c)} = %s" for c in cols), [low[c.lower()] for c in route.key]


def _delete_cascade(cur: Any, db: str, route: TableRoute, image: dict[str, Any], routes: dict[str, TableRoute],
                    depth: int = 0) -> int:
    """Delete the children of a deleted parent row (ON DELETE CASCADE), recursively; returns rows deleted."""
    if depth > 16:
        return 0
    low = {route.columns.get(k.lower(), k).lower(): v for k, v in image.items()}
    n = 0
    for child, cols, pcols in route.cascades:
        vals = [low.get(p.lower()) for p in pcols]
        where = " AND ".join(f"{_q(c)} = %s" for c in cols)
        child_route = next((r for r in routes.values() if r.target == child), None)
        if child_route is not None and child_route.cascades:
            cur.execute(f"SELECT * FROM {_q(db)}.{_q(child)} WHERE {where}", vals)
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                n += _delete_cascade(cur, db, child_route, dict(zip(names, row, strict=True)), routes, depth + 1)
        cur.execute(f"DELETE FROM {_q(db)}.{_q(child)} WHERE {where}", vals)
        n += int(cur.rowcount)
    return n


def apply_change(cur: Any, ts: TenantSync, change: Any) -> int:
    """Apply one row change to a tenant database (see the module docstring); returns rows touched."""
    route = ts.routes[change.table]
    if change.position <= route.position:
        return 0  # this table is caught up past it already
    db, tbl = _q(ts.database), _q(route.target)
    before_in, after_in = _belongs(route, change.before, ts.tenant), _belongs(route, change.after, ts.tenant)
    n = 0
    if route.key:
        if before_in and (change.kind == "delete" or not after_in or
                          _key_where(route, change.before)[1] != _key_where(route, change.after)[1]):
            where, params = _key_where(route, change.before)
            cur.execute(f"DELETE FROM {db}.{tbl} WHERE {where}", params)
            n += int(cur.rowcount)
        if after_in and change.kind in ("insert", "update"):
            names, values = _cols(route, change.after)
            q = ", ".join(_q(c) for c in names)
            upd = ", ".join(f"{_q(c)} = VALUES({_q(c)})" for c in names)
            cur.execute(f"INSERT INTO {db}.{tbl} ({q}) VALUES ({', '.join(['%s'] * len(names))}) "
                        f"ON DUPLICATE KEY UPDATE {upd}", values)
            n += 1
        return n
    if route.snapshot is not None and change.position <= route.snapshot:
        return 0  # the copy's snapshot already holds it
    if before_in and change.kind in ("update", "delete"):
        names, values = _cols(route, change.before)
        where = " AND ".join(f"{_q(c)} <=> %s" for c in names)
        if change.kind == "update" and after_in:
            anames, avalues = _cols(route, change.after)
            sets = ", ".join(f"{_q(c)} = %s" for c in anames)
            cur.execute(f"UPDATE {db}.{tbl} SET {sets} WHERE {where} LIMIT 1", [*avalues, *values])
            return int(cur.rowcount)
        cur.execute(f"DELETE FROM {db}.{tbl} WHERE {where} LIMIT 1", values)
        n += int(cur.rowcount)
    if after_in and (change.kind == "insert" or (change.kind == "update" and not before_in)):
        names, values = _cols(route, change.after)
        cur.execute(f"INSERT INTO {db}.{tbl} ({', '.join(_q(c) for c in names)}) "
                    f"VALUES ({', '.join(['%s'] * len(names))})", values)
        n += 1
    return n


def apply_parent_delete(cur: Any, ts: TenantSync, child: TableRoute, cols: tuple[str, ...], pcols: tuple[str, ...],
                        change: Any) -> int:
    """A parent row's delete (or key change) as seen by a child table with ``ON DELETE CASCADE``: the
    servers do not log cascaded deletes, so the child's catch-up deletes the rows that referenced it
    (and, through the target's own keys, their children). Returns rows deleted."""
    if change.kind == "insert" or change.before is None or change.position <= child.position:
        return 0
    if change.kind == "update" and change.after is not None and all(
            change.before.get(p) == change.after.get(p) for p in pcols if p in change.before):
        return 0
    low = {k.lower(): v for k, v in change.before.items()}
    vals = [low.get(p.lower()) for p in pcols]
    if any(v is None for v in vals):
        return 0
    db, tbl = _q(ts.database), _q(child.target)
    where = " AND ".join(f"{_q(c)} = %s" for c in cols)
    n = 0
    if child.cascades:
        cur.execute(f"SELECT * FROM {db}.{tbl} WHERE {where}", vals)
        names = [d[0] for d in cur.description]
        for row in cur.fetchall():
            n += _delete_cascade(cur, ts.database, child, dict(zip(names, row, strict=True)), ts.routes)
    cur.execute(f"DELETE FROM {db}.{tbl} WHERE {where}", vals)
    return n + int(cur.rowcount)


#: rows per multi-row statement of a flush, and the parameter bytes (about) after which a statement is cut
FLUSH_ROWS = 1_000
FLUSH_BYTES = 4 << 20


@dataclass
class NetChanges:
    """One tenant's changes of one keyed target table since the last flush, netted per key: the last
    change of a key wins (a key change is a delete of the old key and an upsert of the new one).

    ``rows``: key (values in ``key`` column order, as the log has them) → ``(target column names, values)``
    of the row's last after image, or ``None`` when the row's last change deleted it."""

    database: str
    route: TableRoute
    key: tuple[str, ...]  # target column names of the key
    rows: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[Any, ...]] | None] = field(default_factory=dict)


def _key_of(route: TableRoute, image: dict[str, Any]) -> tuple[Any, ...]:
    try:
        return tuple(image[c] for c in route.key)
    except KeyError:  # the log's column names differ in case from the catalog's
        low = {k.lower(): v for k, v in image.items()}
        return tuple(low.get(c.lower()) for c in route.key)


def buffer_change(nets: dict[tuple[str, str], NetChanges], ts: TenantSync, change: Any) -> int:
    """Net one row change of a keyed table into ``nets`` ((tenant, target table) → :class:`NetChanges`)
    instead of applying it (:func:`apply_change`'s semantics, applied later by :func:`flush`). Returns
    the row operations it stands for (0: not this tenant's, or the table is caught up past it)."""
    route = ts.routes[change.table]
    if change.position <= route.position:
        return 0
    before_in, after_in = _belongs(route, change.before, ts.tenant), _belongs(route, change.after, ts.tenant)
    if not before_in and not after_in:
        return 0
    net = nets.get((ts.tenant, route.target))
    if net is None:
        net = nets[(ts.tenant, route.target)] = NetChanges(ts.database, route,
                                                           tuple(route.columns[c.lower()] for c in route.key))
    n = 0
    new_key = _key_of(route, change.after) if after_in and change.kind in ("insert", "update") else None
    if before_in and change.kind in ("update", "delete"):
        old_key = _key_of(route, change.before)
        if old_key != new_key:
            net.rows[old_key] = None
            n += 1
    if new_key is not None:
        names, values = _cols(route, change.after)
        net.rows[new_key] = (tuple(names), tuple(values))
        n += 1
    return n


def _size(values: tuple[Any, ...]) -> int:
    return sum(len(v) if isinstance(v, str | bytes) else 8 for v in values)


def flush(cur: Any, net: NetChanges) -> int:
    """Apply a :class:`NetChanges` buffer as multi-row statements and empty it; returns statements run.

    Deleted keys go first (``DELETE … WHERE (key) IN (…)`` in chunks of :data:`FLUSH_ROWS`), then the
    rows' last images as multi-row ``INSERT … ON DUPLICATE KEY UPDATE`` (every column set). A table with
    another unique key deletes every buffered key first and then writes the images with ``REPLACE``: an
    upsert that meets another row's unique value would update that row instead, and a swap of unique
    values between two buffered rows has no order of single upserts that works. (The target session runs
    with ``foreign_key_checks = 0`` and the tables' triggers set aside: the delete cascades nowhere and
    fires nothing. ``REPLACE`` deletes a row that still holds a unique value the source gave up before
    this image: only a row the copy read later than this change, whose own later change follows in the
    log and writes it back.)"""
    if not net.rows:
        return 0
    db, tbl = _q(net.database), _q(net.route.target)
    statements = 0
    unique = net.route.other_unique
    gone = list(net.rows) if unique else [k for k, v in net.rows.items() if v is None]
    width = len(net.key)
    if width == 1:
        col = _q(net.key[0])
        for i in range(0, len(gone), FLUSH_ROWS):
            part = gone[i:i + FLUSH_ROWS]
            cur.execute(f"DELETE FROM {db}.{tbl} WHERE {col} IN ({', '.join(['%s'] * len(part))})", [k[0] for k in part])
            statements += 1
    else:
        cols = ", ".join(_q(c) for c in net.key)
        one = "(" + ", ".join(["%s"] * width) + ")"
        for i in range(0, len(gone), FLUSH_ROWS):
            part = gone[i:i + FLUSH_ROWS]
            cur.execute(f"DELETE FROM {db}.{tbl} WHERE ({cols}) IN ({', '.join([one] * len(part))})",
                        [v for k in part for v in k])
            statements += 1
    shapes: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for row in net.rows.values():
        if row is not None:
            shapes.setdefault(row[0], []).append(row[1])
    for names, rows in shapes.items():
        q = ", ".join(_q(c) for c in names)
        one = "(" + ", ".join(["%s"] * len(names)) + ")"
        head = f"{'REPLACE' if unique else 'INSERT'} INTO {db}.{tbl} ({q}) VALUES "
        tail = "" if unique else " ON DUPLICATE KEY UPDATE " + ", ".join(f"{_q(c)} = VALUES({_q(c)})" for c in names)
        i = 0
        while i < len(rows):
            j, size = i, 0
            while j < len(rows) and j - i < FLUSH_ROWS and (j == i or size < FLUSH_BYTES):
                size += _size(rows[j])
                j += 1
            cur.execute(head + ", ".join([one] * (j - i)) + tail, [v for r in rows[i:j] for v in r])
            statements += 1
            i = j
    net.rows.clear()
    return statements


def _flush_all(cur: Any, nets: dict[tuple[str, str], NetChanges], tenant: str | None = None) -> None:
    """Flush every buffer (of one tenant, or all)."""
    for (t, _), net in nets.items():
        if tenant is None or t == tenant:
            flush(cur, net)


def _cascades(change: Any, kids: Any, position: Any) -> bool:
    """Whether a parent table's change deletes (or re-keys) a parent row that a child route of the
    tenant follows by ``ON DELETE CASCADE`` (see :func:`apply_parent_delete`)."""
    if change.kind == "insert" or change.before is None:
        return False
    for c_route, _, pcols in kids:
        if c_route.position >= position:
            continue
        if change.kind == "delete" or change.after is None or any(
                change.before.get(p) != change.after.get(p) for p in pcols if p in change.before):
            return True
    return False


def _routed(cfg: TenantSplitConfig) -> set[str]:
    """The tenants whose readers are on their own database (route backend ``tenant_db``)."""
    from cutover import control

    with pg_connect(cfg.control_conn_id) as conn:
        return {str(r[0]) for r in conn.execute(
            f"SELECT name FROM {control.SCHEMA}.routes WHERE pipeline = %s AND scope = %s AND location ->> 'backend' = 'tenant_db'",
            (PIPELINE, cfg.scope)).fetchall()}


def built_tenants(cfg: TenantSplitConfig) -> dict[str, str]:
    """tenant → database of every tenant with a catch-up position and readers not yet on its database."""
    from cutover import control

    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        names = control.load_name_map(conn, PIPELINE, cfg.scope)
        routed = {r[0] for r in conn.execute(
            f"SELECT name FROM {control.SCHEMA}.routes WHERE pipeline = %s AND scope = %s AND location ->> 'backend' = 'tenant_db'",
            (PIPELINE, cfg.scope)).fetchall()}
    with mysql_connect(cfg.target_conn_id, database="") as tconn:
        tcur = tconn.cursor()
        tcur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (cfg.state_database,))
        if not tcur.fetchone():
            return {}
        tcur.execute(f"SELECT target_database FROM {quote_mysql(cfg.state_database)}.binlog_positions")
        have = {text_of(r[0]) for r in tcur.fetchall()}
    return {t: db for t, db in names.items() if db in have and t not in routed}


def catch_up(cfg: TenantSplitConfig, tenants: dict[str, str] | None = None, *, stop_at: Any = None,
             tables: set[str] | None = None, max_seconds: float | None = None) -> dict[str, Any]:
    """Apply the tenants' changes from their stored positions up to ``stop_at`` (default: the log's end now).

    ``tenants``: tenant → database (default: :func:`built_tenants`); ``tables``: only these target
    tables. Positions are kept per (tenant database, target table), and only tables whose copy is done
    take part, so a catch-up may run while other tables of the tenant are still being copied.
    Returns per tenant the rows applied, transactions and tables, and the totals with rows/s. Raises
    :class:`cutover.binlog.BinlogUnavailable` when the source has no usable binary log.
    """
    tenants = built_tenants(cfg) if tenants is None else tenants
    if not tenants:
        return {"tenants": {}, "applied": 0, "seconds": 0.0, "reached": None}
    with catch_up_lock(cfg, sorted(set(tenants.values()))):
        return catch_up_held(cfg, tenants, stop_at=stop_at, tables=tables, max_seconds=max_seconds)


#: seconds a catch-up waits for another one (a verify, the sync DAG, a cutover) to finish with a tenant
LOCK_WAIT_S = 900


def _lock_name(cfg: TenantSplitConfig, database: str) -> str:
    """The ``GET_LOCK`` name of a tenant database's catch-up (64 characters at most, as MySQL wants)."""
    return "cutover_catchup_" + hashlib.sha1(f"{cfg.state_database}/{database}".encode()).hexdigest()[:40]


@contextmanager
def catch_up_lock(cfg: TenantSplitConfig, databases: list[str], wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold a named lock (``GET_LOCK`` on the target server) per tenant database while catching up: two
    appliers of one table (a build's verify, the sync DAG, a cutover) would both apply a change that is
    not idempotent (a keyless table's). Taken in name order; raises ``TimeoutError`` after ``wait_s``."""
    with mysql_connect(cfg.target_conn_id, database="") as conn:  # closing it releases every lock it holds
        cur = conn.cursor()
        for db in databases:
            cur.execute("SELECT GET_LOCK(%s, %s)", (_lock_name(cfg, db), int(wait_s)))
            if cur.fetchone()[0] != 1:
                raise TimeoutError(f"catch-up of {db}: another catch-up held it for {wait_s:.0f} s")
        yield


class FreeLocks:
    """The catch-up locks :func:`free_catch_up_locks` took: :attr:`tenants` (tenant → database) and
    :attr:`busy` (the built tenants skipped: their lock was held elsewhere, or they were routed to their
    database meanwhile). :meth:`release` lets them go early (closing the lock session)."""

    def __init__(self, conn: Any, tenants: dict[str, str], busy: list[str]) -> None:
        self._conn = conn
        self.tenants = tenants
        self.busy = busy

    def release(self) -> None:
        """Release every lock taken (idempotent); :attr:`tenants` keeps naming who was advanced."""
        if self._conn is not None:
            try:
                self._conn.close()  # a closed session holds no named lock
            finally:
                self._conn = None


@contextmanager
def free_catch_up_locks(cfg: TenantSplitConfig, exclude: set[str] | frozenset[str] = frozenset()) -> Iterator[FreeLocks]:
    """Take the catch-up lock of every built tenant (:func:`built_tenants`) whose lock is free **right
    now** — ``GET_LOCK(name, 0)``, never waiting, so it cannot deadlock with a caller that holds locks and
    waits for others (:func:`catch_up_lock` takes them in name order and waits) — for a catch-up that
    passes over the log anyway and can advance those tenants in the same pass (one decode of the log for
    all, instead of one per tenant). ``exclude``: databases not to take (the caller's own, already held).

    The tenants are read again once their locks are held: one routed to its database in between (a
    cutover holds the tenant's lock until the route has moved) is let go and listed in ``busy``, since
    the forward stream must not write a live tenant database. Yields a :class:`FreeLocks`; every lock is
    released on exit (or earlier with :meth:`FreeLocks.release`).
    """
    import MySQLdb

    from cutover.connections import resolve

    wanted = {t: db for t, db in built_tenants(cfg).items() if db not in exclude}
    if not wanted:
        yield FreeLocks(None, {}, [])
        return
    conn = MySQLdb.connect(**resolve(cfg.target_conn_id).mysql_kwargs(""))
    locks = FreeLocks(conn, {}, [])
    try:
        cur = conn.cursor()
        got: dict[str, str] = {}
        for tenant, db in sorted(wanted.items(), key=lambda kv: kv[1]):
            cur.execute("SELECT GET_LOCK(%s, 0)", (_lock_name(cfg, db),))
            if cur.fetchone()[0] == 1:
                got[tenant] = db
            else:
                locks.busy.append(tenant)
        if got:
            routed = _routed(cfg)  # under the locks: a tenant cut over since the first read is out
            for tenant, db in got.items():
                if tenant not in routed:
                    locks.tenants[tenant] = db
                else:
                    cur.execute("SELECT RELEASE_LOCK(%s)", (_lock_name(cfg, db),))
                    cur.fetchall()
                    locks.busy.append(tenant)
        yield locks
    finally:
        locks.release()


#: ``companions`` ride along a catch-up only when it reads at least this many bytes of log for its own
#: tenants: a short pass is cheap to read again later, while applying every companion's rows is not
#: (measured on 2 cores, 4 tenants at 2,000 rows/s: the build's verify took 26 s with every fence
#: sharing its pass, 22 s from 1 MiB on, 14 s with none). From 16 MiB on (about 30 s of log at that
#: rate) a shared pass bounds what the per-tenant passes would read again and again (each tenant's
#: first fence reading the whole log since the one before: it grows with every tenant)
RIDE_ALONG_MIN_BYTES = 16 << 20


def catch_up_held(cfg: TenantSplitConfig, tenants: dict[str, str], *, stop_at: Any = None, tables: set[str] | None = None,
                  max_seconds: float | None = None, companions: dict[str, str] | None = None) -> dict[str, Any]:
    """:func:`catch_up` for a caller that already holds :func:`catch_up_lock` on these tenants' databases
    (a proof at a fence: nothing may move the target past the fence while it is checksummed).

    Besides :func:`catch_up`'s figures, each tenant's entry has ``touched``: target table → the sorted
    keys of the rows changed (lists, in copy-key order), or None for a table whose changed rows cannot be
    named by key (no key, a cascade).

    ``companions``: more tenants (tenant → database, their locks held too, e.g. by
    :func:`free_catch_up_locks`) advanced **in the same pass** when that costs no extra reading: one
    whose tables all stand at or after the point where ``tenants``' own pass starts (the lowest
    position of their tables) rides along; one with a table behind it is left where it is (it would
    make the pass decode log that ``tenants`` do not need: a tenant whose stream was stopped for a
    day must not make a fence read a day of log); and none rides along a pass shorter than
    :data:`RIDE_ALONG_MIN_BYTES` of log (``stop_at`` in the file of the start): sharing pays where a
    companion would otherwise read a long stretch again, not on the short deltas between two fences.
    The result's ``companions`` is ``{"advanced": [tenants], "behind": [tenants], "short":
    [tenants]}``; the advanced ones have their entry in ``tenants`` like the others.
    """
    from cutover.binlog import read_changes

    t0 = time.monotonic()
    syncs: dict[str, TenantSync] = {}
    extra = {t: d for t, d in (companions or {}).items() if t not in tenants}
    # positions read under the lock: another catch-up may have moved them
    for tenant, all_routes in routes_for(cfg, {**tenants, **extra}).items():
        routes = {k: r for k, r in all_routes.items() if tables is None or r.target in tables}
        if routes:
            syncs[tenant] = TenantSync(tenant, tenants.get(tenant) or extra[tenant], routes)
    riding: dict[str, list[str]] = {"advanced": [], "behind": [], "short": []}
    if any(t in tenants for t in syncs):
        own_start = min(r.position for t, s in syncs.items() if t in tenants for r in s.routes.values())
        if extra and stop_at is not None and stop_at.file == own_start.file and \
                stop_at.pos - own_start.pos < RIDE_ALONG_MIN_BYTES:
            riding["short"] = sorted(t for t in extra if t in syncs)  # a short pass: re-reading it later is cheap
            for t in riding["short"]:
                del syncs[t]
        for t in sorted(t for t in extra if t in syncs):
            if t in syncs:
                ahead = all(r.position >= own_start for r in syncs[t].routes.values())
                riding["advanced" if ahead else "behind"].append(t)
                if not ahead:
                    del syncs[t]
    else:
        syncs = {}
    if not syncs:
        return {"tenants": {}, "applied": 0, "seconds": 0.0, "reached": None, "companions": riding}
    start = min(r.position for s in syncs.values() for r in s.routes.values())
    names = {t for s in syncs.values() for t in s.routes} | {
        p for s in syncs.values() for r in s.routes.values() for p, _, _ in r.parents}
    reached = start
    pending: dict[tuple[str, str], tuple[TenantSync, TableRoute]] = {}
    unsaved, last_commit = 0, time.monotonic()
    for s in syncs.values():  # parent source table → the child routes its deletes cascade into
        for child_route in s.routes.values():
            for parent, cols, pcols in child_route.parents:
                s.children.setdefault(parent, []).append((child_route, cols, pcols))
    nets: dict[tuple[str, str], NetChanges] = {}
    group = _Group()
    with mysql_connect(cfg.target_conn_id, database="") as tconn, pg_connect(cfg.control_conn_id) as pg:
        tcur = tconn.cursor()
        target.session(tcur)
        # triggers are set aside only on tables a change reaches (DDL: done between source transactions,
        # after committing what came before with its positions), and restored at the end
        aside: dict[str, dict[str, dict[str, tuple[str, str]]]] = {s.tenant: {} for s in syncs.values()}
        checked: set[tuple[str, str]] = set()
        trigger_backups: dict[tuple[str, str], dict[str, tuple[str, str]]] | None = None
        previous = start
        complete = True
        try:
            owners = _tenant_columns(syncs)
            for batch in read_changes(cfg.source_conn_id, start, schemas={cfg.source_database}, tables=names, stop_at=stop_at):
                reached = batch.position
                mine = _by_tenant(batch, syncs, owners)  # each tenant's share of the transaction, in log order
                todo = [(s, t) for s in syncs.values() for t in _reached_tables(s, mine[s.tenant], batch.position)
                        if (s.tenant, t) not in checked]
                if todo:
                    if pending:
                        _commit(tconn, tcur, cfg, pending, previous, nets, pg, group)
                    for s, t in todo:
                        if (s.tenant, t) in checked:
                            continue
                        checked.add((s.tenant, t))
                        if trigger_backups is None:  # one query for every unit of the catch-up, on first need
                            trigger_backups = _trigger_backups(pg, cfg, syncs.values())
                        backups = trigger_backups.get((s.tenant, t), {})
                        if backups:
                            target.drop_triggers(tcur, s.database, t, list(backups))
                            aside[s.tenant][t] = backups
                for s in syncs.values():
                    n = 0
                    for ch in mine[s.tenant]:
                        route = s.routes.get(ch.table)
                        kids = s.children.get(ch.table, ())
                        if kids and _cascades(ch, kids, batch.position):
                            _flush_all(tcur, nets, s.tenant)  # the cascade deletes what the target holds now
                        if route is not None and route.position < batch.position:
                            # keyed: netted per key, applied by multi-row statements at the next flush;
                            # keyless: in log order now (its own rows only: nothing else reads them)
                            got = buffer_change(nets, s, ch) if route.key else apply_change(tcur, s, ch)
                            if got:
                                n += got
                                pending.setdefault((s.tenant, route.target), (s, route))
                                _touch(s, route, ch)
                        for c_route, cols, pcols in kids:
                            # a parent key names one source row (of one tenant): the child's rows
                            # referencing it in this tenant's database are the ones it cascaded to
                            if c_route.position < batch.position:
                                got = apply_parent_delete(tcur, s, c_route, cols, pcols, ch)
                                if got:
                                    n += got
                                    pending.setdefault((s.tenant, c_route.target), (s, c_route))
                                    s.touched[c_route.target] = None  # rows a cascade removed: no key list
                    if n:
                        s.applied += n
                        s.unreported += n
                        s.transactions += 1
                        unsaved += n
                        group.timestamp = batch.timestamp
                # changes and positions commit together; several source transactions per commit
                if pending and (unsaved >= COMMIT_ROWS or time.monotonic() - last_commit >= COMMIT_SECONDS):
                    _commit(tconn, tcur, cfg, pending, batch.position, nets, pg, group)
                    unsaved, last_commit = 0, time.monotonic()
                previous = batch.position
                if max_seconds is not None and time.monotonic() - t0 > max_seconds:
                    complete = False
                    break
            if pending:
                _commit(tconn, tcur, cfg, pending, reached, nets, pg, group)
            for s in syncs.values():  # tables without a change of theirs up to here are caught up to it too
                for route in s.routes.values():
                    if route.position < reached:
                        _save_position(tcur, cfg, s.database, route.target, reached, 0)
                        route.position = reached
            tconn.commit()
            # where each tenant's forward stream stands: read to the end asked for, nothing is behind it
            _report(pg, cfg, list(syncs.values()), reached, 0.0 if complete else None)
        finally:
            tconn.rollback()
            for s in syncs.values():
                _restore(cfg, tcur, s, aside[s.tenant])
    seconds = time.monotonic() - t0
    total = sum(s.applied for s in syncs.values())
    out = {"tenants": {s.tenant: {"database": s.database, "applied": s.applied, "transactions": s.transactions,
                                  "tables": sorted({r.target for r in s.routes.values()}),
                                  "touched": {t: None if k is None else sorted(k, key=repr) for t, k in s.touched.items()}}
                       for s in syncs.values()},
           "applied": total, "seconds": round(seconds, 3), "rows_per_s": round(total / seconds, 1) if seconds else None,
           "reached": str(reached), "companions": riding}
    log.info("tenant_split catch-up: %d row change(s) applied to %d tenant(s) in %.1f s, up to %s", total, len(syncs),
             seconds, reached)
    return out


#: a catch-up commits after this many applied rows or seconds (each commit carries the positions)
COMMIT_ROWS = 5_000
COMMIT_SECONDS = 0.5


@dataclass
class _Group:
    """The commit group being built: the commit time (Unix s) of its newest source transaction."""

    timestamp: float | None = None


def _commit(tconn: Any, tcur: Any, cfg: TenantSplitConfig, pending: dict[tuple[str, str], tuple[TenantSync, TableRoute]],
            position: Any, nets: dict[tuple[str, str], NetChanges], pg: Any, group: _Group) -> None:
    """Flush the netted changes and save the new position of every table changed since the last commit,
    in the changes' transaction; then report the tenants' forward streams (lag: now − the commit time of
    the group's newest source transaction)."""
    _flush_all(tcur, nets)
    for s, route in pending.values():
        _save_position(tcur, cfg, s.database, route.target, position, 0)
        route.position = position
    tconn.commit()
    tenants = list({id(s): s for s, _ in pending.values()}.values())
    pending.clear()
    lag = max(0.0, time.time() - group.timestamp) if group.timestamp else None
    group.timestamp = None
    _report(pg, cfg, tenants, position, lag)


def _trigger_backups(pg: Any, cfg: TenantSplitConfig, syncs: Any) -> dict[tuple[str, str], dict[str, tuple[str, str]]]:
    """(tenant, target table) → its backed-up triggers, name → (sql_mode, statement), as
    :func:`cutover.tenant_split.target.backed_up_triggers` reads them, for every table of ``syncs``
    (:class:`TenantSync`) in one query (a catch-up over many tenants would otherwise open a control
    connection per table it reaches). The read is committed at once (no snapshot left open)."""
    from cutover.control import SCHEMA

    keys = {str(UnitKey(cfg.scope, (s.tenant, r.target))): (s.tenant, r.target) for s in syncs for r in s.routes.values()}
    out: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    if not keys:
        return out
    rows = pg.execute(f"SELECT unit_key, name, definition FROM {SCHEMA}.object_backups WHERE pipeline = %s "
                      "AND unit_key = ANY(%s) AND kind = 'trigger' ORDER BY unit_key, name",
                      (PIPELINE, list(keys))).fetchall()
    pg.commit()
    for unit_key, name, text in rows:
        mode, _, definition = str(text).partition("\n")
        out.setdefault(keys[str(unit_key)], {})[str(name)] = (mode, definition)
    return out


def _report(pg: Any, cfg: TenantSplitConfig, tenants: list[TenantSync], position: Any, lag_s: float | None) -> None:
    """One ``control.report_stream`` per tenant (direction ``forward``) and one commit. The rows are
    already committed with their positions: a control database that refuses is logged, not raised."""
    from cutover import control

    try:
        for s in tenants:
            control.report_stream(pg, PIPELINE, cfg.scope, s.tenant, "forward", position=str(position),
                                  lag_s=None if lag_s is None else round(lag_s, 3), applied=s.unreported)
            s.unreported = 0
        pg.commit()
    except Exception as exc:  # the status page's figure, not the data: the next report tries again
        log.warning("tenant_split catch-up: forward stream not reported (%s)", exc)
        try:
            pg.rollback()
        except Exception:
            pass


def _save_position(cur: Any, cfg: TenantSplitConfig, database: str, table: str, pos: Any, n: int) -> None:
    cur.execute(f"UPDATE {quote_mysql(cfg.state_database)}.binlog_positions SET file = %s, pos = %s, "
                "applied_rows = applied_rows + %s WHERE target_database = %s AND target_table = %s",
                (pos.file, pos.pos, n, database, table))


#: a source table whose changes go to every tenant of a catch-up (see :func:`_tenant_columns`)
_EVERY_TENANT = ""


def _tenant_columns(syncs: dict[str, TenantSync]) -> dict[str, str]:
    """Source table → its tenant column, for the tables a catch-up routes; :data:`_EVERY_TENANT` for a
    table without one (a shared table, copied to every tenant), a parent whose deletes cascade into
    tenants' tables, or one whose routes disagree on the column. Tables absent: no tenant reads them."""
    out: dict[str, str] = {}
    for s in syncs.values():
        for table, route in s.routes.items():
            column = route.tenant_column or _EVERY_TENANT
            out[table] = column if out.get(table, column) == column else _EVERY_TENANT
        for parent in s.children:
            out[parent] = _EVERY_TENANT
    return out


def _owner(image: dict[str, Any] | None, column: str) -> str | None:
    """The tenant a row image names in ``column`` (as :func:`_belongs` compares it), or None."""
    if image is None:
        return None
    v = image.get(column, _MISSING)
    if v is _MISSING:  # the log's column names differ in case from the catalog's
        v = next((x for k, x in image.items() if k.lower() == column.lower()), None)
    return None if v is None else (v if type(v) is str else text_of(v))


def _by_tenant(batch: Any, syncs: dict[str, TenantSync], owners: dict[str, str]) -> dict[str, list[Any]]:
    """Split one transaction's changes by tenant, in log order: a change goes to the tenants its before
    and after images name (a change that moves a row between tenants goes to both), a change of a table
    in ``owners`` as :data:`_EVERY_TENANT` to all of them, one of a table no tenant reads to none.

    The catch-up then looks at each change once per tenant it concerns, not once per tenant of the
    catch-up (with a hundred tenants riding one pass, most changes concern one of them)."""
    out: dict[str, list[Any]] = {t: [] for t in syncs}
    for ch in batch:
        column = owners.get(ch.table)
        if column is None:
            continue
        if column == _EVERY_TENANT:
            for changes in out.values():
                changes.append(ch)
            continue
        a, b = _owner(ch.before, column), _owner(ch.after, column)
        if a is not None and a in out:
            out[a].append(ch)
        if b is not None and b != a and b in out:
            out[b].append(ch)
    return out


def _reached_tables(s: TenantSync, changes: list[Any], position: Any) -> list[str]:
    """The tenant's target tables a transaction's changes (the tenant's share of them, see
    :func:`_by_tenant`) may write, directly or by a cascade; ``position``: the transaction's."""
    out: list[str] = []
    for ch in changes:
        route = s.routes.get(ch.table)
        if route is not None and route.position < position and (
                _belongs(route, ch.before, s.tenant) or _belongs(route, ch.after, s.tenant)):
            out.append(route.target)
        if ch.kind != "insert":  # a parent's delete (or key change) may cascade into the tenant's children
            out += [c.target for c, _, _ in s.children.get(ch.table, ()) if c.position < position]
    return out


def _restore(cfg: TenantSplitConfig, cur: Any, s: TenantSync, aside: dict[str, dict[str, tuple[str, str]]]) -> None:
    for table, backups in aside.items():
        target.restore_triggers(cur, s.database, table, backups)
