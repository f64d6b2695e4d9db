"""Canonical value rendering, per engine: equal data hashes equal across engines and type mappings.

Every compared value is rendered, inside its database, as text in one canonical form; a row is the
``|``-joined canonical texts of its key and columns, and its hash is a 60-bit slice of ``md5`` of
that text, computed the same way on both engines (between two PostgreSQL servers the cheaper
``hashtextextended`` replaces ``md5``; the servers must share byte order, as x86-64 and ARM64 do):

================  =============================================================================
kind              canonical text
================  =============================================================================
NULL              ``~`` (no canonical non-NULL text is ``~``, text values are length-prefixed)
``int``           decimal digits (MySQL ``YEAR`` as its number: ``YEAR`` 0 is ``0``)
``decimal:S``     fixed scale ``S`` (``12.30`` whether stored as numeric(12,2) or decimal(14,4))
``float:N``       ``N`` significant digits (default 15; 6 when either side is single precision,
                  PostgreSQL ``real`` / MySQL ``FLOAT``): ``[-]d.ddd…e<exponent>``, exactly ``N``
                  digits and a plain signed exponent (``1.50000e-9``, ``-2.00000e300``); zero (and
                  ``-0``) is ``0``; PostgreSQL's NaN, Infinity, -Infinity are ``nan``, ``inf``,
                  ``-inf``. The digits are those of the value's shortest round-trip decimal text (a
                  single precision value widened to double first: PostgreSQL ``float8::text``,
                  MySQL/MariaDB ``CAST(… AS CHAR)``, Python ``repr``), rounded half away from zero
                  — string arithmetic, the same on both engines, exact from ``5e-324`` to
                  ``1.8e308``. ``int`` paired with a float compares as the float. Up to 15 digits
                  (every 15-digit decimal survives a double) both engines agree on every value;
                  at 16–17 a few values where their shortest texts differ (PostgreSQL writes
                  ``1e23`` as ``9.999999999999999e+22``) would show as changed.
``bool``          ``1`` / ``0`` (PostgreSQL boolean or bit(1), MySQL tinyint(1), BIT(1) or any
                  integer ≠ 0)
``timestamp``     ``YYYY-MM-DD HH:MM:SS[.ffffff]`` in UTC, trailing fraction zeros dropped (PostgreSQL's
                  ``timestamp::text``; sessions run in UTC; naive values are UTC)
``timestamp:P``   the same, rounded to ``P`` fraction digits (0–5) as PostgreSQL's ``timestamp(P)``
                  rounds: to nearest, a tie away from 2000-01-01 (half up from 2000 on, half down
                  before), so ``.123456`` ≡ ``.123`` and ``.1235`` ≡ ``.124`` (from 2000 on).
                  Inferred when both sides are timestamps of different precisions (``P`` = the
                  smaller). MariaDB's own DATETIME(6) → DATETIME(3) *truncates*: such a copy shows
                  its values whose dropped digits round up as changed
``date``          ``YYYY-MM-DD``
``text``          ``<characters>:<text>`` in UTF-8, trailing spaces kept (``'a '`` ≠ ``'a'``)
``bytes``         lower-case hex
``uuid``          lower-case hyphenated (``0f8e…-…``): PostgreSQL ``uuid``; MySQL CHAR/VARCHAR(36)
                  in any letter case, CHAR(32) without hyphens, BINARY(16), MariaDB ``UUID``.
                  Inferred when either side is a ``uuid``
``interval``      a duration as total microseconds (``-3020399000000`` for ``-838:59:59``): MySQL
                  ``TIME`` (beyond 24 h and negative), PostgreSQL ``interval`` (a day is 24 h, a
                  month 30 days) and ``time``
``bits[:N]``      the bit string, left-padded with ``0`` to ``N`` digits (``00101``): MySQL BIT(n),
                  PostgreSQL bit(n) / bit varying. Inferred (``N`` = the larger length) when either
                  side is a bit type longer than 1; BIT(1) / bit(1) compare as ``bool``
================  =============================================================================

**Zero and partial dates.** MySQL's ``'0000-00-00'``, ``'2020-00-15'``, ``'2020-05-00'``,
``'0000-00-00 00:00:00'`` (month or day 0) and dates in year 0 (``'0000-01-01'``) have no PostgreSQL
equivalent; the migration (``mysql_to_postgres``, ``zero_date: null``) maps them to NULL, so for the
``date`` and ``timestamp`` kinds they render as the NULL mark ``~`` (on both sides of a MySQL pair
too).

Each :class:`Dialect` also renders the segment id and the hash-bucket expressions used by the diff.
Fragments are written for drivers' ``%s`` parameter style: a literal ``%`` is doubled (``%%``), in
quoted identifiers too (:meth:`Dialect.quote`), and every statement is executed with a parameter
tuple, so a query endpoint must double its ``%`` too. PostgreSQL sessions need
``extra_float_digits`` ≥ 1 (the default since PostgreSQL 12) for the shortest float text.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from cutover.consistency.spec import FLOAT4_DIGITS, FLOAT_DIGITS, Kind
from cutover.identifiers import quote_mysql, quote_pg

NULL_MARK = "~"
SEP = "|"
HASH_HEX = 15  # 60 bits: a sum of millions of them is exact in numeric / DECIMAL(65)
BUCKET_HEX = 8
#: PostgreSQL float texts that are not numbers, and their canonical texts
PG_FLOAT_SPECIALS = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}


@dataclass(frozen=True)
class PhysicalType:
    """A column's type as its database reports it (``data_type``, scale, full column type …)."""

    data_type: str
    scale: int | None = None
    column_type: str = ""
    charset: str = ""
    precision: int | None = None  # fractional seconds digits of a time type
    length: int | None = None  # declared length (PostgreSQL character_maximum_length: bit(n), char(n))

    @property
    def declared_length(self) -> int | None:
        """``length``, else the ``(n)`` of a MySQL column type such as ``bit(5)`` or ``binary(16)``."""
        if self.length is not None:
            return self.length
        m = re.match(r"\w+\((\d+)\)", self.column_type.strip().lower())
        return int(m.group(1)) if m else None


