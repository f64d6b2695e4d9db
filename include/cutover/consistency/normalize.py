"""Canonical value rendering, per engine: equal data hashes equal across engines and type mappings.

Every compared value is rendered, inside its database, as text in one canonical form; a row is the
``|``-joined canonical texts of its key and columns, and its hash is a 60-bit slice of ``md5`` of
that text, computed the same way on both engines (between two PostgreSQL servers the cheaper
``hashtextextended`` replaces ``md5``; the servers must share byte order, as x86-64 and ARM64 do):

=============  ================================================================================
kind           canonical text
=============  ================================================================================
NULL           ``~`` (no canonical non-NULL text is ``~``, text values are length-prefixed)
``int``        decimal digits
``decimal:S``  fixed scale ``S`` (``12.30`` whether stored as numeric(12,2) or decimal(14,4))
``float``      rounded to the kind's scale (default 6) as a fixed-scale decimal
``bool``       ``1`` / ``0`` (PostgreSQL boolean, MySQL tinyint(1) or any integer ≠ 0)
``timestamp``  ``YYYY-MM-DD HH:MM:SS[.ffffff]`` in UTC, trailing fraction zeros dropped (PostgreSQL's
               ``timestamp::text``; sessions run in UTC; naive values are UTC)
``date``       ``YYYY-MM-DD``
``text``       ``<characters>:<text>`` in UTF-8, trailing spaces kept (``'a '`` ≠ ``'a'``)
``bytes``      lower-case hex
=============  ================================================================================

Each :class:`Dialect` also renders the segment id and the hash-bucket expressions used by the diff.
Fragments are written for drivers' ``%s`` parameter style: a literal ``%`` is doubled (``%%``), and
every statement is executed with a parameter tuple, so a query endpoint must double its ``%`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

from cutover.consistency.spec import Kind
from cutover.identifiers import quote_mysql, quote_pg

NULL_MARK = "~"
SEP = "|"
HASH_HEX = 15  # 60 bits: a sum of millions of them is exact in numeric / DECIMAL(65)
BUCKET_HEX = 8


@dataclass(frozen=True)
class PhysicalType:
    """A column's type as its database reports it (``data_type``, scale, full column type)."""

    data_type: str
    scale: int | None = None
    column_type: str = ""
    charset: str = ""
    precision: int | None = None  # fractional seconds digits of a time type


def infer_kind(src: PhysicalType | None, tgt: PhysicalType | None) -> Kind:
    """The logical kind both sides are compared as, from their physical types."""
    kinds = [_kind_of(t) for t in (src, tgt) if t is not None]
    if not kinds:
        return Kind("text")
    names = {k.name for k in kinds}
    if "bool" in names and names <= {"bool", "int"}:
        return Kind("bool")
    if "decimal" in names and names <= {"decimal", "int", "float"}:
        return Kind("decimal", max(k.scale for k in kinds))
    if len(names) == 1:
        return kinds[0] if kinds[0].name != "decimal" else Kind("decimal", max(k.scale for k in kinds))
    if names <= {"int", "float"}:
        return Kind("float", 6)
    if names <= {"timestamp", "date"}:
        return Kind("timestamp")
    return Kind("text")


def _kind_of(t: PhysicalType) -> Kind:
    dt = t.data_type.lower()
    ct = t.column_type.lower()
    if dt == "boolean" or dt == "bool" or ct.startswith("tinyint(1)") or ct == "bit(1)":
        return Kind("bool")
    if dt in ("smallint", "integer", "int", "bigint", "tinyint", "mediumint", "year"):
        return Kind("int")
    if dt in ("numeric", "decimal"):
        return Kind("decimal", int(t.scale or 0))
    if dt in ("double precision", "real", "double", "float"):
        return Kind("float", 6)
    if dt.startswith("timestamp") or dt == "datetime":
        return Kind("timestamp")
    if dt == "date":
        return Kind("date")
    if dt in ("bytea", "blob", "binary", "varbinary", "longblob", "mediumblob", "tinyblob"):
        return Kind("bytes")
    return Kind("text")


