"""MySQL → PostgreSQL type mapping: per column the PostgreSQL type, the value rule, the default, the checks.

Every value crosses as **text rendered by the MySQL server** in PostgreSQL's ``COPY`` text format
(:func:`ColumnMap.render`): decimals as their exact digits (never through a float), doubles as the
shortest text that round-trips, temporal values as ISO text, binary values as hex — so the client only
moves bytes and PostgreSQL's input functions check every value. A value PostgreSQL refuses fails its
row alone (the copy isolates it and writes a dead letter), never the table.

=========================  ===================================  ==============================================
MySQL                      PostgreSQL                           rule
=========================  ===================================  ==============================================
TINYINT / SMALLINT         smallint (UNSIGNED SMALLINT: integer) every value fits; TINYINT(1) stays a number
MEDIUMINT, INT             integer (INT UNSIGNED: bigint)        (override ``type: boolean`` for 0/1 flags)
BIGINT                     bigint (UNSIGNED: numeric(20,0))      18446744073709551615 fits
DECIMAL(p,s)               numeric(p,s)                          exact digits
FLOAT / DOUBLE             real / double precision               FLOAT read as DOUBLE (the exact binary value)
BIT(n)                     bit(n)                                the bit string
ENUM(...)                  text + CHECK (value IN labels)        labels byte-exact; the **empty invalid value**
                                                                 (index 0): ``enum_empty`` rule — dead letter
                                                                 (default), NULL, or kept as ``''``
SET(...)                   text + CHECK (every item a label)     the comma list as MySQL shows it
JSON                       json                                  the text exactly as stored (``jsonb`` by override)
DATE                       date                                  zero / partial dates and year 0: ``zero_date``
DATETIME(p)                timestamp(p) without time zone        wall clock kept, whatever the session zone
TIMESTAMP(p)               timestamp(p) with time zone           the instant (read in UTC)
TIME(p)                    interval                              negative and over 24 h kept
YEAR                       smallint                              0 stays 0
CHAR(n) / VARCHAR(n)       varchar(n)                            CHAR without MySQL's trailing pad (as read)
TEXT types                 text                                  any charset converted to UTF-8 by the server;
                                                                 4-byte UTF-8 kept; invalid UTF-8 or NUL →
                                                                 dead letter (PostgreSQL text holds neither)
BINARY / VARBINARY / BLOB  bytea                                 every byte (NUL included)
generated column           plain column of its type              MySQL's computed values copied
=========================  ===================================  ==============================================

**Zero dates** (``zero_date``): ``null`` (default) — the value becomes NULL and the copy counts it
(a NOT NULL column then refuses the row: a dead letter); ``dead_letter`` — the row is refused.

**Every value a rule changes is counted** (:attr:`ColumnMap.changes`: per column a label and the MySQL
condition true when the rule changes the row's value — zero, partial and year-0 dates made NULL, the
invalid ENUM value made NULL or kept, characters of a non-UTF-8 charset with no UTF-8 equivalent, a
boolean override's numbers other than 0 and 1): MySQL computes one flag string per row in the copy's
own chunk read (:func:`rule_flags_expr`, one character per column) and the copy adds up the rows it wrote (:func:`count_flags`).

**Overrides are checked** when loaded (:func:`check_override`): every option one of
:data:`OVERRIDE_OPTIONS`, every value one it may take; ``zero_date`` / ``enum_empty`` only on columns
they apply to. A column no rule maps raises :class:`TypeMapError` with the override to write; the plan
fails that table's unit only.

**Defaults** stay expressions: ``current_timestamp(6)`` → ``CURRENT_TIMESTAMP(6)`` (timestamptz) or
``LOCALTIMESTAMP(6)`` (timestamp), ``curdate()`` → ``CURRENT_DATE``, ``uuid()`` →
``gen_random_uuid()::text``, literals as literals; anything else is reported and left off (an override
may give ``default:``). ``ON UPDATE CURRENT_TIMESTAMP`` becomes a ``BEFORE UPDATE`` trigger with MySQL's
rule: the column takes the current time when another column changed and the statement did not change
it; rows written by Cutover's own sync do not fire it (``cutover.replaying``).

**Identifiers** keep their exact case and characters (always quoted); a name over 63 bytes is cut with
a hash suffix (:class:`cutover.identifiers.NameMapper`) and the report says so.

**Overrides** (YAML, per table and column)::

    tables:
      orders:
        columns:
          created_at: {type: "timestamp(3)", kind: "timestamp:3"}
          flags: {type: boolean}
          legacy: {skip: true}
          born: {zero_date: dead_letter}
          state: {enum_empty: "null"}
          doc: {type: jsonb}
          token: {type: uuid}
          price: {default: "0"}
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cutover.identifiers import NameMapper, quote_mysql, quote_pg
from cutover.mysql_schema import Column, TableSchema

#: the MySQL text of PostgreSQL COPY's NULL marker (``\N``)
NULL_FIELD = "'\\\\N'"


class TypeMapError(ValueError):
    """A column cannot be mapped (the message names table and column); an override can resolve it."""


def lit(text: str) -> str:
    """A MySQL string literal of ``text`` (sessions run without ``NO_BACKSLASH_ESCAPES``)."""
    out = text.replace("\\", "\\\\").replace("'", "\\'").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{out.replace(chr(0), chr(92) + '0')}'"


def pg_lit(text: str) -> str:
    """A PostgreSQL standard string literal of ``text``."""
    return "'" + text.replace("'", "''") + "'"


def copy_escape(expr: str) -> str:
    """A MySQL expression escaping text ``expr`` for COPY's text format (backslash, tab, LF, CR)."""
    e = f"REPLACE({expr}, {lit(chr(92))}, {lit(chr(92) * 2)})"
    for ch, esc in (("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        e = f"REPLACE({e}, {lit(ch)}, {lit(esc)})"
    return e


_ENUM_RE = re.compile(r"^(enum|set)\((.*)\)$", re.S | re.I)


def enum_labels(column_type: str) -> list[str]:
    """The labels of an ``enum('a','b c')`` / ``set(...)`` column type, byte-exact (``''`` quoting undone)."""
    m = _ENUM_RE.match(column_type.strip())
    if not m:
        raise ValueError(f"not an enum/set type: {column_type!r}")
    body, labels, i = m.group(2), [], 0
    while i < len(body):
        if body[i] != "'":
            i += 1
            continue
        j, buf = i + 1, []
        while j < len(body):
            if body[j] == "'" and j + 1 < len(body) and body[j + 1] == "'":
                buf.append("'")
                j += 2
            elif body[j] == "\\" and j + 1 < len(body):
                buf.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(body[j + 1], body[j + 1]))
                j += 2
            elif body[j] == "'":
                break
            else:
                buf.append(body[j])
                j += 1
        labels.append("".join(buf))
        i = j + 1
    return labels


def _length(column_type: str) -> int | None:
    m = re.search(r"\((\d+)", column_type)
    return int(m.group(1)) if m else None


def _fsp(column_type: str) -> int:
    m = re.search(r"\((\d+)\)", column_type)
    return int(m.group(1)) if m else 0


@dataclass
class ColumnMap:
    """One column's mapping (JSON-able: it travels in the plan's unit detail).

    ``render``: the MySQL expression of the column's COPY field (never NULL: ``\\N`` for NULL);
    ``kind``: the consistency kind to compare it as (``None``: inferred from both types).
    """

    source: str
    target: str
    mysql_type: str
    pg_type: str
    render: str
    nullable: bool = True
    default: str | None = None
    identity: bool = False
    on_update: str | None = None  # the PostgreSQL expression an ON UPDATE column takes
    check: str | None = None
    kind: str | None = None
    rule: str = ""
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: what a rule changes in this column's values: ``[label, MySQL condition]`` pairs, the condition true
    #: exactly when the rule changes the row's value (counted per chunk by the copy); a list, not a mapping:
    #: its order survives the plan's trip through jsonb
    changes: list[list[str]] = field(default_factory=list)
    #: a cheap MySQL condition true whenever one of ``changes`` may be (checked first, so a row no rule
    #: touches costs one test); None: the conditions are tested directly
    change_guard: str | None = None
    #: the MySQL collation of a text column (how MySQL compares its values: case, accents, trailing spaces)
    collation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)


