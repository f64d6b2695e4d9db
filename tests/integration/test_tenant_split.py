"""tenant_split on the real MariaDB: hostile tenant ids, every key shape, triggers, a view, an event, a
foreign key with ON DELETE CASCADE, awkward values, a kill -9 mid-copy, binlog catch-up of changes made
during the copy, dead letters, a mapping error, the check that blocks a cutover, cutover and rollback.

The source (``ts_it_src``) holds shared tables whose tenant column is ``tenant`` (``utf8mb4_bin``, as
tenant ids are compared exactly); the tenants are names from :data:`HOSTILE_NAMES` plus one plain id.
Tables: ``accounts`` (the tenant directory, a string key), ``users`` (BIGINT AUTO_INCREMENT key, an
audit trigger, NULLs, 4-byte emoji, binary with NUL bytes, JSON, zero dates, an ``ON UPDATE
CURRENT_TIMESTAMP`` column), ``orders`` (composite key, a foreign key onto users with ON DELETE
CASCADE), ``tags`` (a string key, renamed ``labels``), ``activity`` (no key at all, duplicate rows),
``audit`` (filled by the trigger), a view ``v_users`` and an event ``ev_trim``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import MySQLdb
import pytest

from cutover import control
from cutover.connections import MYSQL_TARGET, mysql_connect, pg_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle import stages
from cutover.lifecycle.model import UnitKey
from cutover.lifecycle.switch import SwitchFailed, rollback, split_ready, switch
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.tenant_split import sync
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.copy import text_conv
from cutover.tenant_split.spec import SPEC

pytestmark = pytest.mark.integration

SRC = "ts_it_src"
PREFIX = "tsit_"
STATE = "cutover_state_it"
#: tenants: hostile names (quotes, a reserved word, case twins, `;`, `%`, `:`, `/`, unicode) and a plain one
TENANTS = ("acme", "select", 'quo"te', "Mixed Case", "mixed case", "semi;colon -- drop", "100%", "x:y",
           "M/V Ocean.1", "船速", "Ünïcødé ✓ °C")
assert set(TENANTS) - {"acme"} <= set(HOSTILE_NAMES)
USERS, ORDERS, TAGS, ACTIVITY = 12, 15, 6, 5
MAPPING = """\
tenant_column: tenant
tables:
  accounts: {}
  users: {}
  orders: {}
  tags: {rename: labels}
  activity: {}
  audit: {}
