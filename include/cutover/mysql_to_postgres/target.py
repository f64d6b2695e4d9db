"""The PostgreSQL side: create a mapped table, build its keys and indexes after the load, reset identities,
reproduce ``ON UPDATE CURRENT_TIMESTAMP``, add foreign keys once every table is there, drop.

Every name goes through :func:`cutover.identifiers.quote_pg`; trigger functions and constraint names are
derived from the target names and cut to 63 bytes with a hash (:class:`cutover.identifiers.NameMapper`).
"""

from __future__ import annotations

import logging
from typing import Any

from cutover.identifiers import quote_pg
from cutover.mysql_to_postgres.load import target_name
from cutover.mysql_to_postgres.typemap import (
    TableMap,
    create_table_sql,
    derived_name,
    identity_sequence,
    pg_lit,
)

log = logging.getLogger(__name__)


def create_table(conn: Any, tm: TableMap, schema: str) -> None:
    """Drop and create the target table (no keys, no indexes: they are built after the load)."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_pg(schema)}")
    conn.execute(f"DROP TABLE IF EXISTS {target_name(schema, tm)} CASCADE")
    for c in tm.columns:
        if c.identity and c.pg_type.startswith("numeric"):
            seq = f"{quote_pg(schema)}.{quote_pg(identity_sequence(tm, c))}"
            conn.execute(f"DROP SEQUENCE IF EXISTS {seq} CASCADE")
            conn.execute(f"CREATE SEQUENCE {seq} AS bigint")
    conn.execute(create_table_sql(tm, schema))
    for c in tm.columns:
        if c.identity and c.pg_type.startswith("numeric"):
            conn.execute(f"ALTER SEQUENCE {quote_pg(schema)}.{quote_pg(identity_sequence(tm, c))} "
                         f"OWNED BY {target_name(schema, tm)}.{quote_pg(c.target)}")


def build_keys(conn: Any, tm: TableMap, schema: str) -> dict[str, Any]:
    """Primary key, unique and secondary indexes (skipped when one of that name already exists: a re-run).
    Returns ``{"primary_key": bool, "indexes": n}``."""
    tgt = target_name(schema, tm)
    out: dict[str, Any] = {"primary_key": False, "indexes": 0}
    has_pk = conn.execute("SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
                          (tgt,)).fetchone()
    if tm.primary_key and not has_pk:
        cols = ", ".join(quote_pg(tm.column(k).target) for k in tm.primary_key)
        conn.execute(f"ALTER TABLE {tgt} ADD CONSTRAINT {quote_pg(derived_name(tm.target, 'pkey'))} PRIMARY KEY ({cols})")
        out["primary_key"] = True
    for idx in tm.indexes:
        conn.execute(f"CREATE {'UNIQUE ' if idx['unique'] else ''}INDEX IF NOT EXISTS {quote_pg(idx['name'])} "
                     f"ON {tgt} ({', '.join(idx['parts'])})")
        out["indexes"] += 1
    return out


def reset_identity(conn: Any, tm: TableMap, schema: str) -> dict[str, Any]:
    """Set each identity column's sequence past both the copied maximum and MySQL's AUTO_INCREMENT
    counter (the next generated id is ``max(max(id), auto_increment - 1) + 1``)."""
    tgt = target_name(schema, tm)
    out = {}
    for c in tm.columns:
        if not c.identity:
            continue
        q = quote_pg(c.target)
        floor = max(int(tm.auto_increment or 1) - 1, 0)
        qp, tp = q.replace("%", "%%"), tgt.replace("%", "%%")  # names may hold %: the statement has parameters
        row = conn.execute(
            f"SELECT setval(pg_get_serial_sequence(%s, %s), greatest(coalesce(max({qp}), 0), %s, 1)::bigint, "
            f"coalesce(max({qp}), 0) >= 1 OR %s >= 1) FROM {tp}", (tgt, c.target, floor, floor)).fetchone()
        out[c.target] = int(row[0])
    return out


def on_update_triggers(conn: Any, tm: TableMap, schema: str) -> list[str]:
    """One ``BEFORE UPDATE`` trigger per table with ON UPDATE columns, MySQL's rule: when any other
    column changed and the statement left the column as it was, it takes the current time. Rows written
    by Cutover's sync (``cutover.replaying`` = on) keep MySQL's values."""
    cols = [c for c in tm.columns if c.on_update]
    if not cols:
        return []
    tgt = target_name(schema, tm)
    fn = f"{quote_pg(schema)}.{quote_pg(derived_name(tm.target, 'on_update'))}"
    body = []
    for c in cols:
        key = pg_lit(c.target)
        body.append(f"""  IF (to_jsonb(NEW) - {key}) IS DISTINCT FROM (to_jsonb(OLD) - {key})
     AND NEW.{quote_pg(c.target)} IS NOT DISTINCT FROM OLD.{quote_pg(c.target)} THEN
    NEW.{quote_pg(c.target)} := {c.on_update};
  END IF;""")
    conn.execute(f"""CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $cutover$
