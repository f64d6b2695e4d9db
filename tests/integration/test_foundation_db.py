"""Foundation against the real databases: control-schema round trip, hostile names, streaming and COPY."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from cutover import control
from cutover.identifiers import NameMapper, pg_ident, quote_mysql
from cutover.streaming import (
    CopyCountMismatch,
    copy_csv,
    copy_rows,
    mysql_stream,
    pg_keyset_chunks,
    pg_stream,
)

pytestmark = pytest.mark.integration

INJECTION = 'x"; DROP TABLE y; --'
SCHEMA = "cutover_it_foundation"
MYDB = "cutover_it_foundation"


@pytest.fixture
def schema(pg: Any) -> str:
    pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pg_ident(SCHEMA)))
    pg.execute(sql.SQL("CREATE SCHEMA {}").format(pg_ident(SCHEMA)))
    pg.commit()
    return SCHEMA


def test_control_schema_is_idempotent(pg: Any) -> None:
    control.ensure_schema(pg)
    control.ensure_schema(pg)
    version = pg.execute("SELECT max(version) FROM cutover.schema_version").fetchone()[0]
    assert version == control.SCHEMA_VERSION


def test_control_round_trip(pg: Any) -> None:
    run_id, pipe = "it-roundtrip-run", "it_roundtrip"
    for table in ("units", "runs"):
        pg.execute(f"DELETE FROM cutover.{table} WHERE run_id = %s", (run_id,))
    for table in ("checkpoints", "switches", "switch_history", "dead_letters", "name_map", "object_backups"):
        pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s", (pipe,))

    control.start_run(pg, run_id, pipe, {"units": ["a"]}, kind="build", dag_id="it_roundtrip_build")
    run = control.get_run(pg, run_id)
    assert run is not None and (run["state"], run["kind"], run["dag_id"]) == ("running", "build", "it_roundtrip_build")
    control.set_unit(pg, run_id, pipe, "ship-a", "copying", rows_total=100, rows_read=10, rows_written=4)
    unit = control.list_units(pg, run_id)[0]
    assert (unit["state"], unit["rows_read"], unit["rows_written"]) == ("copying", 10, 4)
    assert unit["started_at"] is not None and unit["finished_at"] is None
    control.set_unit(pg, run_id, pipe, "ship-a", "copied", rows_read=100)  # rows written kept
    control.set_unit(pg, run_id, pipe, "ship-a", "verified", rows_written=40, checksum_source="abc",
                     checksum_target="abc")
    unit = control.list_units(pg, run_id)[0]
    assert (unit["state"], unit["rows_total"], unit["rows_read"], unit["rows_written"]) == ("verified", 100, 100, 40)
    assert unit["rows_done"] == 100  # legacy mirror of rows read
    assert unit["failed_stage"] is None and unit["error"] is None
    assert unit["started_at"] is not None and unit["finished_at"] is not None

    control.set_unit(pg, run_id, pipe, "ship-b", "failed", rows_read=7, error="boom", failed_stage="copy")
    failed = control.list_units(pg, run_id)[1]
    assert (failed["state"], failed["failed_stage"], failed["error"], failed["rows_read"]) == ("failed", "copy", "boom", 7)
    assert failed["rows_written"] == 0 and failed["finished_at"] is not None
    with pytest.raises(psycopg.errors.CheckViolation):  # only the life cycle's states are stored
        with pg.transaction():
            control.set_unit(pg, run_id, pipe, "ship-c", "done")

    assert control.get_checkpoint(pg, pipe, "ship-a") is None
    control.set_checkpoint(pg, pipe, "ship-a", {"created_time": "2026-01-01T00:00:15"}, rows_done=40, run_id=run_id)
    control.set_checkpoint(pg, pipe, "ship-a", {"created_time": "2026-01-01T00:00:30"}, rows_done=80, run_id=run_id,
                           rows_written=20)
    cp = control.get_checkpoint(pg, pipe, "ship-a")
    assert cp is not None and cp.watermark == {"created_time": "2026-01-01T00:00:30"} and cp.rows_done == 80
    assert cp.rows_written == 20

    control.switch_backend(pg, pipe, "ship-a", "wide", canary_pct=10, run_id=run_id, actor="alice", reason="canary")
    control.switch_backend(pg, pipe, "ship-a", "wide", canary_pct=100, run_id=run_id, actor="alice")
    control.switch_backend(pg, pipe, "ship-a", "narrow", actor="bob", reason="rollback")
    sw = control.get_switch(pg, pipe, "ship-a")
    assert sw is not None and (sw.backend, sw.canary_pct) == ("narrow", 100)
    hist = control.switch_history(pg, pipe, "ship-a")
    assert [(h["from_backend"], h["to_backend"], h["canary_pct"]) for h in hist] == [
        (None, "wide", 10), ("wide", "wide", 100), ("wide", "narrow", 100)
    ]
    with pytest.raises(ValueError):
        control.switch_backend(pg, pipe, "ship-a", "wide", canary_pct=120)

    n = control.add_dead_letters(pg, pipe, run_id, "ship-a", [
        control.DeadLetter("tenant.tbl_data_timeseries", "ship-a/ch1/2026-01-01", "Decimal with double_v NULL",
                           {"str_v": "12,5"}),
    ])
    assert n == 1
    letters = control.list_dead_letters(pg, pipe, "ship-a")
    assert letters[0]["reason"] == "Decimal with double_v NULL" and letters[0]["payload"] == {"str_v": "12,5"}

    control.save_name_map(pg, pipe, "ship-a", {"a" * 70: "a_short", "b": "b"})
    control.save_name_map(pg, pipe, "ship-a", {"a" * 70: "ignored-second-time"})
    assert control.load_name_map(pg, pipe, "ship-a") == {"a" * 70: "a_short", "b": "b"}

    control.backup_object(pg, pipe, "ship-a", "index", "ix1", "CREATE INDEX ix1 ON t (c)")
    assert control.pending_backups(pg, pipe, "ship-a") == [("index", "ix1", "CREATE INDEX ix1 ON t (c)")]
    control.mark_restored(pg, pipe, "ship-a", "index", "ix1")
    assert control.pending_backups(pg, pipe, "ship-a") == []

    control.finish_run(pg, run_id, "success", {"rows": 100})
    run = control.get_run(pg, run_id)
    assert run is not None and run["state"] == "success" and run["evidence"] == {"rows": 100}
    pg.commit()


def test_hostile_table_name_is_a_name_in_postgres(pg: Any, schema: str) -> None:
    pg.execute(sql.SQL("CREATE TABLE {} (id int)").format(pg_ident(schema, "y")))
    pg.execute(sql.SQL("CREATE TABLE {} (id int)").format(pg_ident(schema, INJECTION)))
    pg.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(pg_ident(schema, INJECTION)))
    pg.commit()
    names = {r[0] for r in pg.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)).fetchall()}
    assert names == {"y", INJECTION}


def test_mapped_long_names_create_distinct_columns(pg: Any, schema: str) -> None:
    m = NameMapper()
    originals = ["c" * 70 + "_1", "c" * 70 + "_2", "select", INJECTION, "température"]
    cols = sql.SQL(", ").join(sql.SQL("{} int").format(pg_ident(m.map(o))) for o in originals)
    pg.execute(sql.SQL("CREATE TABLE {} ({})").format(pg_ident(schema, "wide"), cols))
    pg.commit()
    got = [r[0] for r in pg.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'wide' "
        "ORDER BY ordinal_position", (schema,)).fetchall()]
    assert got == [m.map(o) for o in originals]  # PostgreSQL kept every name exactly: nothing truncated


def test_hostile_names_in_mariadb(mysql: Any) -> None:
    cur = mysql.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql(MYDB)}")
    cur.execute(f"CREATE DATABASE {quote_mysql(MYDB)}")
    hostile = "a`b; DROP TABLE y; --"
    cur.execute(f"CREATE TABLE {quote_mysql(MYDB)}.{quote_mysql('y')} (id int)")
    cur.execute(f"CREATE TABLE {quote_mysql(MYDB)}.{quote_mysql(hostile)} ({quote_mysql('select')} int)")
    cur.execute(f"INSERT INTO {quote_mysql(MYDB)}.{quote_mysql(hostile)} VALUES (%s)", (1,))
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (MYDB,))
    assert {r[0] for r in cur.fetchall()} == {"y", hostile}
    cur.execute(f"DROP DATABASE {quote_mysql(MYDB)}")


def test_streaming_and_copy_bounded_chunks(pg: Any, schema: str) -> None:
    src, dst = pg_ident(schema, "src"), pg_ident(schema, "dst")
    pg.execute(sql.SQL("CREATE TABLE {} (k1 int, k2 int, v text, PRIMARY KEY (k1, k2))").format(src))
    pg.execute(sql.SQL("INSERT INTO {} SELECT g / 10, g % 10, 'v' || g FROM generate_series(0, 2499) g").format(src))
    pg.execute(sql.SQL("CREATE TABLE {} (k1 int, k2 int, v text)").format(dst))
    pg.commit()

    sizes = []
    for rows in pg_stream(pg, sql.SQL("SELECT k1, k2, v FROM {} ORDER BY k1, k2").format(src), chunk_rows=600):
        sizes.append(len(rows))
        copy_rows(pg, dst, ["k1", "k2", "v"], rows)
    assert sizes == [600, 600, 600, 600, 100]
    pg.commit()

    # keyset pages resume strictly after a key: no duplicate, no gap
    seen: list[tuple[int, int]] = []
    first = next(pg_keyset_chunks(pg, src, ["k1", "k2", "v"], ["k1", "k2"], chunk_rows=700))
    seen.extend((r[0], r[1]) for r in first[0])
    for rows, _last in pg_keyset_chunks(pg, src, ["k1", "k2", "v"], ["k1", "k2"], chunk_rows=700, after=first[1]):
        assert len(rows) <= 700
        seen.extend((r[0], r[1]) for r in rows)
    assert seen == sorted({(g // 10, g % 10) for g in range(2500)})

    assert pg.execute(sql.SQL("SELECT count(*), count(DISTINCT (k1, k2)) FROM {}").format(dst)).fetchone() == (2500, 2500)
    with pytest.raises(CopyCountMismatch):
        copy_rows(pg, dst, ["k1", "k2", "v"], [(1, 1, "x")], expected=2)
    pg.rollback()

    # a CSV buffer (what pyarrow writes): quoted text, empty quoted text, NULL left empty
    assert copy_csv(pg, dst, ["k1", "k2", "v"], b'900,1,"a,b"\n900,2,""\n900,3,\n', expected=3) == 3
    got = pg.execute(sql.SQL("SELECT k2, v FROM {} WHERE k1 = 900 ORDER BY k2").format(dst)).fetchall()
    assert got == [(1, "a,b"), (2, ""), (3, None)]
    with pytest.raises(CopyCountMismatch):
        copy_csv(pg, dst, ["k1", "k2", "v"], b"901,1,x\n", expected=2)
    pg.rollback()


def test_mysql_stream_chunks(mysql: Any) -> None:
    cur = mysql.cursor()
    db = quote_mysql(MYDB + "_stream")
    cur.execute(f"DROP DATABASE IF EXISTS {db}")
    cur.execute(f"CREATE DATABASE {db}")
    cur.execute(f"CREATE TABLE {db}.nums (n int PRIMARY KEY)")
    cur.executemany(f"INSERT INTO {db}.nums VALUES (%s)", [(i,) for i in range(1, 2501)])
    mysql.commit()
    chunks = list(mysql_stream(mysql, f"SELECT n FROM {db}.nums ORDER BY n", chunk_rows=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    assert [r[0] for chunk in chunks for r in chunk] == list(range(1, 2501))
    cur.execute(f"DROP DATABASE {db}")
