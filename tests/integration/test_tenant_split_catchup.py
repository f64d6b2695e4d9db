"""tenant_split's batched catch-up on the real MariaDB: a mixed workload netted per key and applied by
multi-row statements equals the source exactly; a catch-up killed with ``kill -9`` (after a commit, or
in the middle of a flush) resumes with nothing doubled or lost; the forward stream is reported per tenant.

The source ``h2_src`` (tenant column ``tenant``): ``accounts`` (the directory), ``items`` (an
AUTO_INCREMENT key and a secondary UNIQUE ``sku``: swaps of unique values, key changes, rows moving
between tenants), ``parents`` / ``children`` (ON DELETE CASCADE: the log does not carry the cascaded
deletes), ``notes`` (no key, duplicate rows: an applier that replays a change twice shows it) and ``x:y``
(a hostile table name from :data:`cutover.samples.hostile.HOSTILE_NAMES`, a string key).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover import control
from cutover.identifiers import quote_mysql
from cutover.lifecycle import stages
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.tenant_split import sync
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.spec import SPEC

pytestmark = pytest.mark.integration

SRC = "h2_src"
PREFIX = "h2t_"
STATE = "h2_state"
HOSTILE = "x:y"
TENANTS = ("acme", "select", "100%", "船速")
assert HOSTILE in HOSTILE_NAMES and set(TENANTS) - {"acme"} <= set(HOSTILE_NAMES)
TABLES = ("accounts", "items", "parents", "children", "notes", HOSTILE)
MAPPING = f"""\
tenant_column: tenant
tables:
  accounts: {{}}
  items: {{}}
  parents: {{}}
  children: {{}}
  notes: {{}}
  {json.dumps(HOSTILE)}: {{}}
