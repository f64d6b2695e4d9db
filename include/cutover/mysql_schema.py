"""What a MySQL database holds, read from ``information_schema`` and ``SHOW CREATE``: the ground of the
tenant split's plan, target DDL and schema diff report, and of mysql_to_postgres' type mapping.

:func:`read_database` returns a :class:`DatabaseSchema`: per base table its columns (in order, with
the full column type, nullability, default and extra such as ``auto_increment`` or ``on update
current_timestamp()``), its primary key, unique and secondary indexes, foreign keys, triggers, the
exact ``SHOW CREATE TABLE`` text and its AUTO_INCREMENT counter; and the database's views and events
with their exact ``SHOW CREATE`` definitions. Every name is read as data and quoted with
:func:`cutover.identifiers.quote_mysql` when it goes back into SQL.

Works on MariaDB 10.x and MySQL 5.7 / 8.x (only columns both have are read). The cursor is a
MySQLdb (mysqlclient) cursor; nothing is written.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from cutover.identifiers import quote_mysql


@dataclass(frozen=True)
class Column:
    """One column: ``column_type`` is the full type (``decimal(12,2)``, ``enum('a','b')``, ``int(11) unsigned``)."""

    name: str
    column_type: str
    data_type: str
    nullable: bool
    default: str | None
    extra: str
    charset: str | None = None
    collation: str | None = None
    #: the expression of a generated column (``None``: an ordinary column)
    generation: str | None = None

    @property
    def auto_increment(self) -> bool:
        """The column takes the table's AUTO_INCREMENT counter."""
        return "auto_increment" in self.extra.lower()


