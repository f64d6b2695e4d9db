"""Route-aware live writers: the application of a tenant or a table, writing while its data moves.

Two writers share one cooperative protocol (the cutover's write pause relies on it):

* :class:`TenantWriter` (``tenant_split``) writes one tenant's rows wherever the tenant's routing entry
  (``control.get_route(pg, pipeline, scope, tenant)``) says they are: no entry or backend ``shared`` →
  the shared tables of the source database; backend ``tenant_db`` → the tenant's own database
  (``location["conn_id"]`` / ``["database"]``), each table under its name there
  (:attr:`WriterTable.target`: a mapping may rename it);
* :class:`TableWriter` (``mysql_to_postgres``) writes one table ``(id BIGINT key, name, amount, note)``
  on MySQL (no entry, or backend ``mysql``) or on PostgreSQL (backend ``postgres``).

The protocol: state ``paused`` → the writer waits (re-reads every 2 ms; the wait counts in the
latency). After the transaction's first statement (from then on it is visible in
``information_schema.INNODB_TRX``, which the pause drains, or holds the lock a table-scoped drain waits
for) the writer reads the route again and, when it changed (paused or moved), rolls back and starts over
— so every transaction either began before the pause and is waited for, or sees the pause.

A transaction changes ``rows_per_tx`` rows (the changed row is the unit of every rate here), cycling
through :data:`OPS` (inserts, updates, deletes, primary-key changes) over the writer's tables, grouped
into few statements: one multi-row ``INSERT``, one ``UPDATE … WHERE key IN (…)``, one key change
``UPDATE … SET key = CASE key WHEN … END``, one ``DELETE … IN (…)`` per table. A key is touched once per
transaction. Deletes and key changes touch only rows this writer inserted (other rows may have children
whose foreign keys forbid it); updates touch those and the unit's existing rows.

Three ways to run one:

* :class:`WriterThread` (and :class:`LiveWriter`, a tenant writer in a thread: the tests' writer every
  10 ms) — one thread, one transaction every ``interval_s``;
* :class:`WriterPool` — the benchmarks' writer at a fixed rate of changed rows/s: one OS process per
  unit (``procs_per_unit`` for more), each with its own connections and a pacing loop (a transaction
  due every ``rows_per_tx / unit_rate`` seconds on an absolute schedule; a process more than
  :data:`MAX_BEHIND_S` behind drops the backlog and counts it), so that a paused unit never slows
  another unit's process. :meth:`WriterPool.summary` prints asked vs achieved rows/s.

What a writer records (:class:`WriterStats`): per committed transaction its latency in seconds (from
the moment it wanted to start, waits for a pause included) and wall-clock start/end (``time.time()``)
and side; failed transactions (aborted) by error code (MySQL's: 1213 deadlock, 1205 lock-wait
timeout, …; ``-1`` for a PostgreSQL or other driver error, its message kept); the keys written per
side and table; and :attr:`WriterStats.expected` — the state the writer believes each row it wrote is
in (``None`` once deleted; a dict of the columns it set), what a test compares the data with at the end.

Keys: new keys are allocated from ``key_base`` upwards (pick a range no other writer and no sample row
uses; a tenant writer's default is ``10**12 + (crc32(tenant) % 10000) * 10**8``, apart per tenant; the
``n``-th process of a pool's unit adds ``n * 10**7``).

:func:`sample_tables` gives the tables for the shop sample of :mod:`cutover.samples.tenants`
(``orders`` and ``customers``; the default mapping keeps their names).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import queue
import random
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cutover import control
from cutover.connections import CONTROL, MYSQL_SOURCE, POSTGRES_TARGET, pg_open, resolve
from cutover.identifiers import quote_mysql, quote_pg

log = logging.getLogger(__name__)

#: the operations a writer's changed rows cycle through (insert first, so that there is something to change)
OPS = ("insert", "update", "insert", "key_change", "update", "delete")
#: how long a writer waits before reading a paused route again (seconds)
PAUSE_POLL_S = 0.002
#: MySQL error codes of an aborted transaction (deadlock, lock-wait timeout)
ABORT_CODES = (1213, 1205)
#: a pool process this many seconds behind its schedule drops the backlog (counted in ``behind``)
MAX_BEHIND_S = 1.0
#: the pool's default ceiling of transactions per second per process (rows_per_tx is chosen from it): at
#: 5,000 rows/s over 4 processes, 50-row transactions reached 4,854 rows/s with the machine's 2 cores
#: loaded, 25-row ones 3,980 (each commit waits for the binlog's and the redo log's flush)
TX_PER_S_PER_PROC = 25.0
#: key range of one pool process within its unit
PROC_KEY_SPAN = 10**7

ValueFn = Callable[[str, int, int], Any]
"""A column value for a new or updated row: ``f(unit, key, seq) -> value`` (``seq`` the writer's
statement counter)."""

Change = tuple[str, str, int, "int | None", "dict[str, Any] | None"]
"""One changed row: ``(op, table, key, new_key, row)`` (``row``: the columns set, insert / update)."""


@dataclass(frozen=True)
class WriterTable:
    """One table a tenant writer writes.

    ``source`` / ``target``: its name in the shared source database / in the tenant's database;
    ``key``: the integer primary-key column; ``tenant_column``: the tenant column (kept in the tenant
    database); ``insert``: column → constant or :data:`ValueFn` for the other columns of a new row;
    ``update``: column → constant or :data:`ValueFn` for an update (one value set per statement).
    """

    source: str
    key: str
    tenant_column: str
    insert: Mapping[str, Any]
    update: Mapping[str, Any]
    target: str = ""

    @property
    def target_name(self) -> str:
        """The table's name in the tenant's database (``source`` when not renamed)."""
        return self.target or self.source


@dataclass
class WriterStats:
    """What a writer did: see the module docstring. Latencies in seconds; ``commits`` items are
    ``(started_at, ended_at, side)`` in ``time.time()`` seconds; ``rows`` changed rows committed;
    ``tenant`` the unit's name (a tenant, or a table for :class:`TableWriter`)."""

    tenant: str
    latencies: list[float] = field(default_factory=list)
    commits: list[tuple[float, float, str]] = field(default_factory=list)
    rows: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    error_messages: list[str] = field(default_factory=list)
    retries_on_route_change: int = 0
    paused_waits: int = 0
    behind: int = 0
    written: dict[str, dict[str, set[int]]] = field(default_factory=dict)
    expected: dict[str, dict[int, dict[str, Any] | None]] = field(default_factory=dict)

    @property
    def transactions(self) -> int:
        """Committed transactions."""
        return len(self.latencies)

    @property
    def aborted(self) -> int:
        """Transactions that failed (rolled back on an error, any code)."""
        return sum(self.errors.values())

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of committed transactions' latency in seconds (None: none yet)."""
        if not self.latencies:
            return None
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    def first_commit(self, side: str) -> float | None:
        """``time.time()`` of the first commit on ``side`` (None: none)."""
        return min((c[1] for c in self.commits if c[2] == side), default=None)

    def merge(self, other: WriterStats) -> None:
        """Add another process's stats of the same unit (disjoint keys) to these."""
        self.latencies += other.latencies
        self.commits = sorted(self.commits + other.commits)
        self.rows += other.rows
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v
        self.error_messages += other.error_messages
        self.retries_on_route_change += other.retries_on_route_change
        self.paused_waits += other.paused_waits
        self.behind += other.behind
        for side, tables in other.written.items():
            for table, keys in tables.items():
                self.written.setdefault(side, {}).setdefault(table, set()).update(keys)
        for table, rows in other.expected.items():
            self.expected.setdefault(table, {}).update(rows)

    def summary(self) -> dict[str, Any]:
        """JSON-able figures: counts, p50/p95/p99/max latency (s), errors by code, commits per side."""
        sides: dict[str, int] = {}
        for _, _, side in self.commits:
            sides[side] = sides.get(side, 0) + 1
        return {"tenant": self.tenant, "transactions": self.transactions, "rows": self.rows, "per_side": sides,
                "aborted": self.aborted, "errors": {str(k): v for k, v in sorted(self.errors.items())},
                "p50_s": self.percentile(0.5), "p95_s": self.percentile(0.95), "p99_s": self.percentile(0.99),
                "max_s": max(self.latencies) if self.latencies else None, "paused_waits": self.paused_waits,
                "retries_on_route_change": self.retries_on_route_change, "behind": self.behind}