_INTS = ("smallint", "integer", "int", "bigint", "tinyint", "mediumint", "year")
_FLOAT8 = ("double precision", "double")
_FLOAT4 = ("real", "float")  # PostgreSQL real, MySQL FLOAT (MySQL FLOAT(p > 24) reports double)
_TIMES = ("time", "time without time zone", "interval")
_BITS = ("bit", "bit varying")
_UUID_TEXT = ("char", "varchar", "character", "character varying", "text", "binary", "varbinary", "bytea")


def infer_kind(src: PhysicalType | None, tgt: PhysicalType | None) -> Kind:
    """The logical kind both sides are compared as, from their physical types (see the module table)."""
    types = [t for t in (src, tgt) if t is not None]
    kinds = [_kind_of(t) for t in types]
    if not kinds:
        return Kind("text")
    names = {k.name for k in kinds}
    if "uuid" in names and all(k.name == "uuid" or t.data_type.lower() in _UUID_TEXT
                               for k, t in zip(kinds, types, strict=True)):
        return Kind("uuid")  # a uuid beside its text or 16-byte form
    if "bits" in names and names <= {"bits", "bool"}:
        lengths = [k.param if k.name == "bits" else 1 for k in kinds]
        return Kind("bits", max((n for n in lengths if n is not None), default=None))
    if names == {"bits", "int"}:
        return Kind("int")
    if "bool" in names and names <= {"bool", "int"}:
        return Kind("bool")
    if "decimal" in names and names <= {"decimal", "int", "float"}:
        return Kind("decimal", max(k.scale for k in kinds))
    if names == {"timestamp"}:
        precisions = {t.precision for t in types}
        if len(types) == 2 and None not in precisions and len(precisions) == 2:
            return Kind("timestamp", min(p for p in precisions if p is not None))
        return Kind("timestamp")
    if "float" in names and names <= {"int", "float"}:
        return Kind("float", min(k.digits for k in kinds if k.name == "float"))
    if len(names) == 1:
        return kinds[0]
    if names <= {"timestamp", "date"}:
        return Kind("timestamp")
    return Kind("text")


