"""mysql_to_postgres truth and safety (issue #19) on the real MariaDB and PostgreSQL: the read-only proof
sees roles and probes every kind of write; every value a rule changes is counted per column; an unmappable
column fails its own unit only; override values are checked at plan; the type-mapping report never shows a
table that lost rows to dead letters as green."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cutover import control
from cutover.connections import MYSQL_SOURCE, mysql_connect, pg_connect
from cutover.identifiers import quote_mysql, quote_pg
from cutover.lifecycle.stages import run_build
from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
from cutover.mysql_to_postgres.readonly import WritableSourceError, prove_read_only
from cutover.mysql_to_postgres.spec import SPEC
from cutover.samples.hostile import HOSTILE_NAMES

from .test_mysql_to_postgres import _cleanup

pytestmark = pytest.mark.integration

#: a hostile table name MySQL accepts (quote, semicolon, comment) and a hostile column name
HOSTILE_TABLE = next(n for n in HOSTILE_NAMES if "DROP" in n)
HOSTILE_COLUMN = "100%"


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _mysql(db: str, *statements: str) -> None:
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        cur = conn.cursor()
        for s in statements:
            cur.execute(s.replace("{db}", quote_mysql(db)).replace("%", "%%"), ())


# ------------------------------------------------------------------------------ 1. the read-only proof

@pytest.fixture()
def accounts(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A database with a hostile table, and three users: one with SELECT only itself but INSERT / DELETE
    through its default role (the role granted in turn through a nested role), one with a direct INSERT
    grant, one truly read-only. Each reachable through an ``AIRFLOW_CONN_*`` connection."""
    tag = _tag()
    db = f"m2pro_{tag}"
    writer, nested = f"m2pro_writer_{tag}", f"m2pro_nested_{tag}"
    users = {"role": f"m2pro_r_{tag}", "direct": f"m2pro_d_{tag}", "ro": f"m2pro_o_{tag}", "idle": f"m2pro_i_{tag}"}
    t = f"{{db}}.{quote_mysql(HOSTILE_TABLE)}"
    _mysql(db, "CREATE DATABASE {db}",
           f"CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, {quote_mysql(HOSTILE_COLUMN)} VARCHAR(10) NOT NULL)",
           f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')",
           f"CREATE ROLE '{writer}'", f"CREATE ROLE '{nested}'",
           f"GRANT INSERT, DELETE ON {{db}}.* TO '{nested}'", f"GRANT '{nested}' TO '{writer}'",
           *(f"CREATE USER '{u}'@'%'" for u in users.values()),
           *(f"GRANT SELECT ON {{db}}.* TO '{u}'@'%'" for u in users.values()),
           f"GRANT '{writer}' TO '{users['role']}'@'%'", f"SET DEFAULT ROLE '{writer}' FOR '{users['role']}'@'%'",
           f"GRANT '{writer}' TO '{users['idle']}'@'%'",  # granted, not a default role: SET ROLE enables it
           f"GRANT INSERT ON {{db}}.* TO '{users['direct']}'@'%'")
    conns = {}
    for kind, u in users.items():
        conns[kind] = f"m2pro_{kind}_{tag}"
        monkeypatch.setenv(f"AIRFLOW_CONN_{conns[kind].upper()}", f"mysql://{u}@127.0.0.1:3306/")
    try:
        yield {"db": db, "conns": conns, "users": users}
    finally:
        _mysql(db, "DROP DATABASE IF EXISTS {db}", *(f"DROP USER IF EXISTS '{u}'@'%'" for u in users.values()),
               f"DROP ROLE IF EXISTS '{writer}'", f"DROP ROLE IF EXISTS '{nested}'")


