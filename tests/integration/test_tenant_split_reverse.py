"""tenant_split reverse replication after the switch, on the real MariaDB and PostgreSQL.

A small split (the sample schema's shapes: a tenant-keyed table, an auto-increment table, a composite key
with an ``ON DELETE CASCADE`` foreign key, a renamed table, a keyless table; hostile tenant ids) is built
and cut over through the life cycle; the reverse stream is started at the switch. Then: writes on the new
side come back to the shared tables and a rollback is not refused and loses none of them; a stray write to
the shared tables is reported with its keys (and forwarded when asked) and the stream's own writes are
not; a reverse run killed by SIGKILL mid-apply (and right after a commit) resumes exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import MySQLdb
import pytest

from cutover import control
from cutover.binlog import BinlogPosition, current_position
from cutover.connections import MYSQL_SOURCE, MYSQL_TARGET, mysql_connect, resolve
from cutover.identifiers import quote_mysql
from cutover.lifecycle import stages
from cutover.lifecycle.model import UnitKey
from cutover.lifecycle.switch import TargetWritesFound, rollback, split_ready, switch
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.tenant_split import reverse, sync
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.copy import text_conv
from cutover.tenant_split.spec import SPEC
from tests.integration.test_tenant_split import clean_control

pytestmark = pytest.mark.integration

SRC = "h3_rev_src"
PREFIX = "h3rev_"
STATE = "h3_rev_state"
#: the cut-over tenant has a hostile id; the other one stays on the shared tables
CUT, OTHER = 'quo"te', "acme"
TENANTS = (OTHER, CUT, "船速")
assert CUT in HOSTILE_NAMES
MAPPING = """\
tenant_column: tenant
tables:
  accounts: {}
  users: {}
  orders: {}
  tags: {rename: labels}
  activity: {}
unlisted: error
"""
DDL = [
    "CREATE TABLE accounts (tenant VARCHAR(100) NOT NULL PRIMARY KEY, plan VARCHAR(20) NOT NULL)",
    """CREATE TABLE users (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, tenant VARCHAR(100) NOT NULL,
        name VARCHAR(200) NOT NULL, avatar BLOB NULL, born DATE NOT NULL, created DATETIME(6) NOT NULL,
        updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, KEY users_tenant (tenant))""",
    """CREATE TABLE orders (tenant VARCHAR(100) NOT NULL, order_no INT NOT NULL, user_id BIGINT NOT NULL,
        total DECIMAL(12,2) NULL, PRIMARY KEY (tenant, order_no), KEY orders_user (user_id),
        CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE)""",
    """CREATE TABLE tags (code VARCHAR(40) NOT NULL PRIMARY KEY, tenant VARCHAR(100) NOT NULL,
        label VARCHAR(100) NOT NULL, KEY tags_tenant (tenant))""",
    "CREATE TABLE activity (tenant VARCHAR(100) NOT NULL, msg TEXT NULL, at DATETIME(6) NULL, KEY activity_tenant (tenant))",
]
#: source table → its table in a tenant database
TABLES = {"accounts": "accounts", "users": "users", "orders": "orders", "tags": "labels", "activity": "activity"}


def _seed(cur: Any) -> None:
    cur.execute(f"DROP DATABASE IF EXISTS {SRC}")
    cur.execute(f"CREATE DATABASE {SRC} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    cur.execute(f"USE {SRC}")
    cur.execute("SET SESSION sql_mode = ''")
    cur.execute("SET SESSION time_zone = '+00:00'")
    for stmt in DDL:
        cur.execute(stmt)
    for t, tenant in enumerate(TENANTS):
        cur.execute("INSERT INTO accounts VALUES (%s, 'team')", (tenant,))
        for u in range(6):
            cur.execute("INSERT INTO users (tenant, name, avatar, born, created) VALUES (%s, %s, %s, %s, %s)",
                        (tenant, f"user {u} “{tenant}”", bytes([u, 0, 255]) if u % 2 else None,
                         "0000-00-00" if u == 0 else f"198{u}-02-0{u + 1}", f"2024-01-02 03:04:05.{u:06d}"))
        cur.execute("SELECT id FROM users WHERE tenant = %s ORDER BY id", (tenant,))
        uids = [r[0] for r in cur.fetchall()]
        for o in range(8):
            cur.execute("INSERT INTO orders VALUES (%s, %s, %s, %s)", (tenant, o + 1, uids[o % len(uids)], f"{o}.5"))
        for g in range(3):
            cur.execute("INSERT INTO tags VALUES (%s, %s, %s)", (f"{t}-tag-{g}-ü", tenant, f"label {g}"))
        for a in range(4):
            cur.execute("INSERT INTO activity VALUES (%s, %s, %s)", (tenant, "same" if a < 2 else f"msg {a}",
                                                                     "2024-02-01 00:00:00.5"))


def _drop(cur: Any) -> None:
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s OR SCHEMA_NAME = %s",
                (PREFIX.replace("_", "\\_") + "%", STATE))
    for (name,) in cur.fetchall():
        cur.execute(f"DROP DATABASE {quote_mysql(name.decode() if isinstance(name, bytes) else name)}")


def _clean_streams(pg: Any) -> None:
    for table in ("streams", "stray_writes"):
        pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s AND scope = %s", (PIPELINE, SRC))
    pg.commit()


def _raw() -> Any:
    conn = MySQLdb.connect(**resolve(MYSQL_TARGET).mysql_kwargs(""), conv=text_conv())
    conn.autocommit(True)
    conn.cursor().execute("SET SESSION time_zone = '+00:00'")
    return conn


def _rows(cur: Any, db: str, table: str, where: str = "", params: Any = None) -> list[tuple[Any, ...]]:
    cur.execute(f"SELECT * FROM {quote_mysql(db)}.{quote_mysql(table)}{where}", params)
    return sorted(cur.fetchall(), key=repr)


def _assert_sides_equal(db: str, tenant: str = CUT) -> None:
    """The tenant's rows in every shared table equal its database's rows (every column)."""
    conn = _raw()
    cur = conn.cursor()
    for src, tgt in TABLES.items():
        want = _rows(cur, SRC, src, " WHERE tenant = %s", (tenant,))
        got = _rows(cur, db, tgt)
        assert want == got, f"{src}: source {len(want)} rows vs tenant database {len(got)}"
    conn.close()


def _stream(pg: Any) -> dict[str, Any]:
    """The tenant's reverse stream as the status page shows it."""
    got = control.get_stream(pg, PIPELINE, SRC, CUT, "reverse")
    assert got is not None, "no reverse stream reported"
    return got