def _kind_of(t: PhysicalType) -> Kind:
    dt = t.data_type.lower()
    ct = t.column_type.lower()
    if dt in _BITS:
        n = t.declared_length
        return Kind("bool") if dt == "bit" and n == 1 else Kind("bits", n)
    if dt == "boolean" or dt == "bool" or ct.startswith("tinyint(1)"):
        return Kind("bool")
    if dt in _INTS:
        return Kind("int")
    if dt in ("numeric", "decimal"):
        return Kind("decimal", int(t.scale or 0))
    if dt in _FLOAT8:
        return Kind("float", FLOAT_DIGITS)
    if dt in _FLOAT4:
        return Kind("float", FLOAT4_DIGITS)
    if dt.startswith("timestamp") or dt == "datetime":
        return Kind("timestamp")
    if dt == "date":
        return Kind("date")
    if dt in _TIMES:
        return Kind("interval")
    if dt == "uuid":
        return Kind("uuid")
    if dt in ("bytea", "blob", "binary", "varbinary", "longblob", "mediumblob", "tinyblob"):
        return Kind("bytes")
    return Kind("text")


class Dialect:
    """SQL fragments of one engine (subclassed per engine)."""

    name = ""

    def quote(self, name: str) -> str:
        """The quoted identifier, ``%`` doubled (fragments run with a parameter tuple)."""
        raise NotImplementedError

    def canonical(self, col: str, kind: Kind, phys: PhysicalType | None) -> str:
        """An expression rendering quoted column ``col`` canonically, NULL included (never NULL)."""
        raise NotImplementedError

    def concat(self, parts: list[str]) -> str:
        """The concatenation of text expressions ``parts``, ``|``-separated."""
        raise NotImplementedError

    def hash60(self, text_expr: str, family: str = "md5") -> str:
        """A non-negative 60-bit integer hash of ``text_expr`` (``md5``, or ``pg`` when both sides are PostgreSQL)."""
        raise NotImplementedError

    def bucket(self, text_expr: str, buckets: int, family: str = "md5") -> str:
        """A bucket number in ``[0, buckets)`` from a hash of ``text_expr`` (the key's canonical text)."""
        raise NotImplementedError

    def int_div(self, a: str, b: str) -> str:
        """Integer division of two integer expressions."""
        raise NotImplementedError

    def row_text(self, parts: list[str]) -> str:
        """The canonical row text of canonical value expressions."""
        return self.concat(parts)