def collation_rules(collation: str | None) -> tuple[bool, bool]:
    """``(pad_space, insensitive)`` of a MySQL collation: whether trailing spaces are ignored (PAD SPACE:
    every MariaDB collation but the ``_nopad_`` ones, MySQL's before the 0900 family) and whether values
    differing in case or accents may compare equal (anything but ``_bin``, ``_cs`` and ``_as_cs``);
    ``(False, False)`` for no collation (not a text column)."""
    if not collation:
        return False, False
    c = collation.lower()
    pad = "_nopad_" not in c and "_0900_" not in c and not c.startswith("utf8mb4_0900") and c != "binary"
    insensitive = not (c.endswith("_bin") or c.endswith("_cs") or c == "binary")
    return pad, insensitive


@dataclass
class TableMap:
    """A table's mapping: its columns, keys and indexes as PostgreSQL will have them."""

    source: str
    target: str
    columns: list[ColumnMap]
    key: list[str]  # source names of the copy key (empty: keyless, copied from one snapshot)
    primary_key: list[str]
    indexes: list[dict[str, Any]] = field(default_factory=list)
    foreign_keys: list[dict[str, Any]] = field(default_factory=list)
    auto_increment: int | None = None
    notes: list[str] = field(default_factory=list)
    rows_estimate: int = 0

    def column(self, source: str) -> ColumnMap:
        """A column by its source name."""
        return next(c for c in self.columns if c.source == source)

    def rule_columns(self) -> list[ColumnMap]:
        """The columns with a value-changing rule, in the order of the copy's flag string (:func:`rule_flags_expr`)."""
        return [c for c in self.columns if c.changes]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableMap:
        """The inverse of :meth:`to_dict`."""
        cols = [ColumnMap(**c) for c in d["columns"]]
        return cls(**{**d, "columns": cols})


