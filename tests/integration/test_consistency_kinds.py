"""The consistency kinds on the real MariaDB and PostgreSQL: values compared as users mean them.

Each test builds a MySQL table and a PostgreSQL table whose rows are equal as meant (``1e-9`` in a
DOUBLE and in a double precision, an upper-case uuid in CHAR(36) and the same uuid in ``uuid``,
``-838:59:59`` in a TIME and in an interval, a zero date and a NULL …) plus rows that really differ,
and checks that the diff finds exactly those, with the kinds inferred from the column types.
Hostile names (``cutover.samples.hostile``) serve as table and column names.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from cutover import connections
from cutover.consistency.diff import DiffOptions, DiffResult, diff_pair
from cutover.consistency.normalize import MYSQL, POSTGRES, PhysicalType, python_canonical
from cutover.consistency.spec import Endpoint, Kind, PairSpec
from cutover.samples.hostile import HOSTILE_NAMES

pytestmark = pytest.mark.integration

MY_DB = "cutover_cc_kinds"
PG_SCHEMA = "cc_kinds"
SMALL = DiffOptions(segment_rows=4, leaf_rows=2, factor=2, bucket_rows=2)  # several levels even on a few rows
PCT, UNI, INJ = "100%", "Ünïcødé ✓ °C", 'x"; DROP TABLE y; --'
assert {PCT, UNI, INJ} <= set(HOSTILE_NAMES)


def my(sql: str, rows: Sequence[Sequence[Any]] | None = None, *, sql_mode: str | None = None) -> None:
    """Run ``sql`` on MariaDB (``%`` doubled, as with every parameterised statement)."""
    with connections.mysql_connect(connections.MYSQL_TARGET) as m:
        cur = m.cursor()
        cur.execute("SET time_zone = '+00:00'", ())
        if sql_mode is not None:
            cur.execute("SET SESSION sql_mode = %s", (sql_mode,))
        if rows is None:
            cur.execute(sql, ())
        else:
            cur.executemany(sql, [tuple(r) for r in rows])
        m.commit()


def pg(sql: str, rows: Sequence[Sequence[Any]] | None = None) -> None:
    """Run ``sql`` on PostgreSQL (``%`` doubled)."""
    with connections.pg_connect() as p:
        p.execute("SET TimeZone = 'UTC'", ())
        if rows is None:
            p.execute(sql, ())
        else:
            with p.cursor() as cur:
                cur.executemany(sql, [tuple(r) for r in rows])
        p.commit()


def tables(name: str, my_cols: str, pg_cols: str) -> tuple[str, str]:
    """(Re)create ``name`` on both engines; returns the quoted MySQL and PostgreSQL table names."""
    mt = f"{MYSQL.quote(MY_DB)}.{MYSQL.quote(name)}"
    pt = f"{POSTGRES.quote(PG_SCHEMA)}.{POSTGRES.quote(name)}"
    my(f"CREATE DATABASE IF NOT EXISTS {MYSQL.quote(MY_DB)} DEFAULT CHARSET utf8mb4")
    my(f"DROP TABLE IF EXISTS {mt}")
    my(f"CREATE TABLE {mt} ({my_cols}) DEFAULT CHARSET=utf8mb4")
    pg(f"CREATE SCHEMA IF NOT EXISTS {POSTGRES.quote(PG_SCHEMA)}")
    pg(f"DROP TABLE IF EXISTS {pt}")
    pg(f"CREATE TABLE {pt} ({pg_cols})")
    return mt, pt


def insert(table: str, cols: int, rows: Sequence[Sequence[Any]], *, engine: str, sql_mode: str | None = None) -> None:
    marks = ", ".join(["%s"] * cols)
    if engine == "mysql":
        my(f"INSERT INTO {table} VALUES ({marks})", rows, sql_mode=sql_mode)
    else:
        pg(f"INSERT INTO {table} VALUES ({marks})", rows)


def pair(name: str, key: tuple[str, ...] = ("id",), **kw: Any) -> PairSpec:
    return PairSpec(name=f"cc_kinds_{name}", source=Endpoint(connections.MYSQL_TARGET, table=f"{MY_DB}.{name}"),
                    target=Endpoint(connections.POSTGRES_TARGET, table=f"{PG_SCHEMA}.{name}"), key=key, **kw)


def diffs(spec: PairSpec) -> DiffResult:
    """The diff with tiny and default segments: both must agree."""
    small, default = diff_pair(spec, options=SMALL), diff_pair(spec)
    assert (small.missing, small.extra, small.changed) == (default.missing, default.extra, default.changed)
    return default


def changed(r: DiffResult) -> set[Any]:
    assert not r.missing and not r.extra, r.summary()
    return {k[0] for k in r.changed}


# --- float: significant digits ---------------------------------------------------------------------------

#: (id, MySQL DOUBLE, PostgreSQL double precision): equal as 15 significant digits unless id in FLOAT_DIFF
FLOAT_ROWS: list[tuple[int, float | None, float | None]] = [
    (1, 0.0, -0.0), (2, 1e-9, 2e-9), (3, 1e-7, 3e-7), (4, 0.1 + 0.2, 0.3), (5, 1e300, 1e300),
    (6, 1e-300, 1e-300), (7, -1e300, -1.000000000000001e300), (8, 5e-324, 5e-324), (9, -2.5, -2.5),
    (10, 1.7976931348623157e308, 1.7976931348623157e308), (11, 123456.7890123456, 123456.78901234562),
    (12, 1.00000000000001, 1.00000000000002), (13, 9.9999999999999999, 10.0), (14, None, None),
    (15, 1e-9, 1.0000000000000002e-9), (16, -1e-300, 1e-300),
]
FLOAT_DIFF = {2, 3, 12, 16}


def test_float_compares_significant_digits_not_decimal_places() -> None:
    """DOUBLE ↔ double precision at 15 significant digits (1e-9 ≠ 2e-9, 1e-7 ≠ 3e-7, tiny and huge
    magnitudes, 0 = -0), FLOAT ↔ real at 6, an integer ↔ a double as the double, NaN a value of its own."""
    name = "vessel-7"
    mt, pt = tables(
        name,
        f"id int PRIMARY KEY, {MYSQL.quote(PCT)} double, {MYSQL.quote(UNI)} float, n bigint",
        f"id int PRIMARY KEY, {POSTGRES.quote(PCT)} double precision, {POSTGRES.quote(UNI)} real, n double precision",
    )
    singles = {1: (0.1, 0.1), 2: (1.23456, 1.23457), 3: (3.4028234e38, 3.4028234e38), 4: (-1.5e-30, -1.5e-30),
               5: (0.33333334, 0.333333343)}
    ints = {1: (123456789012345678, 123456789012345678.0), 2: (7, 7.0), 3: (10**15, 1e15 + 1),
            4: (-42, -42.00000000000001)}
    mrows, prows = [], []
    for i, a, b in FLOAT_ROWS:
        sa, sb = singles.get(i, (None, None))
        na, nb = ints.get(i, (None, None))
        mrows.append((i, a, sa, na))
        prows.append((i, b, sb, nb))
    insert(mt, 4, mrows, engine="mysql")
    insert(pt, 4, prows, engine="pg")
    pg(f"INSERT INTO {pt} (id, {POSTGRES.quote(PCT)}) VALUES (100, 'NaN'), (101, 'Infinity'), (102, '-Infinity')")
    my(f"INSERT INTO {mt} (id) VALUES (100), (101), (102)")
    spec = pair(name)
    r = diffs(spec)
    assert r.kinds == {"id": "int", PCT: "float:15", UNI: "float:6", "n": "float:15"}
    # 2, 3, 12, 16 (doubles), 2 (single: 1.23456 vs 1.23457), 3 (int 10**15 vs 1e15 + 1), NaN / ±inf vs NULL
    assert changed(r) == FLOAT_DIFF | {2, 3} | {100, 101, 102}
    only_double = diffs(pair(name, columns=(PCT,)))
    assert changed(only_double) == FLOAT_DIFF | {100, 101, 102}
    # the same pair at 6 significant digits: 1.00000000000001 ≈ 1.00000000000002 and -1e300 ≈ -1.000000000000001e300
    coarse = diffs(pair(name, columns=(PCT,), kinds={PCT: "float:6"}))
    assert changed(coarse) == {2, 3, 16, 100, 101, 102}


PY_FLOATS = [0.0, -0.0, 1.0, -1.0, 1e-9, 2e-9, 1e-7, 3e-7, 0.1 + 0.2, 1e300, -1e300, 1e-300, 5e-324,
             1.7976931348623157e308, 2.675, 0.125, 9.9999999999999995, 9.99999999999999, 123456789012345678.0,
             1e15, 1e16, 1e-5, 12.5, -2.5, 1.2345678901234567e-300, 99999.95, 1.0000005, 1e22, 0.000123456789,
             -0.30000000000000004, 4.35, 1234567.5, 2.5e-8, 3.4028234663852886e38]


@pytest.mark.parametrize("digits", [15, 6, 3, 1])
def test_float_sql_matches_python_canonical_on_both_engines(digits: int) -> None:
    """The SQL renderings of both engines (DOUBLE, unknown-typed query values) and python_canonical agree."""
    name = "float_canon"
    mt, pt = tables(name, "id int PRIMARY KEY, v double", "id int PRIMARY KEY, v double precision")
    rows = list(enumerate(PY_FLOATS))
    insert(mt, 2, rows, engine="mysql")
    insert(pt, 2, rows, engine="pg")
    kind = Kind("float", digits)
    with connections.mysql_connect(connections.MYSQL_TARGET) as m:
        cur = m.cursor()
        cur.execute(f"SELECT id, {MYSQL.canonical('v', kind, PhysicalType('double'))}, "
                    f"{MYSQL.canonical('v', kind, None)} FROM {mt} ORDER BY id", ())
        my_rows = cur.fetchall()
    with connections.pg_connect() as p:
        p.execute("SET extra_float_digits = 3")
        pg_rows = p.execute(f"SELECT id, {POSTGRES.canonical('v', kind, PhysicalType('double precision'))}, "
                            f"{POSTGRES.canonical('v', kind, None)} FROM {pt} ORDER BY id", ()).fetchall()
    expected = [(i, python_canonical(v, kind), python_canonical(v, kind)) for i, v in rows]
    assert [tuple(r) for r in my_rows] == expected
    assert [tuple(r) for r in pg_rows] == expected


# --- uuid ----------------------------------------------------------------------------------------------------

U = [uuid.uuid5(uuid.NAMESPACE_URL, f"cutover-{i}") for i in range(1, 9)]


def test_uuid_in_char36_any_case_equals_postgres_uuid_keys_included() -> None:
    """CHAR(36) (upper or lower case) and BINARY(16) ↔ uuid: an upper-case key is the same key, not a
    missing + an extra one; a different uuid, a key on one side only, still show."""
    name = "select"
    mt, pt = tables(
        name,
        f"{MYSQL.quote(INJ)} char(36) PRIMARY KEY, ref char(36), raw binary(16), hexed char(32), note varchar(20)",
        f"{POSTGRES.quote(INJ)} uuid PRIMARY KEY, ref uuid, raw uuid, hexed uuid, note text",
    )
    mrows, prows = [], []
    for i, u in enumerate(U[:6]):
        key = str(u).upper() if i % 2 else str(u)
        ref = U[(i + 1) % 8]
        mrows.append((key, str(ref).upper(), u.bytes, u.hex.upper(), f"n{i}"))
        prows.append((u, ref, u, u, f"n{i}"))
    prows[2] = (U[2], U[7], U[2], U[2], "n2")  # a real difference in ref
    mrows.append((str(U[6]).upper(), None, None, None, "only mysql"))
    prows.append((U[7], None, None, None, "only pg"))
    insert(mt, 5, mrows, engine="mysql")
    insert(pt, 5, prows, engine="pg")
    r = diffs(pair(name, key=(INJ,)))
    assert r.mode == "hash"
    assert r.kinds == {INJ: "uuid", "ref": "uuid", "raw": "uuid", "hexed": "uuid", "note": "text"}
    assert r.missing == [(str(U[6]).upper(),)]  # the key as the source holds it
    assert [str(k[0]) for k in r.extra] == [str(U[7])]
    assert r.changed == [(str(U[2]),)]
    # a composite key with a uuid part: hash mode too, same answer
    rc = diffs(pair(name, key=(INJ, "note")))
    assert (len(rc.missing), len(rc.extra), len(rc.changed)) == (1, 1, 1)


# --- timestamp:P -----------------------------------------------------------------------------------------

TS_ROWS = [  # (id, MySQL DATETIME(6) text, PostgreSQL timestamp(3) text (PostgreSQL rounds it on input))
    (1, "2024-03-01 12:00:00.123456", "2024-03-01 12:00:00.123"),
    (2, "2024-03-01 12:00:00.1235", "2024-03-01 12:00:00.124"),
    (3, "2024-03-01 12:00:00.999600", "2024-03-01 12:00:01"),
    (4, "1999-12-31 23:59:59.1235", "1999-12-31 23:59:59.1235"),  # before 2000 PostgreSQL rounds a tie down
    (5, "2024-03-01 12:00:00.123456", "2024-03-01 12:00:00.124"),  # off by 1 ms: a difference
    (6, "2024-03-01 12:00:00.1235", "2024-03-01 12:00:00.123"),  # truncated instead of rounded: a difference
    (7, None, None),
    (8, "2024-03-01 12:00:00", "2024-03-01 12:00:00.000"),
    (9, "2024-03-01 12:00:00.000499", "2024-03-01 12:00:00.000499"),
    (10, "2024-03-01 12:00:00.000500", "2024-03-01 12:00:00"),  # rounds to .001: a difference
]


def test_timestamp_precision_inferred_from_the_coarser_side() -> None:
    """DATETIME(6) → timestamp(3): compared as timestamp:3, rounded as PostgreSQL rounds."""
    name = "a b"
    mt, pt = tables(name, f"id int PRIMARY KEY, {MYSQL.quote(UNI)} datetime(6), tz timestamp(6) NULL",
                    f"id int PRIMARY KEY, {POSTGRES.quote(UNI)} timestamp(3), tz timestamptz(3)")
    insert(mt, 3, [(i, a, a) for i, a, _ in TS_ROWS], engine="mysql")
    insert(pt, 3, [(i, b, None if b is None else b + "+00") for i, _, b in TS_ROWS], engine="pg")
    r = diffs(pair(name))
    assert r.kinds == {"id": "int", UNI: "timestamp:3", "tz": "timestamp:3"}
    assert changed(r) == {5, 6, 10}
    # what PostgreSQL stored from the MySQL text is what the canonical form says
    for i, a, b in TS_ROWS:
        if a is not None and i not in (5, 6, 10):
            k = Kind("timestamp", 3)
            assert python_canonical(dt.datetime.fromisoformat(a), k) == python_canonical(
                dt.datetime.fromisoformat(b), k)


def test_timestamp_kind_with_explicit_precision_and_plain_microseconds() -> None:
    name = "ts_explicit"
    mt, pt = tables(name, "id int PRIMARY KEY, t datetime(6)", "id int PRIMARY KEY, t timestamptz")
    insert(mt, 2, [(1, "2024-01-01 00:00:00.000001"), (2, "2024-01-01 00:00:00.4"), (3, "2024-01-01 00:00:01")],
           engine="mysql")
    insert(pt, 2, [(1, "2024-01-01 00:00:00+00"), (2, "2024-01-01 00:00:00+00"), (3, "2024-01-01 00:00:00.6+00")],
           engine="pg")
    plain = diffs(pair(name))
    assert plain.kinds["t"] == "timestamp" and changed(plain) == {1, 2, 3}
    assert changed(diffs(pair(name, kinds={"t": "timestamp:0"}))) == set()
    assert changed(diffs(pair(name, kinds={"t": "timestamp:1"}))) == {2, 3}


# --- interval ------------------------------------------------------------------------------------------------


def test_mysql_time_equals_postgres_interval_beyond_a_day_and_negative() -> None:
    name = "Order"
    mt, pt = tables(name, f"id int PRIMARY KEY, {MYSQL.quote(PCT)} time(6), tod time",
                    f"id int PRIMARY KEY, {POSTGRES.quote(PCT)} interval, tod time")
    rows = [
        (1, "-838:59:59.000000", "-838:59:59", "00:00:00", "00:00:00"),
        (2, "838:59:59", "34 days 22:59:59", "23:59:59", "23:59:59"),
        (3, "-00:00:01.5", "-1.5 seconds", "12:00:00", "12:00:00"),
        (4, "25:00:00", "1 day 01:00:00", None, None),
        (5, "-00:00:01.5", "-00:00:01.4", "12:00:00", "12:00:00"),  # 0.1 s apart: a difference
        (6, "00:00:00.000001", "00:00:00", "12:00:00", "12:00:01"),  # both columns differ
        (7, None, None, None, None),
        (8, "-00:00:00.000001", "-00:00:00.000001", "01:02:03", "01:02:03"),
    ]
    insert(mt, 3, [(i, a, c) for i, a, _, c, _ in rows], engine="mysql")
    insert(pt, 3, [(i, b, d) for i, _, b, _, d in rows], engine="pg")
    r = diffs(pair(name))
    assert r.kinds == {"id": "int", PCT: "interval", "tod": "interval"}
    assert changed(r) == {5, 6}
    assert python_canonical(dt.timedelta(hours=-839, seconds=1), Kind("interval")) == "-3020399000000"


# --- zero and partial dates ------------------------------------------------------------------------------


def test_mysql_zero_and_partial_dates_compare_as_null() -> None:
    """'0000-00-00', '2020-00-15', '2020-05-00', year 0 (written by a non-strict session) ≡ NULL."""
    name = "zero_dates"
    mt, pt = tables(name, "id int PRIMARY KEY, d date, t datetime, t6 datetime(6)",
                    "id int PRIMARY KEY, d date, t timestamptz, t6 timestamp")
    rows = [
        (1, "0000-00-00", "0000-00-00 00:00:00", "0000-00-00 00:00:00.000000"),
        (2, "2020-00-15", "2020-00-15 10:00:00", "2020-00-15 10:00:00.5"),
        (3, "2020-05-00", "2020-05-00 10:00:00", "2020-05-00 10:00:00.5"),
        (4, "2020-05-15", "2020-05-15 10:00:00", "2020-05-15 10:00:00.5"),
        (5, "0000-00-00", "2020-05-15 10:00:00", "2020-05-15 10:00:00.5"),  # PostgreSQL has a real date here
        (6, "0000-01-01", "0000-03-04 10:00:00", "0000-12-31 23:59:59.999999"),  # year 0: no PostgreSQL date
    ]
    insert(mt, 4, rows, engine="mysql", sql_mode="")  # a non-strict session can still write them
    insert(pt, 4, [(1, None, None, None), (2, None, None, None), (3, None, None, None),
                   (4, "2020-05-15", "2020-05-15 10:00:00+00", "2020-05-15 10:00:00.5"),
                   (5, "2020-05-15", "2020-05-15 10:00:00+00", "2020-05-15 10:00:00.5"),
                   (6, None, None, None)], engine="pg")
    r = diffs(pair(name))
    assert r.kinds == {"id": "int", "d": "date", "t": "timestamp:0", "t6": "timestamp"}
    assert changed(r) == {5}


# --- bits, BIT(1), YEAR ------------------------------------------------------------------------------------


def test_bit_strings_bit1_and_year() -> None:
    name = "bits_year"
    mt, pt = tables(name, "id int PRIMARY KEY, b bit(5), vb bit(7), flag bit(1), y year",
                    "id int PRIMARY KEY, b bit(5), vb bit varying(7), flag bit(1), y smallint")
    insert(mt, 5, [(1, 0b00101, 0b0000001, 1, 0), (2, 0b11111, 0b1010101, 0, 2024), (3, 0, 0, 0, 1999),
                   (4, 0b10000, 0b1111111, 1, 2155), (5, None, None, None, None)], engine="mysql")
    insert(pt, 5, [(1, "00101", "0000001", "1", 0), (2, "11110", "1010101", "0", 2024),
                   (3, "00000", "0000000", "1", 2000), (4, "10000", "1111111", "1", 2155),
                   (5, None, None, None, None)], engine="pg")
    r = diffs(pair(name))
    assert r.kinds == {"id": "int", "b": "bits:5", "vb": "bits:7", "flag": "bool", "y": "int"}
    assert changed(r) == {2, 3}
    assert changed(diffs(pair(name, columns=("y",)))) == {3}  # YEAR 0 = smallint 0
    assert changed(diffs(pair(name, columns=("flag",)))) == {3}  # BIT(1) ↔ bit(1)
    assert changed(diffs(pair(name, columns=("b", "vb")))) == {2}
