"""Reverse replication of mysql_to_postgres (issue #20) on the real MariaDB and PostgreSQL.

After a table's switch its writers write PostgreSQL; :mod:`cutover.mysql_to_postgres.reverse` carries
every write back to MySQL, so a rollback is not refused and loses nothing: inserts, updates, deletes and
key changes with hostile values (Korean text, JSON, DATETIME(6), TIMESTAMP(6), TIME, BIT, binary, NULLs),
MySQL's zero dates kept where the copy made them NULL; the applier's transactions carry its server id;
a write that still reaches MySQL after the switch is reported with its key (and forwarded when asked);
the stream killed -9 in the middle of a batch (before and after its MySQL commit) resumes exactly.

Run as ``python -m tests.integration.test_mysql_to_postgres_reverse child PARAMS STAGE`` it is the
process the kill test kills: it applies the reverse stream in 40-change batches and, at ``STAGE`` of the
second batch, prints ``STALLED`` and sleeps.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cutover import binlog, control
from cutover.connections import MYSQL_SOURCE, mysql_connect, pg_connect
from cutover.identifiers import quote_mysql, quote_pg
from cutover.samples.hostile import HOSTILE_NAMES

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TABLE = "semi;colon -- drop"
assert TABLE in HOSTILE_NAMES
KOREAN = "한국어 텍스트 🚀 'quote' \"dq\" \\ back\ttab"
DOC = '{"이름": "값", "n": [1, 2.5, null], "nested": {"ü": "🚀"}}'


def _ddl(db: str) -> str:
    return f"""CREATE TABLE {quote_mysql(db)}.{quote_mysql(TABLE)} (
        id INT NOT NULL PRIMARY KEY, name VARCHAR(100) NULL, doc JSON NULL, seen DATETIME(6) NULL,
        stamp TIMESTAMP(6) NULL DEFAULT NULL, born DATE NULL, dur TIME(3) NULL, price DECIMAL(12,2) NULL,
        ratio DOUBLE NULL, flags BIT(5) NULL, raw VARBINARY(20) NULL, state ENUM('a', 'b c') NULL, note TEXT NULL)"""


def _seed(db: str) -> None:
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql(db)}")
        cur.execute(f"CREATE DATABASE {quote_mysql(db)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', time_zone = '+00:00'")
        cur.execute(_ddl(db).replace("%", "%%"), ())
        ins = (f"INSERT INTO {quote_mysql(db)}.{quote_mysql(TABLE)} (id, name, doc, seen, stamp, born, dur, price, ratio, "
               "flags, raw, state, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
        rows: list[tuple[Any, ...]] = [(i, f"row {i}", json.dumps({"i": i}), f"2024-01-0{1 + i % 9} 10:00:00.12345{i % 10}", "2024-05-05 05:05:05.5",
                 "2020-02-02", "-01:02:03.250", f"{i}.25", i / 3, i % 32, bytes([i, 0, 255]), "a", None) for i in range(1, 9)]
        rows.append((9, "zero date", None, None, None, "0000-00-00", None, None, None, None, None, "b c", "kept"))
        cur.executemany(ins, rows)
        conn.commit()


def _cleanup(db: str, schema: str, scope: str) -> None:
    from cutover.mysql_to_postgres.config import PIPELINE
    from cutover.mysql_to_postgres.load import STATE_SCHEMA, ensure_state
    from cutover.mysql_to_postgres.reverse import CHANGES

    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql(db)}")
        cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql(db + '_state')}")
    with pg_connect() as conn:
        control.ensure_schema(conn)
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_pg(schema)} CASCADE")
        ensure_state(conn)
        for t in ("m2p_checkpoints", "m2p_positions"):
            conn.execute(f"DELETE FROM {STATE_SCHEMA}.{t} WHERE starts_with(unit_key, %s)", (scope + ":",))
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (CHANGES,)).fetchone()[0]:
            conn.execute(f"DELETE FROM {CHANGES} WHERE starts_with(unit_key, %s)", (scope + ":",))
        for t in ("units", "switches", "switch_history", "dead_letters"):
            conn.execute(f"DELETE FROM cutover.{t} WHERE pipeline = %s AND starts_with(unit_key, %s)", (PIPELINE, scope + ":"))
        for t in ("routes", "streams", "stray_writes"):
            conn.execute(f"DELETE FROM cutover.{t} WHERE pipeline = %s AND scope = %s", (PIPELINE, scope))


@pytest.fixture
def cut_over(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The table built, verified, switched to PostgreSQL (approval policy off) and its reverse stream started."""
    from cutover.lifecycle import stages
    from cutover.lifecycle.switch import split_ready, switch
    from cutover.mysql_to_postgres import reverse
    from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
    from cutover.mysql_to_postgres.readonly import ensure_read_only_user
    from cutover.mysql_to_postgres.spec import SPEC

    tag = uuid.uuid4().hex[:8]
    db, schema = f"h5_rev_{tag}", f'h5_rev "Ünï" {tag}'
    params = {"source_database": db, "target_schema": schema, "gx_gate": False, "chunk_rows": 4,
              "reverse_state_database": db + "_state", "sync_mode": "binlog"}
    cfg = MysqlToPostgresConfig.from_params(params)
    _cleanup(db, schema, cfg.scope)
    _seed(db)
    ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [db])
    assert stages.run_build(SPEC, params, f"{db}-build").green
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL_MYSQL_TO_POSTGRES", "off")
    ready, blocked = split_ready(SPEC, cfg, [TABLE])
    assert len(ready) == 1 and not blocked
    with mysql_connect(MYSQL_SOURCE, database="") as m:
        at_switch = binlog.current_position(m.cursor())
    switch(SPEC, cfg, ready, f"{db}-cut", approval=None)
    key = SPEC.unit_key(cfg, TABLE)
    # the cutover starts the stream at its fence where it is wired to (mysql_to_postgres.cutover); else here
    first = reverse.start(cfg, key, run_id=f"{db}-cut", source_position=at_switch)
    assert first["stray_position"] and not at_switch > binlog.BinlogPosition.parse(first["stray_position"])
    assert reverse.start(cfg, key, run_id=f"{db}-cut", source_position=at_switch)["started"] is False  # idempotent
    with pg_connect() as conn:
        st = control.get_stream(conn, "mysql_to_postgres", cfg.scope, TABLE, "reverse")
        assert st is not None and st["state"] == "running" and st["detail"]["capture"] == "trigger"
    yield {"cfg": cfg, "spec": SPEC, "db": db, "schema": schema, "key": key, "params": params, "at_switch": at_switch}
    _cleanup(db, schema, cfg.scope)