#: the options a column override may give, and what each may be
OVERRIDE_OPTIONS: dict[str, str] = {
    "type": "a PostgreSQL type name (e.g. jsonb, uuid, boolean, \"timestamp(3)\")",
    "kind": "a consistency kind (int, decimal[:scale], float[:digits], text, bool, timestamp[:digits], date, "
            "bytes, uuid, interval, bits[:length])",
    "skip": "true or false",
    "zero_date": "null or dead_letter",
    "enum_empty": "dead_letter, null or keep",
    "default": "a PostgreSQL default expression (text or a number) or null for none",
}
#: a PostgreSQL type name an override may give: words, an optional (p[,s]) and [] (no statement in it)
_PG_TYPE = re.compile(r'^[A-Za-z_][A-Za-z0-9_ ."]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?( with(out)? time zone)?(\[\])*$')


def _override_error(path: Path, where: str, message: str) -> TypeMapError:
    return TypeMapError(f"{path}: {where}: {message}")


def check_override(path: Path, table: str, column: str, opts: Any) -> dict[str, Any]:
    """One column's override options, checked: every key one of :data:`OVERRIDE_OPTIONS`, every value what
    it may be. YAML's unquoted ``null`` for ``zero_date`` / ``enum_empty`` means the rule ``"null"``.
    Raises :class:`TypeMapError` naming the file, table, column, option and the allowed values."""
    from cutover.consistency.spec import Kind, PairSpecError
    from cutover.mysql_to_postgres.config import ENUM_EMPTY_RULES, ZERO_DATE_RULES

    where = f"tables.{table}.columns.{column}"
    if not isinstance(opts, dict) or not opts:
        raise _override_error(path, where, f"expected a mapping of options ({', '.join(OVERRIDE_OPTIONS)}), got {opts!r}")
    out: dict[str, Any] = {}
    for k, v in opts.items():
        if k not in OVERRIDE_OPTIONS:
            raise _override_error(path, where, f"unknown option {k!r}; the options are {', '.join(OVERRIDE_OPTIONS)}")
        bad = f"{k}: {v!r} is not allowed; {k} must be {OVERRIDE_OPTIONS[k]}"
        if k in ("zero_date", "enum_empty"):
            v = "null" if v is None else v
            allowed = ZERO_DATE_RULES if k == "zero_date" else ENUM_EMPTY_RULES
            if not isinstance(v, str) or v not in allowed:
                raise _override_error(path, where, bad)
        elif k == "skip":
            if not isinstance(v, bool):
                raise _override_error(path, where, bad)
        elif k == "type":
            if not isinstance(v, str) or not _PG_TYPE.match(v.strip()):
                raise _override_error(path, where, bad)
            v = v.strip()
        elif k == "kind":
            try:
                Kind.parse(str(v)) if isinstance(v, str) else Kind.parse("")
            except PairSpecError as exc:
                raise _override_error(path, where, f"{bad} ({exc})") from exc
        elif k == "default":
            if v is not None and (isinstance(v, bool) or not isinstance(v, str | int | float) or str(v).strip() == ""
                                  or ";" in str(v)):
                raise _override_error(path, where, bad)
            v = None if v is None else str(v)
        out[k] = v
    if out.get("skip") and len(out) > 1:
        raise _override_error(path, where, f"skip: true leaves the column out; the other options {sorted(set(out) - {'skip'})} "
                              "would do nothing")
    return out


