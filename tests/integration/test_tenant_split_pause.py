"""tenant_split's write pause on the real MariaDB: scoped to the paused tenant by construction.

Issue #19, "One tenant's write pause blocks other tenants": the pause took ``SELECT … FOR UPDATE`` under
REPEATABLE READ, so a table without an index on the tenant column was locked whole, and the next-key
lock after the tenant's range held the next tenant's inserts below its smallest key (InnoDB 1205).

While tenant A (``Mixed Case``) is paused, tenant B (``mixed case``: the very next tenant in the
indexes' order, utf8mb4_bin) inserts, updates and deletes in an indexed table (an insert right into the
gap after A's range), in a table without a tenant index, through a trigger into a third table, and in
a table without any key; each must finish well inside a lock wait timeout of 2 s (the latencies are
printed). A's own updates and deletes in the indexed tables, and its inserts into a table with a foreign key
onto its directory row, must wait (1205 under a 1 s timeout). Tables without a tenant index are not
locked at all (warned at plan): locking A's rows there held B's ``UPDATE … WHERE tenant = ?``, which
scans them.

That is the ``pause_locks: rows`` mode. The default (``none``) takes no lock at all: the route says
``paused`` and the transactions in flight are drained; a writer that ignores the route is not held
(the binlog fence after the switch applies what it wrote), and a transaction open past the drain's
bound is reported, not waited for.

Own names: source ``ts_pz_src``, prefix ``tspz_``, state ``cutover_state_pz``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import MySQLdb
import pytest

from cutover import control
from cutover.connections import MYSQL_TARGET, mysql_connect, resolve
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.cutover import write_pause
from cutover.tenant_split.plan import plan_units

from .test_tenant_split import clean_control

pytestmark = pytest.mark.integration

SRC = "ts_pz_src"
A, B, C = "Mixed Case", "mixed case", "船速"  # A < B < C in utf8mb4_bin: B's entries follow A's in every index
assert {A, B, C} <= set(HOSTILE_NAMES)
MAPPING = """\
tenant_column: tenant
tables:
  accounts: {}
  orders: {}
  events: {}
  audit: {}
  notes: {}
