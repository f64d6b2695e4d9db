"""mysql_to_postgres after the copy, on the real MariaDB and PostgreSQL: the binlog sync (inserts,
updates, key changes, JSON / DECIMAL / zero-date values, deletes — a cascading one that the binary log
does not hold —, the keyless table, a hostile table name), resumable by position (``stop_at`` and a
``kill -9`` mid-sync), the watermark sync (deletes are not seen), a ``kill -9`` of the copy and its
resume, the writable-source refusal, and verification that blocks on a mismatch.

Every test gets its own MySQL database (``m2ps_<uuid>``) and PostgreSQL schema (a name from
:data:`cutover.samples.hostile.HOSTILE_NAMES`, one with a uuid suffix), dropped afterwards together with
their rows in ``cutover_state.m2p_checkpoints`` / ``m2p_positions`` and their consistency pairs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from cutover import binlog, control
from cutover.connections import MYSQL_SOURCE, POSTGRES_TARGET, mysql_connect, pg_connect
from cutover.identifiers import quote_mysql, quote_pg
from cutover.lifecycle import stages
from cutover.lifecycle.stages import RunFailed, run_build
from cutover.mysql_to_postgres import build, load, sync
from cutover.mysql_to_postgres.config import PIPELINE, MysqlToPostgresConfig
from cutover.mysql_to_postgres.readonly import WritableSourceError, ensure_read_only_user
from cutover.mysql_to_postgres.spec import SPEC
from cutover.mysql_to_postgres.typemap import TableMap
from cutover.mysql_to_postgres.verify import compare_table
from cutover.samples.hostile import HOSTILE_NAMES, MAX_BYTES_NAME
from cutover.samples.mysql_types import seed

pytestmark = pytest.mark.integration

RO_USER = "cutover_ro"
STATE = load.STATE_SCHEMA
#: hostile table names (MySQL accepts each as a table name) and target schemas (no '.' in them)
TABLE_PERCENT = "100%"  # a DB-API paramstyle marker in a table name
TABLE_INJECT = 'x"; DROP TABLE y; --'
TABLE_LONG = MAX_BYTES_NAME  # 63 bytes: PostgreSQL's limit exactly
COLUMN_HOSTILE = "semi;colon -- drop"
assert {TABLE_PERCENT, TABLE_INJECT, TABLE_LONG, COLUMN_HOSTILE} <= set(HOSTILE_NAMES)
SCHEMA_NAMES = ("x:y", "Ünïcødé ✓ °C", "semi;colon -- drop", 'quo"te', "船速", "vessel-7", "select", "Mixed Case")
assert set(SCHEMA_NAMES) <= set(HOSTILE_NAMES) and not any("." in s for s in SCHEMA_NAMES)


# ------------------------------------------------------------------------------------------ fixtures

@dataclass
class Env:
    """One test's source database, target schema and Params."""

    db: str
    schema: str
    hostile_table: str
    params: dict[str, Any]

    @property
    def cfg(self) -> MysqlToPostgresConfig:
        return MysqlToPostgresConfig.from_params(self.params)

    def key(self, table: str) -> str:
        return str(build.unit_key(self.cfg, table))

    def tables(self) -> list[str]:
        return ["customers", "orders", "events_log", self.hostile_table]


def _drop_everything(db: str, schema: str, scope: str) -> None:
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql(db)}")
        try:
            cur.execute(f"REVOKE SELECT, SHOW VIEW ON {quote_mysql(db)}.* FROM '{RO_USER}'@'%'")
        except Exception:  # noqa: BLE001 - never granted
            pass
    with pg_connect(POSTGRES_TARGET) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_pg(schema)} CASCADE")
        load.ensure_state(conn)
        like = scope.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + ":%"
        conn.execute(f"DELETE FROM {STATE}.m2p_checkpoints WHERE unit_key LIKE %s", (like,))
        conn.execute(f"DELETE FROM {STATE}.m2p_positions WHERE unit_key LIKE %s", (like,))
        control.ensure_schema(conn)
        # the consistency pairs the build registered: f"{PIPELINE}:{db}.{table}->{schema}" (build.pair_name)
        conn.execute(f"DELETE FROM {control.SCHEMA}.sync_pairs WHERE pipeline = %s AND starts_with(name, %s)",
                     (PIPELINE, f"{PIPELINE}:{db}."))


@pytest.fixture
def make_env() -> Iterator[Callable[..., Env]]:
    """``make_env(schema, hostile_table, rows=…, bad_rows=…, **params)``: seed a fresh source database, grant
    the read-only user on it, and return the Params of a build into ``schema`` (plus a unique suffix);
    everything is dropped after."""
    made: list[tuple[str, str, str]] = []

    def make(schema: str, hostile_table: str = TABLE_PERCENT, *, rows: int = 200, bad_rows: bool = False,
             **params: Any) -> Env:
        db = f"m2ps_{uuid.uuid4().hex[:10]}"
        schema = f"{schema} {db[-6:]}"  # the hostile name, made unique per test (tests may run side by side)
        p = {"source_database": db, "target_schema": schema, "gx_gate": False, **params}
        env = Env(db, schema, hostile_table, p)
        made.append((db, schema, env.cfg.scope))
        _drop_everything(db, schema, env.cfg.scope)
        seed(MYSQL_SOURCE, db, rows=rows, bad_rows=bad_rows, hostile_table=hostile_table, hostile_column=COLUMN_HOSTILE)
        ensure_read_only_user(MYSQL_SOURCE, RO_USER, [db])
        return env

    yield make
    for db, schema, scope in made:
        _drop_everything(db, schema, scope)


