"""Reverse replication after a tenant's switch: its database → the shared tables, and stray writes to the old side.

After a tenant's cutover its writers write the tenant database (``cfg.target_conn_id``). A **reverse
stream** (the shape of Vitess MoveTables' ``ReverseTraffic``) keeps the shared source tables current,
so that a rollback loses nothing:

* :func:`start` records the stream at the switch: the *target* binlog position taken while the tenant
  was paused (just before its route moved) and the *source* fence position (from where writes that still
  reach the shared tables are strays). Idempotent for a stream already started at the same switch.
* :func:`run` reads the tenant databases' binlog from each stream's position
  (:func:`cutover.binlog.read_changes`, one reader for every tenant), maps each target table back to its
  source table (renamed tables by the mapping; columns the source has, generated ones recomputed, columns
  only the source has keep their defaults), forces the tenant column to the tenant, and applies the
  changes to the source **in one source transaction with the stream's new position** (the state table
  ``<state database>.reverse_streams`` on the *source* server): a killed run resumes exactly, no change
  twice, none skipped. Keyed tables: upsert of the after image / delete by key (a key change deletes the
  old key first); keyless tables: the row equal to the before image (``<=>``, ``LIMIT 1``), in log order.
  Consecutive changes of one kind to one table go as one multi-row statement (:class:`Applier`): the
  apply costs a few round trips per run of changes; the binlog decoding is what bounds a stream.
  A key held on the source by *another* tenant's row is never overwritten: :class:`ReverseConflict`.
* In the same run, the **source** binlog is read from each tenant's stray position for the tenant's rows
  (its tenant column in the before or after image) in its tables: batches written by the reverse
  applier (:data:`REVERSE_SERVER_ID`) are ours and skipped, anything else is a **stray write** (a client
  that did not re-read its route): recorded with its keys (``cutover.stray_writes``), logged as an error
  and, with ``forward_stray_writes``, applied to the tenant database too (under
  :data:`FORWARD_SERVER_ID`, recorded ``forwarded``). The stray position (``<state
  database>.reverse_strays`` on the *target* server) commits with the forwarded rows. Where source and
  target are one server (one log), one reader serves both the reverse stream and the stray scan, so each
  change is decoded once.
* :func:`drain` (the life cycle's ``drain_reverse``: rollback calls it before its divergence check)
  runs the tenant's stream up to the target's position *now*, scans the strays up to the source's
  position now, moves the tenant's forward catch-up positions (``binlog_positions``) there — what the
  reverse stream wrote must not be re-applied by a later forward catch-up (keyless tables would double) —
  and marks the stream ``drained``.

**Marking writes (server ids)**: the reverse applier's session does ``SET SESSION server_id =
REVERSE_SERVER_ID``; MariaDB writes that id into the transaction's GTID, which
:attr:`cutover.binlog.ChangeBatch.origin_server_id` reads back, so the stray reader tells the stream's
own writes from the application's. Forwarded strays (and, once it adopts it, the forward catch-up) write
the tenant database under :data:`FORWARD_SERVER_ID`; the reverse reader skips those batches, so nothing
ping-pongs between the sides. Both ids are below 2^31 (the binlog readers register with random ids in
2^31 … 2^32 - 2) and must be unused by any real server of the replication topology. On MySQL (GTIDs name
a server UUID) the origin is unknown: the ids cannot be read back and the stray scan would report the
stream's own writes, so a stream refuses to start there (:class:`ReverseUnsupported`).

Limits (refused or reported, never guessed): a target table merged from several source tables cannot be
split back (:func:`start` refuses, naming it); a ``shared`` table copied into every tenant database has
no tenant to give its rows back to: its changes are not reversed and are counted in ``not_reversed``
(the divergence check then names them). Triggers of the source tables fire on reversed rows (the rows the
target's triggers wrote arrive in the log too): a trigger that only sets ``NEW`` columns gives a
reversed row the value it already has, one that writes other rows writes them twice — :func:`start`
names those in ``trigger_warnings`` (and the stream's detail on the status page).
A key change of a parent row whose children reference it ``ON DELETE CASCADE`` is applied as delete +
insert and so cascades on the source. Forwarded strays are applied as the forward catch-up applies a
change (:func:`cutover.tenant_split.sync.apply_change`), but with the tenant database's triggers in place
and without following ``ON DELETE CASCADE`` (a stray is a fault to fix, reported whether forwarded or not).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cutover import control
from cutover.binlog import BinlogPosition
from cutover.connections import mysql_connect, pg_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle.model import UnitKey
from cutover.mysql_schema import text_of
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig

log = logging.getLogger(__name__)

#: ``server_id`` of the reverse applier's session (tenant database → shared tables): its writes in the
#: source binlog are the stream's own, not strays
REVERSE_SERVER_ID = 2_000_000_001
#: ``server_id`` of writes to a tenant database that came from the source (forwarded strays; the forward
#: catch-up should use it too): the reverse reader skips them
FORWARD_SERVER_ID = 2_000_000_002
#: a reverse run commits after this many applied rows or seconds (each commit carries the position)
COMMIT_ROWS = 2_000
COMMIT_SECONDS = 0.5
#: seconds :func:`run` / :func:`drain` wait for another reverse run holding a tenant
LOCK_WAIT_S = 900
#: states of a stream that :func:`run` continues (``drained`` only while the tenant's readers stay on
#: its database: a rollback that was refused after the drain)
LIVE_STATES = ("running", "drained")

#: quoting is validated each time; a stream quotes the same few names for every change
_q = functools.lru_cache(maxsize=8192)(quote_mysql)
#: a trigger body that writes rows (not only ``SET NEW.col = …``, which gives a reversed row its own value again)
_WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE|CALL)\b", re.IGNORECASE)


class ReverseUnsupported(ValueError):
    """The tenant's tables cannot be reversed unambiguously (the message names the table and why)."""


class ReverseConflict(RuntimeError):
    """A reversed row's key is held on the source by another tenant's row: nothing of the transaction is
    applied, the stream stops there (message: table, key, both tenants)."""


