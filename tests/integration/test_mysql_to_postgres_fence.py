"""mysql_to_postgres while the source is written, on the real MariaDB and PostgreSQL: a proof at a fence
(verification passes in one round under a writer every 10 ms, the fence position recorded), the
forward stream's lag on the status page, and a cutover under a cooperative writer (a short write pause
at a fence, nothing lost, no writer error, the writer's PostgreSQL writes after the switch present).

Every test gets its own MySQL database (``h4_<uuid>``) and PostgreSQL schema (a hostile name with a
suffix), a hostile table name (``Order``: a reserved word in mixed case), dropped afterwards with their
state rows, routes and streams.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from cutover import binlog, control
from cutover.connections import (
    CONTROL,
    MYSQL_SOURCE,
    POSTGRES_TARGET,
    mysql_connect,
    pg_connect,
    resolve,
)
from cutover.identifiers import quote_mysql, quote_pg
from cutover.lifecycle.model import PlannedUnit, UnitKey
from cutover.lifecycle.stages import run_build
from cutover.lifecycle.switch import split_ready, switch
from cutover.mysql_to_postgres import build, load, sync
from cutover.mysql_to_postgres.config import PIPELINE, MysqlToPostgresConfig
from cutover.mysql_to_postgres.readonly import ensure_read_only_user
from cutover.mysql_to_postgres.spec import SPEC
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.samples.live_writer import TableWriter, WriterStats, WriterThread

pytestmark = pytest.mark.integration

TABLE = "Order"  # a reserved word in mixed case
SCHEMA = 'x"; DROP TABLE y; --'
assert {TABLE, SCHEMA} <= set(HOSTILE_NAMES)
SEED_ROWS = 3000
KEY_BASE = 10_000_000  # the writer's new keys


@dataclass
class Env:
    """One test's source database, target schema and Params."""

    db: str
    schema: str
    params: dict[str, Any]

    @property
    def cfg(self) -> MysqlToPostgresConfig:
        return MysqlToPostgresConfig.from_params(self.params)

    @property
    def key(self) -> UnitKey:
        return build.unit_key(self.cfg, TABLE)


def _root(database: str = "") -> Any:
    import MySQLdb

    conn = MySQLdb.connect(**resolve(MYSQL_SOURCE).mysql_kwargs(database))
    cur = conn.cursor()
    cur.execute("SET SESSION time_zone = '+00:00', binlog_format = 'ROW'")
    cur.close()
    return conn


def _drop(env: Env) -> None:
    cfg = env.cfg
    try:  # the reverse stream a cutover started (H5's module), when there is one
        from cutover.mysql_to_postgres import reverse

        reverse.stop(cfg, env.key)
    except Exception:  # noqa: BLE001 - none started, or no such module
        pass
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {quote_mysql(env.db)}")
    with pg_connect(POSTGRES_TARGET) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_pg(env.schema)} CASCADE")
        load.ensure_state(conn)
        conn.execute(f"DELETE FROM {load.STATE_SCHEMA}.m2p_checkpoints WHERE starts_with(unit_key, %s)", (cfg.scope + ":",))
        conn.execute(f"DELETE FROM {load.STATE_SCHEMA}.m2p_positions WHERE starts_with(unit_key, %s)", (cfg.scope + ":",))
    with pg_connect(CONTROL) as conn:
        control.ensure_schema(conn)
        for t in ("routes", "route_history", "streams", "stray_writes"):
            conn.execute(f"DELETE FROM {control.SCHEMA}.{t} WHERE pipeline = %s AND scope = %s", (PIPELINE, cfg.scope))
        conn.execute(f"DELETE FROM {control.SCHEMA}.sync_pairs WHERE pipeline = %s AND starts_with(name, %s)",
                     (PIPELINE, f"{PIPELINE}:{env.db}."))


@pytest.fixture
def env() -> Iterator[Env]:
    """A source database with one table ``Order`` of :data:`SEED_ROWS` rows, the read-only user granted."""
    db = f"h4_{uuid.uuid4().hex[:10]}"
    e = Env(db, f"{SCHEMA} {db[-6:]}", {"source_database": db, "target_schema": f"{SCHEMA} {db[-6:]}",
                                        "tables": [TABLE], "gx_gate": False, "chunk_rows": 500})
    _drop(e)
    conn = _root()
    cur = conn.cursor()
    cur.execute(f"CREATE DATABASE {quote_mysql(db)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    t = f"{quote_mysql(db)}.{quote_mysql(TABLE)}"
    cur.execute(f"""CREATE TABLE {t} (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(40) NOT NULL,
                    amount DECIMAL(12,2) NOT NULL, note TEXT NULL) ENGINE=InnoDB""")
    cur.execute(f"INSERT INTO {t} SELECT seq, CONCAT('주문 ', seq), seq / 100, IF(seq % 3 = 0, NULL, 'n ✓') "
                f"FROM {quote_mysql(db)}.seq_1_to_{SEED_ROWS}")
    conn.commit()
    conn.close()
    ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [db])
    yield e
    _drop(e)