def _target(ctx: dict[str, Any]) -> str:
    return f"{quote_pg(ctx['schema'])}.{quote_pg(TABLE)}"


def _mysql_rows(db: str) -> dict[int, tuple[Any, ...]]:
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        cur = conn.cursor()
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(f"SELECT id, name, doc, seen, stamp, CAST(born AS CHAR), CAST(dur AS CHAR), price, ratio, flags + 0, raw, "
                    f"state, note FROM {quote_mysql(db)}.{quote_mysql(TABLE)}".replace("%", "%%"), ())
        return {int(r[0]): tuple(r[1:]) for r in cur.fetchall()}


def _stream(ctx: dict[str, Any]) -> dict[str, Any]:
    with pg_connect() as conn:
        st = control.get_stream(conn, "mysql_to_postgres", ctx["cfg"].scope, TABLE, "reverse")
    assert st is not None
    return st


def _pg_writes(ctx: dict[str, Any]) -> None:
    """The application's writes on PostgreSQL after the switch: insert, update, delete, key change, bulk."""
    t = _target(ctx)
    with pg_connect() as conn:
        conn.execute("SET TimeZone = 'Asia/Seoul'")  # the instant is what counts, not the session's zone
        conn.execute(f"INSERT INTO {t} (id, name, doc, seen, stamp, born, dur, price, ratio, flags, raw, state, note) VALUES "
                     "(100, %s, %s, '2025-12-31 23:59:59.999999', '2025-06-01 09:00:00.123456+09', '2025-01-01', "
                     "'-838:59:59', 1234567890.12, 0.1, B'10101', '\\x00ff00'::bytea, 'b c', NULL), "
                     "(101, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)", (KOREAN, DOC))
        conn.execute(f"UPDATE {t} SET name = %s, doc = %s, seen = '2030-03-03 03:03:03.000001' WHERE id = 1", (KOREAN, DOC))
        conn.execute(f"UPDATE {t} SET note = 'zero date kept' WHERE id = 9")  # born is NULL here, '0000-00-00' in MySQL
        conn.execute(f"UPDATE {t} SET name = NULL, doc = NULL, ratio = NULL WHERE id = 2")
        conn.execute(f"DELETE FROM {t} WHERE id = 3")
        conn.execute(f"UPDATE {t} SET id = 40 WHERE id = 4")  # a key change: 4 gone, 40 there
        conn.execute(f"UPDATE {t} SET price = price + 1 WHERE id BETWEEN 5 AND 8")