class Dialect:
    """SQL fragments of one engine (subclassed per engine)."""

    name = ""

    def quote(self, name: str) -> str:
        raise NotImplementedError

    def canonical(self, col: str, kind: Kind, phys: PhysicalType | None) -> str:
        """An expression rendering quoted column ``col`` canonically, NULL included (never NULL)."""
        raise NotImplementedError

    def concat(self, parts: list[str]) -> str:
        raise NotImplementedError

    def hash60(self, text_expr: str, family: str = "md5") -> str:
        """A non-negative 60-bit integer hash of ``text_expr`` (``md5``, or ``pg`` when both sides are PostgreSQL)."""
        raise NotImplementedError

    def bucket(self, text_expr: str, buckets: int, family: str = "md5") -> str:
        """A bucket number in ``[0, buckets)`` from a hash of ``text_expr`` (the key's canonical text)."""
        raise NotImplementedError

    def int_div(self, a: str, b: str) -> str:
        raise NotImplementedError

    def row_text(self, parts: list[str]) -> str:
        """The canonical row text of canonical value expressions."""
        return self.concat(parts)


class PostgresDialect(Dialect):
    """PostgreSQL (sessions run with ``TimeZone=UTC``, ``DateStyle=ISO``)."""

    name = "postgres"
    placeholder = "%s"

    def quote(self, name: str) -> str:
        return quote_pg(name)

    def canonical(self, col: str, kind: Kind, phys: PhysicalType | None) -> str:
        dt = (phys.data_type.lower() if phys else "")
        k = kind.name
        if k == "int":
            e = f"{col}::text" if dt not in ("boolean",) else f"{col}::int::text"
        elif k == "bool":
            e = f"{col}::int::text" if dt == "boolean" else f"({col} <> 0)::int::text"
        elif k in ("decimal", "float"):
            if k == "decimal" and dt == "numeric" and phys is not None and phys.scale == kind.scale:
                e = f"{col}::text"
            else:
                e = f"round({col}::numeric, {kind.scale})::text"
        elif k == "timestamp":
            e = f"{col}::text" if dt == "timestamp without time zone" else f"{col}::timestamp::text"
        elif k == "date":
            e = f"to_char({col}, 'YYYY-MM-DD')"
        elif k == "bytes":
            e = f"encode({col}, 'hex')"
        else:
            t = f"{col}::text" if dt not in ("text", "character varying", "character") else col
            return f"coalesce(char_length({t})::text || ':' || {t}, '{NULL_MARK}')"
        return f"coalesce({e}, '{NULL_MARK}')"

    def concat(self, parts: list[str]) -> str:
        return f" || '{SEP}' || ".join(parts) if len(parts) > 1 else parts[0]

    def hash60(self, text_expr: str, family: str = "md5") -> str:
        if family == "pg":  # ~40 % cheaper than md5; the same bytes hash the same on every PostgreSQL ≥ 11
            return f"(hashtextextended({text_expr}, 0) & {(1 << HASH_HEX * 4) - 1})"
        return f"('x' || substr(md5({text_expr}), 1, {HASH_HEX}))::bit({HASH_HEX * 4})::bigint"

    def bucket(self, text_expr: str, buckets: int, family: str = "md5") -> str:
        if family == "pg":
            return f"mod(hashtextextended({text_expr}, 1) & {(1 << 31) - 1}, {int(buckets)})"
        return f"mod(('x' || substr(md5({text_expr}), 1, {BUCKET_HEX}))::bit({BUCKET_HEX * 4})::bigint, {int(buckets)})"

    def int_div(self, a: str, b: str) -> str:
        return f"(({a}) / ({b}))"