def _rid(tag: str) -> str:
    return f"m2ps_{tag}_{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------------------ helpers

@contextmanager
def _root() -> Iterator[Any]:
    """A root session on the source server: non-strict (zero dates allowed), UTC; always closed (an open
    transaction left behind by a failed assertion would hold a metadata lock that blocks DROP DATABASE)."""
    import MySQLdb

    from cutover.connections import resolve

    conn = MySQLdb.connect(**resolve(MYSQL_SOURCE).mysql_kwargs(database=""))
    try:
        cur = conn.cursor()
        cur.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', time_zone = '+00:00', binlog_format = 'ROW'")
        cur.close()
        yield conn
    finally:
        try:
            conn.rollback()
        finally:
            conn.close()


def _maps(env: Env) -> dict[str, TableMap]:
    """The built units of the env (unit key → mapping of the latest plan)."""
    maps = sync.built_units(env.cfg)
    assert sorted(maps) == sorted(env.key(t) for t in env.tables()), maps.keys()
    return maps


def _assert_all_equal(env: Env, run_id: str) -> None:
    """Every table equal on both sides (consistency engine: counts, checksums, differing keys)."""
    cfg = env.cfg
    for k, tm in _maps(env).items():
        res = compare_table(cfg, tm, k, run_id)
        cons = res.detail["consistency"]
        assert res.passed, (k, res.failures)
        assert not (cons["missing_keys"] or cons["extra_keys"] or cons["changed_keys"]), (k, cons)
        assert res.rows_source == res.rows_target, (k, res.rows_source, res.rows_target)
        assert res.detail["dead_letters"] == 0, k


def _positions(env: Env) -> dict[str, dict[str, Any]]:
    with pg_connect(POSTGRES_TARGET) as conn:
        rows = conn.execute(f"SELECT unit_key, mode, position, watermark, changes_applied FROM {STATE}.m2p_positions "
                            "WHERE unit_key = ANY(%s)", ([env.key(t) for t in env.tables()],)).fetchall()
    return {r[0]: {"mode": r[1], "position": r[2], "watermark": r[3], "changes_applied": r[4]} for r in rows}


def _pgq(env: Env, table: str) -> str:
    """The quoted target ``schema.table``, ``%`` doubled: ready for a query with ``%s`` parameters."""
    return f"{quote_pg(env.schema)}.{quote_pg(table)}".replace("%", "%%")


def _pg_rows(env: Env, table: str, order: str, cols: str = "*") -> list[tuple[Any, ...]]:
    """The target table's rows (``cols``), ordered by ``order``."""
    with pg_connect(POSTGRES_TARGET) as conn:
        return conn.execute(f"SELECT {cols} FROM {quote_pg(env.schema)}.{quote_pg(table)} ORDER BY {order}").fetchall()


def _pg_fingerprint(env: Env) -> dict[str, tuple[int, str]]:
    """Per target table: row count and md5 of every row's text, sorted (a duplicate or any change shows)."""
    out = {}
    with pg_connect(POSTGRES_TARGET) as conn:
        for t in env.tables():
            q = f"{quote_pg(env.schema)}.{quote_pg(t)}"
            n, h = conn.execute(f"SELECT count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) "
                                f"FROM {q} AS r").fetchone()
            out[t] = (int(n), str(h))
    return out


def _mysql_count(env: Env, table: str) -> int:
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {quote_mysql(env.db)}.{quote_mysql(table)}".replace("%", "%%"), ())
        return int(cur.fetchone()[0])


def _pg_count(env: Env, table: str) -> int:
    with pg_connect(POSTGRES_TARGET) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {quote_pg(env.schema)}.{quote_pg(table)}").fetchone()[0])


def _green_build(env: Env, tag: str) -> str:
    run_id = _rid(tag)
    rep = run_build(SPEC, env.params, run_id)
    assert rep.green, rep.reason
    return run_id


def _pos(text: str | None) -> binlog.BinlogPosition:
    assert text, "no binlog position stored"
    return binlog.BinlogPosition.parse(text)


# ------------------------------------------------------------------------------------------ 1. binlog refresh

def _changes_round_one(env: Env) -> dict[str, Any]:
    """Inserts, updates (a key change of orders, JSON, DECIMAL, a zero date), deletes (one cascading onto
    orders through the foreign key: those order deletes are not in the binary log), the keyless table and
    the hostile table — each in its own transaction, as an application would."""
    db = quote_mysql(env.db)
    ht = quote_mysql(env.hostile_table).replace("%", "%%")
    hc = quote_mysql(COLUMN_HOSTILE)
    with _root() as conn:
        return _round_one(conn, db, ht, hc)