def _check_pg_writes_on_mysql(db: str) -> None:
    rows = _mysql_rows(db)
    assert set(rows) == {1, 2, 5, 6, 7, 8, 9, 40, 100, 101}
    assert rows[100] == (KOREAN, DOC, dt.datetime(2025, 12, 31, 23, 59, 59, 999999), dt.datetime(2025, 6, 1, 0, 0, 0, 123456),
                         "2025-01-01", "-838:59:59.000", Decimal("1234567890.12"), 0.1, 21, b"\x00\xff\x00", "b c", None)
    assert rows[101] == (None,) * 12
    assert rows[1][:3] == (KOREAN, DOC, dt.datetime(2030, 3, 3, 3, 3, 3, 1))
    assert rows[2][0] is None and rows[2][1] is None and rows[2][7] is None and rows[2][8] == 2
    assert rows[9][4] == "0000-00-00" and rows[9][11] == "zero date kept"  # the copy's NULL did not overwrite it
    assert rows[40][6] == Decimal("4.25") and rows[40][0] == "row 4"
    assert [rows[i][6] for i in (5, 6, 7, 8)] == [Decimal(f"{i}.25") + 1 for i in (5, 6, 7, 8)]


def test_postgres_writes_flow_back_and_rollback_loses_nothing(cut_over: dict[str, Any]) -> None:
    from cutover.lifecycle.switch import rollback
    from cutover.mysql_to_postgres import reverse
    from cutover.mysql_to_postgres.divergence import target_divergence
    from cutover.mysql_to_postgres.load import STATE_SCHEMA

    ctx = cut_over
    cfg, db = ctx["cfg"], ctx["db"]
    with mysql_connect(MYSQL_SOURCE, database="") as m:
        before_apply = binlog.current_position(m.cursor())
    _pg_writes(ctx)  # 12 captured keys: a key change captures its old and its new key
    out = reverse.run(cfg)
    res = out["tables"][TABLE]
    assert res["applied"] == 12 and res["dead_letters"] == 0 and res["stray_writes"] == 0, res
    assert res["lag_s"] == 0.0
    _check_pg_writes_on_mysql(db)
    st = _stream(ctx)
    assert st["state"] == "running" and st["applied"] == 12 and st["position"] == str(res["position"]) and st["lag_s"] == 0
    # the applier's transactions carry its server id (what stray-write detection tells them by)
    origins = {b.origin_server_id for b in binlog.read_changes(MYSQL_SOURCE, before_apply, schemas=[db], tables=[TABLE]) if b}
    assert origins == {reverse.REVERSE_SERVER_ID}
    assert reverse.run(cfg)["tables"][TABLE]["applied"] == 0  # nothing twice

    with pg_connect() as conn:  # more writes, not applied yet when the rollback comes
        conn.execute(f"INSERT INTO {_target(ctx)} (id, name) VALUES (200, '롤백 직전')")
        conn.execute(f"DELETE FROM {_target(ctx)} WHERE id = 101")
    rb = rollback(ctx["spec"], cfg, [TABLE], f"{db}-rollback")
    drained = rb["target_writes"]["reverse_drained"][TABLE]
    assert drained["applied"] == 2 and rb["target_writes"]["found"] == {}, rb
    rows = _mysql_rows(db)
    assert rows[200][0] == "롤백 직전" and 101 not in rows
    assert target_divergence(cfg, ctx["key"]) is None
    with pg_connect() as conn:
        route = control.get_route(conn, "mysql_to_postgres", cfg.scope, TABLE)
        assert route is not None and route["location"]["backend"] == "mysql"
        pos = conn.execute(f"SELECT position FROM {STATE_SCHEMA}.m2p_positions WHERE unit_key = %s",
                           (str(ctx["key"]),)).fetchone()[0]
        assert pos == drained["forward_position"]  # the forward sync does not refresh the drained keys again
        trig = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                            (_target(ctx),)).fetchone()[0]
        assert trig == 0  # the capture is uninstalled
    assert _stream(ctx)["state"] == "drained"
    assert reverse.run(cfg)["tables"] == {}  # a drained stream is not applied any more
    with pg_connect() as conn:  # a write after the drain is not captured: the forward side owns the table again
        conn.execute(f"UPDATE {_target(ctx)} SET name = 'after' WHERE id = 200")
        from cutover.mysql_to_postgres.reverse import CHANGES
        assert conn.execute(f"SELECT count(*) FROM {CHANGES} WHERE unit_key = %s", (str(ctx["key"]),)).fetchone()[0] == 0