class PostgresDialect(Dialect):
    """PostgreSQL (sessions run with ``TimeZone=UTC``, ``DateStyle=ISO``, ``extra_float_digits`` ≥ 1)."""

    name = "postgres"
    placeholder = "%s"

    def quote(self, name: str) -> str:
        return quote_pg(name).replace("%", "%%")

    def canonical(self, col: str, kind: Kind, phys: PhysicalType | None) -> str:
        dt = (phys.data_type.lower() if phys else "")
        k = kind.name
        if k == "int":
            e = f"{col}::int::text" if dt == "boolean" else f"{col}::bigint::text" if dt == "bit" else f"{col}::text"
        elif k == "bool":
            if dt == "boolean":
                e = f"{col}::int::text"
            elif dt in _BITS:
                e = f"(strpos({col}::text, '1') > 0)::int::text"
            else:
                e = f"({col} <> 0)::int::text"
        elif k == "decimal":
            if dt == "numeric" and phys is not None and phys.scale == kind.scale:
                e = f"{col}::text"
            else:
                e = f"round({col}::numeric, {kind.scale})::text"
        elif k == "float":
            e = self._float(col, dt, kind.digits)
        elif k == "timestamp":
            p = kind.param
            if p is None:
                e = f"{col}::text" if dt == "timestamp without time zone" else f"{col}::timestamp::text"
            elif dt == "timestamp without time zone" and phys is not None and phys.precision == p:
                e = f"{col}::text"
            else:  # PostgreSQL's own rounding (python_canonical and MySQLDialect follow it)
                e = f"{col}::timestamp({p})::text"
        elif k == "date":
            e = f"to_char({col}, 'YYYY-MM-DD')"
        elif k == "bytes":
            e = f"encode({col}, 'hex')"
        elif k == "uuid":
            e = f"{col}::text" if dt == "uuid" else f"lower({col}::text)"
        elif k == "interval":  # epoch: numeric from PostgreSQL 14 (exact), double before (rounded back)
            e = f"round(extract(epoch from {col}) * 1000000)::bigint::text"
        elif k == "bits":
            e = self._bits(col, dt, kind.param)
        else:
            t = f"{col}::text" if dt not in ("text", "character varying", "character") else col
            return f"coalesce(char_length({t})::text || ':' || {t}, '{NULL_MARK}')"
        return f"coalesce({e}, '{NULL_MARK}')"

    @staticmethod
    def _float(col: str, dt: str, n: int) -> str:
        """``col`` to ``n`` significant digits from its shortest text (see the module table)."""
        if dt in _FLOAT8 or dt in _INTS or dt == "numeric":
            v, t = col, f"{col}::text"
        else:  # real widened to double precision, as MySQL does; unknown (query) types as double
            v = f"{col}::float8"
            t = f"{v}::text"
        m = f"split_part(ltrim({t}, '-'), 'e', 1)"  # the digits and point before the exponent
        ex = f"split_part({t} || 'e0', 'e', 2)::int"  # the exponent written, or 0
        g = f"replace({m}, '.', '')"
        d = f"ltrim({g}, '0')"  # the significant digits
        e = f"({ex} + strpos({m} || '.', '.') - 2 - length({g}) + length({d}))"  # the first one's exponent
        r = f"((rpad(left({d}, {n + 1}), {n + 1}, '0')::bigint + 5) / 10)"  # n digits, half up (10^n: a carry)
        mant = f"left(overlay({r}::text placing '.' from 2 for 0), {n + 1})" if n > 1 else f"left({r}::text, 1)"
        body = (f"CASE WHEN {v} = 0 THEN '0' ELSE CASE WHEN {v} < 0 THEN '-' ELSE '' END || {mant} || 'e' "
                f"|| ({e} + ({r} >= {10 ** n})::int) END")
        if dt in _INTS:
            return body
        specials = " ".join(f"WHEN '{a}' THEN '{b}'" for a, b in PG_FLOAT_SPECIALS.items())
        return f"CASE {t} {specials} ELSE {body} END"

    @staticmethod
    def _bits(col: str, dt: str, n: int | None) -> str:
        t = f"{col}::int::text" if dt == "boolean" else f"{col}::text"
        return t if n is None else f"lpad({t}, greatest({n}, length({t})), '0')"  # never cut a longer one

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
        return quote_mysql(name).replace("%", "%%")

    def canonical(self, col: str, kind: Kind, phys: PhysicalType | None) -> str:
        dt = (phys.data_type.lower() if phys else "")
        k = kind.name
        if k == "int":
            e = f"({col} + 0)" if dt in ("year", "bit") else col  # YEAR renders 0000, BIT as bytes
        elif k == "bool":
            e = f"({col} <> 0)"
        elif k == "decimal":
            if dt == "decimal" and phys is not None and phys.scale == kind.scale:
                e = col
            else:
                e = f"CAST({col} AS DECIMAL(65, {kind.scale}))"
        elif k == "float":
            e = self._float(col, dt, kind.digits)
        elif k == "timestamp":
            e = _if_real_date(col, self._timestamp(col, dt, kind.param, phys))
        elif k == "date":
            e = _if_real_date(col, f"DATE_FORMAT({col}, '%%Y-%%m-%%d')")
        elif k == "bytes":
            e = f"LOWER(HEX({col}))"
        elif k == "uuid":
            e = self._uuid(col, dt, phys)
        elif k == "interval":  # HOUR() goes past 23 for a TIME; HOUR … MICROSECOND are unsigned
            e = (f"IF({col} < TIME'00:00:00', -1, 1) * ((HOUR({col}) * 3600 + MINUTE({col}) * 60 + SECOND({col}))"
                 f" * 1000000 + MICROSECOND({col}))")
        elif k == "bits":
            n = kind.param if kind.param is not None else (phys.declared_length if dt == "bit" and phys else None)
            b = f"BIN({col})"
            e = b if n is None else f"LPAD({b}, GREATEST({n}, LENGTH({b})), '0')"
        else:
            utf8 = phys is not None and phys.charset.lower() in ("utf8mb4", "utf8mb3", "utf8", "ascii")
            t = col if utf8 else f"CONVERT({col} USING utf8mb4)"
            return f"COALESCE(CONCAT(CHAR_LENGTH({t}), ':', {t}), '{NULL_MARK}')"
        return f"COALESCE({e}, '{NULL_MARK}')"

    @staticmethod
    def _float(col: str, dt: str, n: int) -> str:
        """``col`` to ``n`` significant digits from its shortest text (see the module table).

        ``CAST(double AS CHAR)`` is the costly part (about 1 µs), so it is written twice only: for a
        double the exponent comes from comparisons instead (``|v| ≥ 1e<k>``, the strings converted
        exactly; the shortest text is monotonic in the value, so it agrees with the text's digits).
        """
        exact = dt in _INTS or dt == "decimal"  # their text is exact (an integer past 2^53 too)
        # a DOUBLE renders its own shortest text; FLOAT (and an unknown type) is widened to double, as
        # PostgreSQL does with real: CAST(FLOAT AS CHAR) gives only 6 digits
        v = col if exact or dt in _FLOAT8 else f"({col} + 0e0)"
        t = f"CAST({v} AS CHAR)"
        m = f"SUBSTRING_INDEX(TRIM(LEADING '-' FROM {t}), 'e', 1)"  # the digits and point before the exponent
        g = f"REPLACE({m}, '.', '')"
        d = f"TRIM(LEADING '0' FROM {g})"  # the significant digits
        if exact:
            ex = f"CAST(SUBSTRING_INDEX(SUBSTRING_INDEX(CONCAT({t}, 'e0'), 'e', 2), 'e', -1) AS SIGNED)"
            e = f"({ex} + LOCATE('.', CONCAT({m}, '.')) - 2 - LENGTH({g}) + LENGTH({d}))"  # the first one's exponent
        else:
            k = f"FLOOR(LOG10(ABS({v})))"  # off by one next to a power of ten: corrected
            e = (f"({k} - (ABS({v}) < CONCAT('1e', {k})) + ({k} < 308 AND ABS({v}) >= CONCAT('1e', {k} + 1)))")
        r = f"((CAST(RPAD(LEFT({d}, {n + 1}), {n + 1}, '0') AS UNSIGNED) + 5) DIV 10)"  # n digits, half up
        mant = f"LEFT(INSERT({r}, 2, 0, '.'), {n + 1})" if n > 1 else f"LEFT({r}, 1)"
        return (f"CASE WHEN {v} = 0 THEN '0' ELSE CONCAT(IF({v} < 0, '-', ''), {mant}, 'e', "
                f"{e} + ({r} >= {10 ** n})) END")

    @staticmethod
    def _timestamp(col: str, dt: str, p: int | None, phys: PhysicalType | None) -> str:
        if p is not None and dt in ("datetime", "timestamp") and phys is not None and phys.precision == p:
            p = None  # already p digits: rounding changes nothing
        if p is None:
            if dt not in ("datetime", "timestamp") or phys is None or not phys.precision:
                col = f"CAST({col} AS DATETIME(6))"
            # a DATETIME(n>0) renders n fraction digits: drop trailing zeros, then a bare '.'
            return f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST({col} AS CHAR)))"
        # PostgreSQL's timestamp(p) rounding: add half a unit (less 1 µs before 2000-01-01, where a tie
        # goes down), then cut the text after p fraction digits
        half = 5 * 10 ** (5 - p)
        shifted = f"CAST({col} AS DATETIME(6)) + INTERVAL ({half} - ({col} < '2000-01-01')) MICROSECOND"
        return f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM LEFT(CAST({shifted} AS CHAR), {20 + p})))"

    @staticmethod
    def _uuid(col: str, dt: str, phys: PhysicalType | None) -> str:
        n = phys.declared_length if phys is not None else None
        if dt in ("binary", "varbinary", "blob", "tinyblob") and n == 16:
            x = f"HEX({col})"
        elif n == 32:  # hex digits without hyphens
            x = f"CAST({col} AS CHAR)"
        else:
            return f"LOWER(CAST({col} AS CHAR))"
        return f"LOWER(INSERT(INSERT(INSERT(INSERT({x}, 21, 0, '-'), 17, 0, '-'), 13, 0, '-'), 9, 0, '-'))"

    def concat(self, parts: list[str]) -> str:
        return f"CONCAT({', '.join(_interleave(parts))})" if len(parts) > 1 else f"CONCAT({parts[0]})"

    def hash60(self, text_expr: str, family: str = "md5") -> str:
        return f"CAST(CONV(SUBSTRING(MD5({text_expr}), 1, {HASH_HEX}), 16, 10) AS UNSIGNED)"

    def bucket(self, text_expr: str, buckets: int, family: str = "md5") -> str:
        return f"MOD(CAST(CONV(SUBSTRING(MD5({text_expr}), 1, {BUCKET_HEX}), 16, 10) AS UNSIGNED), {int(buckets)})"

    def int_div(self, a: str, b: str) -> str:
        return f"(({a}) DIV ({b}))"