def test_a_writer_through_its_default_role_is_refused(accounts: dict[str, Any]) -> None:
    with pytest.raises(WritableSourceError, match=r"INSERT, DELETE ON .* TO `m2pro_nested_") as err:
        prove_read_only(accounts["conns"]["role"], accounts["db"], HOSTILE_TABLE, HOSTILE_COLUMN)
    assert "INSERT, DELETE … WHERE FALSE was allowed" in str(err.value)  # the probes agree with the grants
    # the probes alone catch it too: the same statements the proof runs, through the role
    from cutover.mysql_to_postgres.readonly import write_attempts

    with mysql_connect(accounts["conns"]["role"], database="") as conn:
        got = write_attempts(conn.cursor(), conn, accounts["db"], HOSTILE_TABLE, HOSTILE_COLUMN)
    assert got["INSERT"].startswith("allowed") and got["DELETE"].startswith("allowed"), got
    assert got["UPDATE"].startswith("refused") and got["CREATE"].startswith("refused"), got
    with mysql_connect(MYSQL_SOURCE, database="") as conn:  # and nothing was written
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {quote_mysql(accounts['db'])}.{quote_mysql(HOSTILE_TABLE)}".replace("%", "%%"), ())
        assert cur.fetchone()[0] == 2


def test_a_role_granted_but_not_enabled_is_refused_by_its_grants(accounts: dict[str, Any]) -> None:
    with pytest.raises(WritableSourceError, match="INSERT, DELETE") as err:
        prove_read_only(accounts["conns"]["idle"], accounts["db"], HOSTILE_TABLE, HOSTILE_COLUMN)
    assert "attempts: refused" in str(err.value)  # the role is off in the session: only the grants show it


def test_a_direct_insert_grant_is_refused(accounts: dict[str, Any]) -> None:
    with pytest.raises(WritableSourceError, match=r"GRANT SELECT, INSERT ON") as err:
        prove_read_only(accounts["conns"]["direct"], accounts["db"], HOSTILE_TABLE, HOSTILE_COLUMN)
    assert "INSERT … WHERE FALSE was allowed" in str(err.value)


def test_the_read_only_user_passes_every_probe(accounts: dict[str, Any]) -> None:
    got = prove_read_only(accounts["conns"]["ro"], accounts["db"], HOSTILE_TABLE, HOSTILE_COLUMN)
    assert got["write_grants"] == [] and got["roles"] == []
    assert set(got["attempts"]) == {"INSERT", "UPDATE", "DELETE", "CREATE"}
    assert all(r.startswith("refused (1142") for r in got["attempts"].values()), got["attempts"]


# ------------------------------------------------------------------------------ 2. every rule-changed value counted

#: per column and rule, how many values the seeded table holds (row 21 also has a zero date in "100%",
#: but its NOT NULL column "must" is a zero date too: the row is a dead letter and its values are not counted)
EXPECTED_CHANGES = {
    HOSTILE_COLUMN: {"zero date → NULL": 5, "partial date → NULL": 4, "year 0 → NULL": 2},
    "seen": {"zero date → NULL": 3},
    "stamp": {"zero date → NULL": 1},
    "st": {"invalid ENUM '' kept": 4},
    "flag": {"not 0 or 1 → true": 3},
}


def _seed_rules(db: str) -> None:
    t = f"{{db}}.{quote_mysql(HOSTILE_TABLE)}"
    d = quote_mysql(HOSTILE_COLUMN)
    rows = []
    for i in range(1, 41):
        day = ("0000-00-00" if i <= 5 or i == 21 else "2020-00-15" if i <= 8 else "2020-05-00" if i == 9
               else "0000-05-01" if i <= 11 else None if i == 12 else f"2021-01-{i % 28 + 1:02d}")
        seen = "0000-00-00 00:00:00" if 13 <= i <= 15 else "2022-02-02 10:00:00.5"
        stamp = "0000-00-00 00:00:00" if i == 16 else "2023-03-03 03:03:03"
        st = "bogus" if 17 <= i <= 20 else "ab"[i % 2]
        must = "0000-00-00" if i == 21 else "2020-01-01"
        flag = {22: 2, 23: 2, 24: -1}.get(i, i % 2)
        q = lambda v: "NULL" if v is None else f"'{v}'"  # noqa: E731
        rows.append(f"({i}, {q(day)}, {q(seen)}, {q(stamp)}, {q(st)}, {q(must)}, {flag})")
    _mysql(db, "CREATE DATABASE {db}", "SET SESSION sql_mode = ''",
           f"CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, {d} DATE NULL, seen DATETIME(1) NULL, "
           "stamp TIMESTAMP NULL DEFAULT NULL, st ENUM('a','b') NULL, must DATE NOT NULL, flag TINYINT NOT NULL)",
           f"INSERT INTO {t} VALUES " + ", ".join(rows),
           f"CREATE TABLE {{db}}.loose ({d} DATE NULL, st ENUM('a','b') NULL)",  # no key: copied whole from a snapshot
           f"INSERT INTO {{db}}.loose SELECT {d}, st FROM {t}")