unlisted: error
"""
DDL = [
    "CREATE TABLE accounts (tenant VARCHAR(100) NOT NULL PRIMARY KEY, plan VARCHAR(20) NOT NULL)",
    """CREATE TABLE users (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, tenant VARCHAR(100) NOT NULL,
        name VARCHAR(200) NOT NULL, bio TEXT NULL, avatar BLOB NULL, prefs JSON NULL, born DATE NOT NULL,
        created DATETIME(6) NOT NULL,
        updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
        KEY users_tenant (tenant))""",
    """CREATE TABLE orders (tenant VARCHAR(100) NOT NULL, order_no INT NOT NULL, user_id BIGINT NOT NULL,
        total DECIMAL(12,2) NULL, PRIMARY KEY (tenant, order_no), KEY orders_user (user_id),
        CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE)""",
    """CREATE TABLE tags (code VARCHAR(40) NOT NULL PRIMARY KEY, tenant VARCHAR(100) NOT NULL,
        label VARCHAR(100) NOT NULL, KEY tags_tenant (tenant))""",
    """CREATE TABLE activity (tenant VARCHAR(100) NOT NULL, msg TEXT NULL, at DATETIME(6) NULL,
        KEY activity_tenant (tenant))""",
    """CREATE TABLE audit (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, tenant VARCHAR(100) NOT NULL,
        what VARCHAR(200) NOT NULL, KEY audit_tenant (tenant))""",
    """CREATE TRIGGER users_audit AFTER INSERT ON users FOR EACH ROW
        INSERT INTO audit (tenant, what) VALUES (NEW.tenant, CONCAT('user ', NEW.id))""",
    "CREATE VIEW v_users AS SELECT id, tenant, name FROM users",
    "CREATE EVENT ev_trim ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM activity WHERE at < '2000-01-01'",
]


def _exec(cur: Any, sql: str, params: Any = None) -> None:
    cur.execute(sql, params)


def seed(conn: Any) -> None:
    """(Re)create ``ts_it_src`` with the tenants' rows (deterministic)."""
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS {SRC}")
    cur.execute(f"CREATE DATABASE {SRC} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    cur.execute(f"USE {SRC}")
    cur.execute("SET SESSION sql_mode = ''")  # the permissive source: zero dates allowed
    cur.execute("SET SESSION time_zone = '+00:00'")
    for stmt in DDL:
        cur.execute(stmt)
    for t, tenant in enumerate(TENANTS):
        cur.execute("INSERT INTO accounts VALUES (%s, %s)", (tenant, "team"))
        for u in range(USERS):
            special = t == 0 and u == 0
            cur.execute(
                "INSERT INTO users (tenant, name, bio, avatar, prefs, born, created) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (tenant, "😀 Zoë “quoted” 'x'" if special else f"user {u} of {tenant}", None if u % 3 == 0 else f"bio {u} é",
                 b"\x00\x01\x00\xff" if special else (None if u % 2 else bytes([u, 0, u])),
                 json.dumps({"a": [1, "é"], "n": None}) if special else None,
                 "0000-00-00" if special else f"19{70 + u}-0{1 + u % 9}-1{u % 9}",
                 f"2024-01-0{1 + u % 9} 10:00:00.{u:06d}"))
        cur.execute("SELECT id FROM users WHERE tenant = %s ORDER BY id", (tenant,))
        uids = [r[0] for r in cur.fetchall()]
        for o in range(ORDERS):
            cur.execute("INSERT INTO orders VALUES (%s, %s, %s, %s)", (tenant, o + 1, uids[o % len(uids)],
                                                                       None if o == 3 else f"{o * 10}.{o:02d}"))
        for g in range(TAGS):
            cur.execute("INSERT INTO tags VALUES (%s, %s, %s)", (f"{t}-tag-{g}-ü", tenant, f"label {g}"))
        for a in range(ACTIVITY):
            cur.execute("INSERT INTO activity VALUES (%s, %s, %s)", (tenant, "same" if a < 2 else f"msg {a}",
                                                                     None if a == 4 else "2024-02-01 00:00:00.5"))
    conn.commit()


def _drop_targets(cur: Any) -> None:
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s OR SCHEMA_NAME = %s",
                (PREFIX.replace("_", "\\_") + "%", STATE))
    for (name,) in cur.fetchall():
        cur.execute(f"DROP DATABASE {quote_mysql(name.decode() if isinstance(name, bytes) else name)}")


def clean_control(pg: Any, src: str = SRC) -> None:
    """Forget every control row of source database ``src``'s split (units, switches, backups, dead
    letters, stored names, routes): the tenant_split suites share it, each with its own source."""
    for table in ("units", "switches", "switch_history", "object_backups", "dead_letters"):
        pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s AND starts_with(unit_key, %s)", (PIPELINE, src + ":"))
    for table in ("name_map", "routes", "route_history"):
        pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s AND scope = %s", (PIPELINE, src))
    pg.commit()


@pytest.fixture
def params(tmp_path: Path, pg: Any, mysql: Any) -> Iterator[dict[str, Any]]:
    """A freshly seeded source, no target databases, no control rows; the build's Params."""
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    seed(mysql)
    cur = mysql.cursor()
    _drop_targets(cur)
    clean_control(pg)
    yield {"source_database": SRC, "mapping": str(mapping), "tenant_directory": "accounts", "database_prefix": PREFIX,
           "state_database": STATE, "chunk_rows": 4, "parallelism": 2, "gx_gate": False}
    _drop_targets(cur)


def _raw() -> Any:
    from cutover.connections import resolve

    conn = MySQLdb.connect(**resolve(MYSQL_TARGET).mysql_kwargs(""), conv=text_conv())
    conn.cursor().execute("SET SESSION time_zone = '+00:00'")
    return conn


