"""The target side of a tenant split: each tenant's database, its tables, and the objects set aside.

* **tables** — :func:`table_ddl` turns the source table's ``SHOW CREATE TABLE`` into the target's:
  the new name, foreign keys re-pointed to renamed tables (and left out, with a finding, when they
  point at a dropped table or a shared table that is kept out), ``AUTO_INCREMENT=n`` left out (the
  counter follows the copied ids). Created without triggers.
* **triggers** — MySQL cannot disable a trigger, so a split keeps them *off* the target: the exact
  ``SHOW CREATE TRIGGER`` statements (and their ``sql_mode``) are backed up in
  ``cutover.object_backups`` before the copy, the tables are loaded without them, and
  :func:`restore_triggers` recreates them afterwards and proves each restored definition equal to
  its backup (the catch-up sets them aside again while it applies changes, so an audit trigger
  never fires for a copied or replayed row).
* **views and events** — recreated in each tenant database once its tables are there
  (:func:`restore_routines`), references to the source database and to renamed tables rewritten.
* **foreign keys** — the copy runs with ``FOREIGN_KEY_CHECKS=0`` (units load in parallel, in any
  order); :func:`validate_foreign_keys` then proves every key holds with one anti-join per key.

Every name goes through :func:`cutover.identifiers.quote_mysql`; values go as parameters.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from cutover import control
from cutover.connections import pg_connect
from cutover.identifiers import quote_mysql
from cutover.mysql_schema import Routine, TableSchema, Trigger, strip_auto_increment, text_of
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig

log = logging.getLogger(__name__)

_QID = r"`((?:[^`]|``)*)`"
_REFERENCES = re.compile(r"REFERENCES\s+" + _QID)
_CREATE = re.compile(r"^CREATE\s+TABLE\s+" + _QID, re.IGNORECASE)
_TRIGGER_ON = re.compile(r"(\bTRIGGER\s+.+?\s+(?:BEFORE|AFTER)\s+(?:INSERT|UPDATE|DELETE)\s+ON\s+)(" + _QID + r"|\w+)",
                         re.IGNORECASE | re.DOTALL)
#: the session a target writer runs in: strict (a value that does not fit is an error and a dead
#: letter, never a silent truncation) yet taking zero dates as the permissive source allowed them;
#: an explicit 0 in an AUTO_INCREMENT column stays 0
TARGET_SQL_MODE = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"
#: seconds a target DDL statement waits for a metadata lock held by another session
LOCK_WAIT_S = 60


class TriggerMismatch(RuntimeError):
    """A restored trigger's definition differs from its backup (the message shows both)."""


def _unq(quoted: str) -> str:
    return quoted.replace("``", "`")


def table_ddl(table: TableSchema, target_name: str, renames: dict[str, str | None]) -> tuple[str, list[str]]:
    """The target's ``CREATE TABLE IF NOT EXISTS`` for ``table`` under ``target_name``, and its findings.

    ``renames`` maps each source table to its target table name, or ``None`` when it has none in the
    tenant database (dropped, or shared and kept out): a foreign key onto it is left out (a finding).
    """
    lines = strip_auto_increment(table.create_sql).split("\n")
    m = _CREATE.match(lines[0])
    if m is None:
        raise ValueError(f"unexpected SHOW CREATE TABLE output for {table.name!r}: {lines[0][:80]!r}")
    lines[0] = "CREATE TABLE IF NOT EXISTS " + quote_mysql(target_name) + lines[0][m.end():]
    body, findings = [], []
    for line in lines[1:-1]:
        ref = _REFERENCES.search(line)
        if ref and "FOREIGN KEY" in line:
            parent = _unq(ref.group(1))
            new = renames.get(parent, parent)
            if new is None:
                findings.append(f"foreign key {line.strip().rstrip(',')} left out: {parent!r} has no table in the tenant database")
                continue
            if new != parent:
                line = line[:ref.start()] + "REFERENCES " + quote_mysql(new) + line[ref.end():]
        body.append(line.rstrip(","))
    return lines[0] + "\n" + ",\n".join(body) + "\n" + lines[-1], findings


def trigger_ddl(trigger: Trigger, target_table: str) -> str:
    """A trigger's backed-up statement, ``ON <table>`` pointed at the target table when it was renamed."""
    if target_table == trigger.table:
        return trigger.definition
    return _TRIGGER_ON.sub(lambda m: m.group(1) + quote_mysql(target_table), trigger.definition, count=1)