unlisted: error
"""
DDL = [
    "CREATE TABLE accounts (tenant VARCHAR(100) NOT NULL PRIMARY KEY, plan VARCHAR(20) NOT NULL)",
    """CREATE TABLE items (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, tenant VARCHAR(100) NOT NULL,
        sku VARCHAR(60) NOT NULL, qty INT NOT NULL, note TEXT NULL, UNIQUE KEY items_sku (sku), KEY items_tenant (tenant))""",
    """CREATE TABLE parents (id BIGINT NOT NULL PRIMARY KEY, tenant VARCHAR(100) NOT NULL, name VARCHAR(100) NOT NULL,
        KEY parents_tenant (tenant))""",
    """CREATE TABLE children (tenant VARCHAR(100) NOT NULL, id INT NOT NULL, parent_id BIGINT NOT NULL,
        label VARCHAR(100) NULL, PRIMARY KEY (tenant, id), KEY children_parent (parent_id),
        CONSTRAINT children_parent_fk FOREIGN KEY (parent_id) REFERENCES parents (id) ON DELETE CASCADE)""",
    "CREATE TABLE notes (tenant VARCHAR(100) NOT NULL, msg VARCHAR(100) NULL, KEY notes_tenant (tenant))",
    f"""CREATE TABLE {quote_mysql(HOSTILE)} (k VARCHAR(40) NOT NULL PRIMARY KEY, tenant VARCHAR(100) NOT NULL,
        v INT NULL, KEY xy_tenant (tenant))""",
]


def seed(conn: Any) -> None:
    """(Re)create ``h2_src`` with a few rows per tenant (deterministic)."""
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS {SRC}")
    cur.execute(f"CREATE DATABASE {SRC} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    cur.execute(f"USE {SRC}")
    for stmt in DDL:
        cur.execute(stmt)
    for t, tenant in enumerate(TENANTS):
        cur.execute("INSERT INTO accounts VALUES (%s, 'team')", (tenant,))
        for i in range(20):
            cur.execute("INSERT INTO items (tenant, sku, qty, note) VALUES (%s, %s, %s, %s)",
                        (tenant, f"t{t}-sku-{i}", i, None if i % 3 else f"note {i} é"))
        for p in range(5):
            cur.execute("INSERT INTO parents VALUES (%s, %s, %s)", (t * 1000 + p, tenant, f"parent {p}"))
            for c in range(3):
                cur.execute("INSERT INTO children VALUES (%s, %s, %s, %s)", (tenant, p * 10 + c, t * 1000 + p, f"c{c}"))
        for m in range(4):
            cur.execute("INSERT INTO notes VALUES (%s, %s)", (tenant, "same" if m < 2 else f"msg {m}"))
        for k in range(5):
            cur.execute(f"INSERT INTO {quote_mysql(HOSTILE)} VALUES (%s, %s, %s)", (f"{t}:k{k}", tenant, k))
    conn.commit()


def _drop_targets(cur: Any) -> None:
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s OR SCHEMA_NAME = %s",
                (PREFIX.replace("_", "\\_") + "%", STATE))
    for (name,) in cur.fetchall():
        cur.execute(f"DROP DATABASE {quote_mysql(name.decode() if isinstance(name, bytes) else name)}")


def _clean_control(pg: Any) -> None:
    for table in ("units", "switches", "switch_history", "object_backups", "dead_letters"):
        pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s AND starts_with(unit_key, %s)", (PIPELINE, SRC + ":"))
    for table in ("name_map", "routes", "route_history", "streams"):
        pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s AND scope = %s", (PIPELINE, SRC))
    pg.commit()


@pytest.fixture
def built(tmp_path: Path, pg: Any, mysql: Any) -> Iterator[dict[str, Any]]:
    """A seeded source split into its tenants' databases (build green); the build's Params."""
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    seed(mysql)
    cur = mysql.cursor()
    _drop_targets(cur)
    _clean_control(pg)
    params = {"source_database": SRC, "mapping": str(mapping), "tenant_directory": "accounts",
              "database_prefix": PREFIX, "state_database": STATE, "chunk_rows": 8, "parallelism": 2, "gx_gate": False}
    rep = stages.run_build(SPEC, params, "h2_catchup_build", raise_on_red=False)
    assert rep.green, rep.summary()
    yield params
    _drop_targets(cur)
    cur.execute(f"DROP DATABASE IF EXISTS {SRC}")
    _clean_control(pg)


def workload(conn: Any, transactions: int, seed_: int = 7) -> None:
    """Random transactions over every table: inserts, updates, deletes, key changes, unique swaps, rows
    moving to another tenant, parent deletes that cascade, keyless duplicates, the hostile table."""
    rnd = random.Random(seed_)
    cur = conn.cursor()
    cur.execute(f"USE {SRC}")
    xy = quote_mysql(HOSTILE)
    serial = seed_ * 100_000  # ids and keys of one call never meet another call's
    for _ in range(transactions):
        for _ in range(rnd.randint(1, 6)):
            serial += 1
            t = rnd.randrange(len(TENANTS))
            tenant = TENANTS[t]
            op = rnd.randrange(14)
            cur.execute("SELECT id, sku FROM items WHERE tenant = %s ORDER BY RAND(%s) LIMIT 2", (tenant, serial))
            two = cur.fetchall()
            if op == 0:
                cur.execute("INSERT INTO items (tenant, sku, qty) VALUES (%s, %s, %s)", (tenant, f"new-{serial}", serial))
            elif op == 1 and two:
                cur.execute("UPDATE items SET qty = qty + 1, note = %s WHERE id = %s", (f"n{serial} 😀", two[0][0]))
            elif op == 2 and two:
                cur.execute("DELETE FROM items WHERE id = %s", (two[0][0],))
            elif op == 3 and two:  # key change
                cur.execute("UPDATE items SET id = %s WHERE id = %s", (2_000_000 + serial, two[0][0]))
            elif op == 4 and len(two) == 2:  # swap two unique values in one transaction
                (a, sa), (b, sb) = two
                cur.execute("UPDATE items SET sku = CONCAT(sku, '#') WHERE id = %s", (a,))
                cur.execute("UPDATE items SET sku = %s WHERE id = %s", (sa, b))
                cur.execute("UPDATE items SET sku = %s WHERE id = %s", (sb, a))
            elif op == 5 and two:  # the row moves to another tenant
                cur.execute("UPDATE items SET tenant = %s WHERE id = %s", (TENANTS[(t + 1) % len(TENANTS)], two[0][0]))
            elif op == 6 and two:  # delete and re-insert the same key (and unique value) in one transaction
                cur.execute("DELETE FROM items WHERE id = %s", (two[0][0],))
                cur.execute("INSERT INTO items (id, tenant, sku, qty) VALUES (%s, %s, %s, -1)", (two[0][0], tenant, two[0][1]))
            elif op == 7:
                pid = 500_000 + serial
                cur.execute("INSERT INTO parents VALUES (%s, %s, %s)", (pid, tenant, f"p{serial}"))
                cur.execute("INSERT INTO children VALUES (%s, %s, %s, 'new')", (tenant, serial, pid))
            elif op == 8:  # a parent delete: its children go by ON DELETE CASCADE (not in the log)
                cur.execute("SELECT id FROM parents WHERE tenant = %s ORDER BY RAND(%s) LIMIT 1", (tenant, serial))
                row = cur.fetchone()
                if row:
                    cur.execute("UPDATE children SET label = %s WHERE parent_id = %s", (f"last {serial}", row[0]))
                    cur.execute("DELETE FROM parents WHERE id = %s", (row[0],))
            elif op == 9:
                cur.execute("UPDATE children SET label = %s WHERE tenant = %s ORDER BY RAND(%s) LIMIT 1",
                            (f"l{serial}", tenant, serial))
            elif op == 10:  # keyless: duplicates, one of two equal rows deleted / updated
                cur.execute("INSERT INTO notes VALUES (%s, 'same')", (tenant,))
                cur.execute("DELETE FROM notes WHERE tenant = %s AND msg = 'same' LIMIT 1", (tenant,))
                cur.execute("UPDATE notes SET msg = %s WHERE tenant = %s AND msg LIKE 'msg%%' LIMIT 1", (f"msg {serial}", tenant))
                cur.execute("INSERT INTO notes VALUES (%s, NULL)", (tenant,))
            elif op == 11:
                cur.execute(f"INSERT INTO {xy} VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE v = v + 1",
                            (f"{t}:k{serial % 9}", tenant, serial))
            elif op == 12:
                cur.execute(f"UPDATE {xy} SET k = %s WHERE tenant = %s ORDER BY RAND(%s) LIMIT 1",
                            (f"{t}:moved {serial}", tenant, serial))
            else:
                cur.execute(f"DELETE FROM {xy} WHERE tenant = %s ORDER BY RAND(%s) LIMIT 1", (tenant, serial))
        conn.commit()


def _rows(cur: Any, db: str, table: str, where: str = "", params: Any = None) -> list[tuple[Any, ...]]:
    cur.execute(f"SELECT * FROM {quote_mysql(db)}.{quote_mysql(table)}{where}", params)
    return sorted(cur.fetchall(), key=repr)


def _state(cur: Any, dbs: dict[str, str]) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    return {(t, tbl): _rows(cur, dbs[t], tbl) for t in TENANTS for tbl in TABLES}


def assert_equal_to_source(cur: Any, dbs: dict[str, str]) -> None:
    for tenant in TENANTS:
        for table in TABLES:
            want = _rows(cur, SRC, table, " WHERE tenant = %s", (tenant,))
            got = _rows(cur, dbs[tenant], table)
            assert got == want, f"{tenant!r} {table}: {len(got)} rows vs {len(want)} on the source"


def test_mixed_workload_caught_up_in_batches_equals_the_source(built: dict[str, Any], pg: Any, mysql: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TenantSplitConfig.from_params(built)
    dbs = control.load_name_map(pg, PIPELINE, SRC)
    cur = mysql.cursor()
    assert_equal_to_source(cur, dbs)
    monkeypatch.setattr(sync, "COMMIT_ROWS", 60)  # several commit groups, each netted and flushed
    monkeypatch.setattr(sync, "FLUSH_ROWS", 7)  # multi-row statements cut in chunks
    workload(mysql, 300)
    before = _state(cur, dbs)
    out = sync.catch_up(cfg)
    assert out["applied"] > 0 and set(out["tenants"]) == set(TENANTS)
    mysql.commit()
    assert_equal_to_source(cur, dbs)
    after = _state(cur, dbs)
    # touched names every row that changed (the fence re-proof checks exactly these)
    for tenant in TENANTS:
        touched = out["tenants"][tenant]["touched"]
        assert touched["children"] is None and touched["notes"] is None  # a cascade / no key: not named
        for table, key_of in (("items", lambda r: (r[0],)), (HOSTILE, lambda r: (r[0],))):
            changed = {key_of(r) for r in set(before[(tenant, table)]) ^ set(after[(tenant, table)])}
            assert changed and changed <= {tuple(k) for k in touched[table]}, (tenant, table)
    # the forward stream of each tenant: where it stands, its lag, the rows applied
    for tenant in TENANTS:
        st = control.get_stream(pg, PIPELINE, cfg.scope, tenant, "forward")
        assert st is not None and st["position"] == out["reached"] and st["lag_s"] is not None
        assert st["applied"] == out["tenants"][tenant]["applied"] > 0
    # nothing left: a second catch-up applies nothing; more changes, equal again
    assert sync.catch_up(cfg)["applied"] == 0
    workload(mysql, 60, seed_=11)
    assert sync.catch_up(cfg)["applied"] > 0
    mysql.commit()
    assert_equal_to_source(cur, dbs)


def test_unique_swap_and_key_change_in_one_commit_group(built: dict[str, Any], pg: Any, mysql: Any) -> None:
    """Two rows swap their unique ``sku`` and one changes its key, then a row takes a freed unique
    value, all in one commit group: the flush deletes the keys before inserting (no upsert updates the
    wrong row, no duplicate-key error)."""
    cfg = TenantSplitConfig.from_params(built)
    dbs = control.load_name_map(pg, PIPELINE, SRC)
    cur = mysql.cursor()
    cur.execute(f"USE {SRC}")
    cur.execute("SELECT id, sku FROM items WHERE tenant = 'acme' ORDER BY id LIMIT 3")
    (a, sa), (b, sb), (c, sc) = cur.fetchall()
    cur.execute("UPDATE items SET sku = 'tmp' WHERE id = %s", (a,))
    cur.execute("UPDATE items SET sku = %s WHERE id = %s", (sa, b))
    cur.execute("UPDATE items SET sku = %s WHERE id = %s", (sb, a))
    mysql.commit()
    cur.execute("UPDATE items SET id = 900001 WHERE id = %s", (a,))
    cur.execute("DELETE FROM items WHERE id = %s", (c,))
    cur.execute("INSERT INTO items (id, tenant, sku, qty) VALUES (900002, 'acme', %s, 5)", (sc,))
    mysql.commit()
    out = sync.catch_up(cfg)
    assert out["tenants"]["acme"]["applied"] > 0
    mysql.commit()
    assert_equal_to_source(cur, dbs)
    assert {(a,), (c,), (900001,), (900002,), (b,)} <= {tuple(k) for k in out["tenants"]["acme"]["touched"]["items"]}


_KILLED = textwrap.dedent("""
    import sys, time
    from cutover.tenant_split import sync
    from cutover.tenant_split.config import TenantSplitConfig
    where, params = sys.argv[1], __import__("json").loads(sys.argv[2])
    sync.COMMIT_ROWS = 40
    state = {"commits": 0, "flushes": 0}
    real_commit, real_flush = sync._commit, sync.flush
    def commit(*a, **k):
        real_commit(*a, **k)
        state["commits"] += 1
        if where == "after_commit" and state["commits"] == 3:
            print("KILL ME", flush=True)
            time.sleep(600)
    def flush(cur, net):
        n = real_flush(cur, net)
        state["flushes"] += n > 0
        if where == "mid_flush" and state["flushes"] == 8:  # rows written, not committed
            print("KILL ME", flush=True)
            time.sleep(600)
        return n
    sync._commit, sync.flush = commit, flush
    sync.catch_up(TenantSplitConfig.from_params(params))
    print("FINISHED", flush=True)
""")


@pytest.mark.parametrize("where", ["after_commit", "mid_flush"])
def test_a_catch_up_killed_mid_way_resumes_exactly(built: dict[str, Any], pg: Any, mysql: Any, where: str) -> None:
    cfg = TenantSplitConfig.from_params(built)
    dbs = control.load_name_map(pg, PIPELINE, SRC)
    workload(mysql, 250, seed_=3)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, where, json.dumps(built)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=dict(os.environ))
    assert proc.stdout is not None
    line = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or "KILL ME" in line or "FINISHED" in line:
            break
    assert "KILL ME" in line, f"the catch-up never reached the kill point ({line!r})"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    cur = mysql.cursor()
    if where == "after_commit":  # part of it is in: the stored positions moved
        assert _state(cur, dbs) != {(t, tbl): _rows(cur, SRC, tbl, " WHERE tenant = %s", (t,))
                                    for t in TENANTS for tbl in TABLES}
    out = sync.catch_up(cfg)
    assert out["applied"] > 0
    mysql.commit()
    assert_equal_to_source(cur, dbs)  # the keyless notes would show a change applied twice
    assert sync.catch_up(cfg)["applied"] == 0