class _RouteChanged(Exception):
    """The route moved or paused after the transaction began: roll back and start over."""


def _esc(sql_name: str) -> str:
    """A quoted name inside a query with ``%s`` parameters (both drivers format with ``%``)."""
    return sql_name.replace("%", "%%")


def _error_code(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return int(args[0]) if args and isinstance(args[0], int) else -1


class _CooperativeWriter:
    """The protocol both writers share (see the module docstring). Subclasses say where the route points
    (:meth:`_where`), how to reach it (:meth:`_conn`), what the next rows are (:meth:`_plan`) and how to
    write them (:meth:`_write`). Not thread-safe: one thread or process drives one writer."""

    def __init__(self, unit: str, *, pipeline: str, scope: str, control_conn_id: str, rows_per_tx: int,
                 seed: Any, key_base: int) -> None:
        if rows_per_tx < 1:
            raise ValueError(f"rows_per_tx must be at least 1, got {rows_per_tx}")
        self.unit, self.pipeline, self.scope, self.control_conn_id = unit, pipeline, scope, control_conn_id
        self.rows_per_tx = rows_per_tx
        self.stats = WriterStats(unit)
        self._next_key = key_base
        self._seq = 0
        self._rng = random.Random(f"live-writer:{seed}:{unit}")
        self._own: dict[str, list[int]] = {}
        self._conns: dict[tuple[str, ...], Any] = {}
        self._pg: Any = None

    # --- to override --------------------------------------------------------------------------------

    def _where(self, route: dict[str, Any] | None) -> tuple[str, tuple[str, ...]]:
        """``(side, connection key)`` for the routing entry (None: never routed)."""
        raise NotImplementedError

    def _connect(self, where: tuple[str, ...]) -> Any:
        """A new connection (autocommit off) for a connection key of :meth:`_where`."""
        raise NotImplementedError

    def _tables(self) -> list[str]:
        raise NotImplementedError

    def _existing(self, table: str) -> Sequence[int]:
        """Keys of rows the writer may update but did not write."""
        raise NotImplementedError

    def _new_row(self, table: str, key: int) -> dict[str, Any]:
        raise NotImplementedError

    def _update_row(self, table: str, key: int) -> dict[str, Any]:
        raise NotImplementedError

    def _write(self, cur: Any, side: str, table: str, op: str, changes: list[Change]) -> None:
        """Run one statement for ``changes`` (all ``op`` on ``table``) on ``side``."""
        raise NotImplementedError

    def _setup(self) -> None:
        """Anything read before the first transaction (open() calls it)."""

    # --- life cycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Connect to the control database and run :meth:`_setup`."""
        self._pg = pg_open(self.control_conn_id, autocommit=True)
        self._setup()

    def close(self) -> None:
        """Close every connection (errors while closing are ignored)."""
        for c in [self._pg, *self._conns.values()]:
            try:
                if c is not None:
                    c.close()
            except Exception:  # noqa: BLE001 - closing
                pass
        self._conns.clear()
        self._pg = None

    def _conn(self, where: tuple[str, ...]) -> Any:
        if where not in self._conns:
            self._conns[where] = self._connect(where)
        return self._conns[where]

    def _route(self) -> tuple[str, tuple[str, ...], bool]:
        r = control.get_route(self._pg, self.pipeline, self.scope, self.unit)
        side, where = self._where(r)
        return side, where, r is not None and r["state"] == "paused"

    # --- one transaction ----------------------------------------------------------------------------

    def transaction(self, halted: Callable[[], bool] = lambda: False) -> bool:
        """Run one transaction of ``rows_per_tx`` changed rows where the route points, waiting while it
        is paused and starting over when it moves after the first statement. True: committed; False:
        failed (recorded in ``stats.errors``) or ``halted()`` while waiting."""
        import MySQLdb
        import psycopg

        wanted = time.monotonic()
        while not halted():
            side, where, paused = self._route()
            if paused:
                self.stats.paused_waits += 1
                time.sleep(PAUSE_POLL_S)
                continue
            conn = self._conn(where)
            started = time.time()
            try:
                changes, own = self._statements(conn.cursor(), side, where)
                conn.commit()
            except _RouteChanged:
                conn.rollback()
                self.stats.retries_on_route_change += 1
                continue
            except (MySQLdb.Error, psycopg.Error) as exc:
                try:
                    conn.rollback()
                except Exception:  # noqa: BLE001 - a broken connection: opened again next time
                    self._conns.pop(where, None)
                code = _error_code(exc) if isinstance(exc, MySQLdb.Error) else -1
                self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
                if len(self.stats.error_messages) < 50:
                    self.stats.error_messages.append(f"{side}: {type(exc).__name__}: {exc}"[:300])
                return False
            self._own = own
            self._record(changes, side)
            self.stats.latencies.append(time.monotonic() - wanted)
            self.stats.commits.append((started, time.time(), side))
            self.stats.rows += len(changes)
            return True
        return False

    def _pick(self, own: list[int], existing: Sequence[int], n_upd: int, n_mut: int) -> tuple[list[int], list[int]]:
        """``(update keys, delete / key-change keys)``: distinct, the latter from ``own`` only."""
        n_mut = min(n_mut, len(own))
        mut = self._rng.sample(own, n_mut) if n_mut else []
        taken = set(mut)
        upd: list[int] = []
        total = len(own) + len(existing)
        if n_upd and total:
            for i in self._rng.sample(range(total), min(total, n_upd + n_mut)):
                k = own[i] if i < len(own) else existing[i - len(own)]
                if k not in taken:
                    upd.append(k)
                    taken.add(k)
                    if len(upd) == n_upd:
                        break
        return upd, mut

    def _plan(self) -> tuple[dict[str, dict[str, list[Change]]], dict[str, list[int]]]:
        """The next transaction's changes per table and op, and the writer's own keys after it."""
        tables = self._tables()
        wanted: dict[str, dict[str, int]] = {t: dict.fromkeys(("insert", "update", "key_change", "delete"), 0)
                                             for t in tables}
        for _ in range(self.rows_per_tx):
            s = self._seq
            self._seq += 1
            wanted[tables[(s // len(OPS)) % len(tables)]][OPS[s % len(OPS)]] += 1
        plan: dict[str, dict[str, list[Change]]] = {}
        own_after: dict[str, list[int]] = {}
        for t in tables:
            w, own = wanted[t], self._own.setdefault(t, [])
            upd, mut = self._pick(own, self._existing(t), w["update"], w["delete"] + w["key_change"])
            dels, kcs = mut[: min(w["delete"], len(mut))], mut[min(w["delete"], len(mut)):]
            n_ins = w["insert"] + (w["update"] - len(upd)) + (w["delete"] + w["key_change"] - len(mut))  # shortfalls
            ops: dict[str, list[Change]] = {"insert": [], "update": [], "key_change": [], "delete": []}
            for _ in range(n_ins):
                key = self._next_key
                self._next_key += 1
                ops["insert"].append(("insert", t, key, None, self._new_row(t, key)))
            if upd:
                vals = self._update_row(t, upd[0])
                ops["update"] = [("update", t, k, None, vals) for k in upd]
            for k in kcs:
                ops["key_change"].append(("key_change", t, k, self._next_key, None))
                self._next_key += 1
            ops["delete"] = [("delete", t, k, None, None) for k in dels]
            plan[t] = ops
            gone = set(mut)
            own_after[t] = [k for k in own if k not in gone] + [c[2] for c in ops["insert"]] + [c[3] for c in ops["key_change"]
                                                                                                if c[3] is not None]
        return plan, own_after

    def _statements(self, cur: Any, side: str, where: tuple[str, ...]) -> tuple[list[Change], dict[str, list[int]]]:
        """Run the transaction's statements; the changes to record once it commits and the own keys then.
        Raises :class:`_RouteChanged` after the first statement when the route is no longer ``where``."""
        plan, own_after = self._plan()
        changes: list[Change] = []
        first = True
        for t, ops in plan.items():
            for op in ("insert", "update", "key_change", "delete"):
                if not ops[op]:
                    continue
                self._write(cur, side, t, op, ops[op])
                changes += ops[op]
                if first:  # now visible in INNODB_TRX (or holding its locks): did the route change?
                    first = False
                    side2, where2, paused2 = self._route()
                    if paused2 or (side2, where2) != (side, where):
                        raise _RouteChanged
        return changes, own_after

    def _record(self, changes: list[Change], side: str) -> None:
        for op, table, key, new, row in changes:
            keys = self.stats.written.setdefault(side, {}).setdefault(table, set())
            exp = self.stats.expected.setdefault(table, {})
            keys.add(key)
            if op == "insert":
                exp[key] = dict(row or {})
            elif op == "update":
                if key in exp and exp[key] is not None:
                    exp[key] = {**(exp[key] or {}), **(row or {})}
                elif key not in exp:
                    exp[key] = dict(row or {})  # an existing row: only the updated columns are known
            elif op == "delete":
                exp[key] = None
            else:
                assert new is not None
                keys.add(new)
                exp[new] = exp.get(key) or {}
                exp[key] = None


# ---------------------------------------------------------------------------------------------- tenant_split


TablesFactory = Callable[[Any, str, Any], list[WriterTable]]
"""``f(source connection, source database, tenant value) -> tables`` (module-level: a pool pickles it)."""


class TenantWriter(_CooperativeWriter):
    """One tenant's application for ``tenant_split`` (see the module docstring).

    ``pipeline`` / ``scope`` / ``tenant`` name the routing entry; ``source_conn_id`` /
    ``source_database`` are used while the tenant has no entry. ``tables`` or ``tables_factory`` (called
    at :meth:`open` with the source connection: what a pool process uses, :func:`sample_tables`) give
    the tables; ``existing_sample`` keys per table below ``key_base`` are read at open for updates
    (``existing_slice = (i, n)`` keeps every ``n``-th from the ``i``-th: disjoint per pool process;
    ``existing_below`` the bound, default ``key_base``: a pool's processes share their unit's).
    Raises ``ValueError`` for no tables or ``rows_per_tx < 1``.
    """

    def __init__(self, *, tenant: str, tenant_value: Any, scope: str, tables: list[WriterTable] | None = None,
                 tables_factory: TablesFactory | None = None, pipeline: str = "tenant_split",
                 source_conn_id: str = MYSQL_SOURCE, source_database: str = "", control_conn_id: str = CONTROL,
                 rows_per_tx: int = 3, key_base: int | None = None, existing_sample: int = 200, seed: Any = 0,
                 existing_slice: tuple[int, int] = (0, 1), existing_below: int | None = None) -> None:
        if not tables and tables_factory is None:
            raise ValueError("a live writer needs at least one table")
        base = key_base if key_base is not None else 10**12 + (zlib.crc32(tenant.encode()) % 10_000) * 10**8
        super().__init__(tenant, pipeline=pipeline, scope=scope, control_conn_id=control_conn_id,
                         rows_per_tx=rows_per_tx, seed=seed, key_base=base)
        self.tenant, self.tenant_value = tenant, tenant_value
        self.tables: list[WriterTable] = list(tables or [])
        self._factory = tables_factory
        self.source_conn_id, self.source_database = source_conn_id, source_database or scope
        self.existing_sample, self._slice = existing_sample, existing_slice
        self._key_floor = existing_below if existing_below is not None else base
        self._by_name: dict[str, WriterTable] = {}
        self._existing_keys: dict[str, list[int]] = {}

    def _setup(self) -> None:
        conn = self._conn(("shared", self.source_conn_id, self.source_database))
        if not self.tables:
            assert self._factory is not None
            self.tables = self._factory(conn, self.source_database, self.tenant_value)
            if not self.tables:
                raise ValueError("a live writer needs at least one table")
        self._by_name = {t.source: t for t in self.tables}
        cur = conn.cursor()
        i, n = self._slice
        for t in self.tables:
            cur.execute(f"SELECT {quote_mysql(t.key)} FROM {_esc(quote_mysql(t.source))} "
                        f"WHERE {quote_mysql(t.tenant_column)} = %s AND {quote_mysql(t.key)} < %s "
                        f"ORDER BY {quote_mysql(t.key)} LIMIT %s",
                        (self.tenant_value, self._key_floor, self.existing_sample * n))
            self._existing_keys[t.source] = [int(r[0]) for r in cur.fetchall()][i::n]
        conn.rollback()

    def _where(self, route: dict[str, Any] | None) -> tuple[str, tuple[str, ...]]:
        if route is None:
            return "shared", ("shared", self.source_conn_id, self.source_database)
        loc = route["location"] or {}
        side = str(loc.get("backend") or "shared")
        return side, (side, str(loc.get("conn_id") or self.source_conn_id), str(loc.get("database") or self.source_database))

    def _connect(self, where: tuple[str, ...]) -> Any:
        import MySQLdb

        c = MySQLdb.connect(**resolve(where[1]).mysql_kwargs(where[2]))
        c.autocommit(False)
        return c

    def _tables(self) -> list[str]:
        return [t.source for t in self.tables]

    def _existing(self, table: str) -> Sequence[int]:
        return self._existing_keys.get(table, [])

    def _value(self, v: Any, key: int) -> Any:
        return v(self.tenant, key, self._seq) if callable(v) else v

    def _new_row(self, table: str, key: int) -> dict[str, Any]:
        return {c: self._value(v, key) for c, v in self._by_name[table].insert.items()}

    def _update_row(self, table: str, key: int) -> dict[str, Any]:
        return {c: self._value(v, key) for c, v in self._by_name[table].update.items()}

    def _write(self, cur: Any, side: str, table: str, op: str, changes: list[Change]) -> None:
        t = self._by_name[table]
        name = _esc(quote_mysql(t.target_name if side == "tenant_db" else t.source))
        k, tc = quote_mysql(t.key), quote_mysql(t.tenant_column)
        keys = [c[2] for c in changes]
        marks = ", ".join(["%s"] * len(keys))
        if op == "insert":
            cols = [t.key, t.tenant_column, *t.insert]
            one = "(" + ", ".join(["%s"] * len(cols)) + ")"
            args: list[Any] = []
            for _, _, key, _, row in changes:
                args += [key, self.tenant_value, *(row or {}).values()]
            cur.execute(f"INSERT INTO {name} ({', '.join(quote_mysql(c) for c in cols)}) VALUES "
                        f"{', '.join([one] * len(changes))}", args)
        elif op == "update":
            vals = changes[0][4] or {}
            cur.execute(f"UPDATE {name} SET {', '.join(f'{quote_mysql(c)} = %s' for c in vals)} "
                        f"WHERE {k} IN ({marks}) AND {tc} = %s", (*vals.values(), *keys, self.tenant_value))
        elif op == "delete":
            cur.execute(f"DELETE FROM {name} WHERE {k} IN ({marks}) AND {tc} = %s", (*keys, self.tenant_value))
        else:
            case = " ".join(["WHEN %s THEN %s"] * len(changes))
            pairs = [x for c in changes for x in (c[2], c[3])]
            cur.execute(f"UPDATE {name} SET {k} = CASE {k} {case} END WHERE {k} IN ({marks}) AND {tc} = %s",
                        (*pairs, *keys, self.tenant_value))


# ---------------------------------------------------------------------------------------------- mysql_to_postgres


class TableWriter(_CooperativeWriter):
    """One table's application for ``mysql_to_postgres`` (see the module docstring): the table
    ``(id BIGINT key, name VARCHAR, amount DECIMAL(12,2), note TEXT)`` in MySQL database ``database``
    and PostgreSQL schema ``schema``, routed by the entry ``(pipeline, scope, table)``. Rows ``1 ..
    seed_rows`` exist and are updated (``existing_slice = (i, n)``: every ``n``-th from ``i + 1``);
    new keys from ``key_base``. ``expected[table][key]``: ``{"name", "amount"}`` or None (deleted)."""

    def __init__(self, *, database: str, schema: str, table: str, scope: str, seed_rows: int,
                 pipeline: str = "mysql_to_postgres", mysql_conn_id: str = MYSQL_SOURCE,
                 postgres_conn_id: str = POSTGRES_TARGET, control_conn_id: str = CONTROL, rows_per_tx: int = 1,
                 key_base: int = 10**9, seed: Any = 0, existing_slice: tuple[int, int] = (0, 1)) -> None:
        super().__init__(table, pipeline=pipeline, scope=scope, control_conn_id=control_conn_id,
                         rows_per_tx=rows_per_tx, seed=seed, key_base=key_base)
        self.database, self.schema, self.table = database, schema, table
        self.mysql_conn_id, self.postgres_conn_id = mysql_conn_id, postgres_conn_id
        i, n = existing_slice
        self._seed_keys = range(1 + i, seed_rows + 1, n)

    def _where(self, route: dict[str, Any] | None) -> tuple[str, tuple[str, ...]]:
        side = "mysql" if route is None else str((route["location"] or {}).get("backend") or "mysql")
        return side, (side,)

    def _connect(self, where: tuple[str, ...]) -> Any:
        if where[0] == "postgres":
            return pg_open(self.postgres_conn_id)
        import MySQLdb

        c = MySQLdb.connect(**resolve(self.mysql_conn_id).mysql_kwargs(self.database))
        cur = c.cursor()
        cur.execute("SET SESSION time_zone = '+00:00', binlog_format = 'ROW'")
        cur.close()
        c.autocommit(False)
        return c

    def _tables(self) -> list[str]:
        return [self.table]

    def _existing(self, table: str) -> Sequence[int]:
        return self._seed_keys

    def _new_row(self, table: str, key: int) -> dict[str, Any]:
        return {"name": f"주문 w{self._seq} ✓", "amount": Decimal(self._seq % 100000) / 100}

    def _update_row(self, table: str, key: int) -> dict[str, Any]:
        return {"name": f"주문 u{self._seq} ✓", "amount": Decimal((self._seq * 7) % 100000) / 100}

    def _write(self, cur: Any, side: str, table: str, op: str, changes: list[Change]) -> None:
        t = _esc(f"{quote_mysql(self.database)}.{quote_mysql(table)}" if side == "mysql"
                 else f"{quote_pg(self.schema)}.{quote_pg(table)}")
        keys = [c[2] for c in changes]
        marks = ", ".join(["%s"] * len(keys))
        if op == "insert":
            args = [x for c in changes for x in (c[2], (c[4] or {})["name"], (c[4] or {})["amount"])]
            values = ", ".join(["(%s, %s, %s, 'w')"] * len(changes))
            cur.execute(f"INSERT INTO {t} (id, name, amount, note) VALUES {values}", args)
        elif op == "update":
            vals = changes[0][4] or {}
            cur.execute(f"UPDATE {t} SET name = %s, amount = %s WHERE id IN ({marks})", (vals["name"], vals["amount"], *keys))
        elif op == "delete":
            cur.execute(f"DELETE FROM {t} WHERE id IN ({marks})", keys)
        else:
            case = " ".join(["WHEN %s THEN %s"] * len(changes))
            cast = "::bigint" if side == "postgres" else ""
            pairs = [x for c in changes for x in (c[2], c[3])]
            cur.execute(f"UPDATE {t} SET id = (CASE id {case} END){cast} WHERE id IN ({marks})", (*pairs, *keys))


# ---------------------------------------------------------------------------------------------- in a thread


class WriterThread(threading.Thread):
    """A daemon thread running ``writer`` (a :class:`TenantWriter` / :class:`TableWriter`) once every
    ``interval_s`` seconds until :meth:`stop` (or ``max_transactions`` committed).

    ``started_writing`` is set after the first transaction (or on failure); ``failure`` holds an
    exception that ended the thread (recorded, never swallowed silently); ``stats`` the writer's."""

    def __init__(self, writer: _CooperativeWriter, *, interval_s: float = 0.01, max_transactions: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(name=name or f"live-writer-{writer.unit}", daemon=True)
        self.writer, self.interval_s, self.max_transactions = writer, interval_s, max_transactions
        self.stats = writer.stats
        self._halt = threading.Event()
        self.started_writing = threading.Event()
        self.failure: BaseException | None = None

    def stop(self, timeout: float = 30.0) -> WriterStats:
        """Ask the thread to finish its transaction and end; wait for it; the stats."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout)
        return self.stats

    def run(self) -> None:  # noqa: D102 - threading.Thread
        try:
            self.writer.open()
            while not self._halt.is_set():
                if self.max_transactions is not None and self.stats.transactions >= self.max_transactions:
                    break
                t0 = time.monotonic()
                self.writer.transaction(self._halt.is_set)
                self.started_writing.set()
                left = self.interval_s - (time.monotonic() - t0)
                if left > 0:
                    self._halt.wait(left)
        except BaseException as exc:  # recorded for the test, never swallowed silently
            self.failure = exc
            log.exception("live writer %s failed", self.writer.unit)
        finally:
            self.started_writing.set()
            self.writer.close()


class LiveWriter(WriterThread):
    """A :class:`TenantWriter` in a thread, one transaction every ``interval_s`` (the keyword arguments
    are :class:`TenantWriter`'s). ``start()`` it, ``stop()`` it (joins; returns its :class:`WriterStats`)."""

    def __init__(self, *, tenant: str, tenant_value: Any, tables: list[WriterTable], scope: str,
                 pipeline: str = "tenant_split", source_conn_id: str = MYSQL_SOURCE, source_database: str = "",
                 control_conn_id: str = CONTROL, interval_s: float = 0.01, rows_per_tx: int = 3,
                 key_base: int | None = None, existing_sample: int = 200, seed: int = 0,
                 max_transactions: int | None = None) -> None:
        if not tables:
            raise ValueError("a live writer needs at least one table")
        w = TenantWriter(tenant=tenant, tenant_value=tenant_value, tables=tables, scope=scope, pipeline=pipeline,
                         source_conn_id=source_conn_id, source_database=source_database,
                         control_conn_id=control_conn_id, rows_per_tx=rows_per_tx, key_base=key_base,
                         existing_sample=existing_sample, seed=seed)
        super().__init__(w, interval_s=interval_s, max_transactions=max_transactions)
        self.tenant, self.tables, self.rows_per_tx = tenant, tables, rows_per_tx


# ---------------------------------------------------------------------------------------------- in processes


@dataclass(frozen=True)
class WriterSpec:
    """One unit of a :class:`WriterPool`: ``kind`` ``tenant`` (:class:`TenantWriter`) or ``table``
    (:class:`TableWriter`) and the constructor's keyword arguments (picklable: tables by
    ``tables_factory``, not lambdas; no ``rows_per_tx`` / ``existing_slice``, which the pool sets)."""

    kind: str
    options: Mapping[str, Any]

    @property
    def unit(self) -> str:
        """The unit's name (the tenant, or the table)."""
        return str(self.options["tenant"] if self.kind == "tenant" else self.options["table"])


def _make_writer(spec: WriterSpec, rows_per_tx: int, index: int, procs: int) -> _CooperativeWriter:
    opts = dict(spec.options)
    if spec.kind == "tenant":
        tenant = str(opts["tenant"])
        base = int(opts.get("key_base") or 10**12 + (zlib.crc32(tenant.encode()) % 10_000) * 10**8)
        opts["key_base"], opts["existing_below"] = base + index * PROC_KEY_SPAN, base
        opts["seed"] = f"{opts.get('seed', 0)}:{index}"
        return TenantWriter(**opts, rows_per_tx=rows_per_tx, existing_slice=(index, procs))
    if spec.kind == "table":
        opts["key_base"] = int(opts.get("key_base", 10**9)) + index * PROC_KEY_SPAN
        opts["seed"] = f"{opts.get('seed', 0)}:{index}"
        return TableWriter(**opts, rows_per_tx=rows_per_tx, existing_slice=(index, procs))
    raise ValueError(f"unknown writer kind {spec.kind!r} (tenant, table)")


def _child(spec: WriterSpec, index: int, procs: int, rows_per_tx: int, tx_interval_s: float, env: dict[str, str],
           halt: Any, ready: Any, go: Any, out: Any) -> None:
    """A pool process: its writer opened (``ready`` set), then, from ``go`` on, one transaction every
    ``tx_interval_s`` on an absolute schedule until ``halt``; its stats (or its failure) on ``out``."""
    os.environ.update(env)
    w = _make_writer(spec, rows_per_tx, index, procs)
    first: float | None = None
    parent = multiprocessing.parent_process()
    looked = time.monotonic()
    try:
        w.open()
        ready.set()
        while not go.wait(1.0):
            if halt.is_set() or (parent is not None and not parent.is_alive()):
                break
        nxt = time.monotonic()
        while not halt.is_set():
            now = time.monotonic()
            if now - looked > 1.0:  # a parent killed without stopping the pool: end, do not write on forever
                looked = now
                if parent is not None and not parent.is_alive():
                    break
            if nxt > now:
                halt.wait(nxt - now)
                continue
            if now - nxt > MAX_BEHIND_S:
                w.stats.behind += 1
                nxt = now
            if first is None:
                first = time.time()
            w.transaction(halt.is_set)
            nxt += tx_interval_s
        out.put(("stats", spec.unit, index, w.stats, first, time.time(), None))
    except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
        ready.set()
        out.put(("failure", spec.unit, index, w.stats, first, time.time(),
                 f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        w.close()


def rows_per_tx_for(unit_rate: float, tx_per_s: float = TX_PER_S_PER_PROC) -> int:
    """The rows per transaction that keep one process under ``tx_per_s`` transactions/s at
    ``unit_rate`` changed rows/s (at least 1)."""
    return max(1, math.ceil(unit_rate / tx_per_s))


class WriterFailed(RuntimeError):
    """A pool process ended on an error (the message holds its traceback)."""


class WriterPool:
    """Writers at a fixed total rate of ``rate`` changed rows/s, spread evenly over ``specs`` (units)
    and ``procs_per_unit`` OS processes per unit (spawned: own interpreter, own connections, own pacing
    loop). ``rows_per_tx`` None: :func:`rows_per_tx_for` of a process's rate.

    :meth:`start` (spawns them, waits until every one is connected, or ``start_timeout_s``, then lets
    them all go at once: the writing window starts there), :meth:`stop`
    (processes finish their transaction; per-unit :class:`WriterStats`, processes merged), then
    :meth:`summary`. Raises :class:`WriterFailed` from :meth:`stop` when a process failed.
    """

    def __init__(self, specs: list[WriterSpec], rate: float, *, rows_per_tx: int | None = None,
                 procs_per_unit: int = 1, start_timeout_s: float = 60.0) -> None:
        if not specs:
            raise ValueError("a writer pool needs at least one unit")
        if rate <= 0 or procs_per_unit < 1:
            raise ValueError(f"rate and procs_per_unit must be positive, got {rate}, {procs_per_unit}")
        self.specs, self.rate, self.procs_per_unit, self.start_timeout_s = specs, float(rate), procs_per_unit, start_timeout_s
        self.proc_rate = self.rate / (len(specs) * procs_per_unit)
        self.rows_per_tx = rows_per_tx or rows_per_tx_for(self.proc_rate)
        self.tx_interval_s = self.rows_per_tx / self.proc_rate
        self._ctx = multiprocessing.get_context("spawn")
        self._halt = self._ctx.Event()
        self._go = self._ctx.Event()
        self._out = self._ctx.Queue()
        self._procs: list[tuple[Any, Any]] = []
        self.stats: dict[str, WriterStats] = {}
        self.windows: list[tuple[float, float]] = []
        self.failures: list[str] = []
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def start(self) -> WriterPool:
        """Spawn the processes; wait until each is connected (or the start timeout); let them go. Returns self."""
        from cutover.connections import default_env

        env = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CONN_")}
        env.update(default_env())
        for spec in self.specs:
            for i in range(self.procs_per_unit):
                ev = self._ctx.Event()
                p = self._ctx.Process(target=_child, name=f"live-writer-{spec.unit}-{i}", daemon=True,
                                      args=(spec, i, self.procs_per_unit, self.rows_per_tx, self.tx_interval_s, env,
                                            self._halt, ev, self._go, self._out))
                p.start()
                self._procs.append((p, ev))
        deadline = time.monotonic() + self.start_timeout_s
        for _, ev in self._procs:
            ev.wait(max(0.0, deadline - time.monotonic()))
        self.started_at = time.time()
        self._go.set()
        return self

    def stop(self, timeout_s: float = 60.0) -> dict[str, WriterStats]:
        """Stop every process; their stats per unit (processes of one unit merged)."""
        self._halt.set()
        self.stopped_at = time.time()
        deadline = time.monotonic() + timeout_s
        got = 0
        while got < len(self._procs) and time.monotonic() < deadline:
            try:
                kind, unit, index, stats, first, end, why = self._out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            got += 1
            if unit in self.stats:
                self.stats[unit].merge(stats)
            else:
                self.stats[unit] = stats
            if first is not None:
                self.windows.append((first, end))
            if kind == "failure":
                self.failures.append(f"{unit}[{index}]: {why}")
        for p, _ in self._procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
        if got < len(self._procs):
            self.failures.append(f"{len(self._procs) - got} process(es) sent no stats within {timeout_s} s")
        if self.failures:
            raise WriterFailed("; ".join(self.failures)[:4000])
        return self.stats

    def achieved_rows_per_s(self) -> float | None:
        """Changed rows committed per second over the writing window (from the processes' go to the
        stop); None before :meth:`stop`."""
        if self.started_at is None or self.stopped_at is None or not self.stats:
            return None
        span = self.stopped_at - self.started_at
        rows = sum(s.rows for s in self.stats.values())
        return rows / span if span > 0 else None

    def summary(self) -> dict[str, Any]:
        """JSON-able: asked vs achieved rows/s, rows per transaction, processes, transactions, rows,
        aborted (any error; ``aborted_1213_1205`` those codes), errors by code, per unit
        :meth:`WriterStats.summary`."""
        st = list(self.stats.values())
        errors: dict[str, int] = {}
        for s in st:
            for k, v in s.errors.items():
                errors[str(k)] = errors.get(str(k), 0) + v
        achieved = self.achieved_rows_per_s()
        return {"asked_rows_per_s": self.rate, "achieved_rows_per_s": round(achieved, 1) if achieved else None,
                "rows_per_tx": self.rows_per_tx, "processes": len(self._procs),
                "tx_per_s_per_process": round(1 / self.tx_interval_s, 2),
                "transactions": sum(s.transactions for s in st), "rows": sum(s.rows for s in st),
                "aborted": sum(s.aborted for s in st),
                "aborted_1213_1205": sum(s.errors.get(c, 0) for s in st for c in ABORT_CODES),
                "errors": errors, "behind": sum(s.behind for s in st),
                "per_unit": {u: s.summary() for u, s in self.stats.items()}}

    def describe(self) -> str:
        """One line: asked vs achieved rows/s, rows per transaction, processes."""
        a = self.achieved_rows_per_s()
        return (f"writers: asked {self.rate:.0f} changed rows/s, achieved {a:.0f}" if a else
                f"writers: asked {self.rate:.0f} changed rows/s, achieved n/a") + \
            (f" ({self.rows_per_tx} rows per transaction, {len(self._procs)} processes, "
             f"{1 / self.tx_interval_s:.1f} transactions/s each)")


# ---------------------------------------------------------------------------------------------- the shop sample


def _sample_customer(conn: Any, database: str, tenant_id: int) -> int:
    cur = conn.cursor()
    cur.execute(f"SELECT id FROM {quote_mysql(database)}.customers WHERE tenant_id = %s ORDER BY id LIMIT 1", (tenant_id,))
    row = cur.fetchone()
    if row is None:
        raise LookupError(f"tenant {tenant_id} has no customer in {database!r}")
    return int(row[0])


def sample_tables(conn: Any, database: str, tenant_id: int) -> list[WriterTable]:
    """The writer's tables for the shop sample (:mod:`cutover.samples.tenants`) of ``tenant_id`` in
    ``database`` (a MySQLdb connection to the source): ``orders`` (new orders of the tenant's first
    customer; updates of status / total / note) and ``customers`` (new customers with unique e-mails;
    balance updates). Raises ``LookupError`` when the tenant has no customer."""
    import datetime as dt

    cust = _sample_customer(conn, database, tenant_id)
    when = dt.datetime(2025, 6, 1, 12, 0, 0)
    orders = WriterTable(
        source="orders", key="id", tenant_column="tenant_id",
        insert={"customer_id": cust, "status": "new", "total": lambda _t, _k, s: Decimal(s % 1000) / 10,
                "currency": "EUR", "note": lambda _t, k, _s: f"live {k} — “é”", "created_at": when},
        update={"status": "paid", "total": lambda _t, _k, s: Decimal(s % 997) / 10,
                "note": lambda _t, _k, s: f"updated {s}", "updated_at": when})
    customers = WriterTable(
        source="customers", key="id", tenant_column="tenant_id",
        insert={"email": lambda _t, k, _s: f"live.{k}@tenant{tenant_id}.example", "full_name": "Live O'Writer",
                "country": "DE", "balance": Decimal("0.00"), "created_at": when},
        update={"balance": lambda _t, _k, s: Decimal(s % 5000) / 100, "updated_at": when})
    return [orders, customers]


def sample_tenant_spec(tenant_id: int, *, scope: str, source_database: str = "", seed: int = 0,
                       **options: Any) -> WriterSpec:
    """A :class:`WriterPool` unit for a tenant of the shop sample (tables from :func:`sample_tables`);
    ``options``: more :class:`TenantWriter` keyword arguments."""
    return WriterSpec("tenant", {"tenant": str(tenant_id), "tenant_value": tenant_id, "scope": scope,
                                 "source_database": source_database or scope, "tables_factory": sample_tables,
                                 "seed": seed, **options})
