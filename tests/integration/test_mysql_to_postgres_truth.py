"""mysql_to_postgres truth and safety (issue #19) on the real MariaDB and PostgreSQL: the read-only proof
sees roles and probes every kind of write; every value a rule changes is counted per column; an unmappable
column fails its own unit only; override values are checked at plan; the type-mapping report never shows a
table that lost rows to dead letters as green."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cutover.connections import MYSQL_SOURCE, mysql_connect, pg_connect
from cutover.identifiers import quote_mysql, quote_pg
from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
from cutover.mysql_to_postgres.readonly import WritableSourceError, prove_read_only
from cutover.samples.hostile import HOSTILE_NAMES

pytestmark = pytest.mark.integration

#: a hostile table name MySQL accepts (quote, semicolon, comment) and a hostile column name
HOSTILE_TABLE = next(n for n in HOSTILE_NAMES if "DROP" in n)
HOSTILE_COLUMN = "100%"


def _tag() -> str:
    return uuid.uuid4().hex[:8]


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