def test_stray_writes_to_mysql_after_the_switch_are_reported_with_keys(cut_over: dict[str, Any]) -> None:
    import dataclasses

    from cutover.lifecycle.switch import rollback
    from cutover.mysql_to_postgres import reverse
    from cutover.mysql_to_postgres.divergence import target_divergence

    ctx = cut_over
    cfg, db = ctx["cfg"], ctx["db"]
    tbl = f"{quote_mysql(db)}.{quote_mysql(TABLE)}".replace("%", "%%")
    with mysql_connect(MYSQL_SOURCE, database="") as m:  # a client that did not re-read its route
        cur = m.cursor()
        cur.execute(f"INSERT INTO {tbl} (id, name) VALUES (77, %s)", ("스트레이",))
        cur.execute(f"UPDATE {tbl} SET note = 'stray' WHERE id = 2")
        m.commit()
    with pg_connect() as conn:
        conn.execute(f"UPDATE {_target(ctx)} SET note = 'from postgres' WHERE id = 5")
    out = reverse.run(cfg)["tables"][TABLE]
    assert out["stray_writes"] == 2 and out["applied"] == 1
    with pg_connect() as conn:
        found = control.list_stray_writes(conn, "mysql_to_postgres", cfg.scope, TABLE)
        assert sorted((w["kind"], w["record_key"], w["forwarded"]) for w in found) == [("insert", 77, False), ("update", 2, False)]
        assert all(w["table_name"] == TABLE and w["position"] for w in found)
        assert conn.execute(f"SELECT count(*) FROM {_target(ctx)} WHERE id = 77").fetchone()[0] == 0  # not forwarded
    assert reverse.run(cfg)["tables"][TABLE]["stray_writes"] == 0  # recorded once
    assert _stream(ctx)["detail"]["stray_writes"] == 2

    fwd = dataclasses.replace(cfg, forward_stray_writes=True)
    with mysql_connect(MYSQL_SOURCE, database="") as m:
        m.cursor().execute(f"UPDATE {tbl} SET name = 'forwarded' WHERE id = 6")
        m.commit()
    assert reverse.run(fwd)["tables"][TABLE]["stray_writes"] == 1
    with pg_connect() as conn:
        assert conn.execute(f"SELECT name FROM {_target(ctx)} WHERE id = 6").fetchone()[0] == "forwarded"
        newest = control.list_stray_writes(conn, "mysql_to_postgres", cfg.scope, TABLE)[0]
        assert (newest["record_key"], newest["forwarded"]) == (6, True)
        from cutover.mysql_to_postgres.reverse import CHANGES
        # the forwarded write did not come back as a PostgreSQL change
        assert conn.execute(f"SELECT count(*) FROM {CHANGES} WHERE unit_key = %s", (str(ctx["key"]),)).fetchone()[0] == 0
    # the rollback's drain forwards the strays not forwarded yet: PostgreSQL mirrors MySQL, nothing refused
    rb = rollback(ctx["spec"], cfg, [TABLE], f"{db}-rollback")
    assert rb["target_writes"]["found"] == {}
    assert target_divergence(cfg, ctx["key"]) is None
    assert _mysql_rows(db)[5][11] == "from postgres"


