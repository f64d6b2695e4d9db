"""A route-aware live writer: the application of one tenant, writing while its data moves.

:class:`LiveWriter` is a thread that, every ``interval_s`` seconds, runs one mixed transaction
(inserts, updates, deletes and primary-key changes, ``rows_per_tx`` statements) on one tenant's rows,
wherever the tenant's routing entry (``control.get_route(pg, pipeline, scope, tenant)``) says they
are:

* no entry, or location backend ``shared`` → the shared tables of the source database;
* backend ``tenant_db`` → the tenant's own database (``location["conn_id"]`` / ``["database"]``),
  each table under its name there (:attr:`WriterTable.target`: a mapping may rename it);
* state ``paused`` → the writer waits (re-reads every 2 ms); the wait counts in the latency.

It follows the cooperative protocol of the cutover's write pause: after the transaction's first
statement (from then on the transaction is visible in ``information_schema.INNODB_TRX``, which the
pause drains) it reads the route again and, when it changed (paused or moved), rolls back and starts
over — so every transaction either began before the pause and is waited for, or sees the pause.

What it records (:class:`WriterStats`, read after :meth:`LiveWriter.stop`): per committed
transaction its latency in seconds (from the moment it wanted to start, waits for a pause included)
and wall-clock start/end (``time.time()``) and side; failed transactions by MySQL error code (1213
deadlock, 1205 lock-wait timeout, …; ``-1`` for a non-MySQL error); the keys written per side and
table; and :attr:`WriterStats.expected` — the state the writer believes each row it wrote is in
(``None`` once deleted), what a test compares the tenant's database with at the end.

Rows: every table is addressed by a single integer key column; new keys are allocated from
``key_base`` upwards (pick a range no other writer and no sample row uses: keys are global in the
shared tables; default ``10**12 + (crc32(tenant) % 10000) * 10**8``, apart per tenant). Deletes and key changes touch only rows this writer inserted (other rows may have
children whose foreign keys forbid it); updates touch those and a sample of the tenant's existing
rows (``existing_sample`` keys read at start from the source).

:func:`sample_tables` gives the tables for the shop sample of :mod:`cutover.samples.tenants`
(``orders`` and ``customers``; the default mapping keeps their names).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cutover import control
from cutover.connections import CONTROL, MYSQL_SOURCE, pg_open, resolve
from cutover.identifiers import quote_mysql

log = logging.getLogger(__name__)

#: the operations a transaction cycles through (insert first, so that there is something to change)
OPS = ("insert", "update", "insert", "key_change", "update", "delete")
#: how long a writer waits before reading a paused route again (seconds)
PAUSE_POLL_S = 0.002

ValueFn = Callable[[str, int, int], Any]
"""A column value for a new or updated row: ``f(tenant, key, seq) -> value`` (``seq`` the writer's
statement counter)."""


@dataclass(frozen=True)
class WriterTable:
    """One table the writer writes.

    ``source`` / ``target``: its name in the shared source database / in the tenant's database;
    ``key``: the integer primary-key column; ``tenant_column``: the tenant column (kept in the tenant
    database); ``insert``: column → constant or :data:`ValueFn` for the other columns of a new row;
    ``update``: column → constant or :data:`ValueFn` for an update.
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
    ``(started_at, ended_at, side)`` in ``time.time()`` seconds, side ``shared`` / ``tenant_db``."""

    tenant: str
    latencies: list[float] = field(default_factory=list)
    commits: list[tuple[float, float, str]] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    error_messages: list[str] = field(default_factory=list)
    retries_on_route_change: int = 0
    paused_waits: int = 0
    written: dict[str, dict[str, set[int]]] = field(default_factory=dict)
    expected: dict[str, dict[int, dict[str, Any] | None]] = field(default_factory=dict)

    @property
    def transactions(self) -> int:
        """Committed transactions."""
        return len(self.latencies)

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of committed transactions' latency in seconds (None: none yet)."""
        if not self.latencies:
            return None
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    def summary(self) -> dict[str, Any]:
        """JSON-able figures: counts, p50/p95/p99/max latency (s), errors by code, commits per side."""
        sides: dict[str, int] = {}
        for _, _, side in self.commits:
            sides[side] = sides.get(side, 0) + 1
        return {"tenant": self.tenant, "transactions": self.transactions, "per_side": sides,
                "errors": {str(k): v for k, v in sorted(self.errors.items())},
                "p50_s": self.percentile(0.5), "p95_s": self.percentile(0.95), "p99_s": self.percentile(0.99),
                "max_s": max(self.latencies) if self.latencies else None,
                "paused_waits": self.paused_waits, "retries_on_route_change": self.retries_on_route_change}