def _round_one(conn: Any, db: str, ht: str, hc: str) -> dict[str, Any]:
    cur = conn.cursor()
    out: dict[str, Any] = {}
    # new customers, each with two orders
    new_ids = []
    for i in range(3):
        cur.execute(f"INSERT INTO {db}.customers (`user`, name, balance, doc, born) VALUES (%s, %s, %s, %s, %s)",
                    (f"new{i}", f"새 고객 {i} 🚀", f"{i}.0000000000001", json.dumps({"new": i}), "2001-02-03"))
        new_ids.append(cur.lastrowid)
        cur.executemany(f"INSERT INTO {db}.orders VALUES (%s, %s, %s, %s)",
                        [(cur.lastrowid, f"NEW-{i}-{j}", f"{i}{j}.50", "2025-01-02 03:04:05") for j in range(2)])
    conn.commit()
    out["new_ids"] = new_ids
    # updates: JSON, DECIMAL, a zero date (the default rule makes it NULL), a name
    cur.execute(f"SELECT id FROM {db}.customers WHERE `user` LIKE 'user%%' ORDER BY id LIMIT 6")
    ids = [r[0] for r in cur.fetchall()]
    out["json_id"], out["dec_id"], out["zero_id"], out["cascade_id"], out["plain_del_id"], out["name_id"] = ids
    cur.execute(f"UPDATE {db}.customers SET doc = %s WHERE id = %s", ('{"changed": [1, "두", {"x": null}]}', ids[0]))
    cur.execute(f"UPDATE {db}.customers SET balance = %s WHERE id = %s", ("-123456789012345.1234567890123", ids[1]))
    cur.execute(f"UPDATE {db}.customers SET born = '0000-00-00', seen = '2020-00-15 10:00:00' WHERE id = %s", (ids[2],))
    conn.commit()
    cur.execute(f"UPDATE {db}.customers SET name = %s WHERE id = %s", ("renamed ✓", ids[5]))
    conn.commit()
    # a key change of an order (composite key: order_no)
    cur.execute(f"SELECT customer_id, order_no FROM {db}.orders WHERE customer_id NOT IN (%s, %s) "
                "ORDER BY customer_id, order_no LIMIT 1", (ids[3], ids[4]))
    cid, ono = cur.fetchone()
    cur.execute(f"UPDATE {db}.orders SET order_no = %s, amount = amount + 1 WHERE customer_id = %s AND order_no = %s",
                (f"{ono}-RENUMBERED", cid, ono))
    out["rekeyed"] = ((cid, ono), (cid, f"{ono}-RENUMBERED"))
    conn.commit()
    # deletes: a customer whose orders go by ON DELETE CASCADE (not logged), one without orders
    cur.execute(f"INSERT INTO {db}.orders VALUES (%s, 'CASCADE-1', 1.00, '2024-01-01 00:00:00'), "
                "(%s, 'CASCADE-2', 2.00, '2024-01-01 00:00:00')", (ids[3], ids[3]))
    conn.commit()
    cur.execute(f"SELECT COUNT(*) FROM {db}.orders WHERE customer_id = %s", (ids[3],))
    out["cascaded_orders"] = int(cur.fetchone()[0])
    assert out["cascaded_orders"] >= 2
    cur.execute(f"DELETE FROM {db}.orders WHERE customer_id = %s", (ids[4],))
    cur.execute(f"DELETE FROM {db}.customers WHERE id = %s", (ids[4],))
    conn.commit()
    cur.execute(f"DELETE FROM {db}.customers WHERE id = %s", (ids[3],))
    conn.commit()
    cur.execute(f"SELECT COUNT(*) FROM {db}.orders WHERE customer_id = %s", (ids[3],))
    assert cur.fetchone()[0] == 0, "the foreign key's ON DELETE CASCADE did not run in MySQL"
    # the keyless table: insert, update, delete
    cur.execute(f"INSERT INTO {db}.events_log VALUES ('2025-05-05 05:05:05.555', 'signup', 'new ✓')")
    cur.execute(f"UPDATE {db}.events_log SET payload = 'rewritten' WHERE payload = 'e 3'")
    cur.execute(f"DELETE FROM {db}.events_log WHERE payload = 'e 4'")
    conn.commit()
    # the hostile table: insert, update of the hostile column, delete
    cur.execute(f"INSERT INTO {db}.{ht} VALUES (%s, %s, %s)", (1000, "inserted; --", 7))
    cur.execute(f"UPDATE {db}.{ht} SET {hc} = %s WHERE id = 3", ("upd'ated \"q\"",))
    cur.execute(f"DELETE FROM {db}.{ht} WHERE id = 5", ())
    conn.commit()
    return out


@pytest.mark.parametrize(("schema", "table"), [("x:y", TABLE_LONG), ("Ünïcødé ✓ °C", TABLE_PERCENT), ("100%", TABLE_INJECT)],
                         ids=["long_table", "percent_table", "percent_schema"])