def test_a_change_committed_after_a_later_one_is_not_skipped(cut_over: dict[str, Any]) -> None:
    """Change ids are taken before commit: a transaction holding a small id that commits after a larger id
    was applied must still be applied (a batch takes only changes of transactions below its snapshot's xmin)."""
    from cutover.mysql_to_postgres import reverse

    ctx = cut_over
    slow = pg_connect()
    conn = slow.__enter__()
    try:
        conn.execute(f"INSERT INTO {_target(ctx)} (id, name) VALUES (500, 'slow: small change id, late commit')")
        with pg_connect() as fast:
            fast.execute(f"INSERT INTO {_target(ctx)} (id, name) VALUES (501, 'fast')")
        first = reverse.run(ctx["cfg"])["tables"][TABLE]
        assert first["applied"] == 0 and first["lag_s"] > 0  # 501 waits behind the open transaction's xmin
        slow.__exit__(None, None, None)
    except BaseException:
        slow.__exit__(*sys.exc_info())
        raise
    second = reverse.run(ctx["cfg"])["tables"][TABLE]
    assert second["applied"] == 2 and second["lag_s"] == 0.0
    rows = _mysql_rows(ctx["db"])
    assert rows[500][0] == "slow: small change id, late commit" and rows[501][0] == "fast"