@pytest.fixture(scope="module")
def rules_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The rule table built with zero dates → NULL, '' ENUMs kept and a boolean override, 7 rows a chunk."""
    from cutover.mysql_to_postgres.readonly import ensure_read_only_user
    from cutover.mysql_to_postgres.typemap import yaml_key

    tag = _tag()
    db, schema = f"m2prule_{tag}", f"m2prule_{tag}_{HOSTILE_COLUMN}"
    _cleanup(db, schema)
    _seed_rules(db)
    ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [db])
    ov = tmp_path_factory.mktemp("m2prule") / "ov.yaml"
    ov.write_text(f"tables: {{{yaml_key(HOSTILE_TABLE)}: {{columns: {{flag: {{type: boolean}}}}}}}}\n", encoding="utf-8")
    params = {"source_database": db, "target_schema": schema, "gx_gate": False, "chunk_rows": 7,
              "enum_empty": "keep", "zero_date": "null", "overrides": str(ov)}
    run_id = f"m2prule-{tag}"
    rep = run_build(SPEC, params, run_id, raise_on_red=False)
    try:
        yield {"db": db, "schema": schema, "run_id": run_id, "report": rep}
    finally:
        _cleanup(db, schema)


def _units(run_id: str) -> dict[str, dict[str, Any]]:
    with pg_connect() as conn:
        return {u["unit_key"].split(":", 1)[1]: u for u in control.list_units(conn, run_id)}


def test_every_value_a_rule_changed_is_counted_per_column(rules_run: dict[str, Any]) -> None:
    units = _units(rules_run["run_id"])
    assert rules_run["report"].states == {"verified": 2}, rules_run["report"].reason
    got = units[HOSTILE_TABLE]["detail"]["copy"]["rule_changes"]
    assert got == EXPECTED_CHANGES, got
    # the counts are the values the copy really changed: NULL in PostgreSQL where MySQL has a non-NULL value
    s, t = quote_pg(rules_run["schema"]), quote_pg(HOSTILE_TABLE)
    with pg_connect() as conn:
        nulls = conn.execute(f"SELECT count(*) FILTER (WHERE {quote_pg(HOSTILE_COLUMN)} IS NULL), "
                             f"count(*) FILTER (WHERE st = ''), count(*) FILTER (WHERE flag) FROM {s}.{t}").fetchone()
    assert nulls[0] == sum(EXPECTED_CHANGES[HOSTILE_COLUMN].values()) + 1  # + the row MySQL has NULL in
    assert nulls[1] == 4
    with mysql_connect(MYSQL_SOURCE, database=rules_run["db"]) as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {quote_mysql(HOSTILE_TABLE)} WHERE flag <> 0 AND id <> 21".replace("%", "%%"), ())
        assert nulls[2] == cur.fetchone()[0]
    # the table without a key (copied whole): the row refused in the keyed table is here, its zero date counted
    loose = units["loose"]["detail"]["copy"]["rule_changes"]
    assert loose == {HOSTILE_COLUMN: {"zero date → NULL": 6, "partial date → NULL": 4, "year 0 → NULL": 2},
                     "st": {"invalid ENUM '' kept": 4}}, loose


def test_invalid_enum_values_made_null_are_counted() -> None:
    from cutover.mysql_to_postgres.readonly import ensure_read_only_user

    tag = _tag()
    db, schema = f"m2prule_{tag}", f"m2prule_{tag}_n"
    _cleanup(db, schema)
    try:
        _seed_rules(db)
        ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [db])
        run_id = f"m2prulen-{tag}"
        run_build(SPEC, {"source_database": db, "target_schema": schema, "gx_gate": False, "chunk_rows": 6,
                         "enum_empty": "null", "tables": [HOSTILE_TABLE]}, run_id, raise_on_red=False)
        got = _units(run_id)[HOSTILE_TABLE]["detail"]["copy"]["rule_changes"]
        assert got["st"] == {"invalid ENUM '' → NULL": 4}, got
        with pg_connect() as conn:
            n = conn.execute(f"SELECT count(*) FROM {quote_pg(schema)}.{quote_pg(HOSTILE_TABLE)} WHERE st IS NULL").fetchone()[0]
        assert n == 4
    finally:
        _cleanup(db, schema)


# ------------------------------------------------------------------------------ 5. the report tells the verdict's truth

def _report_rows(run_id: str) -> dict[str, str]:
    """table → its row of the report's table list (HTML)."""
    import html
    import re

    from cutover.reports import report_dir

    page = (report_dir(run_id) / "type_mapping.html").read_text(encoding="utf-8")
    tables = page.split("<h2>Tables</h2>", 1)[1].split("</table>", 1)[0]
    out = {}
    for row in re.findall(r"<tr><td>(.*?)</tr>", tables, re.S):
        name = html.unescape(re.sub(r"<[^>]+>", "", row.split("</td>", 1)[0]))
        out[name] = row
    return out