def test_binlog_sync_brings_every_table_equal(make_env: Callable[..., Env], schema: str, table: str) -> None:
    """After a green build (auto → binlog), MySQL's changes of every kind reach PostgreSQL through one
    ``sync_units``: every table ends equal (the orders deleted by MySQL's ON DELETE CASCADE, absent from the
    binary log, go through the target's own cascading foreign key), positions move forward, and a second
    sync changes nothing. Variants: a 63-byte table name, ``%`` in the table name, ``%`` in the schema."""
    env = make_env(schema, table)
    run_id = _green_build(env, "binlog")
    before = _positions(env)
    assert {p["mode"] for p in before.values()} == {"binlog"}, before  # auto → binlog (ROW log on)
    assert all(p["position"] for p in before.values()), before

    ch = _changes_round_one(env)
    res = sync.sync_units(env.cfg)
    st = res["binlog"]
    assert st["changes"] > 0 and st["upserted"] > 0 and st["deleted"] > 0, st
    _assert_all_equal(env, run_id)

    # specific values, read in PostgreSQL directly
    def cust(cid: int, cols: str) -> Any:
        with pg_connect(POSTGRES_TARGET) as conn:
            return conn.execute(f"SELECT {cols} FROM {_pgq(env, 'customers')} WHERE id = %s", (cid,)).fetchone()

    assert json.loads(cust(ch["json_id"], "doc::text")[0]) == {"changed": [1, "두", {"x": None}]}
    assert cust(ch["dec_id"], "balance")[0] == Decimal("-123456789012345.1234567890123")
    assert cust(ch["zero_id"], "born, seen") == (None, None)  # zero / partial dates → NULL (default rule)
    assert cust(ch["name_id"], "name")[0] == "renamed ✓"
    for i, nid in enumerate(ch["new_ids"]):
        assert cust(nid, "\"user\", name")[0:2] == (f"new{i}", f"새 고객 {i} 🚀")
    assert cust(ch["cascade_id"], "id") is None and cust(ch["plain_del_id"], "id") is None
    orders = _pg_rows(env, "orders", "customer_id, order_no", "customer_id, order_no")
    assert not [o for o in orders if o[0] in (ch["cascade_id"], ch["plain_del_id"])], "orders of deleted customers"
    (old_c, old_no), (new_c, new_no) = ch["rekeyed"]
    assert (old_c, old_no) not in orders and (new_c, new_no) in orders
    assert sum(1 for o in orders if o[0] in ch["new_ids"]) == 6
    events = _pg_rows(env, "events_log", "at, kind, payload", "kind, payload")
    assert ("signup", "new ✓") in events and not [e for e in events if e[1] in ("e 3", "e 4")]
    assert len(events) == _mysql_count(env, "events_log")
    hostile = dict(_pg_rows(env, env.hostile_table, "id", f"id, {quote_pg(COLUMN_HOSTILE)}"))
    assert hostile[1000] == "inserted; --" and hostile[3] == "upd'ated \"q\"" and 5 not in hostile

    # positions moved forward, changes were counted
    after = _positions(env)
    for k in before:
        assert _pos(after[k]["position"]) > _pos(before[k]["position"]), (k, before[k], after[k])
    for t in ("customers", "orders", "events_log", env.hostile_table):
        assert after[env.key(t)]["changes_applied"] > 0, (t, after[env.key(t)])

    # running it again changes nothing
    snap = _pg_fingerprint(env)
    again = sync.sync_units(env.cfg)["binlog"]
    assert again["changes"] == 0 and again["upserted"] == 0 and again["deleted"] == 0, again
    assert _pg_fingerprint(env) == snap
    assert {k: v["changes_applied"] for k, v in _positions(env).items()} == \
        {k: v["changes_applied"] for k, v in after.items()}
    _assert_all_equal(env, run_id)


def test_binlog_sync_sees_cascaded_deletes_of_a_table_copied_without_its_parent(make_env: Callable[..., Env]) -> None:
    """Only ``orders`` is copied (its parent ``customers`` stays in MySQL). Deleting a customer deletes its
    orders through MySQL's ON DELETE CASCADE, which the binary log does not hold; the target has no parent
    (nor foreign key) to cascade from. The synced ``orders`` must still end equal to MySQL's."""
    env = make_env(SCHEMA_NAMES[0], TABLE_INJECT, tables=["orders"])
    run_id = _green_build(env, "cascade")
    db = quote_mysql(env.db)
    with _root() as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT customer_id, COUNT(*) FROM {db}.orders GROUP BY customer_id ORDER BY 2 DESC, 1 LIMIT 1")
        cid, n = cur.fetchone()
        cur.execute(f"INSERT INTO {db}.orders VALUES (%s, 'AFTER-COPY', 1.00, '2024-01-01 00:00:00')", (cid,))
        conn.commit()
        cur.execute(f"DELETE FROM {db}.customers WHERE id = %s", (cid,))
        conn.commit()
        cur.execute(f"SELECT COUNT(*) FROM {db}.orders WHERE customer_id = %s", (cid,))
        assert cur.fetchone()[0] == 0 and n >= 1
    res = sync.sync_units(env.cfg)["binlog"]
    assert res["tables"] == 1, res
    left = [o for o in _pg_rows(env, "orders", "customer_id, order_no", "customer_id, order_no") if o[0] == cid]
    assert not left, f"{len(left)} order(s) of deleted customer {cid} are still in PostgreSQL: {left[:5]}"
    key = env.key("orders")
    cmp = compare_table(env.cfg, sync.built_units(env.cfg)[key], key, run_id)
    assert cmp.passed, cmp.failures


# ------------------------------------------------------------------------------------------ 2. resumable by position

def _mysql_now_position() -> binlog.BinlogPosition:
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        return binlog.current_position(conn.cursor())


def _mysql_updated_at(env: Env, ids: list[int]) -> dict[int, Any]:
    """MySQL's ``updated_at`` of ``ids`` (naive UTC, microseconds)."""
    with _root() as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT id, updated_at FROM {quote_mysql(env.db)}.customers WHERE id IN ({', '.join(['%s'] * len(ids))})",
                    ids)
        return {int(r[0]): r[1] for r in cur.fetchall()}


def _pg_updated_at(env: Env, ids: list[int]) -> dict[int, Any]:
    """PostgreSQL's ``updated_at`` of ``ids`` as naive UTC."""
    with pg_connect(POSTGRES_TARGET) as conn:
        rows = conn.execute(f"SELECT id, updated_at FROM {_pgq(env, 'customers')} WHERE id = ANY(%s)", (ids,)).fetchall()
    return {int(r[0]): r[1].astimezone(dt.UTC).replace(tzinfo=None) for r in rows}