def test_composite_text_time_and_binary_keys_round_trip(cut_over: dict[str, Any]) -> None:
    """Keys of Korean text under a _ci collation, DATETIME(6) and VARBINARY travel through the change table's
    jsonb and back to MySQL exactly: inserts, updates, deletes and key changes."""
    from cutover.lifecycle import stages
    from cutover.lifecycle.switch import split_ready, switch
    from cutover.mysql_to_postgres import reverse

    ctx = cut_over
    db, spec = ctx["db"], ctx["spec"]
    name = "복합 키"
    tbl = f"{quote_mysql(db)}.{quote_mysql(name)}"
    with mysql_connect(MYSQL_SOURCE, database="") as m:
        cur = m.cursor()
        cur.execute(f"CREATE TABLE {tbl} (k VARCHAR(40) NOT NULL, at DATETIME(6) NOT NULL, b VARBINARY(8) NOT NULL, "
                    "v INT NULL, PRIMARY KEY (k, at, b)) COLLATE utf8mb4_unicode_ci")
        cur.executemany(f"INSERT INTO {tbl} VALUES (%s, %s, %s, %s)",
                        [("가", "2024-01-01 00:00:00.000001", b"\x00\x01", 1), ("나", "2024-01-01 00:00:00.5", b"\xff", 2),
                         ("다", "1999-12-31 23:59:59.999999", b"", 3)])
        m.commit()
    params = {**ctx["params"], "tables": [name]}
    assert stages.run_build(spec, params, f"{db}-build2").green
    cfg = spec.config(params)
    ready, _ = split_ready(spec, cfg, [name])
    switch(spec, cfg, ready, f"{db}-cut2", approval=None)
    key = spec.unit_key(cfg, name)
    reverse.start(cfg, key, run_id=f"{db}-cut2", source_position=None)
    t = f"{quote_pg(ctx['schema'])}.{quote_pg(name)}"
    with pg_connect() as conn:
        conn.execute(f"INSERT INTO {t} VALUES ('라 🚀', '2025-02-03 04:05:06.789012', '\\x0000ff'::bytea, 4)")
        conn.execute(f"UPDATE {t} SET v = 20 WHERE k = '나'")
        conn.execute(f"DELETE FROM {t} WHERE k = '다'")
        conn.execute(f"UPDATE {t} SET at = at + interval '1 microsecond', b = '\\x0002'::bytea WHERE k = '가'")
    out = reverse.run(cfg, [key])["tables"][name]
    assert out["dead_letters"] == 0 and out["deleted"] == 2, out
    with mysql_connect(MYSQL_SOURCE, database="") as m:
        cur = m.cursor()
        cur.execute(f"SELECT k, at, b, v FROM {tbl} ORDER BY k")
        got = cur.fetchall()
    assert [tuple(r) for r in got] == [
        ("가", dt.datetime(2024, 1, 1, 0, 0, 0, 2), b"\x00\x02", 1), ("나", dt.datetime(2024, 1, 1, 0, 0, 0, 500000), b"\xff", 20),
        ("라 🚀", dt.datetime(2025, 2, 3, 4, 5, 6, 789012), b"\x00\x00\xff", 4)]
    from cutover.mysql_to_postgres.divergence import target_divergence
    assert target_divergence(cfg, key) is None


def test_a_row_mysql_refuses_is_a_dead_letter_and_the_others_apply(cut_over: dict[str, Any]) -> None:
    from cutover.mysql_to_postgres import reverse
    from cutover.mysql_to_postgres.divergence import target_divergence

    ctx = cut_over
    tbl = f"{quote_mysql(ctx['db'])}.{quote_mysql(TABLE)}".replace("%", "%%")
    with mysql_connect(MYSQL_SOURCE, database="") as m:  # a rule only MySQL has (CHECK constraints are not copied)
        m.cursor().execute(f"ALTER TABLE {tbl} ADD CONSTRAINT small_price CHECK (price IS NULL OR price < 100000)", ())
    with pg_connect() as conn:
        conn.execute(f"UPDATE {_target(ctx)} SET price = 1000000 WHERE id = 7")
        conn.execute(f"INSERT INTO {_target(ctx)} (id, name, price) VALUES (300, 'fine', 1), (301, 'fine too', 2)")
    out = reverse.run(ctx["cfg"])["tables"][TABLE]
    assert (out["applied"], out["upserted"], out["dead_letters"]) == (3, 2, 1)
    rows = _mysql_rows(ctx["db"])
    assert rows[7][6] == Decimal("7.25") and rows[300][0] == "fine" and rows[301][0] == "fine too"
    with pg_connect() as conn:
        dead = control.list_dead_letters(conn, "mysql_to_postgres", str(ctx["key"]))
    assert len(dead) == 1 and dead[0]["record_key"] == '[["i", 7]]' and "small_price" in dead[0]["reason"]
    assert dead[0]["payload"]["row"]["price"] == "1000000.00"
    left = target_divergence(ctx["cfg"], ctx["key"])
    assert left is not None and left["sample_keys"]["updated"] == [7]  # a rollback would say so