class MySQLDialect(Dialect):
    """MySQL / MariaDB (sessions run with ``time_zone='+00:00'`` and utf8mb4)."""

    name = "mysql"
    placeholder = "%s"

    def quote(self, name: str) -> str:
        return quote_mysql(name)

    def canonical(self, col: str, kind: Kind, phys: PhysicalType | None) -> str:
        dt = (phys.data_type.lower() if phys else "")
        k = kind.name
        if k == "int":
            e = col
        elif k == "bool":
            e = f"({col} <> 0)"
        elif k in ("decimal", "float"):
            if k == "decimal" and dt == "decimal" and phys is not None and phys.scale == kind.scale:
                e = col
            else:
                e = f"CAST({col} AS DECIMAL(65, {kind.scale}))"
        elif k == "timestamp":
            if dt not in ("datetime", "timestamp") or phys is None or not phys.precision:
                col = f"CAST({col} AS DATETIME(6))"
            # a DATETIME(n>0) renders n fraction digits: drop trailing zeros, then a bare '.'
            e = f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST({col} AS CHAR)))"
        elif k == "date":
            e = f"DATE_FORMAT({col}, '%%Y-%%m-%%d')"
        elif k == "bytes":
            e = f"LOWER(HEX({col}))"
        else:
            utf8 = phys is not None and phys.charset.lower() in ("utf8mb4", "utf8mb3", "utf8", "ascii")
            t = col if utf8 else f"CONVERT({col} USING utf8mb4)"
            return f"COALESCE(CONCAT(CHAR_LENGTH({t}), ':', {t}), '{NULL_MARK}')"
        return f"COALESCE({e}, '{NULL_MARK}')"

    def concat(self, parts: list[str]) -> str:
        return f"CONCAT({', '.join(_interleave(parts))})" if len(parts) > 1 else f"CONCAT({parts[0]})"

    def hash60(self, text_expr: str, family: str = "md5") -> str:
        return f"CAST(CONV(SUBSTRING(MD5({text_expr}), 1, {HASH_HEX}), 16, 10) AS UNSIGNED)"

    def bucket(self, text_expr: str, buckets: int, family: str = "md5") -> str:
        return f"MOD(CAST(CONV(SUBSTRING(MD5({text_expr}), 1, {BUCKET_HEX}), 16, 10) AS UNSIGNED), {int(buckets)})"

    def int_div(self, a: str, b: str) -> str:
        return f"(({a}) DIV ({b}))"


def _interleave(parts: list[str]) -> list[str]:
    out: list[str] = []
    for i, p in enumerate(parts):
        if i:
            out.append(f"'{SEP}'")
        out.append(p)
    return out


POSTGRES = PostgresDialect()
MYSQL = MySQLDialect()


def dialect_for(conn_type: str) -> Dialect:
    """The dialect of a connection type (``postgres`` / ``mysql``)."""
    if conn_type in ("postgres", "postgresql"):
        return POSTGRES
    if conn_type in ("mysql", "mariadb"):
        return MYSQL
    raise ValueError(f"consistency checks support PostgreSQL and MySQL, not {conn_type!r}")


def python_canonical(value: object, kind: Kind) -> str:
    """The canonical text of a Python value (the same rules, used by tests and the naive diff)."""
    import datetime as dt
    from decimal import ROUND_HALF_UP, Decimal

    if value is None:
        return NULL_MARK
    k = kind.name
    if k == "bool":
        return "1" if value else "0"
    if k == "int":
        return str(int(value))  # type: ignore[call-overload]
    if k in ("decimal", "float"):
        q = Decimal(1).scaleb(-kind.scale)
        return str(Decimal(str(value)).quantize(q, rounding=ROUND_HALF_UP))
    if k == "timestamp":
        assert isinstance(value, dt.datetime)
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        text = value.strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0")
        return text.rstrip(".")
    if k == "date":
        return value.isoformat()  # type: ignore[attr-defined]
    if k == "bytes":
        return bytes(value).hex()  # type: ignore[call-overload]
    s = str(value)
    return f"{len(s)}:{s}"