BEGIN
  IF coalesce(current_setting('cutover.replaying', true), '') = 'on' THEN
    RETURN NEW;
  END IF;
{chr(10).join(body)}
  RETURN NEW;
END
$cutover$""")
    trig = quote_pg(derived_name(tm.target, "on_update"))
    conn.execute(f"DROP TRIGGER IF EXISTS {trig} ON {tgt}")
    conn.execute(f"CREATE TRIGGER {trig} BEFORE UPDATE ON {tgt} FOR EACH ROW EXECUTE FUNCTION {fn}()")
    return [c.target for c in cols]


def add_foreign_keys(conn: Any, tm: TableMap, schema: str, targets: dict[str, str]) -> list[str]:
    """The table's foreign keys onto other copied tables (``targets``: source table → target table),
    added ``NOT VALID`` then validated, deferrable so the sync may apply a transaction's rows in any
    order. Raises the database's error when the data breaks one. Returns the constraint names added."""
    tgt = target_name(schema, tm)
    added = []
    for fk in tm.foreign_keys:
        ref = targets.get(fk["ref_table"])
        if ref is None:
            continue
        exists = conn.execute("SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND conname = %s",
                              (tgt, fk["name"])).fetchone()
        if exists:
            continue
        cols = ", ".join(quote_pg(tm.column(c).target) for c in fk["columns"])
        rcols = ", ".join(quote_pg(c) for c in fk["ref_columns"])
        rules = ""
        for what in ("on_delete", "on_update"):
            rule = str(fk.get(what) or "RESTRICT").upper()
            if rule in ("CASCADE", "SET NULL", "SET DEFAULT"):
                rules += f" {what.replace('_', ' ').upper()} {rule}"
        conn.execute(f"ALTER TABLE {tgt} ADD CONSTRAINT {quote_pg(fk['name'])} FOREIGN KEY ({cols}) "
                     f"REFERENCES {quote_pg(schema)}.{quote_pg(ref)} ({rcols}){rules} DEFERRABLE INITIALLY DEFERRED NOT VALID")
        conn.execute(f"ALTER TABLE {tgt} VALIDATE CONSTRAINT {quote_pg(fk['name'])}")
        added.append(fk["name"])
    return added


def drop_table(conn: Any, tm_target: str, schema: str) -> bool:
    """Drop a target table (and its trigger function); True when it existed."""
    existed = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{quote_pg(schema)}.{quote_pg(tm_target)}",)).fetchone()[0]
    conn.execute(f"DROP TABLE IF EXISTS {quote_pg(schema)}.{quote_pg(tm_target)} CASCADE")
    conn.execute(f"DROP FUNCTION IF EXISTS {quote_pg(schema)}.{quote_pg(derived_name(tm_target, 'on_update'))}()")
    return bool(existed)