def _rows(cur: Any, db: str, table: str, where: str = "", params: Any = None, order: str = "") -> list[tuple[Any, ...]]:
    cur.execute(f"SELECT * FROM {quote_mysql(db)}.{quote_mysql(table)}{where}{order}", params)
    return sorted(cur.fetchall(), key=repr)


def _databases(pg: Any) -> dict[str, str]:
    return control.load_name_map(pg, PIPELINE, SRC)


def _assert_equal_to_source(cur: Any, dbs: dict[str, str], tenants: tuple[str, ...] = TENANTS) -> None:
    for tenant in tenants:
        for src, tgt in (("accounts", "accounts"), ("users", "users"), ("orders", "orders"), ("tags", "labels"),
                         ("activity", "activity"), ("audit", "audit")):
            want = _rows(cur, SRC, src, " WHERE tenant = %s", (tenant,))
            got = _rows(cur, dbs[tenant], tgt)
            assert got == want, f"{tenant!r} {src}: {len(got)} rows vs {len(want)}"


@pytest.mark.parametrize("mode", ["server", "client"])
def test_full_split_hostile_tenants(params: dict[str, Any], pg: Any, mode: str) -> None:
    """Both copy paths: INSERT … SELECT inside the server, and the client's LOAD DATA LOCAL writer."""
    params = {**params, "copy_mode": mode}
    rep = stages.run_build(SPEC, params, "ts_it_full")
    assert rep.green and rep.states == {"verified": len(TENANTS) * 6}
    dbs = _databases(pg)
    assert set(dbs) == set(TENANTS)
    assert len({d.lower() for d in dbs.values()}) == len(TENANTS)  # collision-free, case twins included
    assert all(re.fullmatch(r"[a-z0-9_]{1,64}", d) for d in dbs.values()), dbs
    assert dbs["acme"] == "tsit_acme"  # a safe id keeps its name
    conn = _raw()
    cur = conn.cursor()
    _assert_equal_to_source(cur, dbs)  # every value, incl. emoji, NUL bytes, JSON, the zero date, NULLs
    acme = dbs["acme"]
    cur.execute(f"SELECT name, avatar, prefs, born FROM {acme}.users ORDER BY id LIMIT 1")
    assert cur.fetchone() == ("😀 Zoë “quoted” 'x'", b"\x00\x01\x00\xff", '{"a": [1, "\\u00e9"], "n": null}', "0000-00-00")
    # the audit trigger did not fire for copied rows (audit holds exactly the source's rows) …
    cur.execute(f"SELECT COUNT(*) FROM {acme}.audit")
    assert cur.fetchone()[0] == USERS
    # … exists on the target with its exact definition, and fires for new rows
    cur.execute(f"SHOW TRIGGERS FROM {acme}")
    assert [r[0] for r in cur.fetchall()] == ["users_audit"]
    cur.execute(f"INSERT INTO {acme}.users (tenant, name, born, created) VALUES ('acme', 'new', '2000-01-01', NOW())")
    new_id = cur.lastrowid
    cur.execute(f"SELECT what FROM {acme}.audit ORDER BY id DESC LIMIT 1")
    assert cur.fetchone()[0] == f"user {new_id}"
    # AUTO_INCREMENT continued past the copied ids (the source's ids of every tenant are global)
    cur.execute(f"SELECT MAX(id) FROM {SRC}.users WHERE tenant = 'acme'")
    assert new_id > cur.fetchone()[0]
    conn.rollback()
    # the view and the (disabled) event were recreated in every tenant database; the FK is there and holds
    for db in dbs.values():
        cur.execute("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s", (db,))
        assert [r[0] for r in cur.fetchall()] == ["v_users"]
        cur.execute("SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (db,))
        assert cur.fetchall() == (("ev_trim", "DISABLED"),)
        cur.execute("SELECT CONSTRAINT_NAME, DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE "
                    "CONSTRAINT_SCHEMA = %s", (db,))
        assert cur.fetchall() == (("orders_user_fk", "CASCADE"),)
    conn.close()
    run = control.get_run(pg, "ts_it_full")
    ev = run["evidence"]
    assert ev["close"]["failed"] == {} and all(t["foreign_keys"] == "hold" for t in ev["close"]["tenants"].values())
    assert ev["schema_diff"]["summary"]["tables"] >= 6 and ev["schema_diff"]["html"].endswith("schema_diff.html")
    # a rerun copies nothing twice: every checkpoint is done, the counts stay
    rep = stages.run_build(SPEC, params, "ts_it_full_again")
    assert rep.green
    conn = _raw()
    _assert_equal_to_source(conn.cursor(), dbs)
    conn.close()


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from cutover.tenant_split import copy as c
    calls = {"n": 0}
    real = c.write_checkpoint
    def write_checkpoint(*a, **kw):
        real(*a, **kw)
        calls["n"] += 1
        if calls["n"] == int(sys.argv[2]):  # rows and checkpoint written, not committed: kill -9
            os.kill(os.getpid(), signal.SIGKILL)
    c.write_checkpoint = write_checkpoint
    import json
    from cutover.lifecycle import stages
    from cutover.tenant_split.spec import SPEC
    stages.run_build(SPEC, json.loads(sys.argv[1]), "ts_it_kill", raise_on_red=False)
""")


def test_kill_mid_copy_resumes_without_duplicate_or_gap(params: dict[str, Any], pg: Any) -> None:
    env = {**os.environ}
    proc = subprocess.run([sys.executable, "-c", _KILLER, json.dumps({**params, "parallelism": 1}), "9"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    conn = _raw()
    cur = conn.cursor()
    cur.execute(f"SELECT COUNT(*), SUM(done) FROM {STATE}.copy_checkpoints")
    n, done = cur.fetchone()
    assert int(n) >= 1 and int(done) < int(n) + 100  # some chunks committed before the kill
    conn.close()
    rep = stages.run_build(SPEC, params, "ts_it_kill_resume")
    assert rep.green
    conn = _raw()
    _assert_equal_to_source(conn.cursor(), _databases(pg))  # no duplicate (keyless activity too), no gap
    conn.close()


def _writes(cur: Any, tenant: str, tag: str) -> None:
    """Inserts, updates (one changing a key), deletes (one cascading), on keyed and keyless tables."""
    cur.execute("SET SESSION sql_mode = ''")
    cur.execute(f"INSERT INTO {SRC}.users (tenant, name, born, created) VALUES (%s, %s, '0000-00-00', '2024-05-01')",
                (tenant, f"new {tag} 😀"))
    uid = cur.lastrowid
    cur.execute(f"INSERT INTO {SRC}.orders VALUES (%s, %s, %s, 1.5)", (tenant, 1000 + len(tag), uid))
    cur.execute(f"UPDATE {SRC}.users SET bio = %s WHERE tenant = %s ORDER BY id LIMIT 2", (f"updated {tag}", tenant))
    cur.execute(f"UPDATE {SRC}.orders SET order_no = order_no + 500 WHERE tenant = %s AND order_no = 2", (tenant,))
    cur.execute(f"SELECT id FROM {SRC}.users WHERE tenant = %s AND id <> %s ORDER BY id DESC LIMIT 1", (tenant, uid))
    victim = cur.fetchone()[0]
    cur.execute(f"DELETE FROM {SRC}.users WHERE id = %s", (victim,))  # its orders go by ON DELETE CASCADE
    cur.execute(f"UPDATE {SRC}.tags SET label = CONCAT(label, %s) WHERE tenant = %s", (f" {tag}", tenant))
    cur.execute(f"DELETE FROM {SRC}.activity WHERE tenant = %s AND msg = 'same' LIMIT 1", (tenant,))
    cur.execute(f"UPDATE {SRC}.activity SET msg = %s WHERE tenant = %s AND msg = 'msg 3'", (f"msg 3 {tag}", tenant))
    cur.execute(f"INSERT INTO {SRC}.activity VALUES (%s, 'same', NULL)", (tenant,))


def test_changes_during_the_copy_are_caught_up_from_the_binlog(params: dict[str, Any], pg: Any, mysql: Any) -> None:
    cfg = TenantSplitConfig.from_params(params)
    run = "ts_it_cdc"
    batches = stages.plan(SPEC, params, run, max_batches=4)
    for b in batches:
        stages.run_unit_stage(SPEC, "prepare", params, b, run)
    cur = mysql.cursor()
    _writes(cur, "acme", "before-copy")  # after the binlog start, before the copy read them
    _writes(cur, "100%", "before-copy")
    mysql.commit()
    stages.run_unit_stage(SPEC, "copy", params, batches[0], run)
    _writes(cur, "acme", "mid-copy")  # some tables of acme copied, some not yet
    _writes(cur, "x:y", "mid-copy")
    mysql.commit()
    for b in batches[1:]:
        stages.run_unit_stage(SPEC, "copy", params, b, run)
    _writes(cur, "acme", "after-copy")
    _writes(cur, 'quo"te', "after-copy")
    mysql.commit()
    for stage in ("finalize", "verify"):
        for b in batches:
            stages.run_unit_stage(SPEC, stage, params, b, run)
    rep = stages.report(SPEC, params, run)
    assert rep.green
    applied = sum(int(((u.get("detail") or {}).get("verify") or {}).get("catch_up", {}).get("applied") or 0)
                  for u in control.list_units(pg, run))
    assert applied > 0
    conn = _raw()
    _assert_equal_to_source(conn.cursor(), _databases(pg))
    conn.close()
    # the scheduled sync keeps them current: more changes, one catch-up, equal again; a second one applies nothing
    _writes(cur, "acme", "later")
    _writes(cur, "船速", "later")
    mysql.commit()
    out = sync.catch_up(cfg)
    assert out["applied"] > 0 and set(out["tenants"]) == set(TENANTS)
    assert sync.catch_up(cfg)["applied"] == 0
    conn = _raw()
    _assert_equal_to_source(conn.cursor(), _databases(pg))
    cur2 = conn.cursor()
    cur2.execute(f"SHOW TRIGGERS FROM {_databases(pg)['acme']}")  # set aside while applying, restored after
    assert [r[0] for r in cur2.fetchall()] == ["users_audit"]
    conn.close()


@pytest.mark.parametrize("mode", ["server", "client"])
def test_rows_the_target_refuses_go_to_dead_letters(params: dict[str, Any], pg: Any, mysql: Any, mode: str) -> None:
    """A value the target's column cannot hold: never truncated (LOAD DATA LOCAL would only warn), a
    dead letter naming the table and key, the good rows loaded."""
    params = {**params, "copy_mode": mode}
    cur = mysql.cursor()
    cur.execute(f"CREATE TABLE {SRC}.old_tags (code VARCHAR(40) NOT NULL PRIMARY KEY, tenant VARCHAR(100) NOT NULL, "
                "label VARCHAR(300) NOT NULL, KEY old_tags_tenant (tenant))")
    cur.execute(f"INSERT INTO {SRC}.old_tags VALUES ('old-1', 'acme', 'fits'), ('old-2', 'acme', %s), ('old-3', 'acme', 'ok')",
                ("x" * 150,))
    mysql.commit()
    mapping = Path(params["mapping"])
    mapping.write_text(MAPPING.replace("  audit: {}\n", "  audit: {}\n  old_tags: {merge_into: tags}\n"), encoding="utf-8")
    rep = stages.run_build(SPEC, {**params, "tenants": ["acme"]}, "ts_it_dead", raise_on_red=False)
    assert rep.green, rep.summary()
    letters = control.list_dead_letters(pg, PIPELINE, str(UnitKey(SRC, ("acme", "labels"))))
    assert [(d["source"], json.loads(d["record_key"])) for d in letters] == [(f"{SRC}.old_tags", ["old-2"])]
    assert "1406" in letters[0]["reason"] and letters[0]["payload"]["row"]["label"] == "x" * 150
    conn = _raw()
    c = conn.cursor()
    c.execute(f"SELECT code FROM {_databases(pg)['acme']}.labels WHERE code LIKE 'old-%%' ORDER BY code")
    assert [r[0] for r in c.fetchall()] == ["old-1", "old-3"]  # the good rows loaded
    conn.close()


def test_a_mapping_error_makes_the_run_red_naming_the_line(params: dict[str, Any], pg: Any) -> None:
    Path(params["mapping"]).write_text(MAPPING.replace("  orders: {}", "  orders: {acton: drop}"), encoding="utf-8")
    rep = stages.run_build(SPEC, params, "ts_it_badmap", raise_on_red=False)
    assert not rep.green and rep.planned is None
    with pytest.raises(Exception, match=r"line 5: table 'orders': unknown key 'acton'"):
        TenantSplitConfig.from_params(params) and SPEC.plan(SPEC.config(params), None)


def test_cutover_pauses_writes_routes_and_rolls_back(params: dict[str, Any], pg: Any, mysql: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL", "off")  # this test switches without a human: policy off
    assert stages.run_build(SPEC, {**params, "tenants": ["acme", "100%"]}, "ts_it_cut").green
    cfg = TenantSplitConfig.from_params(params)
    # a change after the build: the cutover's final catch-up brings it over inside the pause
    cur = mysql.cursor()
    _writes(cur, "acme", "pre-cutover")
    mysql.commit()
    ready, blocked = split_ready(SPEC, cfg, ["acme"])
    assert len(ready) == 6 and not blocked
    out = switch(SPEC, cfg, ready, "ts_it_cut_switch", approval=None)
    info = out["groups"]["acme"]
    assert info["catch_up"]["applied"] > 0 and 0 < info["paused_s"] < 5
    # the default pause takes no row locks: the drain and the re-proof of the touched keys hold it
    assert info["pause_locks"] == "none" and info["locked_rows"] == 0
    route = control.get_route(pg, PIPELINE, SRC, "acme")
    assert route["location"]["backend"] == "tenant_db" and route["state"] == "active"
    assert route["location"]["database"] == _databases(pg)["acme"]
    conn = _raw()
    _assert_equal_to_source(conn.cursor(), _databases(pg), ("acme",))
    conn.close()
    assert sync.built_tenants(cfg).keys() == {"100%"}  # a cut-over tenant is not synced any more
    # roll back with drop: routed back to the shared tables, its database gone, the history kept
    rollback(SPEC, cfg, ["acme"], "ts_it_cut_rollback", drop=True)
    assert control.get_route(pg, PIPELINE, SRC, "acme")["location"]["backend"] == "shared"
    states = [(h["state"], h["location"]["backend"]) for h in control.route_history(pg, PIPELINE, SRC, "acme")]
    assert states[:2] == [("paused", "shared"), ("active", "tenant_db")] and states[-1] == ("active", "shared")
    cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (_databases(pg)["acme"],))
    assert cur.fetchone()[0] == 0


def test_a_mismatch_under_the_pause_blocks_the_cutover(params: dict[str, Any], pg: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL", "off")  # this test switches without a human: policy off
    assert stages.run_build(SPEC, {**params, "tenants": ['quo"te']}, "ts_it_gate").green
    cfg = TenantSplitConfig.from_params(params)
    db = _databases(pg)['quo"te']
    with mysql_connect(MYSQL_TARGET, database="") as t:  # the target loses a row behind Cutover's back
        t.cursor().execute(f"DELETE FROM {db}.orders ORDER BY order_no LIMIT 1")
    ready, _ = split_ready(SPEC, cfg, ['quo"te'])
    with pytest.raises(SwitchFailed, match="nothing routed"):
        switch(SPEC, cfg, ready, "ts_it_gate_switch", approval=None)
    route = control.get_route(pg, PIPELINE, SRC, 'quo"te')
    assert route is None or route["location"]["backend"] == "shared"
    with pg_connect() as conn:
        states = {r[0] for r in conn.execute("SELECT state FROM cutover.units WHERE run_id = 'ts_it_gate_switch'").fetchall()}
    assert states == {"failed"}
    time.sleep(0)