def test_the_report_never_shows_a_table_with_dead_letters_green(rules_run: dict[str, Any]) -> None:
    import html

    from cutover.reports import report_dir

    rows = _report_rows(rules_run["run_id"])
    hostile, loose = rows[HOSTILE_TABLE], rows["loose"]
    assert "class='ok'" not in hostile and "class='warn'>verified — 1 row(s) in dead letters" in hostile, hostile
    assert "class='ok'>verified<" in loose, loose
    # the figures are the verification's, as recorded on the units: 40 MySQL rows, 39 in PostgreSQL
    units = _units(rules_run["run_id"])
    cons = units[HOSTILE_TABLE]["detail"]["verify"]["consistency"]
    assert (cons["source_rows"], cons["target_rows"]) == (40, 39)
    assert "<td>40</td><td>39</td>" in hostile, hostile
    # every rule-changed value: per column on the page, per table in the run's evidence
    page = html.unescape((report_dir(rules_run["run_id"]) / "type_mapping.html").read_text(encoding="utf-8"))
    assert "zero date → NULL: 5, partial date → NULL: 4, year 0 → NULL: 2" in page
    assert "invalid ENUM '' kept: 4" in page and "not 0 or 1 → true: 3" in page
    with pg_connect() as conn:
        entry = control.get_run(conn, rules_run["run_id"])["evidence"]["type_mapping"]
    assert entry["rule_changes"][HOSTILE_TABLE] == EXPECTED_CHANGES
    assert entry["dead_letters"] == {HOSTILE_TABLE: 1}


# ------------------------------------------------------------------------------ 3. keys compared as MySQL compares them

#: key changes MySQL sees as the same key (utf8mb4_general_ci: case- and accent-insensitive, PAD SPACE)
KEY_CHANGES = [("alpha-1", "ALPHA-1"), ("cafe", "café"), ("pad", "pad  "), ("Mixed ", "mIXED")]


def _keys_table(db: str) -> None:
    t = f"{{db}}.{quote_mysql(HOSTILE_TABLE)}"
    _mysql(db, "CREATE DATABASE {db}",
           f"CREATE TABLE {t} ({quote_mysql(HOSTILE_COLUMN)} VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci "
           "NOT NULL PRIMARY KEY, v INT NOT NULL, "
           "updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))",
           f"INSERT INTO {t} ({quote_mysql(HOSTILE_COLUMN)}, v, updated_at) VALUES ('alpha-1', 1, '2020-01-01'), "
           "('cafe', 2, '2020-01-01'), ('pad', 3, '2020-01-01'), ('Mixed ', 4, '2020-01-01'), ('keep', 5, '2020-01-01')")