def _if_real_date(col: str, expr: str) -> str:
    """``expr``, or NULL for a MySQL zero or partial date or year 0 (the migration maps them to NULL)."""
    return f"IF(YEAR({col}) * MONTH({col}) * DAYOFMONTH({col}) > 0, {expr}, NULL)"


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


_PG_EPOCH = _dt.datetime(2000, 1, 1)  # PostgreSQL rounds timestamps away from this instant


def python_canonical(value: object, kind: Kind) -> str:
    """The canonical text of a Python value (the same rules, used by tests and the naive diff)."""
    if value is None:
        return NULL_MARK
    k = kind.name
    if k == "bool":
        return "1" if value else "0"
    if k == "int":
        return str(int(value))  # type: ignore[call-overload]
    if k == "decimal":
        q = Decimal(1).scaleb(-kind.scale)
        return str(Decimal(str(value)).quantize(q, rounding=ROUND_HALF_UP))
    if k == "float":
        return float_canonical(value, kind.digits)
    if k == "timestamp":
        assert isinstance(value, _dt.datetime)
        if value.tzinfo is not None:
            value = value.astimezone(_dt.UTC).replace(tzinfo=None)
        if kind.param is not None:
            value = _round_like_postgres(value, kind.param)
        text = value.strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0")
        return text.rstrip(".")
    if k == "date":
        return value.isoformat()  # type: ignore[attr-defined]
    if k == "bytes":
        return bytes(value).hex()  # type: ignore[call-overload]
    if k == "uuid":
        if isinstance(value, (bytes, bytearray)) and len(value) == 16:
            return str(uuid.UUID(bytes=bytes(value)))
        s = str(value).lower()
        return str(uuid.UUID(hex=s)) if len(s) == 32 else s
    if k == "interval":
        if isinstance(value, _dt.time):
            value = _dt.timedelta(hours=value.hour, minutes=value.minute, seconds=value.second,
                                 microseconds=value.microsecond)
        assert isinstance(value, _dt.timedelta)
        return str(value // _dt.timedelta(microseconds=1))
    if k == "bits":
        if isinstance(value, (bytes, bytearray)):  # MySQL BIT(n) as the driver returns it
            value = int.from_bytes(value, "big")
        bits = format(value, "b") if isinstance(value, int) else str(value)
        return bits.rjust(kind.param, "0") if kind.param is not None else bits
    s = str(value)
    return f"{len(s)}:{s}"


def float_canonical(value: object, digits: int) -> str:
    """A number's canonical ``float:digits`` text (see the module table): from its shortest decimal text."""
    if isinstance(value, float):
        if math.isnan(value):
            return PG_FLOAT_SPECIALS["NaN"]
        if math.isinf(value):
            return PG_FLOAT_SPECIALS["Infinity" if value > 0 else "-Infinity"]
        value = repr(value)
    d = Decimal(str(value))
    if d.is_nan():
        return PG_FLOAT_SPECIALS["NaN"]
    if d.is_infinite():
        return PG_FLOAT_SPECIALS["-Infinity" if d < 0 else "Infinity"]
    if d == 0:
        return "0"
    sign, tup, exp = d.as_tuple()
    sig = "".join(map(str, tup)).lstrip("0")  # the significant digits
    e = len(sig) + int(exp) - 1  # the exponent of the first
    r = int(sig[:digits].ljust(digits, "0")) + (sig[digits : digits + 1] >= "5")
    if r >= 10**digits:  # 9.99…5 rounded up to 10.00…
        r //= 10
        e += 1
    text = str(r)
    mantissa = text[0] + ("." + text[1:] if digits > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{e}"


def _round_like_postgres(value: _dt.datetime, p: int) -> _dt.datetime:
    """A naive UTC datetime rounded to ``p`` fraction digits as PostgreSQL's ``timestamp(p)`` does."""
    us = (value - _PG_EPOCH) // _dt.timedelta(microseconds=1)
    unit, half = 10 ** (6 - p), 10 ** (6 - p) // 2
    us = (us + half) // unit * unit if us >= 0 else -((-us + half) // unit * unit)
    return _PG_EPOCH + _dt.timedelta(microseconds=us)