_SYNC_KILLER = textwrap.dedent("""
    import json, os, signal, sys
    from cutover.mysql_to_postgres import load, sync
    from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
    sync.FLUSH_S = 0.0  # one flush (one PostgreSQL transaction with the positions) per MySQL transaction
    calls = {"n": 0}
    real = load.refresh_keys
    def refresh_keys(*a, **kw):
        calls["n"] += 1
        if calls["n"] == int(sys.argv[2]):  # inside a flush: rows not yet written, positions not moved
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **kw)
    load.refresh_keys = refresh_keys
    sync.sync_units(MysqlToPostgresConfig.from_params(json.loads(sys.argv[1])))
    print("NOT KILLED")
""")


def test_binlog_sync_resumes_by_position_without_duplicate_or_gap(make_env: Callable[..., Env]) -> None:
    env = make_env(SCHEMA_NAMES[2], TABLE_INJECT)
    run_id = _green_build(env, "resume")
    db = quote_mysql(env.db)
    start = _pos(_positions(env)[env.key("customers")]["position"])

    # round A, then its end position, then round B (a row of A touched again, new rows, a delete)
    with _root() as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT id FROM {db}.customers WHERE `user` LIKE 'user%%' ORDER BY id LIMIT 8")
        ids = [r[0] for r in cur.fetchall()]
        cur.execute(f"UPDATE {db}.customers SET name = 'A' WHERE id IN (%s, %s)", (ids[0], ids[1]))
        cur.execute(f"INSERT INTO {db}.events_log VALUES ('2025-01-01 00:00:00.001', 'A', 'round A')")
        conn.commit()
        pos_a = _mysql_now_position()
        cur.execute(f"UPDATE {db}.customers SET name = 'B' WHERE id = %s", (ids[1],))
        cur.execute(f"INSERT INTO {db}.customers (`user`, name) VALUES ('round-b', 'B')")
        new_b = cur.lastrowid
        cur.execute(f"INSERT INTO {db}.events_log VALUES ('2025-01-01 00:00:00.002', 'B', 'round B')")
        cur.execute(f"DELETE FROM {db}.customers WHERE id = %s", (ids[2],))
        conn.commit()

    # part of the changes: up to the end of round A
    part = sync.sync_units(env.cfg, stop_at=pos_a)["binlog"]
    assert part["changes"] >= 3, part
    mid = _positions(env)
    for k, p in mid.items():
        assert _pos(p["position"]) == pos_a, (k, p, pos_a)  # every table stopped exactly at A's end
    names = dict(_pg_rows(env, "customers", "id", "id, name"))
    assert names[ids[0]] == "A"
    assert new_b not in names and ids[2] in names, "round B was applied before its position was reached"
    # the keyless table is reloaded whole from a snapshot taken now (so round B may already show): once each
    events = [e[0] for e in _pg_rows(env, "events_log", "at", "payload")]
    assert events.count("round A") == 1 and events.count("round B") <= 1

    # the rest: from A's end on; nothing twice, nothing skipped
    rest = sync.sync_units(env.cfg)["binlog"]
    assert rest["changes"] >= 4, rest
    names = dict(_pg_rows(env, "customers", "id", "id, name"))
    assert (names[ids[0]], names[ids[1]], names[new_b]) == ("A", "B", "B") and ids[2] not in names
    events = [e[0] for e in _pg_rows(env, "events_log", "at", "payload")]
    assert events.count("round A") == 1 and events.count("round B") == 1
    for t in env.tables():
        assert _pg_count(env, t) == _mysql_count(env, t), t
    _assert_all_equal(env, run_id)
    after_rest = _positions(env)
    assert all(_pos(p["position"]) > pos_a > start for p in after_rest.values()), after_rest

    # round C: ten transactions, the sync killed (-9) inside its fourth flush, then resumed
    with _root() as conn:
        cur = conn.cursor()
        for i in range(10):
            cur.execute(f"UPDATE {db}.customers SET name = %s, balance = balance + 1 WHERE id = %s", (f"C{i}", ids[3 + i % 5]))
            cur.execute(f"INSERT INTO {db}.customers (`user`, name) VALUES (%s, %s)", (f"round-c-{i}", f"C{i}"))
            cur.execute(f"INSERT INTO {db}.events_log VALUES (%s, 'C', %s)", (f"2025-01-02 00:00:00.{i:03d}", f"round C {i}"))
            conn.commit()
    end_c = _mysql_now_position()
    proc = subprocess.run([sys.executable, "-c", _SYNC_KILLER, json.dumps(env.params), "4"], env={**os.environ},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout[-1000:], proc.stderr[-3000:])
    killed = _positions(env)
    moved = [_pos(p["position"]) for p in killed.values()]
    assert all(after_rest[k]["position"] != p["position"] for k, p in killed.items()), "no flush committed before the kill"
    assert all(m < end_c for m in moved), "the kill came after the last transaction: nothing left to resume"
    assert _pg_count(env, "customers") < _mysql_count(env, "customers")  # partway
    sync.sync_units(env.cfg)
    for t in env.tables():
        assert _pg_count(env, t) == _mysql_count(env, t), t
    events = [e[0] for e in _pg_rows(env, "events_log", "at", "payload")]
    assert all(events.count(f"round C {i}") == 1 for i in range(10)), events
    _assert_all_equal(env, run_id)
    assert all(_pos(p["position"]) >= end_c for p in _positions(env).values())


