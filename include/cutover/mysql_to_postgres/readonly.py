"""Proof that the MySQL source connection cannot write, and the read-only user the demo and tests use.

:func:`prove_read_only` runs two checks at the start of every mysql_to_postgres run:

1. **grants** — ``SHOW GRANTS FOR CURRENT_USER()``: no privilege that changes data or schema
   (``INSERT``, ``UPDATE``, ``DELETE``, ``CREATE``, ``DROP``, ``ALTER``, ``INDEX``, ``TRIGGER``,
   ``ALL PRIVILEGES``, ``SUPER`` …) on any level (global, the database, a table);
2. **a harmless write attempt** — ``UPDATE <table> SET <first column> = <first column> WHERE FALSE``
   on one of the planned tables, inside a transaction that is rolled back: it changes nothing, but
   the server checks the UPDATE privilege first, so a user who could write gets no error.

A user passes only when both say it cannot write. Replication privileges (``REPLICATION SLAVE``,
``REPLICATION CLIENT`` / ``BINLOG MONITOR``, needed to read the binary log) are not writes.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from cutover.connections import mysql_connect
from cutover.identifiers import quote_mysql
from cutover.mysql_schema import text_of

log = logging.getLogger(__name__)

#: privileges that let a user change data or schema
WRITE_PRIVILEGES = (
    "ALL PRIVILEGES", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX", "TRIGGER",
    "CREATE ROUTINE", "ALTER ROUTINE", "EVENT", "SUPER", "FILE", "CREATE VIEW", "DELETE HISTORY", "LOCK TABLES",
    "REFERENCES", "CREATE USER", "GRANT OPTION", "EXECUTE", "CREATE TABLESPACE",
)
#: MySQL error codes meaning "not allowed" for the write attempt
DENIED = {1044, 1142, 1143, 1227, 1290, 1792}


class WritableSourceError(PermissionError):
    """The source connection's user can write; the message lists how (grants, the attempt's result)."""


def _grant_privileges(grant: str) -> list[str]:
    m = re.match(r"GRANT (.+?) ON ", grant, re.I | re.S)
    if not m:
        return []
    privs = []
    for p in re.split(r",\s*(?![^()]*\))", m.group(1)):
        p = re.sub(r"\(.*\)", "", p).strip().upper()  # column-level lists
        privs.append(p)
    return privs


def write_grants(grants: list[str]) -> list[str]:
    """The grant lines of ``grants`` (``SHOW GRANTS`` text) that allow a write (``GRANT USAGE`` allows none)."""
    out = []
    for g in grants:
        if g.upper().startswith("GRANT PROXY"):
            continue
        privs = _grant_privileges(g)
        if any(p in WRITE_PRIVILEGES for p in privs) or "WITH GRANT OPTION" in g.upper():
            out.append(g)
    return out


def prove_read_only(conn_id: str, database: str, table: str | None, column: str | None) -> dict[str, Any]:
    """Prove ``conn_id``'s user cannot write; return ``{"user", "grants", "write_grants", "attempt"}``.

    ``table`` / ``column``: where the harmless ``UPDATE … WHERE FALSE`` is tried (None: no table
    planned yet, only the grants are checked). Raises :class:`WritableSourceError` when the grants
    allow a write or the attempt succeeded.
    """
    with mysql_connect(conn_id, database="") as conn:
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_USER()")
        user = text_of(cur.fetchone()[0])
        cur.execute("SHOW GRANTS FOR CURRENT_USER()")
        grants = [text_of(r[0]) for r in cur.fetchall()]
        bad = write_grants(grants)
        attempt = "not tried (no table)"
        if table and column:
            q = f"{quote_mysql(database)}.{quote_mysql(table)}"
            try:
                cur.execute("START TRANSACTION")
                cur.execute(f"UPDATE {q} SET {quote_mysql(column)} = {quote_mysql(column)} WHERE FALSE".replace("%", "%%"), ())
                attempt = "UPDATE … WHERE FALSE was allowed"
            except Exception as exc:  # noqa: BLE001 - the refusal is what we want
                code = getattr(exc, "args", [None])[0]
                if code not in DENIED:
                    raise
                attempt = f"refused ({code}: {exc.args[1] if len(exc.args) > 1 else exc})"
            finally:
                conn.rollback()
    result = {"user": user, "grants": grants, "write_grants": bad, "attempt": attempt}
    if bad or attempt.endswith("allowed"):
        raise WritableSourceError(
            f"the MySQL user {user} of connection {conn_id!r} can write — "
            + ("; ".join(f"grant: {g}" for g in bad) or "no write grant listed")
            + f"; harmless write attempt: {attempt}. Use a read-only user (SELECT, SHOW VIEW, REPLICATION SLAVE, "
            "REPLICATION CLIENT) or set the Param allow_writable_source.")
    log.info("source %s is read-only: %s; write attempt %s", user, "; ".join(grants), attempt)
    return result


def ensure_read_only_user(admin_conn_id: str, user: str, databases: list[str], *, host: str = "%") -> None:
    """Create (or re-grant) ``user``@``host`` with no password and only SELECT / SHOW VIEW on
    ``databases`` plus the replication privileges the binary-log reader needs (demo, tests)."""
    with mysql_connect(admin_conn_id, database="") as conn:
        cur = conn.cursor()
        account = f"{quote_mysql(user).replace('`', chr(39))}@{quote_mysql(host).replace('`', chr(39))}"
        cur.execute(f"CREATE USER IF NOT EXISTS {account}")
        cur.execute(f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {account}")
        for db in databases:
            cur.execute(f"GRANT SELECT, SHOW VIEW ON {quote_mysql(db)}.* TO {account}".replace("%", "%%"), ())