@dataclass(frozen=True)
class ReverseRoute:
    """Where one target table's changes go back to: ``source`` table, its ``tenant_column`` (source
    name), ``key`` (source column names; empty: keyless), ``columns``: lower-case target column →
    source column (the ones the source has and does not generate)."""

    target: str
    source: str
    tenant_column: str
    key: tuple[str, ...]
    columns: dict[str, str]

    @property
    def key_has_tenant(self) -> bool:
        """The key holds the tenant column: no other tenant's row can share it."""
        return self.tenant_column.lower() in {k.lower() for k in self.key}


@dataclass
class Routes:
    """The reversible tables (target name → route), the ``shared`` copied ones (not reversed), and the
    source triggers that fire on reversed rows (warnings)."""

    by_target: dict[str, ReverseRoute]
    shared: set[str] = field(default_factory=set)
    trigger_warnings: list[str] = field(default_factory=list)

    @property
    def by_source(self) -> dict[str, ReverseRoute]:
        """Source table → route."""
        return {r.source: r for r in self.by_target.values()}


def reverse_routes(cfg: TenantSplitConfig, source: tuple[Any, dict[str, Any]] | None = None) -> Routes:
    """The mapping read backwards (see :class:`Routes`). Raises :class:`ReverseUnsupported` for a target
    table merged from several source tables (naming it, its sources and the mapping line)."""
    from cutover.tenant_split.sync import source_rules

    schema, rules = source or source_rules(cfg)
    sources_of: dict[str, list[Any]] = {}
    for r in rules.values():
        if r.action == "copy":
            sources_of.setdefault(r.target, []).append(r)
    out = Routes({})
    for r in rules.values():
        if r.action == "shared" and cfg.shared == "copy":
            out.shared.add(r.target)
    for tgt, rs in sorted(sources_of.items()):
        if len(rs) > 1 or rs[0].merged:
            names = sorted(x.source for x in rs)
            lines = sorted({x.line for x in rs if x.line})
            raise ReverseUnsupported(
                f"{cfg.mapping}: target table {tgt!r} is merged from {names} (mapping line(s) {lines}): its rows cannot "
                "be given back to one source table, so no reverse stream can run for this split")
        r = rs[0]
        src = schema.tables[r.source]
        if not r.tenant_column:
            raise ReverseUnsupported(f"{cfg.mapping}: table {r.source!r} has no tenant column: its rows cannot be "
                                     "given back to one tenant")
        tcol = src.column(r.tenant_column)
        cols = {c.name.lower(): c.name for c in src.columns if c.generation is None}
        out.by_target[tgt] = ReverseRoute(tgt, r.source, tcol.name if tcol else r.tenant_column, src.copy_key(), cols)
        for trg in src.triggers:
            if _WRITES.search(trg.statement):
                out.trigger_warnings.append(
                    f"source table {r.source!r} has trigger {trg.name!r} ({trg.timing} {trg.event}) that writes other rows: "
                    "it fires on reversed rows too, while the rows the target's own trigger wrote arrive in the log as "
                    "well (written twice on the source)")
    return out


# ----------------------------------------------------------------------------------------------- state

def _state(cfg: TenantSplitConfig) -> str:
    return _q(cfg.state_database)


def ensure_state(cfg: TenantSplitConfig) -> None:
    """Create the state tables: ``reverse_streams`` on the source server (commits with the reversed rows)
    and ``reverse_strays`` on the target server (commits with forwarded strays), both in
    ``cfg.state_database``, one row per (scope, tenant)."""
    with mysql_connect(cfg.source_conn_id, database="") as s:
        cur = s.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {_state(cfg)} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        cur.execute(f"""CREATE TABLE IF NOT EXISTS {_state(cfg)}.reverse_streams (
            scope VARCHAR(64) NOT NULL, tenant VARCHAR(255) NOT NULL, target_database VARCHAR(64) NOT NULL,
            run_id VARCHAR(250) NOT NULL, switch_position VARCHAR(300) NOT NULL, source_position VARCHAR(300) NOT NULL,
            file VARCHAR(255) NOT NULL, pos BIGINT UNSIGNED NOT NULL, state VARCHAR(20) NOT NULL,
            applied BIGINT NOT NULL DEFAULT 0, started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
            updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
            PRIMARY KEY (scope, tenant)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""")
    with mysql_connect(cfg.target_conn_id, database="") as t:
        cur = t.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {_state(cfg)} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        cur.execute(f"""CREATE TABLE IF NOT EXISTS {_state(cfg)}.reverse_strays (
            scope VARCHAR(64) NOT NULL, tenant VARCHAR(255) NOT NULL, file VARCHAR(255) NOT NULL,
            pos BIGINT UNSIGNED NOT NULL, seen BIGINT NOT NULL DEFAULT 0, forwarded BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, tenant)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""")


@dataclass
class Stream:
    """One tenant's reverse stream as stored (positions as :class:`BinlogPosition`)."""

    tenant: str
    database: str
    run_id: str
    switch_position: str
    position: BinlogPosition
    state: str
    applied: int
    source_position: str = ""
    stray_position: BinlogPosition | None = None
    #: filled by a run
    applied_now: int = 0
    newest_ts: int = 0
    strays: int = 0
    forwarded: int = 0
    #: stray writes seen / forwarded since the stream started (stored), this run's included
    strays_total: int = 0
    forwarded_total: int = 0
    not_reversed: dict[str, int] = field(default_factory=dict)
    #: filled by a run: target table → the keys (source key columns' values, in copy-key order) of the rows
    #: its changes reached, or None for a keyless table (what a rollback re-proves)
    touched: dict[str, set[tuple[Any, ...]] | None] = field(default_factory=dict)
    #: filled by a run: target tables where a row was deleted or its key changed (a cascade may follow)
    removed: set[str] = field(default_factory=set)