def test_sync_writes_keep_mysql_on_update_values(make_env: Callable[..., Env]) -> None:
    """The sync's own writes do not fire the target's ON UPDATE trigger: ``updated_at`` stays MySQL's value,
    also when MySQL changed a row but kept its ``updated_at`` (the trigger's rule would stamp now())."""
    env = make_env(SCHEMA_NAMES[3], TABLE_INJECT)
    run_id = _green_build(env, "onupd")
    db = quote_mysql(env.db)
    with _root() as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT id FROM {db}.customers WHERE `user` LIKE 'user%%' ORDER BY id LIMIT 4")
        ids = [r[0] for r in cur.fetchall()]
        cur.execute(f"UPDATE {db}.customers SET name = 'kept stamp', updated_at = updated_at WHERE id IN (%s, %s)",
                    (ids[0], ids[1]))
        cur.execute(f"UPDATE {db}.customers SET name = 'old stamp', updated_at = '2001-02-03 04:05:06.123456' WHERE id = %s",
                    (ids[2],))
        cur.execute(f"UPDATE {db}.customers SET name = 'moved stamp' WHERE id = %s", (ids[3],))
        conn.commit()
    before_pg = _pg_updated_at(env, ids)
    time.sleep(0.05)
    sync.sync_units(env.cfg)
    mysql_at = _mysql_updated_at(env, ids)
    pg_at = _pg_updated_at(env, ids)
    assert pg_at == mysql_at, (pg_at, mysql_at)
    assert pg_at[ids[0]] == before_pg[ids[0]] and str(mysql_at[ids[2]]) == "2001-02-03 04:05:06.123456"
    assert dict(_pg_rows(env, "customers", "id", "id, name"))[ids[3]] == "moved stamp"
    _assert_all_equal(env, run_id)
    # the trigger is there and fires for anyone else's write (so the check above could fail)
    with pg_connect(POSTGRES_TARGET) as conn:
        stamped = conn.execute(f"UPDATE {_pgq(env, 'customers')} SET name = 'app write' WHERE id = %s "
                               "RETURNING updated_at", (ids[0],)).fetchone()[0]
        conn.rollback()
    assert stamped.astimezone(dt.UTC).replace(tzinfo=None) != mysql_at[ids[0]]


# ------------------------------------------------------------------------------------------ 3. watermark mode

def test_watermark_sync_sees_updates_and_inserts_not_deletes(make_env: Callable[..., Env]) -> None:
    env = make_env(SCHEMA_NAMES[4], TABLE_INJECT, sync_mode="watermark", watermark_column="updated_at")
    run_id = _green_build(env, "wm")
    pos = _positions(env)
    assert {p["mode"] for p in pos.values()} == {"watermark"}, pos
    assert pos[env.key("customers")]["watermark"], pos  # MAX(updated_at) at the copy's start
    db = quote_mysql(env.db)
    time.sleep(0.01)
    with _root() as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT id FROM {db}.customers WHERE `user` LIKE 'user%%' ORDER BY id LIMIT 4")
        ids = [r[0] for r in cur.fetchall()]
        for n, cid in enumerate(ids[:3]):  # ON UPDATE moves updated_at
            cur.execute(f"UPDATE {db}.customers SET name = %s, balance = %s WHERE id = %s", (f"wm {n}", f"{n}.5", cid))
        cur.execute(f"INSERT INTO {db}.customers (`user`, name) VALUES ('wm-new-1', 'inserted 1'), ('wm-new-2', 'inserted 2')")
        cur.execute(f"SELECT id FROM {db}.customers WHERE `user` LIKE 'wm-new-%%' ORDER BY id")
        new_ids = [r[0] for r in cur.fetchall()]
        cur.execute(f"DELETE FROM {db}.orders WHERE customer_id = %s", (ids[3],))
        cur.execute(f"DELETE FROM {db}.customers WHERE id = %s", (ids[3],))
        conn.commit()
    res = sync.sync_units(env.cfg)
    wm = res["watermark"]
    assert "deletes are not seen" in wm["note"], wm
    assert wm["tables"]["customers"]["upserted"] >= 5, wm
    for t in ("orders", env.hostile_table, "events_log"):  # no key or no updated_at column: said so
        assert str(wm["tables"][t]).startswith("not synced"), (t, wm["tables"][t])
    names = dict(_pg_rows(env, "customers", "id", "id, name"))
    assert [names[i] for i in ids[:3]] == ["wm 0", "wm 1", "wm 2"]
    assert [names[i] for i in new_ids] == ["inserted 1", "inserted 2"]
    assert ids[3] in names, "the deleted row left PostgreSQL although watermark mode cannot see deletes"
    assert _pg_updated_at(env, ids[:3] + new_ids) == _mysql_updated_at(env, ids[:3] + new_ids)
    assert pos[env.key("customers")]["watermark"] < _positions(env)[env.key("customers")]["watermark"]
    # the only difference left is the unseen delete: one extra key in PostgreSQL
    tm = _maps(env)[env.key("customers")]
    cmp = compare_table(env.cfg, tm, env.key("customers"), run_id)
    assert not cmp.passed and cmp.detail["consistency"]["extra_keys"] == [ids[3]], cmp.detail["consistency"]
    assert not cmp.detail["consistency"]["changed_keys"] and not cmp.detail["consistency"]["missing_keys"]


