"""Proof that the MySQL source connection cannot write, and the read-only user the demo and tests use.

:func:`prove_read_only` runs two checks at the start of every mysql_to_postgres run; a user passes only
when both say it cannot write:

1. **effective grants** — the user's own grants (``SHOW GRANTS FOR CURRENT_USER()``) **and those of every
   role it holds**, enabled or not (a user can ``SET ROLE`` any role granted to it): the roles come from
   ``information_schema.APPLICABLE_ROLES`` (MariaDB and MySQL 8; the ``GRANT `role` TO …`` lines of
   ``SHOW GRANTS`` where that view is missing), their grants from ``SHOW GRANTS FOR <role>`` (MariaDB,
   nested roles included) or ``SHOW GRANTS FOR CURRENT_USER() USING <roles>`` (MySQL 8), expanded
   recursively, and ``SHOW GRANTS`` of the session (the enabled roles, expanded by the server). No
   privilege that changes data or schema (``INSERT``, ``UPDATE``, ``DELETE``, ``CREATE``, ``DROP``,
   ``ALTER``, ``INDEX``, ``TRIGGER``, ``ALL PRIVILEGES``, ``SUPER`` …) may appear on any level (global,
   the database, a table, a column) nor ``WITH GRANT OPTION``;
2. **harmless write attempts** on one of the planned tables, each inside a transaction that is rolled
   back and each a statement that changes nothing even when allowed — ``INSERT INTO t (c) SELECT c FROM
   t WHERE FALSE``, ``UPDATE t SET c = c WHERE FALSE``, ``DELETE FROM t WHERE FALSE`` — and a DDL that
   fails before it does anything: ``CREATE TABLE <the planned table> (…)`` is refused with "command
   denied" (1142) without the CREATE privilege and with "table exists" (1050) with it; nothing is
   created, nothing reaches the binary log. The server checks the privilege (of the user and its
   enabled roles) before anything else, so a user who could write gets no "denied" error.

Replication privileges (``REPLICATION SLAVE``, ``REPLICATION CLIENT`` / ``BINLOG MONITOR``, needed to read
the binary log) are not writes.
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
    "ALL PRIVILEGES", "ALL", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX", "TRIGGER",
    "CREATE ROUTINE", "ALTER ROUTINE", "EVENT", "SUPER", "FILE", "CREATE VIEW", "DELETE HISTORY", "LOCK TABLES",
    "REFERENCES", "CREATE USER", "GRANT OPTION", "EXECUTE", "CREATE TABLESPACE", "CREATE TEMPORARY TABLES",
    "CREATE ROLE", "DROP ROLE", "SET USER", "SYSTEM_USER", "READ_ONLY ADMIN", "CONNECTION ADMIN",
)
#: MySQL error codes meaning "not allowed" for a write attempt
DENIED = {1044, 1045, 1142, 1143, 1227, 1290, 1792, 1370}
#: the answer of a CREATE TABLE over an existing table: the privilege was there (nothing was created)
TABLE_EXISTS = 1050
#: roles expanded at most this deep (a cycle cannot be granted, but a bound costs nothing)
MAX_ROLE_DEPTH = 16

_ROLE_GRANT = re.compile(r"^GRANT\s+((?:`(?:[^`]|``)+`(?:@`(?:[^`]|``)*`)?\s*,?\s*)+)\s+TO\s+", re.I)
_ROLE_NAME = re.compile(r"`((?:[^`]|``)+)`(?:@`((?:[^`]|``)*)`)?")


class WritableSourceError(PermissionError):
    """The source connection's user can write; the message lists how (grants, the attempts' results)."""


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


def granted_roles(grants: list[str]) -> list[tuple[str, str]]:
    """The roles ``(name, host)`` granted by ``GRANT `role`[@`host`] TO …`` lines of ``SHOW GRANTS`` text
    (host ``""`` for a MariaDB role; MySQL 8 roles have a host, default ``%``)."""
    out: list[tuple[str, str]] = []
    for g in grants:
        m = _ROLE_GRANT.match(g.strip())
        if not m or re.match(r"GRANT .+? ON ", g, re.I | re.S):
            continue
        for name, host in _ROLE_NAME.findall(m.group(1)):
            out.append((name.replace("``", "`"), (host or "").replace("``", "`")))
    return out


def _account(name: str, host: str) -> str:
    """``'name'`` or ``'name'@'host'`` as a string literal account name."""
    esc = lambda s: "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"  # noqa: E731
    return esc(name) + (f"@{esc(host)}" if host else "")


def _show(cur: Any, sql: str) -> list[str] | None:
    """Lines of a ``SHOW GRANTS`` statement, or None when the server refuses it (no such syntax, no right)."""
    try:
        cur.execute(sql.replace("%", "%%"), ())
    except Exception as exc:  # noqa: BLE001 - a refusal: the caller tries another way
        log.debug("%s: %s", sql, exc)
        return None
    return [text_of(r[0]) for r in cur.fetchall()]


def effective_grants(cur: Any) -> tuple[list[str], list[str]]:
    """The grant lines that apply to the session's user, with every role it holds expanded recursively;
    returns ``(grant lines, role names)``.

    Roles: ``information_schema.APPLICABLE_ROLES`` (every role granted to the user or to one of its
    roles, default or not) plus the ``GRANT `role` TO`` lines found on the way. Grants of a role:
    ``SHOW GRANTS FOR <role>`` (MariaDB: a role granted to the user, nested roles included), else
    ``SHOW GRANTS FOR CURRENT_USER() USING <role>`` (MySQL 8). The session's own ``SHOW GRANTS`` (its
    enabled roles, expanded by the server) is added too, and a role MariaDB shows only while enabled is
    enabled for the look (``SET ROLE``: the session is changed, so give this function a connection of its
    own). A role whose grants cannot be read at all is
    listed as ``"<role>: grants not readable"``, which :func:`prove_read_only` treats as a possible write.
    """
    lines: list[str] = list(_show(cur, "SHOW GRANTS FOR CURRENT_USER()") or [])
    lines += [g for g in _show(cur, "SHOW GRANTS") or [] if g not in lines]
    roles: dict[tuple[str, str], None] = dict.fromkeys(granted_roles(lines))
    try:
        cur.execute("SELECT * FROM information_schema.APPLICABLE_ROLES")
        names = [d[0].upper() for d in cur.description]
        for row in cur.fetchall():
            r = dict(zip(names, row, strict=False))
            roles.setdefault((text_of(r["ROLE_NAME"]), text_of(r.get("ROLE_HOST") or "")), None)
    except Exception as exc:  # noqa: BLE001 - MySQL 5.7 has no roles
        log.debug("APPLICABLE_ROLES: %s", exc)
    seen: set[tuple[str, str]] = set()
    via_role: set[str] = set()  # roles named in a readable role's grants (MariaDB lists their grants there)
    unreadable: list[str] = []
    for _ in range(MAX_ROLE_DEPTH):
        todo = [r for r in roles if r not in seen]
        if not todo:
            break
        for role in todo:
            seen.add(role)
            got = _show(cur, f"SHOW GRANTS FOR {_account(*role)}")
            if got is None:
                got = _show(cur, f"SHOW GRANTS FOR CURRENT_USER() USING {_account(role[0], role[1] or '%')}")
            if got is None:  # MariaDB shows a role's grants only while it is enabled: enable it in this session
                try:
                    cur.execute(f"SET ROLE {_account(*role)}".replace("%", "%%"), ())
                    got = _show(cur, "SHOW GRANTS")
                except Exception as exc:  # noqa: BLE001 - not settable: unreadable
                    log.debug("SET ROLE %s: %s", role[0], exc)
            if got is None:
                unreadable.append(role[0])
                continue
            lines += [g for g in got if g not in lines]
            for sub in granted_roles(got):
                via_role.add(sub[0])
                roles.setdefault(sub, None)
    lines += [f"{name}: grants not readable" for name in unreadable if name not in via_role]
    return lines, [name for name, _ in roles]


def _attempt(cur: Any, conn: Any, sql: str, *, transaction: bool = True) -> str:
    """Run one harmless write and say what happened: ``allowed …`` (it ran, or failed after the privilege
    check: a "table exists", a missing default), or ``refused (code: message)`` (a privilege error)."""
    try:
        if transaction:
            cur.execute("START TRANSACTION")
        cur.execute(sql.replace("%", "%%"), ())
        return "allowed"
    except Exception as exc:  # noqa: BLE001 - the refusal is what we want
        code = getattr(exc, "args", [None])[0]
        if not isinstance(code, int):
            raise
        if code == TABLE_EXISTS:
            return "allowed (the table exists: nothing created)"
        if code not in DENIED:  # the server checks privileges first: any later error means it was allowed
            return f"allowed (past the privilege check: {code}: {exc.args[1] if len(exc.args) > 1 else exc})"
        return f"refused ({code}: {exc.args[1] if len(exc.args) > 1 else exc})"
    finally:
        if transaction:
            conn.rollback()


def write_attempts(cur: Any, conn: Any, database: str, table: str, column: str) -> dict[str, str]:
    """INSERT, UPDATE, DELETE (each changing nothing, each rolled back) and CREATE TABLE over the existing
    ``table`` (refused or "exists": nothing created); returns ``{statement: outcome}``."""
    q = f"{quote_mysql(database)}.{quote_mysql(table)}"
    c = quote_mysql(column)
    out = {
        "INSERT": _attempt(cur, conn, f"INSERT INTO {q} ({c}) SELECT {c} FROM {q} WHERE FALSE"),
        "UPDATE": _attempt(cur, conn, f"UPDATE {q} SET {c} = {c} WHERE FALSE"),
        "DELETE": _attempt(cur, conn, f"DELETE FROM {q} WHERE FALSE"),
        # DDL commits implicitly: outside a transaction, and a statement that fails whatever the privilege
        "CREATE": _attempt(cur, conn, f"CREATE TABLE {q} (cutover_probe INT)", transaction=False),
    }
    return out


def prove_read_only(conn_id: str, database: str, table: str | None, column: str | None) -> dict[str, Any]:
    """Prove ``conn_id``'s user cannot write; return ``{"user", "roles", "grants", "write_grants",
    "attempts", "attempt"}`` (``attempt``: one line summing up the attempts).

    ``table`` / ``column``: where the harmless writes are tried (None: no table planned yet, only the
    grants are checked). Raises :class:`WritableSourceError` when an effective grant (the user's or a
    role's) allows a write, or a write attempt was allowed.
    """
    with mysql_connect(conn_id, database="") as conn:  # its own session: reading roles may enable them
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_USER()")
        user = text_of(cur.fetchone()[0])
        grants, roles = effective_grants(cur)
    bad = write_grants(grants) + [g for g in grants if g.endswith(": grants not readable")]
    attempts: dict[str, str] = {}
    with mysql_connect(conn_id, database="") as conn:  # a fresh session: the roles a login really has
        cur = conn.cursor()
        if table and column:
            attempts = write_attempts(cur, conn, database, table, column)
    allowed = [s for s, r in attempts.items() if r.startswith("allowed")]
    if not attempts:
        attempt = "not tried (no table)"
    elif allowed:
        attempt = f"{', '.join(allowed)} … WHERE FALSE was allowed"
    else:
        attempt = "refused (" + "; ".join(f"{s}: {r.removeprefix('refused (').rstrip(')')}" for s, r in attempts.items()) + ")"
    result = {"user": user, "roles": roles, "grants": grants, "write_grants": bad, "attempts": attempts,
              "attempt": attempt}
    if bad or allowed:
        raise WritableSourceError(
            f"the MySQL user {user} of connection {conn_id!r} can write"
            + (f" (roles: {', '.join(roles)})" if roles else "") + " — "
            + ("; ".join(f"grant: {g}" for g in bad) or "no write grant listed")
            + f"; harmless write attempts: {attempt}. Use a read-only user (SELECT, SHOW VIEW, REPLICATION SLAVE, "
            "REPLICATION CLIENT, and no role that adds more) or set the Param allow_writable_source.")
    log.info("source %s is read-only: %s%s; write attempts %s", user, "; ".join(grants),
             f" (roles {', '.join(roles)})" if roles else "", attempt)
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