def streams(cfg: TenantSplitConfig, tenants: list[str] | None = None, states: tuple[str, ...] = LIVE_STATES) -> dict[str, Stream]:
    """tenant → its stored stream in one of ``states`` (default: the live ones), with its stray position."""
    out: dict[str, Stream] = {}
    with mysql_connect(cfg.source_conn_id, database="") as s:
        cur = s.cursor()
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'reverse_streams'",
                    (cfg.state_database,))
        if not cur.fetchone()[0]:
            return {}
        cur.execute(f"SELECT tenant, target_database, run_id, switch_position, file, pos, state, applied, source_position "
                    f"FROM {_state(cfg)}.reverse_streams WHERE scope = %s", (cfg.scope,))
        for tenant, db, run_id, sw, f, p, st, applied, sp in cur.fetchall():
            tenant = text_of(tenant)
            if text_of(st) in states and (tenants is None or tenant in tenants):
                out[tenant] = Stream(tenant, text_of(db), text_of(run_id), text_of(sw), BinlogPosition(text_of(f), int(p)),
                                     text_of(st), int(applied), text_of(sp))
    if out:
        with mysql_connect(cfg.target_conn_id, database="") as t:
            cur = t.cursor()
            cur.execute(f"SELECT tenant, file, pos, seen, forwarded FROM {_state(cfg)}.reverse_strays WHERE scope = %s",
                        (cfg.scope,))
            for tenant, f, p, seen, forwarded in cur.fetchall():
                if (st := out.get(text_of(tenant))) is not None:
                    st.stray_position = BinlogPosition(text_of(f), int(p))
                    st.strays_total, st.forwarded_total = int(seen), int(forwarded)
    return out


def _report(cfg: TenantSplitConfig, s: Stream, state: str, lag_s: float | None, extra: dict[str, Any] | None = None) -> None:
    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        control.report_stream(conn, PIPELINE, cfg.scope, s.tenant, "reverse", position=str(s.position), lag_s=lag_s,
                              applied=s.applied_now, state=state,
                              detail={"database": s.database, "run_id": s.run_id, "switch_position": s.switch_position,
                                      "stray_position": str(s.stray_position) if s.stray_position else None,
                                      "strays_seen": s.strays_total, "strays_forwarded": s.forwarded_total,
                                      "not_reversed": s.not_reversed, **(extra or {})})
        conn.commit()


def start(cfg: TenantSplitConfig, tenant: str, database: str, *, target_position: BinlogPosition,
          source_position: BinlogPosition, run_id: str) -> dict[str, Any]:
    """Start the tenant's reverse stream at its switch (``target_position``: the tenant database's binlog
    position taken while the tenant was paused, just before its route moved; ``source_position``: the
    source's fence position, from where the tenant's writes to the shared tables are strays).

    Returns ``{"tenant", "database", "started": bool, "position", "source_position", "trigger_warnings",
    "not_reversed"}`` (``started`` False: the stream had already started at this switch — nothing
    changed). A stream left from an earlier switch (drained, or never drained) is replaced. Raises
    :class:`ReverseUnsupported` for a merged table or a server whose GTIDs do not name the writer's
    server id (MySQL), :class:`cutover.binlog.BinlogUnavailable` without a binary log.
    """
    from cutover.binlog import require_binlog

    routes = reverse_routes(cfg)
    for conn_id in {cfg.source_conn_id, cfg.target_conn_id}:
        with mysql_connect(conn_id, database="") as c:
            if require_binlog(c.cursor())["flavor"] != "mariadb":
                raise ReverseUnsupported(f"connection {conn_id!r} is MySQL: its GTIDs do not name the writing session's "
                                         "server_id, so the stream cannot tell its own writes from strays")
    ensure_state(cfg)
    base = {"tenant": tenant, "database": database, "position": str(target_position),
            "source_position": str(source_position), "trigger_warnings": routes.trigger_warnings,
            "not_reversed": sorted(routes.shared)}
    with mysql_connect(cfg.source_conn_id, database="") as s:
        cur = s.cursor()
        cur.execute(f"SELECT switch_position, source_position, state FROM {_state(cfg)}.reverse_streams "
                    "WHERE scope = %s AND tenant = %s FOR UPDATE", (cfg.scope, tenant))
        row = cur.fetchone()
        if row and text_of(row[0]) == str(target_position) and text_of(row[1]) == str(source_position):
            return {**base, "started": False, "state": text_of(row[2])}
        if row and text_of(row[2]) == "running":
            log.warning("tenant %s: a reverse stream from an earlier switch (%s) was never drained: replaced by the one of "
                        "this switch (%s)", tenant, text_of(row[0]), target_position)
        cur.execute(f"""REPLACE INTO {_state(cfg)}.reverse_streams (scope, tenant, target_database, run_id, switch_position,
                        source_position, file, pos, state, applied) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'running', 0)""",
                    (cfg.scope, tenant, database, run_id, str(target_position), str(source_position), target_position.file,
                     target_position.pos))
        with mysql_connect(cfg.target_conn_id, database="") as t:
            t.cursor().execute(f"REPLACE INTO {_state(cfg)}.reverse_strays (scope, tenant, file, pos) VALUES (%s, %s, %s, %s)",
                               (cfg.scope, tenant, source_position.file, source_position.pos))
    stream = Stream(tenant, database, run_id, str(target_position), target_position, "running", 0, str(source_position),
                    source_position)
    _report(cfg, stream, "running", 0.0, {"source_position": str(source_position), "started_at_run": run_id,
                                          "trigger_warnings": routes.trigger_warnings})
    for w in routes.trigger_warnings:
        log.warning("tenant %s: reverse stream: %s", tenant, w)
    log.info("tenant %s: reverse stream started at %s (strays from %s)", tenant, target_position, source_position)
    return {**base, "started": True, "state": "running"}


def stop(cfg: TenantSplitConfig, tenant: str, *, reason: str = "stopped by hand") -> bool:
    """Stop the tenant's reverse stream (state ``stopped``: no run continues it; its position is kept, a
    new switch starts a new one). Its database's later writes then stay there: a rollback's divergence
    check finds them and refuses. Returns whether a live stream was stopped."""
    live = streams(cfg, [tenant])
    if tenant not in live:
        return False
    with reverse_lock(cfg, [tenant]):
        with mysql_connect(cfg.source_conn_id, database="") as c:
            c.cursor().execute(f"UPDATE {_state(cfg)}.reverse_streams SET state = 'stopped' WHERE scope = %s AND tenant = %s",
                               (cfg.scope, tenant))
    _report(cfg, live[tenant], "stopped", None, {"stopped": reason})
    log.warning("tenant %s: reverse stream stopped (%s)", tenant, reason)
    return True