def test_watermark_sync_takes_every_row_of_one_bulk_update(make_env: Callable[..., Env]) -> None:
    """One UPDATE statement gives many rows the same ``updated_at``; more of them than ``chunk_rows`` must
    all arrive (a watermark sync that pages by the watermark value alone loops on the first page)."""
    env = make_env(SCHEMA_NAMES[5], TABLE_INJECT, sync_mode="watermark", watermark_column="updated_at", chunk_rows=50)
    run_id = _green_build(env, "wmbulk")
    db = quote_mysql(env.db)
    time.sleep(0.01)
    with _root() as conn:
        cur = conn.cursor()
        cur.execute(f"UPDATE {db}.customers SET name = CONCAT('bulk ', id) WHERE `user` LIKE 'user%%' ORDER BY id LIMIT 120")
        assert cur.rowcount == 120
        conn.commit()
        cur.execute(f"SELECT COUNT(DISTINCT updated_at) FROM {db}.customers WHERE name LIKE 'bulk %%'")
        assert cur.fetchone()[0] == 1  # one statement: one timestamp
    sync.sync_units(env.cfg)
    bulk = [n for _, n in _pg_rows(env, "customers", "id", "id, name") if str(n).startswith("bulk ")]
    assert len(bulk) == 120, f"{len(bulk)} of the 120 rows updated by one statement reached PostgreSQL"
    tm = _maps(env)[env.key("customers")]
    assert compare_table(env.cfg, tm, env.key("customers"), run_id).passed


# ------------------------------------------------------------------------------------------ 4. kill -9 of the copy

_BUILD = textwrap.dedent("""
    import json, sys
    from cutover.lifecycle.stages import run_build
    from cutover.mysql_to_postgres.spec import SPEC
    run_build(SPEC, json.loads(sys.argv[1]), sys.argv[2], raise_on_red=False)
    print("BUILD ENDED")
""")


def test_copy_killed_mid_table_resumes_green(make_env: Callable[..., Env]) -> None:
    env = make_env(SCHEMA_NAMES[7], TABLE_LONG, rows=3000, chunk_rows=50, parallelism=1)
    keys = [env.key(t) for t in env.tables()]
    proc = subprocess.Popen([sys.executable, "-c", _BUILD, json.dumps(env.params), _rid("killed")], env={**os.environ},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    caught = None
    try:
        deadline = time.monotonic() + 240
        with pg_connect(POSTGRES_TARGET, autocommit=True) as conn:
            load.ensure_state(conn)
            while time.monotonic() < deadline and proc.poll() is None:
                row = conn.execute(f"SELECT unit_key, rows_written FROM {STATE}.m2p_checkpoints "
                                   "WHERE unit_key = ANY(%s) AND rows_written > 0 AND NOT done LIMIT 1", (keys,)).fetchone()
                if row:
                    proc.send_signal(signal.SIGKILL)
                    caught = row
                    break
                time.sleep(0.005)
    finally:
        if proc.poll() is None and caught is None:
            proc.kill()
        out, err = proc.communicate(timeout=60)
    assert caught is not None, f"never saw a copy in progress (exit {proc.returncode}): {out[-500:]} {err[-2000:]}"
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err[-2000:])
    # what the kill left: a checkpoint part-way, and exactly its rows in the target (chunk + checkpoint atomic)
    with pg_connect(POSTGRES_TARGET) as conn:
        cps = conn.execute(f"SELECT unit_key, rows_written, done FROM {STATE}.m2p_checkpoints WHERE unit_key = ANY(%s)",
                           (keys,)).fetchall()
    partial = [(k, w) for k, w, d in cps if not d and w > 0]
    assert partial, cps
    key, written = partial[0]
    table = key.split(":", 1)[1]
    assert 0 < written < _mysql_count(env, table)
    assert _pg_count(env, table) == written, (table, _pg_count(env, table), written)

    rep = run_build(SPEC, env.params, _rid("resumed"))
    assert rep.green, rep.reason
    prepared = _unit_rows(rep.run_id)[key]["detail"].get("prepare", {})
    assert prepared.get("kept") == "resuming a copy in progress" and prepared.get("rows_written") == written, prepared
    for t in env.tables():
        assert _pg_count(env, t) == _mysql_count(env, t), t
    with pg_connect(POSTGRES_TARGET) as conn:
        pks = conn.execute("SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'p' "
                           "AND connamespace = (SELECT oid FROM pg_namespace WHERE nspname = %s)", (env.schema,)).fetchall()
    assert len(pks) == 3, pks  # customers, orders, the hostile table: no duplicate stopped a primary key
    _assert_all_equal(env, _rid("check"))


# ------------------------------------------------------------------------------------------ 5. writable source

def test_writable_source_is_refused_unless_allowed(make_env: Callable[..., Env]) -> None:
    env = make_env(SCHEMA_NAMES[1], TABLE_INJECT, source_conn_id=MYSQL_SOURCE)
    with pytest.raises(WritableSourceError, match="can write"):
        build.plan(env.cfg, None)
    rep = run_build(SPEC, env.params, _rid("writable"), raise_on_red=False)
    assert not rep.green and "planning" in rep.reason, rep.reason
    with pg_connect(POSTGRES_TARGET) as conn:
        assert conn.execute("SELECT to_regnamespace(%s)", (quote_pg(env.schema),)).fetchone()[0] is None
        assert not conn.execute(f"SELECT 1 FROM {STATE}.m2p_checkpoints WHERE unit_key = ANY(%s)",
                                ([env.key(t) for t in env.tables()],)).fetchall()
    with pytest.raises(RunFailed):
        run_build(SPEC, env.params, _rid("writable_raise"))
    # the read-only user passes both checks: its harmless write attempt was refused
    ro = MysqlToPostgresConfig.from_params({**env.params, "source_conn_id": "mysql_readonly"})
    assert all(u.detail["read_only"].startswith("refused") for u in build.plan(ro, None))
    # allowed: green, and the tables equal
    allowed = {**env.params, "allow_writable_source": True}
    rep = run_build(SPEC, allowed, _rid("allowed"))
    assert rep.green, rep.reason
    _assert_all_equal(Env(env.db, env.schema, env.hostile_table, allowed), _rid("check"))