unlisted: error
"""
DDL = [
    "CREATE TABLE accounts (tenant VARCHAR(100) NOT NULL PRIMARY KEY)",
    # indexed: the primary key leads with the tenant; a foreign key onto the tenant directory
    """CREATE TABLE orders (tenant VARCHAR(100) NOT NULL, order_no INT NOT NULL, total INT NOT NULL,
        PRIMARY KEY (tenant, order_no), CONSTRAINT orders_account FOREIGN KEY (tenant) REFERENCES accounts (tenant))""",
    # no index on the tenant column at all
    "CREATE TABLE events (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, tenant VARCHAR(100) NOT NULL, msg TEXT)",
    # filled by a trigger on orders
    """CREATE TABLE audit (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, tenant VARCHAR(100) NOT NULL,
        what VARCHAR(100) NOT NULL, KEY audit_tenant (tenant))""",
    # neither a tenant index nor a key: the pause cannot lock it without touching others (warned)
    "CREATE TABLE notes (tenant VARCHAR(100) NOT NULL, msg TEXT)",
    """CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW
        INSERT INTO audit (tenant, what) VALUES (NEW.tenant, CONCAT('order ', NEW.order_no))""",
]


def seed(conn: Any) -> None:
    """(Re)create ``ts_pz_src``: tenants A, B, C and 60 more, with orders 1..5 each, events, notes."""
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS {SRC}")
    cur.execute(f"CREATE DATABASE {SRC} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    cur.execute(f"USE {SRC}")
    for stmt in DDL:
        cur.execute(stmt)
    fillers = [f"zz-filler-{i:02d}" for i in range(60)]  # a realistic spread: writers' statements use the indexes
    for tenant in (A, B, C, *fillers):
        cur.execute("INSERT INTO accounts VALUES (%s)", (tenant,))
        for o in range(1, 6):
            cur.execute("INSERT INTO orders VALUES (%s, %s, %s)", (tenant, o, o * 10))
            cur.execute("INSERT INTO events (tenant, msg) VALUES (%s, %s)", (tenant, f"event {o}"))
            cur.execute("INSERT INTO notes VALUES (%s, %s)", (tenant, f"note {o}"))
    conn.commit()
    for table in ("accounts", "orders", "events", "audit", "notes"):
        cur.execute(f"ANALYZE TABLE {SRC}.{table}")
        cur.fetchall()


@pytest.fixture
def cfg(tmp_path: Path, pg: Any, mysql: Any) -> Iterator[TenantSplitConfig]:
    """A freshly seeded source, planned (tenant database names stored), nothing built."""
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    seed(mysql)
    clean_control(pg, SRC)
    yield TenantSplitConfig(source_database=SRC, mapping=str(mapping), tenant_directory="accounts",
                            database_prefix="tspz_", state_database="cutover_state_pz", gx_gate=False)
    mysql.cursor().execute(f"DROP DATABASE IF EXISTS {SRC}")
    clean_control(pg, SRC)


def test_plan_says_how_each_table_is_paused(cfg: TenantSplitConfig) -> None:
    units, findings = plan_units(cfg)
    modes = {name: p.mode for name, p in findings["write_pause"].items()}
    assert modes == {"accounts": "index", "orders": "index", "audit": "index", "events": "none", "notes": "none"}
    warned = {name: p.warnings for name, p in findings["write_pause"].items() if p.warnings}
    assert set(warned) == {"events", "notes"}
    assert all("no index starts with the tenant column" in w[0] and "does not lock" in w[0] for w in warned.values())
    assert findings["write_pause"]["orders"].trigger_writes == ("audit",)
    unit = next(u for u in units if u.detail["table"] == "notes")  # the unit carries it into the run's evidence
    assert unit.detail["write_pause"]["notes"]["mode"] == "none" and unit.detail["write_pause"]["notes"]["warnings"]


def _writer(timeout_s: int) -> Any:
    conn = MySQLdb.connect(**resolve(MYSQL_TARGET).mysql_kwargs(""))
    cur = conn.cursor()
    cur.execute(f"SET SESSION innodb_lock_wait_timeout = {timeout_s}")
    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # the application's default
    return conn


def _timed(sql: str, params: tuple[Any, ...], timeout_s: int) -> tuple[float, int | None]:
    """Run one write in its own transaction; (seconds, the MySQL error number or None)."""
    conn = _writer(timeout_s)
    t0 = time.monotonic()
    try:
        conn.cursor().execute(sql, params)
        conn.commit()
        return time.monotonic() - t0, None
    except MySQLdb.OperationalError as exc:
        conn.rollback()
        return time.monotonic() - t0, int(exc.args[0])
    finally:
        conn.close()


OTHERS = [  # tenant B's writes while A is paused: (what, statement, params)
    ("insert into the gap after A's range (orders, indexed)", f"INSERT INTO {SRC}.orders VALUES (%s, 0, 1)", (B,)),
    ("insert at the end of B's range (orders → trigger → audit)", f"INSERT INTO {SRC}.orders VALUES (%s, 99, 1)", (B,)),
    ("update B's first row (orders, indexed)", f"UPDATE {SRC}.orders SET total = total + 1 WHERE tenant = %s AND order_no = 1",
     (B,)),
    ("insert (events, no tenant index)", f"INSERT INTO {SRC}.events (tenant, msg) VALUES (%s, 'new')", (B,)),
    ("update (events, no tenant index)", f"UPDATE {SRC}.events SET msg = 'changed' WHERE tenant = %s", (B,)),
    ("delete (events, no tenant index)", f"DELETE FROM {SRC}.events WHERE tenant = %s AND msg = 'changed' LIMIT 1",
     (B,)),
    ("update through the trigger's table (audit, indexed)", f"UPDATE {SRC}.audit SET what = 'x' WHERE tenant = %s", (B,)),
    ("insert (notes, no key)", f"INSERT INTO {SRC}.notes VALUES (%s, 'new')", (B,)),
    ("insert of a new tenant C row (orders, indexed)", f"INSERT INTO {SRC}.orders VALUES (%s, 0, 1)", (C,)),
]
HELD = [  # tenant A's writes the pause must hold
    ("update (orders, indexed)", f"UPDATE {SRC}.orders SET total = total + 1 WHERE tenant = %s AND order_no = 1", (A,)),
    ("delete (orders, indexed)", f"DELETE FROM {SRC}.orders WHERE tenant = %s AND order_no = 5", (A,)),
    ("insert with a foreign key onto A's directory row (orders)", f"INSERT INTO {SRC}.orders VALUES (%s, 77, 1)", (A,)),
    ("update (audit, the trigger's indexed table)", f"UPDATE {SRC}.audit SET what = 'y' WHERE tenant = %s", (A,)),
]


def test_other_tenants_write_freely_while_one_is_paused(cfg: TenantSplitConfig, pg: Any) -> None:
    plan_units(cfg)  # stores the tenant database names the pause reads
    latencies: dict[str, float] = {}
    with write_pause(cfg, A, locks="rows") as info:
        assert info["locked_rows"] > 0 and info["pause_locks"] == "rows"
        assert control.get_route(pg, PIPELINE, SRC, A)["state"] == "paused"
        pg.commit()
        for what, sql, params in OTHERS:
            took, err = _timed(sql, params, 2)
            latencies[what] = took
            assert err is None and took < 1.0, f"tenant {B!r}: {what}: error {err} after {took:.2f} s during {A!r}'s pause"
        for what, sql, params in HELD:
            took, err = _timed(sql, params, 1)
            assert err == 1205, f"tenant {A!r}: {what} was not held by the pause (error {err} after {took:.2f} s)"
    print("\nother tenants' write latency during the pause: " +
          ", ".join(f"{k}: {v * 1000:.1f} ms" for k, v in latencies.items()))
    assert info["paused_s"] > 0 and set(info["locks"]) == {"accounts", "orders", "events", "audit", "notes"}
    assert info["locks"]["notes"]["mode"] == info["locks"]["events"]["mode"] == "none" and len(info["pause_warnings"]) == 2
    with mysql_connect(MYSQL_TARGET, database="") as conn:  # the other tenants' writes are there; A's held ones are not
        cur = conn.cursor()
        cur.execute(f"SELECT tenant, order_no FROM {SRC}.orders WHERE order_no IN (0, 77, 99) ORDER BY tenant, order_no")
        assert [tuple(r) for r in cur.fetchall()] == [(B, 0), (B, 99), (C, 0)]
        cur.execute(f"SELECT COUNT(*) FROM {SRC}.audit WHERE tenant = %s", (B,))  # the trigger fired for B's 2 inserts
        assert cur.fetchone()[0] == 5 + 2
    # the pause is over: A writes again at once
    took, err = _timed(HELD[0][1], HELD[0][2], 2)
    assert err is None and took < 1.0


def test_the_default_pause_takes_no_locks_and_drains_transactions_in_flight(cfg: TenantSplitConfig, pg: Any) -> None:
    """``pause_locks: none``: nothing is locked (A's own write, ignoring the route, goes through); a
    transaction open when the pause starts is waited for until it ends; one open past the bound is reported."""
    import threading

    plan_units(cfg)
    early = _writer(5)  # a transaction of A's in flight when the pause starts: it commits a little later
    early.cursor().execute(f"UPDATE {SRC}.orders SET total = total + 100 WHERE tenant = %s AND order_no = 2", (A,))
    done = threading.Event()

    def finish() -> None:
        time.sleep(0.3)
        early.commit()
        done.set()

    threading.Thread(target=finish, daemon=True).start()
    with write_pause(cfg, A) as info:
        assert done.is_set(), "the pause began before the transaction in flight ended"
        assert info["pause_locks"] == "none" and info["locked_rows"] == 0 and info["locks"] == {}
        assert info["drain"]["waited_for"] >= 1  # (others' transactions on this shared server may be open too)
        assert control.get_route(pg, PIPELINE, SRC, A)["state"] == "paused"
        pg.commit()
        for what, sql, params in HELD:  # not held in the database: the route is the contract
            _, err = _timed(sql, params, 2)
            assert err is None, f"tenant {A!r}: {what}: error {err} without locks"
    early.close()
    assert control.get_route(pg, PIPELINE, SRC, A)["state"] == "active"
    pg.commit()
    # a transaction open longer than the bound: reported, not waited for to the end
    from dataclasses import replace

    late = _writer(5)
    late.cursor().execute(f"UPDATE {SRC}.orders SET total = total + 1 WHERE tenant = %s AND order_no = 3", (B,))
    try:
        with write_pause(replace(cfg, pause_drain_s=0.2), A) as info:
            assert info["drain"]["exceeded"] and info["drain"]["left"] >= 1
    finally:
        late.rollback()
        late.close()