def _exact_keys(db: str, schema: str) -> tuple[list[str], list[str]]:
    """(MySQL's keys, PostgreSQL's keys), each byte for byte, sorted by their UTF-8 bytes."""
    with mysql_connect(MYSQL_SOURCE, database=db) as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT CAST({quote_mysql(HOSTILE_COLUMN)} AS BINARY) FROM {quote_mysql(HOSTILE_TABLE)}"
                    .replace("%", "%%"), ())
        src = sorted(bytes(r[0]).decode("utf-8") for r in cur.fetchall())
    with pg_connect() as conn:
        tgt = [r[0] for r in conn.execute(f"SELECT {quote_pg(HOSTILE_COLUMN)} FROM {quote_pg(schema)}.{quote_pg(HOSTILE_TABLE)}")]
    return src, sorted(tgt, key=lambda x: x.encode("utf-8"))


@pytest.mark.parametrize("mode", ["binlog", "watermark"])
def test_a_key_changed_only_in_case_accents_or_trailing_spaces_leaves_no_stale_row(mode: str) -> None:
    from cutover.mysql_to_postgres import sync
    from cutover.mysql_to_postgres.readonly import ensure_read_only_user
    from cutover.mysql_to_postgres.verify import compare_table

    tag = _tag()
    db, schema = f"m2pkey_{tag}", f"m2pkey_{tag} {HOSTILE_COLUMN}"
    _cleanup(db, schema)
    try:
        _keys_table(db)
        ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [db])
        params = {"source_database": db, "target_schema": schema, "gx_gate": False, "sync_mode": mode}
        rep = run_build(SPEC, params, f"m2pkey-{tag}")
        assert rep.green, rep.reason
        cfg = MysqlToPostgresConfig.from_params(params)
        t = f"{quote_mysql(HOSTILE_TABLE)}"
        _mysql(db, *(f"UPDATE {{db}}.{t} SET {quote_mysql(HOSTILE_COLUMN)} = '{new}', v = v + 10 "
                     f"WHERE {quote_mysql(HOSTILE_COLUMN)} = '{old}'" for old, new in KEY_CHANGES))
        src, _ = _exact_keys(db, schema)
        assert src == sorted(["ALPHA-1", "café", "pad  ", "mIXED", "keep"], key=lambda x: x.encode()), src
        caught = sync.sync_units(cfg)
        assert mode in caught, caught
        src, tgt = _exact_keys(db, schema)
        assert tgt == src, (tgt, src)  # every old spelling gone, every new one there, byte for byte
        with pg_connect() as conn:
            vals = dict(conn.execute(f"SELECT {quote_pg(HOSTILE_COLUMN)}, v FROM {quote_pg(schema)}.{quote_pg(HOSTILE_TABLE)}"))
        assert vals == {"ALPHA-1": 11, "café": 12, "pad  ": 13, "mIXED": 14, "keep": 5}, vals
        tm = next(iter(sync.built_units(cfg).items()))
        res = compare_table(cfg, tm[1], tm[0], f"m2pkey-check-{tag}")
        assert res.passed, res.failures
    finally:
        _cleanup(db, schema)


def test_the_sync_counts_the_values_a_rule_changed_in_the_rows_it_applied(rules_run: dict[str, Any]) -> None:
    from cutover.mysql_to_postgres import sync

    t = f"{{db}}.{quote_mysql(HOSTILE_TABLE)}"
    _mysql(rules_run["db"], "SET SESSION sql_mode = ''",
           f"INSERT INTO {t} (id, {quote_mysql(HOSTILE_COLUMN)}, seen, stamp, st, must, flag) VALUES "
           "(101, '0000-00-00', NULL, NULL, 'a', '2020-01-01', 7), (102, '2020-02-00', NULL, NULL, 'zz', '2020-01-01', 0)",
           "DO 0")
    cfg = MysqlToPostgresConfig.from_params({"source_database": rules_run["db"], "target_schema": rules_run["schema"]})
    got = sync.sync_units(cfg)["binlog"]
    assert got["rule_changes"][HOSTILE_TABLE] == {
        HOSTILE_COLUMN: {"zero date → NULL": 1, "partial date → NULL": 1}, "st": {"invalid ENUM '' kept": 1},
        "flag": {"not 0 or 1 → true": 1}}, got