# ------------------------------------------------------------------------------------------ 6. the gate blocks

def test_compare_table_names_the_key_changed_behind_cutovers_back(make_env: Callable[..., Env]) -> None:
    env = make_env(SCHEMA_NAMES[6], TABLE_INJECT)
    run_id = _green_build(env, "tamper")
    maps = _maps(env)
    with pg_connect(POSTGRES_TARGET) as conn:
        s = quote_pg(env.schema).replace("%", "%%")
        cid = conn.execute(f"SELECT min(id) + 7 FROM {s}.customers", ()).fetchone()[0]
        conn.execute(f"UPDATE {s}.customers SET balance = balance + 0.0000000000001 WHERE id = %s", (cid,))
        order = conn.execute(f"SELECT customer_id, order_no FROM {s}.orders ORDER BY 1, 2 LIMIT 1", ()).fetchone()
        conn.execute(f"DELETE FROM {s}.orders WHERE customer_id = %s AND order_no = %s", order)
        conn.execute(f"INSERT INTO {_pgq(env, env.hostile_table)} VALUES (424242, 'extra', 1)", ())
    res = compare_table(env.cfg, maps[env.key("customers")], env.key("customers"), run_id)
    assert not res.passed and res.detail["consistency"]["changed_keys"] == [cid], res.detail["consistency"]
    assert "1 changed" in res.failures[0] and str(cid) in res.failures[0], res.failures
    res = compare_table(env.cfg, maps[env.key("orders")], env.key("orders"), run_id)
    assert not res.passed and res.detail["consistency"]["missing_keys"] == [list(order)], res.detail["consistency"]
    assert order[1] in res.failures[0], res.failures
    res = compare_table(env.cfg, maps[env.key(env.hostile_table)], env.key(env.hostile_table), run_id)
    assert not res.passed and res.detail["consistency"]["extra_keys"] == [424242], res.detail["consistency"]
    events = compare_table(env.cfg, maps[env.key("events_log")], env.key("events_log"), run_id)
    assert events.passed, events.failures  # untouched


def _staged_build_with_tamper(env: Env, run_id: str, tamper: Callable[[Any], None]) -> Any:
    """plan → prepare → copy → finalize, then ``tamper(pg connection)``, then verify and the report."""
    batches = stages.plan(SPEC, env.params, run_id, max_batches=16)
    for batch in batches:
        for stage in ("prepare", "copy", "finalize"):
            stages.run_unit_stage(SPEC, stage, env.params, batch, run_id)
    with pg_connect(POSTGRES_TARGET) as conn:
        tamper(conn)
    for batch in batches:
        try:
            stages.run_unit_stage(SPEC, "verify", env.params, batch, run_id)
        except stages.UnitsFailed:
            pass
    try:
        return stages.report(SPEC, env.params, run_id)
    except RunFailed as exc:
        return exc.report


def _unit_rows(run_id: str) -> dict[str, dict[str, Any]]:
    with pg_connect(POSTGRES_TARGET) as conn:
        return {u["unit_key"]: u for u in control.list_units(conn, run_id)}


@pytest.mark.parametrize("gx_gate", [True, False], ids=["gx_gate_on", "gx_gate_off"])
def test_build_with_wrong_target_row_count_fails_verification(make_env: Callable[..., Env], gx_gate: bool) -> None:
    """Between finalize and verify, a row is deleted from ``customers`` and a duplicate added to the keyless
    ``events_log`` (compared with every column as its key: duplicates collapse in the checksums, only the row
    count shows it). The run must be red, with both units failed in verify."""
    env = make_env(SCHEMA_NAMES[2] + (" gx" if gx_gate else " nogx"), TABLE_INJECT, gx_gate=gx_gate)
    run_id = _rid("gate")
    victim: dict[str, Any] = {}

    def tamper(conn: Any) -> None:
        s = quote_pg(env.schema).replace("%", "%%")
        victim["id"] = conn.execute(  # one without orders: the foreign key check stays out of it
            f"DELETE FROM {s}.customers WHERE id = (SELECT min(id) FROM {s}.customers c WHERE id > 3 AND NOT EXISTS "
            f"(SELECT 1 FROM {s}.orders o WHERE o.customer_id = c.id)) RETURNING id", ()).fetchone()[0]
        conn.execute(f"INSERT INTO {s}.events_log SELECT * FROM {s}.events_log ORDER BY at LIMIT 1", ())

    rep = _staged_build_with_tamper(env, run_id, tamper)
    assert not rep.green, "a build whose target lost a row and gained a duplicate was green"
    units = _unit_rows(run_id)
    cust, ev = units[env.key("customers")], units[env.key("events_log")]
    assert (cust["state"], cust["failed_stage"]) == ("failed", "verify"), cust
    assert str(victim["id"]) in cust["error"] and "1 missing" in cust["error"], cust["error"]
    assert (ev["state"], ev.get("failed_stage")) == ("failed", "verify"), (ev["state"], ev.get("error"), ev.get("detail"))
    wrong = _pg_count(env, "events_log")
    assert wrong == _mysql_count(env, "events_log") + 1
    assert str(wrong) in (ev["error"] or ""), ev["error"]  # the wrong count is named (comparison or GX gate)
    if gx_gate:  # the gate ran where the comparison passed
        for t in ("orders", env.hostile_table):
            assert units[env.key(t)]["detail"]["verify"]["gate"]["success"] is True, units[env.key(t)]["detail"]
    for t in ("orders", env.hostile_table):
        assert units[env.key(t)]["state"] == "verified", units[env.key(t)]