def load_overrides(path: Path, *, required: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """``{table: {column: {option: value}}}`` from the override YAML (missing file: ``{}`` unless ``required``).

    Every key and value is checked (:func:`check_override`). Raises :class:`TypeMapError` naming the file
    (and line, for YAML syntax errors), the table, the column and what is allowed when it is malformed.
    """
    import yaml

    if not path.is_file():
        if required:
            raise TypeMapError(f"override file {path} does not exist")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise TypeMapError(f"{path}: {exc}") from exc
    if not isinstance(data, dict) or set(data) - {"tables"}:
        raise TypeMapError(f"{path}: the file holds one key, tables (got {sorted(map(str, data)) if isinstance(data, dict) else data!r})")
    tables = data.get("tables") or {}
    if not isinstance(tables, dict):
        raise TypeMapError(f"{path}: tables: expected a mapping of table names, got {tables!r}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for table, spec in tables.items():
        if spec is not None and (not isinstance(spec, dict) or set(spec) - {"columns"}):
            raise TypeMapError(f"{path}: tables.{table}: a table holds one key, columns (got {spec!r})")
        columns = (spec or {}).get("columns") or {}
        if not isinstance(columns, dict):
            raise TypeMapError(f"{path}: tables.{table}.columns: expected a mapping of column names, got {columns!r}")
        for col, opts in columns.items():
            out.setdefault(str(table), {})[str(col)] = check_override(path, str(table), str(col), opts)
    return out


def yaml_key(name: str) -> str:
    """``name`` as a YAML flow-mapping key (quoted when it is not a plain word), for override hints."""
    import json

    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else json.dumps(name, ensure_ascii=False)


def _default(col: Column, pg_type: str, notes: list[str], warnings: list[str]) -> str | None:
    d = col.default
    if d is None or d.upper() == "NULL":
        return None
    low = d.lower()
    m = re.fullmatch(r"(current_timestamp|now|localtimestamp)\(\s*(\d*)\s*\)|current_timestamp|localtimestamp", low)
    if m:
        p = m.group(2) if m.lastindex and m.group(2) else ""
        fn = "CURRENT_TIMESTAMP" if "with time zone" in pg_type else "LOCALTIMESTAMP"
        return f"{fn}({p})" if p else fn
    if low in ("curdate()", "current_date", "current_date()"):
        return "CURRENT_DATE"
    if low == "uuid()":
        return "(gen_random_uuid())::text"
    if d.startswith("'") and d.endswith("'") and len(d) >= 2:
        text = d[1:-1].replace("''", "'").replace("\\\\", "\\")
        if pg_type in ("date",) or pg_type.startswith("timestamp"):
            if text.startswith("0000") or "-00" in text[:10]:
                notes.append(f"default {d} is a zero date: left off")
                return None
        if pg_type == "bytea":
            return pg_lit("\\x" + text.encode("utf-8").hex())
        return pg_lit(text)
    if re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", d):
        return d if not pg_type.startswith("bit") else None
    m2 = re.fullmatch(r"b'([01]*)'", d)
    if m2 and pg_type.startswith("bit"):
        n = _length(pg_type) or 1
        return f"B'{m2.group(1).rjust(n, '0')}'"
    warnings.append(f"default {d!r} is an expression Cutover does not translate: left off (override with 'default')")
    return None


def map_column(table: str, col: Column, *, json_columns: set[str], zero_date: str, enum_empty: str,
               opts: dict[str, Any] | None = None, target_name: str | None = None, alias: str = "") -> ColumnMap | None:
    """Map one MySQL column (``None`` when an override skips it). Raises :class:`TypeMapError` for a type
    Cutover does not map (spatial types …) unless an override gives ``type`` (copied as its text) or ``skip``."""
    opts = dict(opts or {})
    if opts.get("skip"):
        return None
    zero_date = str(opts.get("zero_date", zero_date))
    enum_empty = str(opts.get("enum_empty", enum_empty))
    c = alias + quote_mysql(col.name)
    ct = col.column_type.lower()
    dt = col.data_type.lower()
    if "zero_date" in opts and dt not in ("date", "datetime", "timestamp"):
        raise TypeMapError(f"{table}.{col.name}: override zero_date applies to DATE, DATETIME and TIMESTAMP columns, "
                           f"not {col.column_type!r}")
    if "enum_empty" in opts and dt != "enum":
        raise TypeMapError(f"{table}.{col.name}: override enum_empty applies to ENUM columns, not {col.column_type!r}")
    unsigned = "unsigned" in ct
    notes: list[str] = []
    warnings: list[str] = []
    check = None
    kind: str | None = None
    rule = ""
    render = c
    name = target_name or col.name
    tq = quote_pg(name)

    changes: list[list[str]] = []
    guard: str | None = None

    def zero_guarded(expr: str) -> str:
        nonlocal rule
        rule = f"zero_date: {zero_date}"
        bad = f"(MONTH({c}) = 0 OR DAYOFMONTH({c}) = 0 OR YEAR({c}) = 0)"
        if zero_date == "null":
            nonlocal guard
            guard = bad
            zero = f"(YEAR({c}) = 0 AND MONTH({c}) = 0 AND DAYOFMONTH({c}) = 0)"
            changes.extend([
                ["zero date → NULL", zero],
                ["partial date → NULL", f"((MONTH({c}) = 0 OR DAYOFMONTH({c}) = 0) AND NOT {zero})"],
                ["year 0 → NULL", f"(YEAR({c}) = 0 AND MONTH({c}) <> 0 AND DAYOFMONTH({c}) <> 0)"],
            ])
            return f"IF({bad}, NULL, {expr})"
        return expr  # dead_letter: PostgreSQL refuses the text, the row becomes a dead letter

    if dt == "tinyint":
        pg = "smallint"
    elif dt == "smallint":
        pg = "integer" if unsigned else "smallint"
    elif dt == "mediumint":
        pg = "integer"
    elif dt in ("int", "integer"):
        pg = "bigint" if unsigned else "integer"
    elif dt == "bigint":
        pg = "numeric(20,0)" if unsigned else "bigint"
    elif dt in ("decimal", "numeric"):
        m = re.search(r"\((\d+)\s*,\s*(\d+)\)", ct)
        pg = f"numeric({m.group(1)},{m.group(2)})" if m else "numeric"
    elif dt == "float":
        pg, render = "real", f"({c} + 0E0)"
        notes.append("read as DOUBLE: the exact single-precision value")
    elif dt in ("double", "real"):
        pg = "double precision"
    elif dt == "bit":
        n = _length(ct) or 1
        pg, render = f"bit({n})", f"LPAD(BIN({c}), {n}, '0')"
    elif dt == "enum":
        labels = enum_labels(col.column_type)
        pg = "text"
        allowed = list(labels) + ([""] if enum_empty == "keep" and "" not in labels else [])
        check = f"{tq} IN (" + ", ".join(pg_lit(x) for x in allowed) + ")"
        rule = f"enum_empty: {enum_empty}"
        inner = copy_escape(c) if any(ch in x for x in labels for ch in "\\\t\n\r") else c  # labels known: escape only if needed
        if enum_empty == "null":
            inner = f"IF({c} + 0 = 0, NULL, {inner})"
            changes.append(["invalid ENUM '' → NULL", f"({c} + 0 = 0)"])
        elif enum_empty == "keep" and "" not in labels:
            changes.append(["invalid ENUM '' kept", f"({c} + 0 = 0)"])
        render = inner
    elif dt == "set":
        labels = enum_labels(col.column_type)
        pg = "text"
        check = f"{tq} = '' OR string_to_array({tq}, ',') <@ ARRAY[" + ", ".join(pg_lit(x) for x in labels) + "]::text[]"
        render = copy_escape(c) if any(ch in x for x in labels for ch in "\\\t\n\r") else c
    elif dt == "json" or col.name in json_columns:
        pg, render = "json", copy_escape(c)
        notes.append("JSON text kept exactly (json); override type jsonb to normalise")
    elif dt == "date":
        pg, render = "date", zero_guarded(f"CAST({c} AS CHAR)")
    elif dt == "datetime":
        p = _fsp(ct)
        pg, render = f"timestamp({p}) without time zone", zero_guarded(f"CAST({c} AS CHAR)")
        notes.append("wall-clock time kept")
    elif dt == "timestamp":
        p = _fsp(ct)
        pg, render = f"timestamp({p}) with time zone", zero_guarded(f"CONCAT(CAST({c} AS CHAR), '+00')")
        notes.append("an instant: read in UTC")
    elif dt == "time":
        pg, render = "interval", f"CAST({c} AS CHAR)"
        notes.append("interval: negative and over 24 h kept")
    elif dt == "year":
        pg, render = "smallint", f"({c} + 0)"
    elif dt in ("char", "varchar"):
        width = _length(ct)
        pg = f"varchar({width})" if width else "text"
        render = copy_escape(c if (col.charset or "").lower().startswith("utf8") else f"CONVERT({c} USING utf8mb4)")
        if dt == "char":
            notes.append("CHAR → varchar: MySQL's trailing pad is not stored")
    elif dt in ("tinytext", "text", "mediumtext", "longtext"):
        pg = "text"
        render = copy_escape(c if (col.charset or "").lower().startswith("utf8") else f"CONVERT({c} USING utf8mb4)")
    elif dt in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"):
        pg, render = "bytea", f"CONCAT({lit(chr(92) * 2 + 'x')}, HEX({c}))"
    else:
        if "type" not in opts:
            raise TypeMapError(
                f"{table}.{col.name}: MySQL type {col.column_type!r} is not mapped; write an override in the "
                f"overrides file: tables: {{{yaml_key(table)}: {{columns: {{{yaml_key(col.name)}: {{type: text}}}}}}}} "
                "copies its text (or {skip: true} leaves the column out)")
        pg, render = "text", copy_escape(f"CAST({c} AS CHAR)")
    if (pg == "text" or pg.startswith("varchar")) and col.charset and not col.charset.lower().startswith("utf8"):
        notes.append(f"{col.charset} converted to UTF-8 by the server")
        # a character with no Unicode equivalent becomes '?': the value no longer converts back to its bytes
        if re.fullmatch(r"[A-Za-z0-9_]+", col.charset):  # a catalog name, checked before it reaches SQL
            changes.append([f"{col.charset} character not convertible → ?",
                            f"(BINARY CONVERT(CONVERT({c} USING utf8mb4) USING {col.charset.lower()}) <> BINARY {c})"])
    if "type" in opts:
        new = str(opts["type"])
        if new.lower() == "boolean":
            render = f"IF({c} <> 0, 't', 'f')"
            kind = kind or "bool"
            changes.append(["not 0 or 1 → true", f"({c} NOT IN (0, 1))"])
        elif new.lower() == "uuid":
            kind = "uuid"
        notes.append(f"override: type {new} (was {pg})")
        pg = new
    if "kind" in opts:
        kind = str(opts["kind"])
    if col.generation:
        notes.append(f"generated in MySQL ({col.generation}): copied as values")
    default = None
    if "default" in opts:
        default = None if opts["default"] is None else str(opts["default"])
    elif not col.generation:
        default = _default(col, pg, notes, warnings)
        if pg.lower() == "boolean" and default is not None and re.fullmatch(r"-?\d+", default):
            default = "true" if int(default) else "false"
    on_update = None
    if "on update" in col.extra.lower():
        on_update = "CURRENT_TIMESTAMP" if "with time zone" in pg else "LOCALTIMESTAMP"
        m = re.search(r"on update current_timestamp\((\d+)\)", col.extra.lower())
        if m:
            on_update += f"({m.group(1)})"
        notes.append("ON UPDATE CURRENT_TIMESTAMP: a BEFORE UPDATE trigger")
    return ColumnMap(
        source=col.name, target=name, mysql_type=col.column_type, pg_type=pg,
        render=f"IFNULL({render}, {NULL_FIELD})", nullable=col.nullable, default=default,
        identity=col.auto_increment and pg in ("smallint", "integer", "bigint", "numeric(20,0)"), on_update=on_update,
        check=check, kind=kind, rule=rule, notes=notes, warnings=warnings, changes=changes, change_guard=guard,
        collation=col.collation if dt in ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set")
        else None,
    )


def map_table(ts: TableSchema, *, target: str, json_columns: set[str], zero_date: str, enum_empty: str,
              overrides: dict[str, dict[str, Any]] | None = None, index_names: NameMapper | None = None) -> TableMap:
    """Map a MySQL table (:class:`cutover.mysql_schema.TableSchema`) to a :class:`TableMap` named ``target``.

    Column names over 63 bytes get hash-suffixed names; index names are made unique in the target
    schema through ``index_names`` (one mapper per schema). Raises :class:`TypeMapError` for an override
    naming a column the table does not have, or an unmapped type.
    """
    overrides = overrides or {}
    unknown = set(overrides) - {c.name for c in ts.columns}
    if unknown:
        raise TypeMapError(f"override names columns {sorted(unknown)} that table {ts.name!r} does not have")
    names = NameMapper(case_insensitive=True)
    cols: list[ColumnMap] = []
    for col in ts.columns:
        cm = map_column(ts.name, col, json_columns=json_columns, zero_date=zero_date, enum_empty=enum_empty,
                        opts=overrides.get(col.name), target_name=names.map(col.name))
        if cm is not None:
            if cm.target != col.name:
                cm.notes.append(f"name over 63 bytes or not storable: {cm.target!r}")
            cols.append(cm)
    kept = {c.source for c in cols}
    key = [k for k in ts.copy_key() if k in kept]
    if len(key) != len(ts.copy_key()):
        key = []
    index_names = index_names or NameMapper()
    notes: list[str] = []
    indexes = []
    for idx in ts.indexes:
        if idx.kind == "primary":
            continue
        if idx.kind in ("fulltext", "spatial"):
            notes.append(f"{idx.kind} index {idx.name!r} not built (no PostgreSQL equivalent chosen)")
            continue
        if not set(idx.columns) <= kept:
            notes.append(f"index {idx.name!r} not built: a column of it is skipped")
            continue
        parts = []
        for i, colname in enumerate(idx.columns):
            cm = next(c for c in cols if c.source == colname)
            sub = idx.sub_parts[i] if i < len(idx.sub_parts) else None
            q = quote_pg(cm.target)
            if sub is None:
                parts.append(q)
            elif cm.pg_type == "bytea":
                parts.append(f"(substring({q} from 1 for {int(sub)}))")
            else:
                parts.append(f"(left({q}, {int(sub)}))")
        indexes.append({"name": index_names.map(f"{target}_{idx.name}"), "source": idx.name,
                        "unique": idx.kind == "unique", "parts": parts})
    fks = [{"name": index_names.map(f"{target}_{fk.name}"), "source": fk.name, "columns": list(fk.columns),
            "ref_table": fk.ref_table, "ref_columns": list(fk.ref_columns), "on_delete": fk.on_delete,
            "on_update": fk.on_update} for fk in ts.foreign_keys if set(fk.columns) <= kept]
    if not key:
        notes.append("no primary key and no NOT NULL unique key: copied from one consistent snapshot; "
                     "the sync reloads it whole when it changes")
    pk = [k for k in ts.primary_key if k in kept]
    return TableMap(source=ts.name, target=target, columns=cols, key=key, primary_key=pk, indexes=indexes,
                    foreign_keys=fks, auto_increment=ts.auto_increment, notes=notes, rows_estimate=ts.rows_estimate)


def json_columns(cur: Any, database: str) -> dict[str, set[str]]:
    """``{table: {column}}`` of MariaDB JSON columns (a LONGTEXT with a ``json_valid`` CHECK); MySQL's
    JSON type is seen from ``DATA_TYPE`` directly."""
    try:
        cur.execute("SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s",
                    (database,))
        rows = cur.fetchall()
    except Exception:  # noqa: BLE001 - MySQL 5.7 has no CHECK_CONSTRAINTS
        return {}
    out: dict[str, set[str]] = {}
    from cutover.mysql_schema import text_of

    for t, clause in rows:
        m = re.fullmatch(r"json_valid\(`((?:[^`]|``)+)`\)", text_of(clause).strip(), re.I)
        if m:
            out.setdefault(text_of(t), set()).add(m.group(1).replace("``", "`"))
    return out


def rule_flags_expr(tm: TableMap) -> str | None:
    """The MySQL expression of a row's rule flags: one character per :meth:`TableMap.rule_columns` column,
    ``'0'`` when no rule changed its value, else the 1-based number of the rule in the column's
    ``changes`` (``None`` when no rule of the table changes a value: nothing to count). One CASE per
    column behind its guard: measured on 200,000 rows with three date columns and an ENUM, the chunk
    reads took +0.15 s (one flag per column and rule: +0.23 s)."""
    cols = tm.rule_columns()
    if not cols:
        return None
    parts = []
    for c in cols:
        case = "CASE " + " ".join(f"WHEN {cond} THEN '{i}'" for i, (_, cond) in enumerate(c.changes[:9], 1)) + " ELSE '0' END"
        parts.append(f"IF({c.change_guard}, {case}, '0')" if c.change_guard else case)
    return "CONCAT(" + ", ".join(parts) + ")"


def count_flags(tm: TableMap, flags: list[bytes], into: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Add the rule flags of copied rows (:func:`rule_flags_expr` values) to ``into``
    (``{column: {rule label: values changed}}``, zero counts left out); returns ``into``."""
    from collections import Counter

    cols = tm.rule_columns()
    for pattern, n in Counter(flags).items():
        for c, ch in zip(cols, pattern, strict=False):
            if 0x31 <= ch <= 0x39:  # b"1".."9": the rule's number
                label = c.changes[ch - 0x31][0]
                by_rule = into.setdefault(c.source, {})
                by_rule[label] = by_rule.get(label, 0) + n
    return into


def line_expr(tm: TableMap, alias: str = "") -> str:
    """The MySQL expression of one row's COPY line (fields joined by tabs; ``%`` not yet doubled)."""
    return "CONCAT_WS(" + ", ".join([lit("\t"), *(c.render for c in tm.columns)]) + ")"


def derived_name(*parts: str) -> str:
    """A name derived from target names (``parts`` joined by ``_``: a constraint, trigger, sequence), cut
    to PostgreSQL's 63 bytes with a hash of the whole when longer."""
    import hashlib

    from cutover.identifiers import truncate_utf8

    text = "_".join(parts)
    if len(text.encode("utf-8")) <= 63:
        return text
    return truncate_utf8(text, 52) + "_" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def identity_sequence(tm: TableMap, c: ColumnMap) -> str:
    """The sequence name of an AUTO_INCREMENT column PostgreSQL cannot make an identity (BIGINT UNSIGNED)."""
    return derived_name(tm.target, c.target, "seq")


def create_table_sql(tm: TableMap, schema: str) -> str:
    """``CREATE TABLE`` without keys or indexes (built after the load) but with NOT NULL, defaults,
    identity and the ENUM / SET checks (they decide which rows are dead letters). A BIGINT UNSIGNED
    AUTO_INCREMENT column takes ``nextval`` of a sequence :func:`create_table` creates first."""
    lines = []
    for c in tm.columns:
        parts = [quote_pg(c.target), c.pg_type]
        if c.identity and c.pg_type.startswith("numeric"):  # BIGINT UNSIGNED: no identity on numeric; an owned sequence
            parts.append(f"DEFAULT nextval({pg_lit(quote_pg(schema) + '.' + quote_pg(identity_sequence(tm, c)))}::regclass)")
        elif c.identity and not c.nullable:
            parts.append("GENERATED BY DEFAULT AS IDENTITY")
        elif c.default is not None:
            parts.append(f"DEFAULT {c.default}")
        if not c.nullable:
            parts.append("NOT NULL")
        if c.check:
            parts.append(f"CHECK ({c.check})")
        lines.append("  " + " ".join(parts))
    return f"CREATE TABLE {quote_pg(schema)}.{quote_pg(tm.target)} (\n" + ",\n".join(lines) + "\n)"