@dataclass(frozen=True)
class Index:
    """An index: ``kind`` is ``primary``, ``unique`` or ``index`` (also fulltext / spatial by name)."""

    name: str
    columns: tuple[str, ...]
    kind: str
    #: per column, the indexed prefix length in characters (``None``: the whole value); empty when unknown
    sub_parts: tuple[int | None, ...] = ()


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key of a table onto ``ref_table`` (same database) and what it does on delete / update."""

    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str = "RESTRICT"
    on_update: str = "RESTRICT"


@dataclass(frozen=True)
class Trigger:
    """A trigger with its exact ``SHOW CREATE TRIGGER`` statement (what a restore replays)."""

    name: str
    table: str
    timing: str
    event: str
    statement: str
    definition: str
    sql_mode: str = ""


@dataclass(frozen=True)
class Routine:
    """A view or an event with its exact ``SHOW CREATE`` statement."""

    name: str
    kind: str  # "view" | "event"
    definition: str
    status: str = ""


@dataclass
class TableSchema:
    """A base table as the source (or target) has it."""

    name: str
    columns: list[Column]
    indexes: list[Index] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    create_sql: str = ""
    auto_increment: int | None = None
    rows_estimate: int = 0
    engine: str = ""

    @property
    def column_names(self) -> list[str]:
        """Column names in table order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        """A column by name (MySQL column names compare case-insensitively)."""
        low = name.lower()
        return next((c for c in self.columns if c.name.lower() == low), None)

    @property
    def primary_key(self) -> tuple[str, ...]:
        """The primary key's columns (empty: none)."""
        return next((i.columns for i in self.indexes if i.kind == "primary"), ())

    def copy_key(self) -> tuple[str, ...]:
        """The key a keyset copy walks: the primary key, else the first unique index over NOT NULL
        columns (empty: the table has neither, and is copied in one transaction per tenant)."""
        if self.primary_key:
            return self.primary_key
        for idx in self.indexes:
            if idx.kind == "unique" and all((c := self.column(n)) is not None and not c.nullable for n in idx.columns):
                return idx.columns
        return ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (the plan's detail, the diff report)."""
        return asdict(self)


@dataclass
class DatabaseSchema:
    """The base tables, views and events of one database."""

    database: str
    tables: dict[str, TableSchema] = field(default_factory=dict)
    views: list[Routine] = field(default_factory=list)
    events: list[Routine] = field(default_factory=list)


def _rows(cur: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    cur.execute(sql, params or None)  # no parameters: no %-formatting (a table named `100%` is a name)
    return list(cur.fetchall())


def text_of(v: Any) -> str:
    """A catalog value as text (MySQLdb returns some ``information_schema`` columns as bytes)."""
    return v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else str(v)



_AUTO_INC = re.compile(r"\s+AUTO_INCREMENT=\d+", re.IGNORECASE)


def strip_auto_increment(create_sql: str) -> str:
    """``SHOW CREATE TABLE`` text without its table option ``AUTO_INCREMENT=n`` (the target's counter
    follows the rows it receives instead of the shared source's)."""
    return _AUTO_INC.sub("", create_sql)


def table_names(cur: Any, database: str) -> list[str]:
    """The base tables of ``database`` (one cheap query), sorted."""
    return sorted(text_of(r[0]) for r in _rows(
        cur, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
        (database,)))


def read_database(cur: Any, database: str, *, tables: set[str] | None = None, with_create: bool = True) -> DatabaseSchema:
    """Read ``database``'s base tables (all, or only ``tables``: then the catalog queries are narrowed to
    them and views and events are not read), views and events.

    Raises ``LookupError`` when the database does not exist. ``with_create`` also reads each table's
    ``SHOW CREATE TABLE`` (one statement per table).
    """
    if not _rows(cur, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,)):
        raise LookupError(f"database {database!r} does not exist on the MySQL server")
    out = DatabaseSchema(database)
    only = sorted(tables) if tables is not None else None
    narrow = "" if only is None else " AND TABLE_NAME IN (" + ", ".join(["%s"] * len(only)) + ")" if only else " AND FALSE"
    narrow_args: tuple[Any, ...] = tuple(only or ())
    for name, rows_est, auto_inc, engine in _rows(
        cur,
        f"""SELECT TABLE_NAME, COALESCE(TABLE_ROWS, 0), AUTO_INCREMENT, COALESCE(ENGINE, '')
           FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'{narrow} ORDER BY TABLE_NAME""",
        (database, *narrow_args),
    ):
        name = text_of(name)
        if tables is None or name in tables:
            out.tables[name] = TableSchema(name, [], rows_estimate=int(rows_est), engine=text_of(engine),
                                           auto_increment=int(auto_inc) if auto_inc is not None else None)
    for t, c, ctype, dtype, nullable, default, extra, charset, coll, gen in _rows(
        cur,
        f"""SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA,
                  CHARACTER_SET_NAME, COLLATION_NAME, GENERATION_EXPRESSION
           FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s{narrow} ORDER BY TABLE_NAME, ORDINAL_POSITION""",
        (database, *narrow_args),
    ):
        tab = out.tables.get(text_of(t))
        if tab is not None:
            tab.columns.append(Column(text_of(c), text_of(ctype), text_of(dtype), text_of(nullable) == "YES",
                                      None if default is None else text_of(default), text_of(extra or ""),
                                      None if charset is None else text_of(charset), None if coll is None else text_of(coll),
                                      text_of(gen) if gen and "GENERATED" in text_of(extra or "").upper() else None))
    idx: dict[tuple[str, str], tuple[list[str], str, list[int | None]]] = {}
    for t, iname, non_unique, col, itype, sub in _rows(
        cur,
        f"""SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, INDEX_TYPE, SUB_PART FROM information_schema.STATISTICS
           WHERE TABLE_SCHEMA = %s{narrow} ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX""",
        (database, *narrow_args),
    ):
        t, iname = text_of(t), text_of(iname)
        if t not in out.tables:
            continue
        kind = "primary" if iname == "PRIMARY" else ("unique" if int(non_unique) == 0 else
                                                     (text_of(itype).lower() if text_of(itype) in ("FULLTEXT", "SPATIAL") else "index"))
        entry = idx.setdefault((t, iname), ([], kind, []))
        entry[0].append(text_of(col))
        entry[2].append(None if sub is None else int(sub))
    for (t, iname), (cols, kind, subs) in idx.items():
        out.tables[t].indexes.append(Index(iname, tuple(cols), kind, tuple(subs)))
    for tab in out.tables.values():
        tab.indexes.sort(key=lambda i: (i.kind != "primary", i.name))
    fks: dict[tuple[str, str], dict[str, Any]] = {}
    for t, cname, col, rtable, rcol in _rows(
        cur,
        f"""SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME
           FROM information_schema.KEY_COLUMN_USAGE
           WHERE TABLE_SCHEMA = %s AND REFERENCED_TABLE_NAME IS NOT NULL{narrow}
           ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION""",
        (database, *narrow_args),
    ):
        fk = fks.setdefault((text_of(t), text_of(cname)), {"cols": [], "ref": text_of(rtable), "rcols": []})
        fk["cols"].append(text_of(col))
        fk["rcols"].append(text_of(rcol))
    rules = {(text_of(t), text_of(c)): (text_of(d), text_of(u)) for t, c, d, u in _rows(
        cur,
        f"""SELECT TABLE_NAME, CONSTRAINT_NAME, DELETE_RULE, UPDATE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS
           WHERE CONSTRAINT_SCHEMA = %s{narrow}""",
        (database, *narrow_args),
    )}
    for (t, cname), fk in sorted(fks.items()):
        if t in out.tables:
            d, u = rules.get((t, cname), ("RESTRICT", "RESTRICT"))
            out.tables[t].foreign_keys.append(ForeignKey(cname, tuple(fk["cols"]), fk["ref"], tuple(fk["rcols"]), d, u))
    for name, table, timing, event, statement in _rows(
        cur,
        f"""SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_STATEMENT
           FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s{narrow.replace("TABLE_NAME", "EVENT_OBJECT_TABLE")}
           ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER, TRIGGER_NAME""",
        (database, *narrow_args),
    ):
        tab = out.tables.get(text_of(table))
        if tab is None:
            continue
        row = _rows(cur, f"SHOW CREATE TRIGGER {quote_mysql(database)}.{quote_mysql(text_of(name))}")[0]
        tab.triggers.append(Trigger(text_of(name), tab.name, text_of(timing), text_of(event), text_of(statement),
                                    text_of(row[2]), text_of(row[1])))
    if with_create:
        for tab in out.tables.values():
            tab.create_sql = text_of(_rows(cur, f"SHOW CREATE TABLE {quote_mysql(database)}.{quote_mysql(tab.name)}")[0][1])
    if only is not None:
        return out
    for (name,) in _rows(cur, "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
                         (database,)):
        row = _rows(cur, f"SHOW CREATE VIEW {quote_mysql(database)}.{quote_mysql(text_of(name))}")[0]
        out.views.append(Routine(text_of(name), "view", text_of(row[1])))
    for name, status in _rows(cur, "SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s "
                                   "ORDER BY EVENT_NAME", (database,)):
        row = _rows(cur, f"SHOW CREATE EVENT {quote_mysql(database)}.{quote_mysql(text_of(name))}")[0]
        out.events.append(Routine(text_of(name), "event", text_of(row[3]), text_of(status)))
    return out