def _backend(pg: Any) -> str:
    route = control.get_route(pg, PIPELINE, SRC, CUT)
    assert route is not None
    return str(route["location"]["backend"])


def _positions() -> tuple[Any, Any]:
    with mysql_connect(MYSQL_TARGET, database="") as t:
        tp = current_position(t.cursor())
    with mysql_connect(MYSQL_SOURCE, database="") as s:
        sp = current_position(s.cursor())
    return tp, sp


@pytest.fixture
def cut_over(tmp_path: Path, pg: Any, mysql: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Tenant ``quo"te`` built and cut over (approval policy off), its reverse stream started at the switch."""
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL", "0")  # these tests switch without a human: policy off
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    cur = mysql.cursor()
    _drop(cur)
    _seed(cur)
    mysql.commit()
    clean_control(pg, SRC)
    _clean_streams(pg)
    params = {"source_database": SRC, "mapping": str(mapping), "tenant_directory": "accounts", "database_prefix": PREFIX,
              "state_database": STATE, "chunk_rows": 4, "parallelism": 2, "gx_gate": False}
    assert stages.run_build(SPEC, {**params, "tenants": [CUT, OTHER]}, "h3_rev_build").green
    cfg = TenantSplitConfig.from_params(params)
    ready, blocked = split_ready(SPEC, cfg, [CUT])
    assert len(ready) == 5 and not blocked
    switch(SPEC, cfg, ready, "h3_rev_switch", approval=None)
    assert _backend(pg) == "tenant_db"
    db = control.load_name_map(pg, PIPELINE, SRC)[CUT]
    live = reverse.streams(cfg, [CUT])
    if CUT in live:  # the cutover started it at the switch
        tp, sp = BinlogPosition.parse(live[CUT].switch_position), BinlogPosition.parse(live[CUT].source_position)
    else:
        tp, sp = _positions()
        started = reverse.start(cfg, CUT, db, target_position=tp, source_position=sp, run_id="h3_rev_switch")
        assert started["started"] and started["not_reversed"] == []
    # idempotent: a second start at the same switch changes nothing
    assert not reverse.start(cfg, CUT, db, target_position=tp, source_position=sp, run_id="h3_rev_switch")["started"]
    yield {"cfg": cfg, "db": db, "params": params}
    _drop(cur)
    cur.execute(f"DROP DATABASE IF EXISTS {SRC}")
    clean_control(pg, SRC)
    _clean_streams(pg)


def _new_side_writes(db: str, tag: str, n: int = 1) -> None:
    """Writes by the tenant's application on its own database: every kind, every table, ``n`` transactions each."""
    conn = MySQLdb.connect(**resolve(MYSQL_TARGET).mysql_kwargs(db))
    cur = conn.cursor()
    cur.execute("SET SESSION time_zone = '+00:00'")
    for i in range(n):
        uid = 900_000 + 100 * sum(tag.encode()) + i  # keys no other tenant holds
        cur.execute("INSERT INTO users (id, tenant, name, avatar, born, created) VALUES (%s, %s, %s, %s, '1999-09-09', "
                    "'2025-01-01 00:00:00.123456')", (uid, CUT, f"new {tag} {i} ✓", b"\x00\xff"))
        cur.execute("INSERT INTO orders VALUES (%s, %s, %s, '9.99')", (CUT, 1000 + i + 100 * len(tag), uid))
        cur.execute("INSERT INTO activity VALUES (%s, 'same', NULL), (%s, 'same', NULL)", (CUT, CUT))
        conn.commit()
    cur.execute("UPDATE users SET name = CONCAT(name, ' (edited)') WHERE tenant = %s ORDER BY id LIMIT 2", (CUT,))
    cur.execute("UPDATE accounts SET plan = %s", (f"pro-{tag}"[:20],))
    cur.execute("DELETE FROM orders WHERE order_no = 2")
    cur.execute("SELECT id FROM users ORDER BY id LIMIT 1 OFFSET 3")
    victim = cur.fetchone()[0]
    cur.execute("DELETE FROM users WHERE id = %s", (victim,))  # its orders cascade on both sides
    cur.execute("UPDATE labels SET code = CONCAT(code, '-moved') ORDER BY code LIMIT 1")  # a key change
    cur.execute("INSERT INTO labels VALUES (%s, %s, 'fresh')", (f"{tag}-fresh", CUT))
    cur.execute("UPDATE activity SET msg = 'changed' WHERE msg = 'msg 2' LIMIT 1")
    cur.execute("DELETE FROM activity WHERE msg = 'same' LIMIT 1")
    conn.commit()
    conn.close()


def test_writes_on_the_new_side_reach_the_old_one_and_rollback_loses_none(cut_over: dict[str, Any], pg: Any) -> None:
    cfg, db = cut_over["cfg"], cut_over["db"]
    conn = _raw()
    other_before = {t: _rows(conn.cursor(), SRC, t, " WHERE tenant = %s", (OTHER,)) for t in TABLES}
    _new_side_writes(db, "a", n=3)
    out = reverse.run(cfg)
    mine = out["tenants"][CUT]
    assert mine["applied"] > 0 and mine["strays"] == 0 and mine["lag_s"] is not None
    _assert_sides_equal(db)
    stream = _stream(pg)
    assert stream["state"] == "running" and stream["applied"] == mine["applied"] and stream["position"] == mine["position"]
    assert reverse.run(cfg)["tenants"][CUT]["applied"] == 0  # nothing twice
    # more writes, then the rollback: it drains them and is not refused
    _new_side_writes(db, "bb")
    res = rollback(SPEC, cfg, [CUT], "h3_rev_rollback")
    assert _backend(pg) == "shared"
    _assert_sides_equal(db)
    assert not res.get("failed"), res
    stream = _stream(pg)
    assert stream["state"] == "drained"
    # the other tenant's rows were never touched
    assert {t: _rows(conn.cursor(), SRC, t, " WHERE tenant = %s", (OTHER,)) for t in TABLES} == other_before
    # the forward catch-up continues after what the stream wrote: nothing applied twice (keyless rows stay single)
    assert reverse.run(cfg)["tenants"] == {}  # drained and routed back: no longer runs
    again = sync.catch_up(cfg, {CUT: db})
    assert again["applied"] == 0
    _assert_sides_equal(db)
    # back on the shared tables the application writes there; a second drain (another rollback) leaves the
    # forward catch-up's positions alone, so the forward catch-up brings that write over
    with mysql_connect(MYSQL_SOURCE, database=SRC) as s:
        s.cursor().execute("INSERT INTO activity VALUES (%s, 'after the rollback', NULL)", (CUT,))
    key = UnitKey(cfg.scope, (CUT, "activity"))
    assert reverse.drain(cfg, [key]) == {key.label: {"applied": 0, "position": stream["position"], "stream": "drained"}}
    assert sync.catch_up(cfg, {CUT: db})["applied"] == 1
    _assert_sides_equal(db)
    conn.close()


@pytest.mark.parametrize("one_log", [True, False], ids=["one reader", "a reader per server"])
def test_a_stray_write_to_the_old_side_is_reported_and_forwarded_when_asked(cut_over: dict[str, Any], pg: Any,
                                                                             one_log: bool,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, db = cut_over["cfg"], cut_over["db"]
    if not one_log:  # as when the tenant databases are on another server: the target's log and the source's apart
        monkeypatch.setattr("cutover.tenant_split.copy.same_server", lambda cfg: False)
    _new_side_writes(db, "s")  # the stream's own writes to the shared tables are not strays
    first = reverse.run(cfg)["tenants"][CUT]
    assert first["applied"] > 0 and first["strays"] == 0
    assert control.list_stray_writes(pg, PIPELINE, SRC, CUT) == []
    # a client that did not re-read its route writes the shared tables (and another tenant writes there too)
    with mysql_connect(MYSQL_SOURCE, database=SRC) as s:
        cur = s.cursor()
        cur.execute("INSERT INTO users (id, tenant, name, born, created) VALUES (777001, %s, 'stray', '2000-01-01', "
                    "'2025-01-01 00:00:00')", (CUT,))
        cur.execute("INSERT INTO activity VALUES (%s, 'stray', NULL)", (CUT,))
        cur.execute("UPDATE accounts SET plan = 'other' WHERE tenant = %s", (OTHER,))
    out = reverse.run(cfg)["tenants"][CUT]
    assert out["strays"] == 2 and out["forwarded"] == 0
    strays = control.list_stray_writes(pg, PIPELINE, SRC, CUT)
    assert sorted((w["table_name"], w["kind"], json.dumps(w["record_key"]), w["forwarded"]) for w in strays) == [
        ("activity", "insert", "null", False), ("users", "insert", "[777001]", False)]
    conn = _raw()
    cur = conn.cursor()
    cur.execute(f"SELECT COUNT(*) FROM {quote_mysql(db)}.users WHERE id = 777001")
    assert cur.fetchone()[0] == 0  # reported, not forwarded
    assert reverse.run(cfg)["tenants"][CUT]["strays"] == 0  # reported once
    # forwarded when asked: the tenant database gets it, and the stream does not send it back
    with mysql_connect(MYSQL_SOURCE, database=SRC) as s:
        s.cursor().execute("INSERT INTO activity VALUES (%s, 'stray 2', NULL)", (CUT,))
        s.cursor().execute("UPDATE users SET name = 'stray edited' WHERE id = 777001")
    fwd = reverse.run(cfg, forward_stray_writes=True)["tenants"][CUT]
    assert fwd["strays"] == 2 and fwd["forwarded"] == 2 and fwd["applied"] == 0
    cur.execute(f"SELECT COUNT(*) FROM {quote_mysql(db)}.activity WHERE msg = 'stray 2'")
    assert cur.fetchone()[0] == 1
    nxt = reverse.run(cfg)["tenants"][CUT]
    assert nxt["applied"] == 0 and nxt["strays"] == 0  # the forwarded row did not come back
    cur.execute(f"SELECT COUNT(*) FROM {SRC}.activity WHERE msg = 'stray 2'")
    assert cur.fetchone()[0] == 1
    kinds = {(w["table_name"], w["kind"], w["forwarded"]) for w in control.list_stray_writes(pg, PIPELINE, SRC, CUT)}
    assert ("activity", "insert", True) in kinds and ("users", "update", True) in kinds
    stream = _stream(pg)
    assert stream["detail"]["strays_seen"] == 4 and stream["detail"]["strays_forwarded"] == 2  # totals of the stream
    conn.close()


_KILLER = textwrap.dedent("""
    import json, os, signal, sys
    from cutover.tenant_split import reverse
    from cutover.tenant_split.config import TenantSplitConfig
    reverse.COMMIT_ROWS = 3          # a commit every few rows: some committed, some not when killed
    stage, at = sys.argv[2], int(sys.argv[3])
    seen = {"n": 0}
    def hook(name, rows):
        if name == stage:
            seen["n"] += 1
            if seen["n"] == at:      # applied but not committed, or just committed: kill -9
                os.kill(os.getpid(), signal.SIGKILL)
    reverse.run(TenantSplitConfig.from_params(json.loads(sys.argv[1])), hook=hook)
""")


@pytest.mark.parametrize("stage", ["applied", "committed"])
def test_a_reverse_run_killed_mid_apply_resumes_exactly(cut_over: dict[str, Any], pg: Any, stage: str) -> None:
    cfg, db = cut_over["cfg"], cut_over["db"]
    _new_side_writes(db, "k", n=8)  # keyless duplicates included: a replayed change would show
    with mysql_connect(MYSQL_SOURCE, database="") as s:
        cur = s.cursor()
        cur.execute(f"SELECT file, pos FROM {STATE}.reverse_streams WHERE scope = %s AND tenant = %s", (SRC, CUT))
        before = cur.fetchone()
    proc = subprocess.run([sys.executable, "-c", _KILLER, json.dumps(cut_over["params"]), stage, "4"],
                          env={**os.environ}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    with mysql_connect(MYSQL_SOURCE, database="") as s:
        cur = s.cursor()
        cur.execute(f"SELECT file, pos, applied FROM {STATE}.reverse_streams WHERE scope = %s AND tenant = %s", (SRC, CUT))
        killed = cur.fetchone()
    assert killed[:2] != before and int(killed[2]) > 0  # some transactions committed with their position before the kill
    out = reverse.run(cfg)
    assert out["tenants"][CUT]["applied"] > 0
    _assert_sides_equal(db)  # no duplicate (keyless rows counted exactly), no gap
    assert reverse.run(cfg)["tenants"][CUT]["applied"] == 0


def test_a_key_another_tenant_holds_on_the_source_is_never_overwritten(cut_over: dict[str, Any], pg: Any) -> None:
    cfg, db = cut_over["cfg"], cut_over["db"]
    taken = "0-tag-0-ü"  # the other tenant's tag code (labels' key has no tenant column)
    conn = _raw()
    cur = conn.cursor()
    other = _rows(cur, SRC, "tags", " WHERE code = %s", (taken,))
    assert other and other[0][1] == OTHER
    before = reverse.streams(cfg, [CUT])[CUT].position
    cur.execute(f"INSERT INTO {quote_mysql(db)}.labels VALUES (%s, %s, 'mine')", (taken, CUT))
    with pytest.raises(reverse.ReverseConflict, match=r"held on the source by tenant 'acme'"):
        reverse.run(cfg)
    assert _rows(cur, SRC, "tags", " WHERE code = %s", (taken,)) == other  # untouched
    assert reverse.streams(cfg, [CUT])[CUT].position == before  # nothing of the transaction applied, no position moved
    assert _stream(pg)["state"] == "failed" and "acme" in _stream(pg)["detail"]["error"]
    conn.close()


def test_a_merged_table_cannot_be_reversed(cut_over: dict[str, Any], tmp_path: Path) -> None:
    merged = tmp_path / "merged.yaml"
    merged.write_text(MAPPING.replace("  activity: {}", "  activity: {merge_into: tags}"), encoding="utf-8")
    with pytest.raises(reverse.ReverseUnsupported, match=r"target table 'labels' is merged from \['activity', 'tags'\]"):
        reverse.reverse_routes(replace(cut_over["cfg"], mapping=str(merged)))


def test_a_stopped_stream_brings_nothing_back_and_the_rollback_refuses(cut_over: dict[str, Any], pg: Any) -> None:
    cfg, db = cut_over["cfg"], cut_over["db"]
    assert reverse.stop(cfg, CUT, reason="test") and not reverse.stop(cfg, CUT)
    assert _stream(pg)["state"] == "stopped"
    _new_side_writes(db, "z")
    assert reverse.run(cfg)["tenants"] == {}
    with pytest.raises(TargetWritesFound, match="rollback refused"):
        rollback(SPEC, cfg, [CUT], "h3_rev_refused")
    assert _backend(pg) == "tenant_db"