def session(cur: Any) -> None:
    """A target writer's session: UTC, utf8mb4, strict sql_mode allowing zero dates, FK checks off, and
    DDL that gives up after :data:`LOCK_WAIT_S` seconds of waiting for a metadata lock."""
    cur.execute("SET NAMES utf8mb4")
    cur.execute("SET SESSION time_zone = '+00:00'")
    cur.execute("SET SESSION sql_mode = %s", (TARGET_SQL_MODE,))
    cur.execute("SET SESSION foreign_key_checks = 0")
    # DDL (triggers set aside / restored) waits for other sessions' metadata locks; say so within a
    # minute instead of MySQL's default of a year
    cur.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_S}")


def create_database(cur: Any, database: str, charset: str = "utf8mb4", collation: str | None = None) -> None:
    """``CREATE DATABASE IF NOT EXISTS`` with the source's default character set (and collation)."""
    coll = f" COLLATE {collation}" if collation and re.fullmatch(r"\w+", collation) else ""
    cs = charset if re.fullmatch(r"\w+", charset) else "utf8mb4"
    cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_mysql(database)} CHARACTER SET {cs}{coll}")


def target_triggers(cur: Any, database: str, table: str) -> dict[str, str]:
    """name → ``SHOW CREATE TRIGGER`` statement of the triggers on ``database.table``."""
    cur.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s",
                (database, table))
    out = {}
    for name in [text_of(r[0]) for r in cur.fetchall()]:
        cur.execute(f"SHOW CREATE TRIGGER {quote_mysql(database)}.{quote_mysql(name)}")
        out[name] = text_of(cur.fetchone()[2])
    return out


def backup_triggers(cfg: TenantSplitConfig, unit_key: str, triggers: list[Trigger], target_table: str) -> list[dict[str, str]]:
    """Keep each trigger's exact target statement (and sql_mode) in ``cutover.object_backups`` (first
    backup wins, so a rerun never overwrites it); returns them for the run's evidence."""
    saved = [{"name": t.name, "sql_mode": t.sql_mode, "definition": trigger_ddl(t, target_table)} for t in triggers]
    with pg_connect(cfg.control_conn_id) as conn:
        for s in saved:
            control.backup_object(conn, PIPELINE, unit_key, "trigger", s["name"], s["sql_mode"] + "\n" + s["definition"])
    return saved


def backed_up_triggers(cfg: TenantSplitConfig, unit_key: str) -> dict[str, tuple[str, str]]:
    """name → (sql_mode, statement) of the unit's backed-up triggers (restored or not)."""
    from cutover.control import SCHEMA

    with pg_connect(cfg.control_conn_id) as conn:
        rows = conn.execute(f"SELECT name, definition FROM {SCHEMA}.object_backups WHERE pipeline = %s AND unit_key = %s "
                            "AND kind = 'trigger' ORDER BY name", (PIPELINE, unit_key)).fetchall()
    out = {}
    for name, text in rows:
        mode, _, definition = str(text).partition("\n")
        out[str(name)] = (mode, definition)
    return out


def drop_triggers(cur: Any, database: str, table: str, names: list[str]) -> list[str]:
    """Set triggers aside on the target (their backup must exist); returns the ones that were there."""
    present = target_triggers(cur, database, table)
    dropped = [n for n in names if n in present]
    for n in dropped:
        cur.execute(f"DROP TRIGGER IF EXISTS {quote_mysql(database)}.{quote_mysql(n)}")
    return dropped


