"""mysql_to_postgres on the real MariaDB and PostgreSQL: every type's edge values round-trip, rows PostgreSQL
cannot hold become dead letters, defaults stay expressions, ON UPDATE CURRENT_TIMESTAMP behaves as in MySQL,
overrides (uuid, coarser timestamp, boolean, skip) are verified with the matching consistency kinds, hostile
table, column and schema names pass, an unmapped type stops the plan naming the column."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cutover import control
from cutover.connections import MYSQL_SOURCE, mysql_connect, pg_connect
from cutover.identifiers import quote_mysql, quote_pg
from cutover.lifecycle.stages import RunFailed, run_build
from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
from cutover.mysql_to_postgres.readonly import ensure_read_only_user
from cutover.mysql_to_postgres.spec import SPEC
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.samples.mysql_types import MAXIMA, seed

pytestmark = pytest.mark.integration

UTC = dt.UTC
#: a hostile table name MySQL accepts, a hostile column name, a hostile target schema (no '.')
HOSTILE_TABLE = next(n for n in HOSTILE_NAMES if "DROP" in n)
HOSTILE_COLUMN = "select"
HOSTILE_SCHEMA = next(n for n in HOSTILE_NAMES if n.startswith("Ünï"))


def _f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def _cleanup(db: str, schema: str) -> None:
    from cutover.mysql_to_postgres.load import STATE_SCHEMA, ensure_state

    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {quote_mysql(db)}")
    scope = MysqlToPostgresConfig(source_database=db, target_schema=schema).scope + ":"
    with pg_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_pg(schema)} CASCADE")
        ensure_state(conn)
        for t in ("m2p_checkpoints", "m2p_positions"):
            conn.execute(f"DELETE FROM {STATE_SCHEMA}.{t} WHERE starts_with(unit_key, %s)", (scope,))


@pytest.fixture(scope="module")
def built() -> Iterator[dict[str, Any]]:
    """The sample database (edge rows, two bad rows, a hostile table) built into a hostile schema."""
    db = f"m2pit_{uuid.uuid4().hex[:8]}"
    schema = HOSTILE_SCHEMA
    _cleanup(db, schema)
    counts = seed(MYSQL_SOURCE, db, rows=120, hostile_table=HOSTILE_TABLE, hostile_column=HOSTILE_COLUMN)
    ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [db])
    params = {"source_database": db, "target_schema": schema, "gx_gate": True, "chunk_rows": 50}
    run_id = f"m2pit-{uuid.uuid4().hex[:8]}"
    rep = run_build(SPEC, params, run_id, raise_on_red=False)
    yield {"db": db, "schema": schema, "counts": counts, "report": rep, "run_id": run_id, "params": params}
    _cleanup(db, schema)


def _pg_rows(schema: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with pg_connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(sql.replace("{s}", quote_pg(schema)), args).fetchall()


def test_run_is_green_with_bad_rows_in_dead_letters(built: dict[str, Any]) -> None:
    rep = built["report"]
    assert rep.green, rep.reason
    assert rep.states == {"verified": 4}
    scope = MysqlToPostgresConfig(source_database=built["db"], target_schema=built["schema"]).scope
    with pg_connect() as conn:
        dead = control.list_dead_letters(conn, "mysql_to_postgres", f"{scope}:customers")
    reasons = " ".join(d["reason"] for d in dead)
    assert len(dead) == 2, dead
    assert "check constraint" in reasons and "0x00" in reasons
    assert all(d["source"] == "customers" and d["record_key"] for d in dead)
    assert {d["run_id"] for d in dead} == {built["run_id"]}  # every record names its run (was NULL)
    n = _pg_rows(built["schema"], "SELECT count(*) FROM {s}.customers")[0][0]
    assert n == built["counts"]["customers"] - 2


def test_integers_decimals_floats_bits_keep_every_value(built: dict[str, Any]) -> None:
    cols = list(MAXIMA)
    hi, lo = _pg_rows(built["schema"], "SELECT " + ", ".join(cols) + ", balance, score, ratio::float8, bits, flag "
                      "FROM {s}.customers WHERE id IN (1, 2) ORDER BY id")
    assert list(hi[:10]) == [h for _, h in MAXIMA.values()]  # unsigned maxima incl. 18446744073709551615
    assert list(lo[:10]) == [x for x, _ in MAXIMA.values()]
    assert hi[10] == Decimal("999999999999999.9999999999999") and lo[10] == Decimal("-999999999999999.9999999999999")
    assert hi[11] == 1.7976931348623157e308 and lo[11] == -2.2250738585072014e-308
    assert hi[12] == _f32(3.4028234e38) and lo[12] == _f32(-1.17549435e-38)  # FLOAT's exact single value
    assert (hi[13], lo[13]) == ("11111", "00000") and (hi[14], lo[14]) == (1, 0)
    small = _pg_rows(built["schema"], "SELECT balance, score, ratio::float8 FROM {s}.customers WHERE id = 3")[0]
    assert small == (Decimal("0.0000000000001"), 1e-9, _f32(1e-7))


def test_temporal_values_follow_the_stated_rules(built: dict[str, Any]) -> None:
    rows = _pg_rows(built["schema"], "SELECT id, born, seen, stamp, dur, yr FROM {s}.customers WHERE id <= 3 ORDER BY id")
    r1, r2, r3 = rows
    assert r1[1:] == (dt.date(9999, 12, 31), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
                      dt.datetime(2038, 1, 18, 18, 14, 7, 999999, tzinfo=UTC),  # written at +09:00: the instant kept
                      dt.timedelta(hours=838, minutes=59, seconds=59), 2155)
    assert r2[1:] == (None, None, None, -dt.timedelta(hours=838, minutes=59, seconds=59), 0)  # zero dates → NULL
    assert r3[1:4] == (None, None, None) and r3[4] == -dt.timedelta(seconds=1.5) and r3[5] == 1901  # partial dates
    # DATETIME written in a +09:00 session: the wall clock is kept, row for row
    with mysql_connect(MYSQL_SOURCE, database=built["db"]) as conn:
        cur = conn.cursor()
        cur.execute("SET time_zone = '-05:00'")
        cur.execute("SELECT id, CAST(seen AS CHAR), CAST(dur AS CHAR) FROM customers WHERE id > 3 AND `user` NOT LIKE 'bad-%%'")
        src = {int(i): (s, d) for i, s, d in cur.fetchall()}
    got = {int(i): (s, d) for i, s, d in _pg_rows(
        built["schema"], "SELECT id, to_char(seen, 'YYYY-MM-DD HH24:MI:SS.US'), dur FROM {s}.customers WHERE id > 3")}
    assert set(got) == set(src)
    for i, (seen, dur) in src.items():
        assert got[i][0] == seen, i
        h, m, s = dur.lstrip("-").split(":")
        td = dt.timedelta(hours=int(h), minutes=int(m), seconds=float(s))
        assert got[i][1] == (-td if dur.startswith("-") else td), i


def test_text_json_enum_set_binary_are_byte_exact(built: dict[str, Any]) -> None:
    r = _pg_rows(built["schema"], 'SELECT "user", name, latin, status, tags, doc::text, avatar, token, note, total_cents '
                 "FROM {s}.customers WHERE id IN (1, 2) ORDER BY id")
    assert r[0] == ("max", "최대값 🚀", "café", "closed (old)", "x,z z", '{"k": [1, 2, {"ü": "🚀"}]}', b"\x00\x01\x00\xff",
                    "550E8400-E29B-41D4-A716-446655440000", "tab\there\nnew line \\ backslash", MAXIMA["i_s"][1] * 100)
    assert r[1][3:5] == ("a,b", "") and r[1][6] == b"" and r[1][8] == ""
    with mysql_connect(MYSQL_SOURCE, database=built["db"]) as conn:
        cur = conn.cursor()
        cur.execute("SELECT id, name, status, HEX(avatar), doc FROM customers WHERE `user` NOT LIKE 'bad-%%'")
        src = {int(i): (n, s, (a or "").lower() if a is not None else None, d) for i, n, s, a, d in cur.fetchall()}
    got = {int(i): (n, s, None if a is None else bytes(a).hex(), d) for i, n, s, a, d in _pg_rows(
        built["schema"], "SELECT id, name, status, avatar, doc::text FROM {s}.customers")}
    assert got == src


def test_defaults_identity_indexes_and_generated_columns(built: dict[str, Any]) -> None:
    defaults = dict(_pg_rows(built["schema"], """SELECT column_name, column_default FROM information_schema.columns
                                                WHERE table_schema = %s AND table_name = 'customers'""", (built["schema"],)))
    assert defaults["created_at"] == "LOCALTIMESTAMP(6)" and defaults["updated_at"] == "CURRENT_TIMESTAMP(6)"
    assert defaults["status"].startswith("'active'") and "'00101'" in defaults["bits"]
    assert defaults["flag"] == "0" and defaults["total_cents"] is None  # generated: values copied, no default
    idx = " ".join(r[0] for r in _pg_rows(built["schema"], "SELECT indexdef FROM pg_indexes WHERE schemaname = %s",
                                          (built["schema"],)))
    assert '"left"((name)::text, 10)' in idx and '("user")' in idx and "(customer_id, order_no)" in idx
    with pg_connect() as conn:
        q = f"{quote_pg(built['schema'])}.customers"
        top = conn.execute(f"SELECT max(id) FROM {q}").fetchone()[0]
        new = conn.execute(f"""INSERT INTO {q} ("user", status) VALUES ('identity probe', 'active')
                               RETURNING id, created_at, updated_at""").fetchone()
        conn.rollback()
    assert new[0] > top and new[1] is not None and new[2] is not None
    fks = _pg_rows(built["schema"], "SELECT conname FROM pg_constraint WHERE contype = 'f' AND connamespace = %s::regnamespace",
                   (quote_pg(built["schema"]),))
    assert len(fks) == 1


def test_on_update_current_timestamp_has_mysqls_semantics(built: dict[str, Any]) -> None:
    q = f"{quote_pg(built['schema'])}.customers"
    with pg_connect() as conn:
        before = conn.execute(f"SELECT updated_at FROM {q} WHERE id = 5").fetchone()[0]
        conn.execute(f"UPDATE {q} SET name = name WHERE id = 5")  # nothing changed: MySQL leaves it
        same = conn.execute(f"SELECT updated_at FROM {q} WHERE id = 5").fetchone()[0]
        conn.execute(f"UPDATE {q} SET name = 'changed' WHERE id = 5")
        moved = conn.execute(f"SELECT updated_at, now() FROM {q} WHERE id = 5").fetchone()
        conn.execute(f"UPDATE {q} SET name = 'again', updated_at = '2001-01-01 00:00:00+00' WHERE id = 5")
        explicit = conn.execute(f"SELECT updated_at FROM {q} WHERE id = 5").fetchone()[0]
        conn.execute("SELECT set_config('cutover.replaying', 'on', true)")
        conn.execute(f"UPDATE {q} SET name = 'replayed' WHERE id = 5")
        replayed = conn.execute(f"SELECT updated_at FROM {q} WHERE id = 5").fetchone()[0]
        conn.rollback()
    assert same == before
    assert moved[0] == moved[1] != before  # the statement's time
    assert explicit == dt.datetime(2001, 1, 1, tzinfo=UTC)
    assert replayed == explicit  # Cutover's own sync writes MySQL's value


def test_hostile_table_and_column_names(built: dict[str, Any]) -> None:
    rows = _pg_rows(built["schema"], f"SELECT id, {quote_pg(HOSTILE_COLUMN)}, \"Order\" FROM {{s}}.{quote_pg(HOSTILE_TABLE)} ORDER BY id")
    assert rows == [(i, f"v{i}", i * 2) for i in range(1, 21)]


def test_type_mapping_report_is_saved_and_in_the_evidence(built: dict[str, Any]) -> None:
    from cutover.reports import report_dir

    with pg_connect() as conn:
        run = control.get_run(conn, built["run_id"])
    entry = run["evidence"]["type_mapping"]
    assert entry["tables"] == 4 and entry["html"].endswith("/type_mapping.html")
    page = (report_dir(built["run_id"]) / "type_mapping.html").read_text(encoding="utf-8")
    assert "numeric(20,0)" in page and "interval" in page and "zero_date: null" in page
    assert "http" not in page.replace('"http', "")  # no external asset (the page has no link off the machine)
    assert HOSTILE_TABLE.replace('"', "&quot;") in page
    assert "1 value(s) look like UTF-8 bytes stored as latin1 (mojibake)" in page and "e.g. keys [3]" in page
    assert entry["warnings"] >= 1


def test_overrides_uuid_coarser_timestamp_boolean_and_skip(tmp_path: Path) -> None:
    db, schema = f"m2pov_{uuid.uuid4().hex[:8]}", f"m2pov_{uuid.uuid4().hex[:6]}"
    _cleanup(db, schema)
    try:
        seed(MYSQL_SOURCE, db, rows=40, bad_rows=False)
        with mysql_connect(MYSQL_SOURCE, database=db) as conn:  # 9999-12-31 23:59:59.999999 would round into year 10000
            conn.cursor().execute("UPDATE customers SET seen = '9999-12-31 23:59:59.123456' WHERE id = 1")
        ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [db])
        ov = tmp_path / "ov.yaml"
        ov.write_text("tables:\n  customers:\n    columns:\n"
                      "      token: {type: uuid}\n"
                      "      seen: {type: 'timestamp(3)', kind: 'timestamp:3'}\n"
                      "      flag: {type: boolean}\n"
                      "      note: {skip: true}\n", encoding="utf-8")
        params = {"source_database": db, "target_schema": schema, "gx_gate": False, "overrides": str(ov),
                  "tables": ["customers"]}
        rep = run_build(SPEC, params, f"m2pov-{uuid.uuid4().hex[:8]}", raise_on_red=False)
        assert rep.green, rep.reason
        types = dict(_pg_rows(schema, """SELECT column_name, data_type FROM information_schema.columns
                                         WHERE table_schema = %s AND table_name = 'customers'""", (schema,)))
        assert types["token"] == "uuid" and types["flag"] == "boolean" and "note" not in types
        assert types["seen"] == "timestamp without time zone"
        tok = _pg_rows(schema, "SELECT token::text FROM {s}.customers WHERE id = 1")[0][0]
        assert tok == "550e8400-e29b-41d4-a716-446655440000"  # upper case in MySQL, the same uuid
    finally:
        _cleanup(db, schema)


def test_an_unmapped_type_fails_its_own_unit_and_the_others_go_on() -> None:
    db, schema = f"m2pbad_{uuid.uuid4().hex[:8]}", f"m2pbad_{uuid.uuid4().hex[:6]}"
    _cleanup(db, schema)
    try:
        with mysql_connect(MYSQL_SOURCE, database="") as conn:
            cur = conn.cursor()
            cur.execute(f"CREATE DATABASE {db}")
            cur.execute(f"CREATE TABLE {db}.places (id INT PRIMARY KEY, spot POINT)")
            cur.execute(f"CREATE TABLE {db}.{quote_mysql(HOSTILE_TABLE)} (id INT PRIMARY KEY, v VARCHAR(5))".replace("%", "%%"))
            cur.execute(f"INSERT INTO {db}.{quote_mysql(HOSTILE_TABLE)} VALUES (1, 'a'), (2, 'b')".replace("%", "%%"))
        ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [db])
        run_id = f"m2pbad-{uuid.uuid4().hex[:8]}"
        with pytest.raises(RunFailed) as err:
            run_build(SPEC, {"source_database": db, "target_schema": schema, "gx_gate": False}, run_id)
        assert err.value.report.states == {"verified": 1, "failed": 1}, err.value.report.states
        with pg_connect() as conn:
            units = {u["unit_key"].split(":", 1)[1]: u for u in control.list_units(conn, run_id)}
            n = conn.execute(f"SELECT count(*) FROM {quote_pg(schema)}.{quote_pg(HOSTILE_TABLE)}").fetchone()[0]
        assert n == 2 and units[HOSTILE_TABLE]["state"] == "verified"
        bad = units["places"]
        assert bad["state"] == "failed" and bad["failed_stage"] == "prepare", bad
        # the error names the column, its type and the override to write, in the file to write it in
        assert "places.spot" in bad["error"] and "point" in bad["error"]
        assert "tables: {places: {columns: {spot: {type: text}}}}" in bad["error"]
        assert "mappings/mysql_to_postgres.yaml" in bad["error"]
    finally:
        _cleanup(db, schema)


def test_bigint_unsigned_auto_increment_gets_a_sequence_past_the_max() -> None:
    db, schema = f"m2pseq_{uuid.uuid4().hex[:8]}", f"m2pseq_{uuid.uuid4().hex[:6]}"
    _cleanup(db, schema)
    try:
        with mysql_connect(MYSQL_SOURCE, database="") as conn:
            cur = conn.cursor()
            cur.execute(f"CREATE DATABASE {db}")
            cur.execute(f"CREATE TABLE {db}.counters (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, v INT) "
                        "AUTO_INCREMENT = 1000")
            cur.execute(f"INSERT INTO {db}.counters (id, v) VALUES (5, 1), (700, 2)")
        ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [db])
        rep = run_build(SPEC, {"source_database": db, "target_schema": schema, "gx_gate": False}, f"m2pseq-{uuid.uuid4().hex[:6]}")
        assert rep.green
        with pg_connect() as conn:
            new = conn.execute(f"INSERT INTO {quote_pg(schema)}.counters (v) VALUES (3) RETURNING id").fetchone()[0]
            conn.rollback()
        assert new == 1000  # past MySQL's AUTO_INCREMENT counter, not only past max(id)
    finally:
        _cleanup(db, schema)