def _child(params: dict[str, Any], stage: str) -> None:
    """The process the kill test kills: 40-change batches, stalled at ``stage`` of the second batch."""
    from cutover.mysql_to_postgres import reverse
    from cutover.mysql_to_postgres.config import MysqlToPostgresConfig

    reverse.BATCH_CHANGES = 40
    seen = {"n": 0}

    def hook(at: str) -> None:
        if at == stage:
            seen["n"] += 1
            if seen["n"] == 2:
                print("STALLED", flush=True)
                time.sleep(600)

    reverse.run(MysqlToPostgresConfig.from_params(params), hook=hook)


@pytest.mark.parametrize("stage", ["applied", "committed"])
def test_reverse_stream_killed_mid_apply_resumes_exactly(cut_over: dict[str, Any], stage: str) -> None:
    from cutover.mysql_to_postgres import reverse

    ctx = cut_over
    cfg, db = ctx["cfg"], ctx["db"]
    with pg_connect() as conn:  # 150 changes: four batches of 40
        conn.execute(f"INSERT INTO {_target(ctx)} (id, name, doc) SELECT g, '행 ' || g, ('{{\"g\": ' || g || '}}')::json "
                     "FROM generate_series(1000, 1119) g")
        conn.execute(f"UPDATE {_target(ctx)} SET name = name || ' ✓' WHERE id BETWEEN 1000 AND 1019")
        conn.execute(f"DELETE FROM {_target(ctx)} WHERE id BETWEEN 1100 AND 1109")
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.test_mysql_to_postgres_reverse", "child",
                             json.dumps(ctx["params"]), stage], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "STALLED":
                break
        else:
            pytest.fail(f"the applier exited ({proc.wait()}) before its second batch: {proc.stderr.read() if proc.stderr else ''}")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with mysql_connect(MYSQL_SOURCE, database="") as m:
        cur = m.cursor()
        cur.execute(f"SELECT last_id > 0, applied FROM {quote_mysql(db + '_state')}.m2p_reverse")
        _moved, applied_before = cur.fetchone()
        cur.execute(f"SELECT count(*) FROM {quote_mysql(db)}.{quote_mysql(TABLE)} WHERE id >= 1000".replace("%", "%%"), ())
        on_mysql = cur.fetchone()[0]
    # what the kill left: one batch committed (two when killed after the second commit), nothing half-applied
    assert applied_before == (80 if stage == "committed" else 40)
    assert on_mysql == (80 if stage == "committed" else 40)
    out = reverse.run(cfg)["tables"][TABLE]
    assert out["applied"] == 150 - applied_before and out["dead_letters"] == 0
    with mysql_connect(MYSQL_SOURCE, database="") as m:
        cur = m.cursor()
        cur.execute(f"SELECT applied FROM {quote_mysql(db + '_state')}.m2p_reverse")
        assert cur.fetchone()[0] == 150  # every change applied exactly once
    rows = _mysql_rows(db)
    want = {i: (f"행 {i}" + (" ✓" if i < 1020 else ""), json.dumps({"g": i})) for i in range(1000, 1120) if not 1100 <= i < 1110}
    assert {i: r[:2] for i, r in rows.items() if i >= 1000} == want
    from cutover.mysql_to_postgres.divergence import target_divergence
    assert target_divergence(cfg, ctx["key"]) is None


def test_a_table_without_a_key_is_refused_at_start() -> None:
    from cutover.mysql_to_postgres import reverse
    from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
    from cutover.mysql_to_postgres.typemap import TableMap

    cfg = MysqlToPostgresConfig(source_database="h5_rev_keyless", target_schema="h5_rev_keyless")
    tm = TableMap(source="t", target="t", columns=[], key=[], primary_key=[])
    with pytest.raises(reverse.ReverseUnsupported, match="no primary key"):
        reverse._require_key(reverse._key(f"{cfg.scope}:t"), tm)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    sys.path.insert(0, str(ROOT / "include"))
    import tests.conftest  # noqa: F401 - the same connections as the parent (its env already says which)

    _child(json.loads(sys.argv[2]), sys.argv[3])