def restore_triggers(cur: Any, database: str, table: str, backups: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Recreate the backed-up triggers on ``database.table`` (those missing) and prove each equals its
    backup; returns name → "restored" / "present". Raises :class:`TriggerMismatch` on any difference."""
    present = target_triggers(cur, database, table)
    out = {}
    cur.execute("SELECT @@SESSION.sql_mode")
    mode_before = cur.fetchone()[0]
    try:
        for name, (mode, definition) in sorted(backups.items()):
            if name in present:
                out[name] = "present"
                continue
            cur.execute(f"USE {quote_mysql(database)}")
            cur.execute("SET SESSION sql_mode = %s", (mode,))
            cur.execute(definition)
            out[name] = "restored"
    finally:
        cur.execute("SET SESSION sql_mode = %s", (mode_before,))
    now = target_triggers(cur, database, table)
    for name, (_, definition) in backups.items():
        if now.get(name) != definition:
            raise TriggerMismatch(f"trigger {name!r} on {database}.{table}: restored definition differs from the backup\n"
                                  f"backup:   {definition}\nrestored: {now.get(name)}")
    return out


def rewrite_routine(routine: Routine, source_db: str, target_db: str, renames: dict[str, str | None]) -> str:
    """A view's or event's statement for a tenant database: qualified references to the source database
    point at the tenant database; references to renamed tables use the new names."""
    text = routine.definition.replace(quote_mysql(source_db) + ".", quote_mysql(target_db) + ".")
    for old, new in renames.items():
        if new and new != old:
            text = re.sub(r"(?<![\w`])" + re.escape(quote_mysql(old)) + r"(?![\w`])", quote_mysql(new), text)
    if routine.kind == "view":  # SHOW CREATE VIEW names it `db`.`v` or `v`; recreate idempotently
        text = re.sub(r"^CREATE\s+", "CREATE OR REPLACE ", text, count=1)
    return text


def restore_routines(cur: Any, routines: list[Routine], source_db: str, target_db: str,
                     renames: dict[str, str | None]) -> dict[str, str]:
    """Create the views and events of the source database in a tenant database (replacing views,
    skipping events that exist); returns name → "restored" / "present" / "skipped: <error>"."""
    out: dict[str, str] = {}
    cur.execute(f"USE {quote_mysql(target_db)}")
    cur.execute("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (target_db,))
    events = {text_of(r[0]) for r in cur.fetchall()}
    for r in routines:
        if r.kind == "event" and r.name in events:
            out[f"event {r.name}"] = "present"
            continue
        try:
            cur.execute(rewrite_routine(r, source_db, target_db, renames))
            out[f"{r.kind} {r.name}"] = "restored"
        except Exception as exc:  # noqa: BLE001 - a view over a dropped table: reported, not fatal
            out[f"{r.kind} {r.name}"] = f"skipped: {exc}"
            log.warning("tenant_split: %s %s not restored in %s: %s", r.kind, r.name, target_db, exc)
    return out


def validate_foreign_keys(cur: Any, database: str) -> list[str]:
    """Every foreign key of ``database`` checked with an anti-join (the copy loaded with checks off);
    returns one text per violated key (empty: they all hold)."""
    cur.execute(
        """SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME
           FROM information_schema.KEY_COLUMN_USAGE k
           WHERE k.TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL
           ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION""", (database,))
    fks: dict[tuple[str, str], dict[str, Any]] = {}
    for t, c, col, rt, rc in cur.fetchall():
        fk = fks.setdefault((str(t), str(c)), {"ref": str(rt), "cols": [], "rcols": []})
        fk["cols"].append(str(col))
        fk["rcols"].append(str(rc))
    db = quote_mysql(database)
    problems = []
    for (table, name), fk in fks.items():
        on = " AND ".join(f"p.{quote_mysql(rc)} = c.{quote_mysql(cc)}" for cc, rc in zip(fk["cols"], fk["rcols"], strict=True))
        notnull = " AND ".join(f"c.{quote_mysql(cc)} IS NOT NULL" for cc in fk["cols"])
        cur.execute(f"SELECT COUNT(*) FROM {db}.{quote_mysql(table)} c LEFT JOIN {db}.{quote_mysql(fk['ref'])} p ON {on} "
                    f"WHERE {notnull} AND p.{quote_mysql(fk['rcols'][0])} IS NULL")
        n = int(cur.fetchone()[0])
        if n:
            problems.append(f"{database}.{table}: foreign key {name} → {fk['ref']} broken by {n} row(s)")
    return problems


def auto_increment_state(cur: Any, database: str, table: TableSchema, target_table: str) -> dict[str, Any] | None:
    """For a table with an AUTO_INCREMENT column: the target's next value and the copied maximum;
    raises ``RuntimeError`` when the counter would hand out an id that is already taken."""
    col = next((c for c in table.columns if c.auto_increment), None)
    if col is None:
        return None
    cur.execute(f"SELECT MAX({quote_mysql(col.name)}) FROM {quote_mysql(database)}.{quote_mysql(target_table)}")
    top = cur.fetchone()[0]
    if top is not None:  # InnoDB moves the counter past explicit ids; make sure, and say so
        cur.execute(f"ALTER TABLE {quote_mysql(database)}.{quote_mysql(target_table)} AUTO_INCREMENT = {int(top) + 1}")
    cur.execute(f"ANALYZE TABLE {quote_mysql(database)}.{quote_mysql(target_table)}")  # MySQL 8 caches the figure
    cur.fetchall()
    cur.execute("SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (database, target_table))
    nxt = cur.fetchone()[0]
    if top is not None and (nxt is None or int(nxt) <= int(top)):
        raise RuntimeError(f"{database}.{target_table}: AUTO_INCREMENT is {nxt} but ids up to {top} were copied")
    return {"column": col.name, "max_id": None if top is None else int(top), "next": None if nxt is None else int(nxt)}