# ------------------------------------------------------------------------------------------ the writer

def _writer(env: Env) -> WriterThread:
    """The application (:class:`cutover.samples.live_writer.TableWriter`): every 10 ms one changed row
    (insert, update, delete, key change in turn) on the table, where its routing entry says (none or
    ``mysql`` → MySQL, ``postgres`` → PostgreSQL), waiting while it is ``paused``; cooperative: after
    the transaction's first statement it reads the entry again and starts over when it changed."""
    return WriterThread(TableWriter(database=env.db, schema=env.schema, table=TABLE, scope=env.cfg.scope,
                                    seed_rows=SEED_ROWS, key_base=KEY_BASE, seed=7, rows_per_tx=1), interval_s=0.01)


def _stop(w: WriterThread) -> WriterStats:
    stats = w.stop(60)
    assert not w.is_alive() and w.failure is None, repr(w.failure)
    assert not stats.errors, stats.error_messages[:5]
    return stats


def _sides(stats: WriterStats) -> dict[str, int]:
    out = {"mysql": 0, "postgres": 0}
    for _, _, side in stats.commits:
        out[side] += 1
    return out


def _expected(stats: WriterStats) -> dict[int, tuple[str, Decimal] | None]:
    """key → (name, amount) as the writer left the row, None when it deleted it."""
    return {k: (None if v is None else (str(v["name"]), Decimal(v["amount"])))
            for k, v in stats.expected.get(TABLE, {}).items()}


# ------------------------------------------------------------------------------------------ helpers

def _build(env: Env) -> Any:
    rep = run_build(SPEC, env.params, f"h4_build_{uuid.uuid4().hex[:8]}")
    assert rep.green, rep.reason
    return rep


def _unit_detail(env: Env) -> dict[str, Any]:
    with pg_connect(CONTROL) as conn:
        row = conn.execute(f"""SELECT state, detail FROM {control.SCHEMA}.units WHERE pipeline = %s AND unit_key = %s
                               AND detail ? 'verify' ORDER BY updated_at DESC LIMIT 1""",
                           (PIPELINE, str(env.key))).fetchone()
    assert row is not None
    return {"state": row[0], **row[1]}


def _pg_rows(env: Env) -> dict[int, tuple[str, Decimal]]:
    with pg_connect(POSTGRES_TARGET) as conn:
        return {int(r[0]): (str(r[1]), Decimal(r[2])) for r in conn.execute(
            f"SELECT id, name, amount FROM {quote_pg(env.schema)}.{quote_pg(TABLE)}").fetchall()}


def _mysql_rows(env: Env) -> dict[int, tuple[str, Decimal]]:
    conn = _root()
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT id, name, amount FROM {quote_mysql(env.db)}.{quote_mysql(TABLE)}")
        return {int(r[0]): (str(r[1]), Decimal(r[2])) for r in cur.fetchall()}
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ tests

def test_verify_passes_at_a_fence_while_a_writer_writes_every_10_ms(env: Env) -> None:
    """Copy, finalize and verify while the writer runs (inserts, updates, deletes, key changes every
    10 ms): the build is green in one round, the unit ``verified`` with the fence position in its
    evidence; verifying again twice under the writer passes each time at a later fence."""
    w = _writer(env)
    w.start()
    try:
        time.sleep(0.3)
        _build(env)
        d = _unit_detail(env)
        assert d["state"] == "verified", d
        fence = d["verify"]["fence"]
        assert fence["mode"] == "binlog snapshot"
        p0 = binlog.BinlogPosition.parse(fence["position"])
        tm = build.latest_plans(env.cfg, [str(env.key)])[str(env.key)]
        positions = [p0]
        for _ in range(2):
            time.sleep(0.3)
            v = build.verify_unit(env.cfg, PlannedUnit(env.key, 1, {"table": tm.to_dict()}), "h4_reverify")
            assert v.passed, v.failures
            positions.append(binlog.BinlogPosition.parse(v.detail["fence"]["position"]))
            assert v.detail["caught_up"]["binlog"]["changes"] > 0, v.detail["caught_up"]  # it really was written
        assert positions == sorted(positions) and positions[0] < positions[-1], positions
    finally:
        stats = _stop(w)
    assert _sides(stats)["mysql"] > 50, _sides(stats)


