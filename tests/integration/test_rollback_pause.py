"""A rollback under a writer every 10 ms on the new side, on the real MariaDB and PostgreSQL (issue #20).

The life cycle's ``around_rollback`` (``lifecycle.switch.rollback``) pauses the writers on the *new* side,
drains their transactions in flight, drains the reverse stream to the new side's position at that moment
(a fence), re-proves only the rows that changed since its last proof, routes back and resumes. For both
pipelines, with a cooperative writer that never stops (it waits while its route is paused, then writes
wherever the route points): the writers are paused under a second, no writer transaction fails, every
write made on the new side is on the old side afterwards (the row as the writer last left it), and the
rollback run's evidence has the pause figures (``paused_s``, drained rows, re-proved rows).

Own names: tenant_split source ``hra_ts_src``, prefix ``hra_ts_``, state ``hra_ts_state``; mysql_to_postgres
database ``hra_<uuid>`` with the hostile table ``Order`` and a hostile PostgreSQL schema.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from cutover import control
from cutover.connections import CONTROL, MYSQL_SOURCE, MYSQL_TARGET, mysql_connect, pg_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle import stages
from cutover.lifecycle.switch import rollback, split_ready, switch
from cutover.samples import tenants as sample
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.samples.live_writer import LiveWriter, WriterStats, sample_tables

from .test_mysql_to_postgres_fence import (
    SCHEMA,
    SEED_ROWS,
    TABLE,
    Env,
    _build,
    _drop,
    _expected,
    _mysql_rows,
    _root,
    _sides,
    _stop,
    _writer,
)
from .test_tenant_split import clean_control

pytestmark = pytest.mark.integration

assert {TABLE, SCHEMA} <= set(HOSTILE_NAMES)

# --- tenant_split -----------------------------------------------------------------------------------

SRC = "hra_ts_src"
PREFIX = "hra_ts_"
STATE = "hra_ts_state"
#: tenant ids of the shop sample: 1 is cut over and rolled back, 2 writes on the shared tables meanwhile
WHALE, OTHER = 1, 2


def _ts_drop(cur: Any) -> None:
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s OR SCHEMA_NAME IN (%s, %s)",
                (PREFIX.replace("_", "\\_") + "%", STATE, SRC))
    for (name,) in cur.fetchall():
        cur.execute(f"DROP DATABASE {quote_mysql(name.decode() if isinstance(name, bytes) else name)}")


@pytest.fixture
def ts_params(pg: Any, mysql: Any) -> Iterator[dict[str, Any]]:
    """A freshly seeded shop sample (4 tenants, 4000 orders), no target databases, no control rows."""
    _ts_drop(mysql.cursor())
    sample.seed_tenants(mysql, database=SRC, tenants=4, rows=4000)
    clean_control(pg, SRC)
    for t in ("streams", "stray_writes"):
        pg.execute(f"DELETE FROM cutover.{t} WHERE pipeline = 'tenant_split' AND scope = %s", (SRC,))
    pg.commit()
    yield {"source_database": SRC, "mapping": "mappings/tenant_split.yaml", "tenant_directory": "tenants",
           "database_prefix": PREFIX, "state_database": STATE, "chunk_rows": 500, "parallelism": 2, "gx_gate": False}
    _ts_drop(mysql.cursor())
    clean_control(pg, SRC)
    for t in ("streams", "stray_writes"):
        pg.execute(f"DELETE FROM cutover.{t} WHERE pipeline = 'tenant_split' AND scope = %s", (SRC,))
    pg.commit()


def _ts_writer(tenant_id: int, seed: int) -> LiveWriter:
    with mysql_connect(database=SRC) as conn:
        tables = sample_tables(conn, SRC, tenant_id)
    return LiveWriter(tenant=str(tenant_id), tenant_value=tenant_id, tables=tables, scope=SRC, source_database=SRC,
                      interval_s=0.01, rows_per_tx=3, seed=seed)


def _stopped(w: LiveWriter) -> WriterStats:
    stats = w.stop()
    assert w.failure is None, f"writer {w.tenant}: {w.failure!r}"
    return stats


def _rows(cur: Any, db: str, table: str, where: str = "", params: tuple[Any, ...] = ()) -> dict[int, tuple[Any, ...]]:
    cur.execute(f"SELECT * FROM {quote_mysql(db)}.{quote_mysql(table)}{where}", params)
    return {int(r[0]): tuple(r) for r in cur.fetchall()}


def test_tenant_split_rollback_under_a_writer_every_10_ms(ts_params: dict[str, Any], pg: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from cutover.tenant_split import reverse, sync
    from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
    from cutover.tenant_split.spec import SPEC

    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL", "off")  # no human in this test: policy off
    assert stages.run_build(SPEC, {**ts_params, "tenants": [str(WHALE)]}, "hra_ts_build").green
    cfg = TenantSplitConfig.from_params(ts_params)
    whale, other = _ts_writer(WHALE, 1), _ts_writer(OTHER, 2)
    whale.start()
    other.start()
    assert whale.started_writing.wait(10) and other.started_writing.wait(10)
    try:
        ready, blocked = split_ready(SPEC, cfg, [str(WHALE)])
        assert len(ready) == 6 and not blocked
        switch(SPEC, cfg, ready, "hra_ts_switch", approval=None)
        time.sleep(1.0)  # writes on the tenant's database
        assert reverse.run(cfg)["tenants"][str(WHALE)]["applied"] > 0  # the sync DAG's reverse run
        time.sleep(1.0)  # more writes, not reversed yet when the rollback comes
        rb = rollback(SPEC, cfg, [str(WHALE)], "hra_ts_rollback")
        time.sleep(0.5)  # the writer goes on, on the shared tables again
    finally:
        ws, os_ = _stopped(whale), _stopped(other)
    info = rb["groups"][str(WHALE)]
    print("\nrollback evidence:", {k: info.get(k) for k in ("paused_s", "pause_to_route_s", "drain", "fence", "drained",
                                                           "reproved_rows", "pre_compare", "phases")})
    start, end = info["paused_at"], info["paused_at"] + info["paused_s"]
    waited = [lat for (s, e, _side), lat in zip(ws.commits, ws.latencies, strict=True) if e >= start and s - lat <= end]
    print(f"rollback pause {info['paused_s']:.3f} s; cut-over tenant's writer: {len(waited)} commit(s) around it, max "
          f"latency {max(waited or [0.0]):.4f} s; overall {ws.summary()}")
    print("other tenant's writer:", os_.summary())
    # the pause's evidence (its length is asserted last: the rows below say more when it fails)
    assert info["target_writes"] == {} and rb["target_writes"]["found"] == {}, info["target_writes"]
    assert info["drain"]["how"] == "table locks" and not info["drain"]["timed_out"], info["drain"]
    assert info["reproved_rows"] > 0 and {"pre_compare_s", "near_reverse_s", "pause_reverse_s",
                                          "pause_reprove_s"} <= set(info["phases"]), info["phases"]
    drained = info["drained"]
    assert sum(v["applied"] for v in drained.values()) > 0 and all(v["stream"] == "drained" for v in drained.values())
    run = control.get_run(pg, "hra_ts_rollback")
    pg.commit()
    assert run is not None and run["state"] == "success" and run["evidence"]["groups"][str(WHALE)]["paused_s"] == info["paused_s"]
    route = control.get_route(pg, PIPELINE, SRC, str(WHALE))
    pg.commit()
    assert route is not None and route["location"]["backend"] == "shared" and route["state"] == "active"
    # the writers: no error; the cut-over tenant's went shared → tenant_db → shared
    assert ws.errors == {} and os_.errors == {}, (ws.error_messages[:3], os_.error_messages[:3])
    sides = [side for _, _, side in ws.commits]
    assert "tenant_db" in sides and sides[-1] == "shared", sides[-5:]
    assert ws.written["tenant_db"], "no write on the new side"
    # every row the writer wrote (on either side) is on the shared tables as it last left it
    db = control.load_name_map(pg, PIPELINE, SRC)[str(WHALE)]
    pg.commit()
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        cur = conn.cursor()
        for table, states in ws.expected.items():
            src = _rows(cur, SRC, table, " WHERE tenant_id = %s", (WHALE,))
            cols = sample.COLUMNS[table]
            for key, want in states.items():
                if want is None:
                    assert key not in src, f"{table} {key}: deleted by the writer, still on the shared tables"
                    continue
                assert key in src, f"{table} {key}: written by the writer, missing on the shared tables"
                row = dict(zip(cols, src[key], strict=True))
                assert all(row[c] == v for c, v in want.items()), (table, key, want, row)
        # the forward catch-up goes on from the drain's fence: the tenant's database equals the shared rows again
        caught = sync.catch_up(cfg, {str(WHALE): db})
        assert caught["applied"] > 0, caught  # the writes made on the shared tables after the rollback
        conn.rollback()  # a new snapshot: this session's last one began before the catch-up
        for table in ("orders", "customers"):
            in_db, in_src = _rows(cur, db, table), _rows(cur, SRC, table, " WHERE tenant_id = %s", (WHALE,))
            bad = sorted(k for k in set(in_db) | set(in_src) if in_db.get(k) != in_src.get(k))
            assert not bad, (table, len(bad), [(k, in_db.get(k), in_src.get(k)) for k in bad[:5]])
    assert info["paused_s"] < 1.0, info["phases"]


# --- mysql_to_postgres ------------------------------------------------------------------------------

@pytest.fixture
def env() -> Iterator[Env]:
    """A source database ``hra_<uuid>`` with the table ``Order`` of its seed rows, the read-only user granted."""
    from cutover.mysql_to_postgres.readonly import ensure_read_only_user

    db = f"hra_{uuid.uuid4().hex[:10]}"
    e = Env(db, f"{SCHEMA} {db[-6:]}", {"source_database": db, "target_schema": f"{SCHEMA} {db[-6:]}", "tables": [TABLE],
                                        "gx_gate": False, "chunk_rows": 500, "reverse_state_database": db + "_state"})
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
    with mysql_connect(MYSQL_SOURCE, database="") as c:
        c.cursor().execute(f"DROP DATABASE IF EXISTS {quote_mysql(db + '_state')}")


def test_mysql_to_postgres_rollback_under_a_writer_every_10_ms(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from cutover.mysql_to_postgres import reverse
    from cutover.mysql_to_postgres.config import PIPELINE
    from cutover.mysql_to_postgres.spec import SPEC

    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL_MYSQL_TO_POSTGRES", "off")  # the approval is not under test
    w = _writer(env)
    w.start()
    try:
        time.sleep(0.2)
        _build(env)
        ready, blocked = split_ready(SPEC, env.cfg, [TABLE])
        assert ready and not blocked, blocked
        switch(SPEC, env.cfg, ready, f"hra_cut_{uuid.uuid4().hex[:6]}", approval=None)
        time.sleep(1.0)  # writes on PostgreSQL
        assert reverse.run(env.cfg)["tables"][TABLE]["applied"] > 0  # the sync DAG's reverse run
        time.sleep(1.0)  # more, not applied yet when the rollback comes
        run_id = f"hra_rollback_{uuid.uuid4().hex[:6]}"
        rb = rollback(SPEC, env.cfg, [TABLE], run_id)
        time.sleep(0.5)  # the writer goes on, on MySQL again
    finally:
        stats = _stop(w)  # no writer error
    info = rb["groups"][str(env.key)]
    start, end = info["paused_at"], info["paused_at"] + info["paused_s"]
    waited = [lat for (s_, e, _side), lat in zip(stats.commits, stats.latencies, strict=True)
              if e >= start and s_ - lat <= end]
    print("\nrollback evidence:", {k: info.get(k) for k in ("paused_s", "pause_to_route_s", "drain", "drained",
                                                           "reproved", "reproved_rows", "pre_compare", "phases")})
    print(f"rollback pause {info['paused_s']:.3f} s; writer: {len(waited)} commit(s) around it, max latency "
          f"{max(waited or [0.0]):.4f} s; overall {stats.summary()}")
    sides = [side for _, _, side in stats.commits]
    assert "postgres" in sides and sides[-1] == "mysql", sides[-5:]
    assert _sides(stats)["postgres"] > 20, _sides(stats)
    assert info["target_writes"] == {} and rb["target_writes"]["found"] == {}, info["target_writes"]
    assert info["drain"]["how"] == "share lock" and not info["drain"]["timed_out"], info["drain"]
    assert info["drained"][TABLE]["applied"] > 0 and info["reproved_rows"] > 0, info
    with pg_connect(CONTROL) as c:
        run = control.get_run(c, run_id)
        route = control.get_route(c, PIPELINE, env.cfg.scope, TABLE)
        stream = control.get_stream(c, PIPELINE, env.cfg.scope, TABLE, "reverse")
    assert run is not None and run["state"] == "success" and run["evidence"]["groups"][str(env.key)]["paused_s"] == info["paused_s"]
    assert route is not None and route["location"]["backend"] == "mysql" and route["state"] == "active", route
    assert stream is not None and stream["state"] == "drained"
    # every row the writer wrote (on MySQL, PostgreSQL, MySQL again) is on MySQL as it last left it
    rows = _mysql_rows(env)
    for key, want in _expected(stats).items():
        assert rows.get(key) == want, (key, want, rows.get(key))
    assert all(isinstance(v[1], Decimal) for v in rows.values())
    assert info["paused_s"] < 1.0, info["phases"]