# ------------------------------------------------------------------------------------------------ lock

@contextmanager
def reverse_lock(cfg: TenantSplitConfig, tenants: list[str], wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold a named lock (``GET_LOCK`` on the source server) per tenant while its stream runs: two runs
    (the sync DAG, a rollback's drain) would both apply a keyless change. Raises ``TimeoutError``."""
    with mysql_connect(cfg.source_conn_id, database="") as conn:  # closing it releases the locks
        cur = conn.cursor()
        for tenant in sorted(tenants):
            name = "cutover_reverse_" + hashlib.sha1(f"{cfg.state_database}/{cfg.scope}/{tenant}".encode()).hexdigest()[:40]
            cur.execute("SELECT GET_LOCK(%s, %s)", (name, int(wait_s)))
            if cur.fetchone()[0] != 1:
                raise TimeoutError(f"reverse stream of tenant {tenant!r}: another run held it for {wait_s:.0f} s")
        yield


# ----------------------------------------------------------------------------------------------- apply

def _session(cur: Any, server_id: int) -> None:
    """An applier's session: UTC (binlog TIMESTAMPs are UTC), utf8mb4, zero dates allowed, its writes
    marked with ``server_id``, READ COMMITTED."""
    from cutover.tenant_split.target import TARGET_SQL_MODE

    cur.execute("SET NAMES utf8mb4")
    cur.execute("SET SESSION time_zone = '+00:00'")
    cur.execute("SET SESSION sql_mode = %s", (TARGET_SQL_MODE,))
    cur.execute("SET SESSION server_id = %s", (int(server_id),))
    # record locks only (the conflict check's FOR UPDATE): no gap lock reaches another tenant's inserts
    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")


def _image(route: ReverseRoute, image: dict[str, Any], tenant: str) -> dict[str, Any]:
    """A target row image in source column names, the tenant column set to the tenant."""
    out = {route.columns[k.lower()]: v for k, v in image.items() if k.lower() in route.columns}
    out[route.tenant_column] = tenant
    return out


def _key(route: ReverseRoute, image: dict[str, Any]) -> list[Any]:
    low = {k.lower(): v for k, v in image.items()}
    return [low.get(k.lower()) for k in route.key]


#: rows per multi-row statement of the applier
GROUP_ROWS = 500


class Applier:
    """Applies reversed row changes to the source in log order, consecutive changes of one kind to one
    table as one multi-row statement (an upsert of after images, a delete by keys, a keyless insert): a
    run of changes costs a few round trips, not one per row. Keyless updates and deletes go one by one
    (each touches one row equal to the before image). Call :meth:`flush` before committing."""

    def __init__(self, cur: Any, cfg: TenantSplitConfig) -> None:
        self.cur, self.cfg = cur, cfg
        self.group: tuple[Any, ...] | None = None
        self.items: list[tuple[Any, ...]] = []

    def add(self, route: ReverseRoute, tenant: str, change: Any) -> int:
        """Queue (or apply) one target row change; returns the row changes it makes on the source (a key
        change counts two: the old key deleted, the new row written). Raises :class:`ReverseConflict`."""
        before = _image(route, change.before, tenant) if change.before is not None else None
        after = _image(route, change.after, tenant) if change.after is not None else None
        n = 0
        if route.key:
            if before is not None and (after is None or _key(route, before) != _key(route, after)):
                self._queue(("delete", route, tenant), (tuple(_key(route, before)),))
                n += 1
            if after is not None:
                self._queue(("upsert", route, tenant, tuple(after)), (tuple(after.values()), change.position))
                n += 1
            return n
        if before is None:
            assert after is not None
            self._queue(("insert", route, tenant, tuple(after)), (tuple(after.values()),))
            return 1
        self.flush()
        tbl = self._table(route)
        where = " AND ".join(f"{_q(c)} <=> %s" for c in before)
        if after is not None:
            sets = ", ".join(f"{_q(c)} = %s" for c in after)
            self.cur.execute(f"UPDATE {tbl} SET {sets} WHERE {where} LIMIT 1", [*after.values(), *before.values()])
        else:
            self.cur.execute(f"DELETE FROM {tbl} WHERE {where} LIMIT 1", list(before.values()))
        return 1

    def _table(self, route: ReverseRoute) -> str:
        return f"{_q(self.cfg.source_database)}.{_q(route.source)}"

    def _queue(self, group: tuple[Any, ...], item: tuple[Any, ...]) -> None:
        if group != self.group:
            self.flush()
            self.group = group
        self.items.append(item)
        if len(self.items) >= GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        """Send what is queued (one statement, or two for an upsert whose key lacks the tenant column)."""
        if not self.items or self.group is None:
            self.group, self.items = None, []
            return
        kind, route, tenant = self.group[:3]
        items, self.items, group, self.group = self.items, [], self.group, None
        tbl = self._table(route)
        if kind == "delete":
            keys = [k for (k,) in items]
            self.cur.execute(f"DELETE FROM {tbl} WHERE {_q(route.tenant_column)} = %s AND {_in(route.key, len(keys))}",
                             [tenant, *[v for k in keys for v in k]])
            return
        cols = group[3]
        if kind == "upsert" and not route.key_has_tenant:
            self._check(route, tenant, cols, items)
        one = f"({', '.join(['%s'] * len(cols))})"
        sql = (f"INSERT INTO {tbl} ({', '.join(_q(c) for c in cols)}) VALUES {', '.join([one] * len(items))}")
        if kind == "upsert":
            sql += " ON DUPLICATE KEY UPDATE " + ", ".join(f"{_q(c)} = VALUES({_q(c)})" for c in cols)
        self.cur.execute(sql, [v for item in items for v in item[0]])

    def _check(self, route: ReverseRoute, tenant: str, cols: tuple[str, ...], items: list[tuple[Any, ...]]) -> None:
        """Refuse to overwrite a row another tenant holds under one of these keys (locks them meanwhile)."""
        at = {c.lower(): i for i, c in enumerate(cols)}
        keys = {tuple(values[at[k.lower()]] for k in route.key): pos for values, pos in items}
        kq = ", ".join(_q(k) for k in route.key)
        self.cur.execute(f"SELECT {kq}, {_q(route.tenant_column)} FROM {self._table(route)} WHERE {_in(route.key, len(keys))} "
                         "FOR UPDATE", [v for k in keys for v in k])
        for row in self.cur.fetchall():
            if row[-1] is not None and text_of(row[-1]) != tenant:
                key = [text_of(v) if isinstance(v, bytes) else v for v in row[:-1]]
                raise ReverseConflict(
                    f"{self.cfg.source_database}.{route.source}: key {key} of tenant {tenant!r} (from {route.target}, "
                    f"up to {max(keys.values())}) is held on the source by tenant {text_of(row[-1])!r}'s row: not "
                    "overwritten, the reverse stream stops here (give the tenant database's new rows keys that cannot "
                    "collide, e.g. an auto_increment offset)")


def _in(key: tuple[str, ...], n: int) -> str:
    """``k IN (%s, …)`` or ``(k1, k2) IN ((%s, %s), …)`` for ``n`` keys."""
    if len(key) == 1:
        return f"{_q(key[0])} IN ({', '.join(['%s'] * n)})"
    one = f"({', '.join(['%s'] * len(key))})"
    return f"({', '.join(_q(k) for k in key)}) IN ({', '.join([one] * n)})"


def _touch(s: Stream, route: ReverseRoute, change: Any) -> None:
    """Remember the keys of the source rows ``change`` reaches (see :attr:`Stream.touched`)."""
    if change.before is not None and (change.after is None or not route.key or
                                      _key(route, change.before) != _key(route, change.after)):
        s.removed.add(route.target)
    if not route.key:
        s.touched[route.target] = None
        return
    keys = s.touched.setdefault(route.target, set())
    if keys is not None:
        for image in (change.before, change.after):
            if image is not None:
                keys.add(tuple(_key(route, _image(route, image, s.tenant))))


def apply_reverse(cur: Any, cfg: TenantSplitConfig, route: ReverseRoute, tenant: str, change: Any) -> int:
    """Apply one target row change to the source table now (see :class:`Applier`); returns row changes made."""
    applier = Applier(cur, cfg)
    n = applier.add(route, tenant, change)
    applier.flush()
    return n


def _save(cur: Any, cfg: TenantSplitConfig, s: Stream, position: BinlogPosition, n: int) -> None:
    cur.execute(f"UPDATE {_state(cfg)}.reverse_streams SET file = %s, pos = %s, applied = applied + %s "
                "WHERE scope = %s AND tenant = %s", (position.file, position.pos, int(n), cfg.scope, s.tenant))
    s.position = position


class _ReverseSide:
    """The reverse stream's share of a read: target changes of the streams' databases → the source, committed
    with each stream's new position (see :func:`_reverse`)."""

    def __init__(self, cfg: TenantSplitConfig, todo: dict[str, Stream], routes: Routes, sconn: Any,
                 hook: Callable[[str, int], None] | None) -> None:
        self.cfg, self.todo, self.routes, self.sconn, self.hook = cfg, todo, routes, sconn, hook
        self.by_db = {s.database: s for s in todo.values()}
        self.cur = sconn.cursor()
        _session(self.cur, REVERSE_SERVER_ID)
        self.applier = Applier(self.cur, cfg)
        self.pending: dict[str, int] = {}
        self.unsaved, self.last_commit = 0, time.monotonic()

    @property
    def start(self) -> BinlogPosition:
        """Where a reader for every stream starts."""
        return min(s.position for s in self.todo.values())

    @property
    def tables(self) -> set[str]:
        """Target table names the reader keeps."""
        return set(self.routes.by_target) | self.routes.shared

    def commit(self, position: BinlogPosition) -> None:
        """Send what is queued, save the positions of the streams it changed, commit."""
        self.applier.flush()
        for tenant, n in self.pending.items():
            _save(self.cur, self.cfg, self.todo[tenant], position, n)
        self.sconn.commit()
        self.pending.clear()
        self.unsaved, self.last_commit = 0, time.monotonic()
        if self.hook:
            self.hook("committed", 0)

    def handle(self, batch: Any) -> None:
        """One transaction of the target's log (its changes outside the streams' databases are ignored)."""
        if batch and batch.origin_server_id != FORWARD_SERVER_ID:  # forwarded strays: not ours to reverse
            n_batch = 0
            for ch in batch:
                s = self.by_db.get(ch.schema)
                if s is None or batch.position <= s.position:
                    continue
                route = self.routes.by_target.get(ch.table)
                if route is None:
                    s.not_reversed[ch.table] = s.not_reversed.get(ch.table, 0) + 1
                    continue
                got = self.applier.add(route, s.tenant, ch)
                _touch(s, route, ch)
                s.applied_now += got
                s.newest_ts = max(s.newest_ts, int(batch.timestamp))
                self.pending[s.tenant] = self.pending.get(s.tenant, 0) + got
                n_batch += got
            self.unsaved += n_batch
            if n_batch and self.hook:
                self.applier.flush()  # the transaction's rows written, not committed
                self.hook("applied", n_batch)
        if self.pending and (self.unsaved >= COMMIT_ROWS or time.monotonic() - self.last_commit >= COMMIT_SECONDS):
            self.commit(batch.position)

    def finish(self, reached: BinlogPosition | None) -> None:
        """Every stream is caught up to where the reader got: commit it."""
        if reached is not None:
            for s in self.todo.values():
                if s.position < reached:
                    self.pending.setdefault(s.tenant, 0)
            if self.pending:
                self.commit(reached)
        self.sconn.commit()


def _reverse(cfg: TenantSplitConfig, todo: dict[str, Stream], routes: Routes, *, stop_at: BinlogPosition | None,
             max_seconds: float | None, hook: Callable[[str, int], None] | None) -> BinlogPosition | None:
    """Apply the streams' target changes to the source (one reader of the target's log for all); returns
    the position reached."""
    from cutover.binlog import read_changes

    if not todo:
        return None
    t0 = time.monotonic()
    reached: BinlogPosition | None = None
    with mysql_connect(cfg.source_conn_id, database="") as sconn:
        try:
            side = _ReverseSide(cfg, todo, routes, sconn, hook)
            for batch in read_changes(cfg.target_conn_id, side.start, schemas=set(side.by_db), tables=side.tables,
                                      stop_at=stop_at):
                reached = batch.position
                side.handle(batch)
                if max_seconds is not None and time.monotonic() - t0 > max_seconds:
                    break
            side.finish(reached)
        finally:
            sconn.rollback()
    return reached


# ---------------------------------------------------------------------------------------------- strays

def _forward_routes(cfg: TenantSplitConfig, s: Stream, source: tuple[Any, dict[str, Any]]) -> dict[str, Any]:
    """The forward catch-up's routes of one tenant (source table → :class:`cutover.tenant_split.sync.TableRoute`)."""
    from cutover.tenant_split import sync

    return sync.routes_for(cfg, {s.tenant: s.database}, source).get(s.tenant, {})


class _StraySide:
    """The stray scan's share of a read: the tenants' rows written to the shared tables by anyone but the
    reverse applier, recorded (and forwarded) with each stream's stray position (see :func:`_strays`)."""

    def __init__(self, cfg: TenantSplitConfig, todo: dict[str, Stream], routes: Routes, source: tuple[Any, dict[str, Any]],
                 tconn: Any, *, forward: bool, run_id: str | None) -> None:
        from cutover.tenant_split import sync

        self.cfg, self.tconn, self.forward, self.run_id = cfg, tconn, forward, run_id
        self.todo = {t: s for t, s in todo.items() if s.stray_position is not None}
        self.by_source = routes.by_source
        self.tcur = tconn.cursor()
        self.fwd: dict[str, Any] = {}
        if forward:
            from cutover.tenant_split.target import session

            session(self.tcur)
            self.tcur.execute("SET SESSION server_id = %s", (FORWARD_SERVER_ID,))
            for t, s in self.todo.items():
                froutes = _forward_routes(cfg, s, source)
                for r in froutes.values():
                    r.snapshot = None  # strays are after every copy snapshot
                self.fwd[t] = sync.TenantSync(t, s.database, froutes)

    @property
    def start(self) -> BinlogPosition:
        """Where a reader for every stream's stray scan starts."""
        return min(s.stray_position for s in self.todo.values() if s.stray_position is not None)

    def handle(self, batch: Any) -> None:
        """One transaction of the source's log (its changes outside the source database are ignored)."""
        from cutover.tenant_split import sync

        if not batch or batch.origin_server_id == REVERSE_SERVER_ID:
            return  # the stream's own writes
        for t, s in self.todo.items():
            assert s.stray_position is not None
            if batch.position <= s.stray_position:
                continue
            found: list[dict[str, Any]] = []
            for ch in batch:
                route = self.by_source.get(ch.table) if ch.schema == self.cfg.source_database else None
                if route is None or not any(_is_tenants(route, img, t) for img in (ch.before, ch.after)):
                    continue
                img = ch.after if ch.after is not None else ch.before
                assert img is not None
                key = [_jsonable(v) for v in _key(route, img)] if route.key else None
                found.append({"table": ch.table, "kind": ch.kind, "key": key, "position": str(batch.position),
                              "forwarded": self.forward})
                if self.forward and ch.table in self.fwd[t].routes:
                    self.fwd[t].routes[ch.table].position = s.stray_position
                    sync.apply_change(self.tcur, self.fwd[t], ch)
            if not found:
                continue  # the position moves on at the end (a rescan of such a stretch finds nothing)
            n_fwd = len(found) if self.forward else 0
            s.strays += len(found)
            s.forwarded += n_fwd
            s.strays_total += len(found)
            s.forwarded_total += n_fwd
            _record(self.cfg, t, found, str(batch.position), self.run_id)
            log.error("tenant %s: %d stray write(s) to the shared tables after its switch (%s%s): %s", t, len(found),
                      batch.position, ", forwarded to its database" if self.forward else "",
                      "; ".join(f"{w['kind']} {w['table']} {w['key']}" for w in found[:5]))
            self.tcur.execute(f"UPDATE {_state(self.cfg)}.reverse_strays SET file = %s, pos = %s, seen = seen + %s, "
                              "forwarded = forwarded + %s WHERE scope = %s AND tenant = %s",
                              (batch.position.file, batch.position.pos, len(found), n_fwd, self.cfg.scope, t))
            s.stray_position = batch.position
            self.tconn.commit()  # forwarded rows and the stray position together

    def finish(self, reached: BinlogPosition | None) -> None:
        """Every scan is done up to where the reader got: save it."""
        if reached is not None:
            for t, s in self.todo.items():
                if s.stray_position is not None and s.stray_position < reached:
                    self.tcur.execute(f"UPDATE {_state(self.cfg)}.reverse_strays SET file = %s, pos = %s "
                                      "WHERE scope = %s AND tenant = %s", (reached.file, reached.pos, self.cfg.scope, t))
                    s.stray_position = reached
        self.tconn.commit()


def _strays(cfg: TenantSplitConfig, todo: dict[str, Stream], routes: Routes, source: tuple[Any, dict[str, Any]], *,
            forward: bool, stop_at: BinlogPosition | None, run_id: str | None) -> BinlogPosition | None:
    """Read the source log from each stream's stray position for the tenant's rows; record (and forward)
    strays. Returns the source position reached (None: no stream to scan)."""
    from cutover.binlog import read_changes

    if not any(s.stray_position is not None for s in todo.values()):
        return None
    reached: BinlogPosition | None = None
    with mysql_connect(cfg.target_conn_id, database="") as tconn:
        try:
            side = _StraySide(cfg, todo, routes, source, tconn, forward=forward, run_id=run_id)
            for batch in read_changes(cfg.source_conn_id, side.start, schemas={cfg.source_database},
                                      tables=set(side.by_source), stop_at=stop_at):
                reached = batch.position
                side.handle(batch)
            side.finish(reached)
        finally:
            tconn.rollback()
    return reached


def _combined(cfg: TenantSplitConfig, todo: dict[str, Stream], routes: Routes, source: tuple[Any, dict[str, Any]], *,
              forward: bool, max_seconds: float | None, run_id: str | None,
              hook: Callable[[str, int], None] | None) -> BinlogPosition | None:
    """:func:`_reverse` and :func:`_strays` over one reader, for source and target on one server (one log:
    each change is decoded once, not once per reader). Reads up to the log's end now; returns it."""
    from cutover.binlog import ChangeBatch, read_changes

    t0 = time.monotonic()
    reached: BinlogPosition | None = None
    with mysql_connect(cfg.source_conn_id, database="") as sconn, mysql_connect(cfg.target_conn_id, database="") as tconn:
        try:
            rev = _ReverseSide(cfg, todo, routes, sconn, hook)
            strays = _StraySide(cfg, todo, routes, source, tconn, forward=forward, run_id=run_id)
            start_at = min(rev.start, strays.start) if strays.todo else rev.start
            src = cfg.source_database
            for batch in read_changes(cfg.source_conn_id, start_at, schemas=set(rev.by_db) | {src},
                                      tables=rev.tables | set(strays.by_source)):
                reached = batch.position
                mine = [c for c in batch if c.schema == src]
                if len(mine) == len(batch):
                    strays.handle(batch)
                    rev.handle(ChangeBatch([], position=batch.position, timestamp=batch.timestamp, gtid=batch.gtid))
                elif not mine:
                    rev.handle(batch)
                else:  # one transaction wrote both sides: each side gets its changes
                    strays.handle(ChangeBatch(mine, position=batch.position, timestamp=batch.timestamp, gtid=batch.gtid))
                    rev.handle(ChangeBatch([c for c in batch if c.schema != src], position=batch.position,
                                           timestamp=batch.timestamp, gtid=batch.gtid))
                if max_seconds is not None and time.monotonic() - t0 > max_seconds:
                    break
            rev.finish(reached)
            strays.finish(reached)
        finally:
            sconn.rollback()
            tconn.rollback()
    return reached


def _is_tenants(route: ReverseRoute, image: dict[str, Any] | None, tenant: str) -> bool:
    if image is None:
        return False
    low = route.tenant_column.lower()
    return any(k.lower() == low and v is not None and text_of(v) == tenant for k, v in image.items())


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def _record(cfg: TenantSplitConfig, tenant: str, found: list[dict[str, Any]], position: str, run_id: str | None) -> None:
    """Record one transaction's strays unless a killed run already did (a transaction = one position)."""
    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        seen = conn.execute(f"SELECT 1 FROM {control.SCHEMA}.stray_writes WHERE pipeline = %s AND scope = %s AND name = %s "
                            "AND position = %s LIMIT 1", (PIPELINE, cfg.scope, tenant, position)).fetchone()
        if not seen:
            control.record_stray_writes(conn, PIPELINE, cfg.scope, tenant, found, run_id=run_id)
        conn.commit()


# ------------------------------------------------------------------------------------------------- run

def _on_tenant_db(cfg: TenantSplitConfig, tenants: list[str]) -> set[str]:
    """The tenants whose route points at their own database now."""
    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        return {r[0] for r in conn.execute(
            f"SELECT name FROM {control.SCHEMA}.routes WHERE pipeline = %s AND scope = %s AND name = ANY(%s) "
            "AND location ->> 'backend' = 'tenant_db'", (PIPELINE, cfg.scope, tenants)).fetchall()}


def run(cfg: TenantSplitConfig, tenants: list[str] | None = None, *, stop_at: BinlogPosition | None = None,
        forward_stray_writes: bool = False, max_seconds: float | None = None, run_id: str | None = None,
        hook: Callable[[str, int], None] | None = None, held: bool = False,
        streams_out: dict[str, Stream] | None = None) -> dict[str, Any]:
    """Run every live reverse stream (of ``tenants``; None: all) up to ``stop_at`` on the target (default:
    its log's end now), then scan the source for strays up to its end now (``forward_stray_writes``: apply
    them to the tenant database too). A ``drained`` stream runs only while its tenant's readers are still
    on its database (a rollback refused after the drain).

    ``hook(stage, rows)`` is called with ``"applied"`` after a transaction's rows are applied (not yet
    committed) and ``"committed"`` after a commit (tests kill a run there). Returns ``{"tenants": {tenant:
    {"database", "applied", "position", "lag_s", "strays", "forwarded", "not_reversed"}}, "applied",
    "seconds", "reached"}``; ``lag_s``: seconds from the start of the read (the stream is caught up to the
    log's end as of then) to now, or, when ``max_seconds`` cut the read short, from the newest change
    applied to now. ``held``: the caller holds :func:`reverse_lock` for ``tenants`` (not taken again);
    ``streams_out`` receives each stream run (:attr:`Stream.touched`: what its changes reached). Raises
    :class:`ReverseConflict` (the stream is reported ``failed``) and the reader's errors.
    """
    from contextlib import nullcontext

    with nullcontext() if held else reverse_lock(cfg, tenants or list(streams(cfg))):
        return _run_held(cfg, tenants, stop_at=stop_at, forward_stray_writes=forward_stray_writes,
                         max_seconds=max_seconds, run_id=run_id, hook=hook, streams_out=streams_out)


def _run_held(cfg: TenantSplitConfig, tenants: list[str] | None, *, stop_at: BinlogPosition | None,
              forward_stray_writes: bool, max_seconds: float | None, run_id: str | None,
              hook: Callable[[str, int], None] | None, streams_out: dict[str, Stream] | None = None) -> dict[str, Any]:
    from cutover.tenant_split.sync import source_rules

    t0, wall0 = time.monotonic(), time.time()
    todo = streams(cfg, tenants)
    if todo:
        routed = _on_tenant_db(cfg, list(todo))
        todo = {t: s for t, s in todo.items() if s.state == "running" or t in routed}
    if streams_out is not None:
        streams_out.update(todo)  # the caller reads what each stream touched
    if not todo:
        return {"tenants": {}, "applied": 0, "seconds": 0.0, "reached": None}
    source = source_rules(cfg)
    routes = reverse_routes(cfg, source)
    from cutover.tenant_split.copy import same_server

    one_log = stop_at is None and same_server(cfg)  # one server, one log: one reader for both sides
    try:
        if one_log:
            reached = strays_reached = _combined(cfg, todo, routes, source, forward=forward_stray_writes,
                                                 max_seconds=max_seconds, run_id=run_id, hook=hook)
        else:
            reached = _reverse(cfg, todo, routes, stop_at=stop_at, max_seconds=max_seconds, hook=hook)
    except ReverseConflict as exc:
        for s in todo.values():
            _report(cfg, s, "failed", None, {"error": str(exc)[:2000]})
        raise
    cut_short = max_seconds is not None and time.monotonic() - t0 > max_seconds
    if not one_log:
        strays_reached = _strays(cfg, todo, routes, source, forward=forward_stray_writes, stop_at=None, run_id=run_id)
    out: dict[str, Any] = {}
    now = time.time()
    for t, s in todo.items():
        lag = (now - s.newest_ts) if cut_short and s.newest_ts else (now - wall0)
        lag = round(max(0.0, lag), 3)
        _report(cfg, s, s.state, lag)
        out[t] = {"database": s.database, "applied": s.applied_now, "position": str(s.position), "lag_s": lag,
                  "strays": s.strays, "forwarded": s.forwarded, "not_reversed": s.not_reversed}
    total = sum(v["applied"] for v in out.values())
    seconds = time.monotonic() - t0
    log.info("tenant_split reverse: %d row change(s) applied to the shared tables for %d tenant(s) in %.1f s, up to %s",
             total, len(out), seconds, reached)
    return {"tenants": out, "applied": total, "seconds": round(seconds, 3), "reached": str(reached) if reached else None,
            "strays_reached": str(strays_reached) if strays_reached else None}


def drain(cfg: TenantSplitConfig, keys: list[UnitKey], *, held: bool = False,
          streams_out: dict[str, Stream] | None = None) -> dict[str, Any]:
    """Drain the reverse streams of the tenants of ``keys`` before a rollback (their writers paused or
    stopped): run each up to the target's position now, scan strays up to the source's position now,
    move the tenant's forward catch-up positions there and mark the stream ``drained``.

    ``held``: the caller holds :func:`reverse_lock` for these tenants (a rollback's write pause); it is not
    taken again. ``streams_out`` receives each drained tenant's :class:`Stream` (what it touched).
    Returns ``{unit label: {"applied": rows applied by this drain, "position": "file:pos" (the target
    position drained to; None without a stream), "stream": "drained" | "none"}}``. Raises what
    :func:`run` raises (the life cycle then lets the divergence check decide).
    """
    from contextlib import nullcontext

    from cutover.binlog import current_position

    by_tenant: dict[str, list[UnitKey]] = {}
    for k in keys:
        by_tenant.setdefault(k.parts[0], []).append(k)
    from cutover.tenant_split.copy import same_server

    live = streams(cfg, list(by_tenant))
    routed = _on_tenant_db(cfg, list(live)) if live else set()
    one_server = bool(live) and same_server(cfg)
    out: dict[str, Any] = {}
    for tenant, tkeys in by_tenant.items():
        s = live.get(tenant)
        if s is None:
            for k in tkeys:
                out[k.label] = {"applied": 0, "position": None, "stream": "none"}
            continue
        if s.state == "drained" and tenant not in routed:
            # drained by an earlier rollback that went through: the forward catch-up owns the positions now
            for k in tkeys:
                out[k.label] = {"applied": 0, "position": str(s.position), "stream": "drained"}
            continue
        with nullcontext() if held else reverse_lock(cfg, [tenant]):
            with mysql_connect(cfg.target_conn_id, database="") as t:
                target_now = current_position(t.cursor())
            # one server: one reader for the stream and the stray scan, to the log's end (past target_now only
            # what other databases wrote: the tenant's writers are stopped or paused)
            res = _run_held(cfg, [tenant], stop_at=None if one_server else target_now, forward_stray_writes=False,
                            max_seconds=None, run_id=None, hook=None, streams_out=streams_out)
            got = res["tenants"].get(tenant, {"applied": 0, "position": str(s.position)})
            # the strays were scanned up to the source's end after the reverse stream's own writes: the forward
            # catch-up continues from there (nothing it skips is unseen, nothing the stream wrote comes back)
            if res.get("strays_reached"):
                source_end = BinlogPosition.parse(res["strays_reached"])
            else:
                with mysql_connect(cfg.source_conn_id, database="") as c:
                    source_end = current_position(c.cursor())
            with mysql_connect(cfg.target_conn_id, database="") as t:
                cur = t.cursor()
                cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'binlog_positions'",
                            (cfg.state_database,))
                if cur.fetchone()[0]:
                    cur.execute(f"UPDATE {_state(cfg)}.binlog_positions SET file = %s, pos = %s WHERE target_database = %s",
                                (source_end.file, source_end.pos, s.database))
            with mysql_connect(cfg.source_conn_id, database="") as c:
                c.cursor().execute(f"UPDATE {_state(cfg)}.reverse_streams SET state = 'drained' WHERE scope = %s AND tenant = %s",
                                   (cfg.scope, tenant))
        s.state, s.applied_now = "drained", 0
        s.position = BinlogPosition.parse(got["position"])
        _report(cfg, s, "drained", 0.0, {"drained_to": str(target_now), "forward_positions_moved_to": str(source_end)})
        log.info("tenant %s: reverse stream drained to %s (%d row change(s)); forward catch-up positions moved to %s",
                 tenant, target_now, got["applied"], source_end)
        for k in tkeys:
            out[k.label] = {"applied": int(got["applied"]), "position": got["position"], "stream": "drained"}
    return out