def test_forward_stream_reports_position_and_lag_per_table(env: Env) -> None:
    """Each flush of the binlog sync records the table's forward stream: position (the table's stored
    one), rows applied, and a lag of 0 once the log's end is reached."""
    _build(env)
    conn = _root(env.db)
    cur = conn.cursor()
    t = quote_mysql(TABLE)
    for i in range(1, 201):
        cur.execute(f"UPDATE {t} SET amount = amount + 1 WHERE id = %s", (i,))
    conn.commit()
    conn.close()
    out = sync.sync_units(env.cfg)
    assert out["binlog"]["changes"] == 200, out
    with pg_connect(CONTROL) as c:
        st = control.get_stream(c, PIPELINE, env.cfg.scope, TABLE, "forward")
    with pg_connect(POSTGRES_TARGET) as c:
        pos = c.execute(f"SELECT position FROM {load.STATE_SCHEMA}.m2p_positions WHERE unit_key = %s",
                        (str(env.key),)).fetchone()[0]
    assert st is not None and st["state"] == "running", st
    assert st["position"] == pos and st["applied"] >= 200 and st["lag_s"] == 0.0, st
    assert _pg_rows(env) == _mysql_rows(env)


def test_cutover_under_a_cooperative_writer_loses_nothing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cutover while the writer writes every 10 ms: the writer waits while the table is paused and then
    writes PostgreSQL; no writer error; every write it made on either side is in PostgreSQL at the end
    (nothing written to MySQL before the fence is lost); the evidence names the fences, the rows
    re-proved and the paused seconds (under a second); the routing entry ends on PostgreSQL, active;
    the forward sync leaves the switched table alone; a rollback routes it back to MySQL."""
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL_MYSQL_TO_POSTGRES", "off")  # the approval is not under test
    w = _writer(env)
    w.start()
    try:
        time.sleep(0.2)
        _build(env)
        time.sleep(0.5)  # changes since the verification's fence: re-proved before and under the pause
        ready, blocked = split_ready(SPEC, env.cfg, [TABLE])
        assert not blocked and ready, blocked
        out = switch(SPEC, env.cfg, ready, f"h4_cut_{uuid.uuid4().hex[:6]}", approval=None)
        t_switch = time.time()
        time.sleep(1.0)  # a second of writes on PostgreSQL
    finally:
        stats = _stop(w)
    sides = _sides(stats)
    assert sides["mysql"] > 20 and sides["postgres"] > 20, sides
    ev = out["groups"][str(env.key)]
    for k in ("pre_fence", "fence", "pg_lsn", "paused_s", "rows_reproved"):
        assert k in ev, ev
    p_pre, p1 = binlog.BinlogPosition.parse(ev["pre_fence"]), binlog.BinlogPosition.parse(ev["fence"])
    table_ev = ev["tables"][TABLE]
    assert binlog.BinlogPosition.parse(table_ev["verify_fence"]) < p_pre <= p1, ev
    assert ev["drain"].get("how") == "table locks", ev["drain"]
    assert table_ev["pre_proof"]["compared"] == "keys" and table_ev["pre_proof"]["rows"] > 0, ev
    assert ev["paused_s"] < 1.0, ev
    first_pg_write = stats.first_commit("postgres")
    assert first_pg_write is not None and first_pg_write <= t_switch + 1.0
    # nothing lost: PostgreSQL holds every row as the writer left it (its MySQL writes up to the fence
    # and its PostgreSQL writes after the switch), and the seed rows it never touched
    pg_rows = _pg_rows(env)
    expected = _expected(stats)
    for key, want in expected.items():
        assert pg_rows.get(key) == want, (key, want, pg_rows.get(key))
    assert all(i in pg_rows for i in range(1, SEED_ROWS + 1) if i not in expected)
    assert not [i for i in pg_rows if i > SEED_ROWS and i not in expected], "rows nobody wrote"
    print("cutover evidence:", ev, "writer:", sides, "latency max", round(max(stats.latencies), 3))
    with pg_connect(CONTROL) as c:
        route = control.get_route(c, PIPELINE, env.cfg.scope, TABLE)
        fwd = control.get_stream(c, PIPELINE, env.cfg.scope, TABLE, "forward")
    assert route is not None and route["location"]["backend"] == "postgres" and route["state"] == "active", route
    assert fwd is not None and fwd["state"] == "stopped" and fwd["position"] == str(p1), fwd
    res = sync.sync_units(env.cfg)
    assert res.get("switched") == [str(env.key)] and "binlog" not in res, res
    assert _pg_rows(env) == pg_rows  # the forward sync did not touch the switched table
    with pg_connect(CONTROL) as c:
        build.route_unit(c, env.cfg, env.key, "mysql")
        route = control.get_route(c, PIPELINE, env.cfg.scope, TABLE)
    assert route is not None and route["location"]["backend"] == "mysql" and route["state"] == "active", route


def test_a_table_that_differs_at_the_fence_is_not_switched(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A table without a key is re-proved whole at the cutover's fence: a row changed behind the pipeline's
    back on PostgreSQL fails the check (already before the pause: writers are never held for it), nothing is
    switched, and the routing entry is not left paused (none was written, or it is on MySQL, active)."""
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL_MYSQL_TO_POSTGRES", "off")
    conn = _root(env.db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE events (at DATETIME(6) NOT NULL, kind VARCHAR(20) NOT NULL, payload TEXT NULL)")
    cur.execute(f"INSERT INTO events SELECT TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND, 'k', CONCAT('e ', seq) "
                f"FROM {quote_mysql(env.db)}.seq_1_to_200")
    conn.commit()
    conn.close()
    env.params["tables"] = [TABLE, "events"]
    _build(env)
    with pg_connect(POSTGRES_TARGET) as c:
        c.execute(f"UPDATE {quote_pg(env.schema)}.events SET payload = 'tampered' WHERE payload = 'e 7'")
    ready, blocked = split_ready(SPEC, env.cfg, ["events"])
    assert ready and not blocked, blocked
    from cutover.lifecycle.switch import SwitchFailed

    with pytest.raises(SwitchFailed, match="differs from MySQL at the fence"):
        switch(SPEC, env.cfg, ready, f"h4_cutfail_{uuid.uuid4().hex[:6]}", approval=None)
    with pg_connect(CONTROL) as c:
        route = control.get_route(c, PIPELINE, env.cfg.scope, "events")
        sw = control.get_switch(c, PIPELINE, str(build.unit_key(env.cfg, "events")))
    assert route is None or (route["location"]["backend"] == "mysql" and route["state"] == "active"), route
    assert sw is None or sw.backend == "mysql", sw


def test_watermark_mode_cutover_compares_whole_under_the_pause(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a binlog position to prove at (``sync_mode: watermark``) the cutover catches the table up by
    watermark and compares it whole under the pause: an update made after the build reaches PostgreSQL
    before the switch, the evidence says which mode and has no fence, and the entry ends on PostgreSQL."""
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL_MYSQL_TO_POSTGRES", "off")
    conn = _root(env.db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE stamped (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, "
                "updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))")
    cur.execute(f"INSERT INTO stamped (id, v) SELECT seq, 'v' FROM {quote_mysql(env.db)}.seq_1_to_100")
    conn.commit()
    env.params.update({"tables": ["stamped"], "sync_mode": "watermark"})
    _build(env)
    time.sleep(0.01)
    cur.execute("UPDATE stamped SET v = 'after the build' WHERE id = 5")
    conn.commit()
    conn.close()
    ready, blocked = split_ready(SPEC, env.cfg, ["stamped"])
    assert ready and not blocked, blocked
    out = switch(SPEC, env.cfg, ready, f"h4_cutwm_{uuid.uuid4().hex[:6]}", approval=None)
    ev = out["groups"][str(build.unit_key(env.cfg, "stamped"))]
    assert ev["fence"] is None and ev["mode"].startswith("watermark"), ev
    assert ev["tables"]["stamped"]["reproved"] == {"compared": "whole table", "rows": 100}, ev
    with pg_connect(POSTGRES_TARGET) as c:
        assert c.execute(f"SELECT v FROM {quote_pg(env.schema)}.stamped WHERE id = 5").fetchone()[0] == "after the build"
    with pg_connect(CONTROL) as c:
        route = control.get_route(c, PIPELINE, env.cfg.scope, "stamped")
    assert route is not None and route["location"]["backend"] == "postgres" and route["state"] == "active", route