class _RouteChanged(Exception):
    """The route moved or paused after the transaction began: roll back and start over."""


class LiveWriter(threading.Thread):
    """A daemon thread writing one tenant's rows wherever its route points (see the module docstring).

    ``start()`` it, ``stop()`` it (joins; returns its :class:`WriterStats`). ``pipeline`` / ``scope`` /
    ``tenant`` name the routing entry; ``source_conn_id`` / ``source_database`` are used while the
    tenant has no entry. ``max_transactions`` stops it by itself (None: until stopped).
    """

    def __init__(self, *, tenant: str, tenant_value: Any, tables: list[WriterTable], scope: str,
                 pipeline: str = "tenant_split", source_conn_id: str = MYSQL_SOURCE, source_database: str = "",
                 control_conn_id: str = CONTROL, interval_s: float = 0.01, rows_per_tx: int = 3,
                 key_base: int | None = None, existing_sample: int = 200, seed: int = 0,
                 max_transactions: int | None = None) -> None:
        super().__init__(name=f"live-writer-{tenant}", daemon=True)
        if not tables:
            raise ValueError("a live writer needs at least one table")
        if rows_per_tx < 1:
            raise ValueError(f"rows_per_tx must be at least 1, got {rows_per_tx}")
        self.tenant, self.tenant_value, self.tables, self.scope, self.pipeline = tenant, tenant_value, tables, scope, pipeline
        self.source_conn_id, self.source_database, self.control_conn_id = source_conn_id, source_database or scope, control_conn_id
        self.interval_s, self.rows_per_tx, self.max_transactions = interval_s, rows_per_tx, max_transactions
        self.existing_sample = existing_sample
        self.stats = WriterStats(tenant)
        self._next_key = key_base if key_base is not None else 10**12 + (zlib.crc32(tenant.encode()) % 10_000) * 10**8
        self._seq = 0
        self._rng = random.Random(f"live-writer:{seed}:{tenant}")
        self._own: dict[str, list[int]] = {t.source: [] for t in tables}
        self._existing: dict[str, list[int]] = {t.source: [] for t in tables}
        self._halt = threading.Event()
        self._conns: dict[tuple[str, str], Any] = {}
        self.started_writing = threading.Event()
        self.failure: BaseException | None = None

    # --- life cycle -------------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> WriterStats:
        """Ask the thread to finish its transaction and end; wait for it; the stats."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout)
        return self.stats

    def run(self) -> None:  # noqa: D102 - threading.Thread
        pg = pg_open(self.control_conn_id, autocommit=True)
        try:
            self._sample_existing()
            while not self._halt.is_set():
                if self.max_transactions is not None and self.stats.transactions >= self.max_transactions:
                    break
                t0 = time.monotonic()
                self._one_transaction(pg)
                self.started_writing.set()
                left = self.interval_s - (time.monotonic() - t0)
                if left > 0:
                    self._halt.wait(left)
        except BaseException as exc:  # recorded for the test, never swallowed silently
            self.failure = exc
            log.exception("live writer %s failed", self.tenant)
        finally:
            self.started_writing.set()
            pg.close()
            for c in self._conns.values():
                try:
                    c.close()
                except Exception:  # noqa: BLE001 - closing
                    pass

    # --- helpers ----------------------------------------------------------------------------------

    def _mysql(self, conn_id: str, database: str) -> Any:
        import MySQLdb

        k = (conn_id, database)
        if k not in self._conns:
            c = MySQLdb.connect(**resolve(conn_id).mysql_kwargs(database))
            c.autocommit(False)
            self._conns[k] = c
        return self._conns[k]

    def _sample_existing(self) -> None:
        conn = self._mysql(self.source_conn_id, self.source_database)
        cur = conn.cursor()
        for t in self.tables:
            cur.execute(f"SELECT {quote_mysql(t.key)} FROM {quote_mysql(t.source)} WHERE {quote_mysql(t.tenant_column)} = %s "
                        f"AND {quote_mysql(t.key)} < %s LIMIT %s", (self.tenant_value, self._next_key, self.existing_sample))
            self._existing[t.source] = [int(r[0]) for r in cur.fetchall()]
        conn.rollback()

    def _route(self, pg: Any) -> tuple[str, str, str, bool]:
        """``(side, conn_id, database, paused)`` from the routing entry now."""
        r = control.get_route(pg, self.pipeline, self.scope, self.tenant)
        if r is None:
            return "shared", self.source_conn_id, self.source_database, False
        loc = r["location"] or {}
        side = str(loc.get("backend") or "shared")
        conn_id = str(loc.get("conn_id") or self.source_conn_id)
        database = str(loc.get("database") or self.source_database)
        return side, conn_id, database, r["state"] == "paused"

    def _value(self, v: Any, key: int) -> Any:
        return v(self.tenant, key, self._seq) if callable(v) else v

    def _one_transaction(self, pg: Any) -> None:
        import MySQLdb

        wanted = time.monotonic()
        while not self._halt.is_set():
            side, conn_id, database, paused = self._route(pg)
            if paused:
                self.stats.paused_waits += 1
                time.sleep(PAUSE_POLL_S)
                continue
            conn = self._mysql(conn_id, database)
            started = time.time()
            try:
                changes = self._statements(conn.cursor(), side, pg, (side, conn_id, database))
                conn.commit()
            except _RouteChanged:
                conn.rollback()
                self.stats.retries_on_route_change += 1
                continue
            except MySQLdb.Error as exc:
                try:
                    conn.rollback()
                except MySQLdb.Error:
                    self._conns.pop((conn_id, database), None)
                code = int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else -1
                self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
                self.stats.error_messages.append(f"{side}: {exc}")
                return
            self._apply(changes, side)
            self.stats.latencies.append(time.monotonic() - wanted)
            self.stats.commits.append((started, time.time(), side))
            return

    def _statements(self, cur: Any, side: str, pg: Any, where: tuple[str, str, str]) -> list[tuple[str, str, int, int | None, dict[str, Any] | None]]:
        """Run the transaction's statements; the changes to record once it commits:
        ``(op, table, key, new_key, row)``. Raises :class:`_RouteChanged` after the first statement
        when the route is no longer ``where``."""
        changes: list[tuple[str, str, int, int | None, dict[str, Any] | None]] = []
        own = {k: list(v) for k, v in self._own.items()}
        for i in range(self.rows_per_tx):
            t = self.tables[(self._seq + i) % len(self.tables)]
            op = OPS[self._seq % len(OPS)]
            self._seq += 1
            name = quote_mysql(t.target_name if side == "tenant_db" else t.source)
            k, tc = quote_mysql(t.key), quote_mysql(t.tenant_column)
            if op in ("delete", "key_change") and not own[t.source]:
                op = "insert"
            if op == "update" and not own[t.source] and not self._existing[t.source]:
                op = "insert"
            if op == "insert":
                key = self._next_key
                self._next_key += 1
                row = {c: self._value(v, key) for c, v in t.insert.items()}
                cols = [t.key, t.tenant_column, *row]
                cur.execute(f"INSERT INTO {name} ({', '.join(quote_mysql(c) for c in cols)}) VALUES "
                            f"({', '.join(['%s'] * len(cols))})", (key, self.tenant_value, *row.values()))
                own[t.source].append(key)
                changes.append(("insert", t.source, key, None, row))
            elif op == "update":
                pool = own[t.source] + self._existing[t.source]
                key = self._rng.choice(pool)
                vals = {c: self._value(v, key) for c, v in t.update.items()}
                cur.execute(f"UPDATE {name} SET {', '.join(f'{quote_mysql(c)} = %s' for c in vals)} "
                            f"WHERE {k} = %s AND {tc} = %s", (*vals.values(), key, self.tenant_value))
                changes.append(("update", t.source, key, None, vals))
            elif op == "delete":
                key = own[t.source].pop(self._rng.randrange(len(own[t.source])))
                cur.execute(f"DELETE FROM {name} WHERE {k} = %s AND {tc} = %s", (key, self.tenant_value))
                changes.append(("delete", t.source, key, None, None))
            else:  # key_change
                key = own[t.source].pop(self._rng.randrange(len(own[t.source])))
                new = self._next_key
                self._next_key += 1
                cur.execute(f"UPDATE {name} SET {k} = %s WHERE {k} = %s AND {tc} = %s", (new, key, self.tenant_value))
                own[t.source].append(new)
                changes.append(("key_change", t.source, key, new, None))
            if i == 0:  # now visible in INNODB_TRX: did the route change since it was read?
                side2, conn2, db2, paused2 = self._route(pg)
                if paused2 or (side2, conn2, db2) != where:
                    raise _RouteChanged
        self._own = own
        return changes

    def _apply(self, changes: list[tuple[str, str, int, int | None, dict[str, Any] | None]], side: str) -> None:
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
    from decimal import Decimal

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
