"""The consistency kinds without a database: parsing, inference from column types, canonical texts."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from cutover.consistency.normalize import (
    MYSQL,
    POSTGRES,
    PhysicalType,
    float_canonical,
    infer_kind,
    python_canonical,
)
from cutover.consistency.spec import Endpoint, Kind, PairSpec, PairSpecError


def test_kind_parameters_parse_with_defaults_and_ranges() -> None:
    assert Kind.parse("float") == Kind("float", 15) == Kind("float")
    assert Kind.parse("float:6") == Kind("float", 6) and Kind("float", 6).digits == 6
    assert Kind.parse("timestamp:3") == Kind("timestamp", 3) and Kind("timestamp", 3).fraction == 3
    assert Kind.parse("timestamp:6") == Kind("timestamp") and str(Kind.parse("timestamp:6")) == "timestamp"
    assert Kind.parse("timestamp:0") != Kind("timestamp") and str(Kind("timestamp", 0)) == "timestamp:0"
    assert Kind.parse("decimal") == Kind("decimal", 0) and Kind.parse("decimal:2").scale == 2
    assert str(Kind.parse("bits:5")) == "bits:5" and str(Kind.parse("bits")) == "bits"
    assert str(Kind.parse("UUID")) == "uuid" and str(Kind.parse("interval")) == "interval"
    for bad in ("float:0", "float:18", "timestamp:7", "timestamp:-1", "decimal:x", "int:3", "uuid:1", "bits:0", "money"):
        with pytest.raises(PairSpecError):
            Kind.parse(bad)
    with pytest.raises(PairSpecError, match="float:99"):
        PairSpec(name="p", source=Endpoint("a", table="t"), target=Endpoint("b", table="t"), key=("id",),
                 kinds={"id": "float:99"})


@pytest.mark.parametrize(
    "src,tgt,expected",
    [
        # float: significant digits, single precision on either side → 6
        (PhysicalType("double", None, "double"), PhysicalType("double precision"), "float:15"),
        (PhysicalType("float", None, "float"), PhysicalType("double precision"), "float:6"),
        (PhysicalType("double", None, "double"), PhysicalType("real"), "float:6"),
        (PhysicalType("bigint", None, "bigint(20)"), PhysicalType("double precision"), "float:15"),
        (PhysicalType("int", None, "int(11)"), PhysicalType("real"), "float:6"),
        (PhysicalType("decimal", 2, "decimal(12,2)"), PhysicalType("double precision"), "decimal:2"),
        # uuid
        (PhysicalType("char", None, "char(36)"), PhysicalType("uuid"), "uuid"),
        (PhysicalType("varchar", None, "varchar(36)"), PhysicalType("uuid"), "uuid"),
        (PhysicalType("binary", None, "binary(16)"), PhysicalType("uuid"), "uuid"),
        (PhysicalType("uuid"), PhysicalType("uuid"), "uuid"),
        (PhysicalType("int"), PhysicalType("uuid"), "text"),
        # timestamp precision: the coarser side
        (PhysicalType("datetime", None, "datetime(6)", precision=6), PhysicalType("timestamp without time zone",
                                                                                  precision=3), "timestamp:3"),
        (PhysicalType("datetime", None, "datetime", precision=0), PhysicalType("timestamp with time zone",
                                                                               precision=6), "timestamp:0"),
        (PhysicalType("datetime", None, "datetime(6)", precision=6), PhysicalType("timestamp with time zone",
                                                                                  precision=6), "timestamp"),
        (PhysicalType("datetime", None, "datetime(3)", precision=3), None, "timestamp"),
        (PhysicalType("date"), PhysicalType("timestamp without time zone", precision=3), "timestamp"),
        # interval
        (PhysicalType("time", None, "time(6)", precision=6), PhysicalType("interval", precision=6), "interval"),
        (PhysicalType("time", None, "time"), PhysicalType("time", None, "time"), "interval"),
        (PhysicalType("time", None, "time"), PhysicalType("time without time zone"), "interval"),
        # bits, BIT(1), YEAR
        (PhysicalType("bit", None, "bit(5)"), PhysicalType("bit", length=5), "bits:5"),
        (PhysicalType("bit", None, "bit(5)"), PhysicalType("bit varying", length=8), "bits:8"),
        (PhysicalType("bit", None, "bit(1)"), PhysicalType("bit", length=1), "bool"),
        (PhysicalType("bit", None, "bit(1)"), PhysicalType("boolean"), "bool"),
        (PhysicalType("bit", None, "bit(5)"), PhysicalType("bigint"), "int"),
        (PhysicalType("year", None, "year(4)"), PhysicalType("smallint"), "int"),
    ],
)
def test_infer_kind_of_the_new_kinds(src: PhysicalType, tgt: PhysicalType | None, expected: str) -> None:
    assert str(infer_kind(src, tgt)) == expected


def test_float_canonical_counts_significant_digits() -> None:
    f15 = Kind("float", 15)
    assert python_canonical(1e-9, f15) != python_canonical(2e-9, f15)
    assert python_canonical(1e-7, f15) != python_canonical(3e-7, f15)
    assert python_canonical(1e-9, f15) == "1.00000000000000e-9"
    assert python_canonical(0.1 + 0.2, f15) == python_canonical(0.3, f15) == "3.00000000000000e-1"
    assert python_canonical(0.1 + 0.2, Kind("float", 17)) == "3.0000000000000004e-1"
    assert python_canonical(0.0, f15) == python_canonical(-0.0, f15) == python_canonical(0, f15) == "0"
    assert python_canonical(-1e300, f15) == "-1.00000000000000e300"
    assert python_canonical(1e-300, f15) == "1.00000000000000e-300"
    assert python_canonical(5e-324, f15) == "5.00000000000000e-324"
    assert python_canonical(float("nan"), f15) == "nan"
    assert python_canonical(float("inf"), f15) == "inf" and python_canonical(float("-inf"), f15) == "-inf"
    assert python_canonical(Decimal("NaN"), f15) == "nan"
    # ints, Decimals and floats of the same number render alike
    assert python_canonical(123456789012345678, f15) == python_canonical(123456789012345678.0, f15) == \
        "1.23456789012346e17"
    assert python_canonical(Decimal("12.50"), Kind("float", 3)) == python_canonical(12.5, Kind("float", 3)) == "1.25e1"
    # rounding: half away from zero on the shortest decimal text; a carry moves the exponent
    assert float_canonical(2.675, 3) == "2.68e0"  # the shortest text is 2.675 (the binary value is a hair less)
    assert float_canonical(-2.5, 1) == "-3e0"
    assert float_canonical(9.9999996, 6) == "1.00000e1"
    assert float_canonical(99999.95, 6) == "1.00000e5"
    assert float_canonical(0.000123456789, 4) == "1.235e-4"
    assert float_canonical(1.23456, 6) != float_canonical(1.23457, 6)
    assert float_canonical(0.1, 1) == "1e-1"


def test_timestamp_precision_rounds_as_postgresql() -> None:
    t3 = Kind("timestamp", 3)
    assert python_canonical(dt.datetime(2024, 3, 1, 12, 0, 0, 123456), t3) == "2024-03-01 12:00:00.123"
    assert python_canonical(dt.datetime(2024, 3, 1, 12, 0, 0, 123500), t3) == "2024-03-01 12:00:00.124"
    assert python_canonical(dt.datetime(2024, 3, 1, 12, 0, 0, 999500), t3) == "2024-03-01 12:00:01"
    # before 2000-01-01 PostgreSQL rounds a tie down (away from its epoch)
    assert python_canonical(dt.datetime(1999, 12, 31, 23, 59, 59, 123500), t3) == "1999-12-31 23:59:59.123"
    assert python_canonical(dt.datetime(1999, 12, 31, 23, 59, 59, 123501), t3) == "1999-12-31 23:59:59.124"
    aware = dt.datetime(2024, 3, 1, 13, 0, 0, 400000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert python_canonical(aware, Kind("timestamp", 0)) == "2024-03-01 12:00:00"
    assert python_canonical(dt.datetime(2024, 3, 1, 12, 0, 0, 123456), Kind("timestamp")) == "2024-03-01 12:00:00.123456"


def test_uuid_interval_bits_canonical_texts() -> None:
    u = uuid.UUID("0f8e3a1c-1b2c-4d5e-8f90-a1b2c3d4e5f6")
    k = Kind("uuid")
    assert python_canonical(u, k) == python_canonical(str(u).upper(), k) == python_canonical(u.bytes, k) == \
        python_canonical(u.hex.upper(), k) == str(u)
    i = Kind("interval")
    assert python_canonical(dt.timedelta(hours=838, minutes=59, seconds=59), i) == "3020399000000"
    assert python_canonical(-dt.timedelta(hours=838, minutes=59, seconds=59), i) == "-3020399000000"
    assert python_canonical(-dt.timedelta(seconds=1.5), i) == "-1500000"
    assert python_canonical(dt.time(12, 0, 0, 5), i) == "43200000005"
    assert python_canonical(b"\x05", Kind("bits", 5)) == python_canonical("00101", Kind("bits", 5)) == \
        python_canonical(5, Kind("bits", 5)) == "00101"
    assert python_canonical(b"\x05", Kind("bits")) == "101"


def test_sql_fragments_of_the_new_kinds() -> None:
    # YEAR renders its number (YEAR 0 is 0, not 0000); BIT as an integer
    assert "(`y` + 0)" in MYSQL.canonical("`y`", Kind("int"), PhysicalType("year", None, "year(4)"))
    # zero and partial dates, and year 0, are the NULL mark
    for kind in (Kind("date"), Kind("timestamp"), Kind("timestamp", 3)):
        assert "IF(YEAR(`d`) * MONTH(`d`) * DAYOFMONTH(`d`) > 0" in MYSQL.canonical(
            "`d`", kind, PhysicalType("datetime", precision=6))
    # timestamp:P: PostgreSQL casts, MySQL adds half a unit (less 1 µs before 2000) and cuts
    assert '"t"::timestamp(3)::text' in POSTGRES.canonical('"t"', Kind("timestamp", 3),
                                                           PhysicalType("timestamp with time zone", precision=6))
    my3 = MYSQL.canonical("`t`", Kind("timestamp", 3), PhysicalType("datetime", None, "datetime(6)", precision=6))
    assert "INTERVAL (500 - (`t` < '2000-01-01')) MICROSECOND" in my3 and "23)" in my3
    # a column already at the precision compared is not rounded
    assert "INTERVAL" not in MYSQL.canonical("`t`", Kind("timestamp", 3), PhysicalType("datetime", precision=3))
    assert POSTGRES.canonical('"t"', Kind("timestamp", 3), PhysicalType("timestamp without time zone", precision=3)) \
        == """coalesce("t"::text, '~')"""
    # uuid forms on MySQL
    assert "HEX(`u`)" in MYSQL.canonical("`u`", Kind("uuid"), PhysicalType("binary", None, "binary(16)"))
    assert MYSQL.canonical("`u`", Kind("uuid"), PhysicalType("char", None, "char(36)")) == \
        "COALESCE(LOWER(CAST(`u` AS CHAR)), '~')"
    assert POSTGRES.canonical('"u"', Kind("uuid"), PhysicalType("uuid")) == """coalesce("u"::text, '~')"""
    # floats: a single precision column is widened to double on both engines; NaN has its own text
    assert "(`r` + 0e0)" in MYSQL.canonical("`r`", Kind("float", 6), PhysicalType("float", None, "float"))
    pg_real = POSTGRES.canonical('"r"', Kind("float", 6), PhysicalType("real"))
    assert '"r"::float8::text' in pg_real and "WHEN 'NaN' THEN 'nan'" in pg_real
    # bits pad to the kind's length and never cut a longer string
    assert "LPAD(BIN(`b`), GREATEST(5, LENGTH(BIN(`b`))), '0')" in MYSQL.canonical("`b`", Kind("bits", 5),
                                                                                      PhysicalType("bit", None, "bit(3)"))
    # a quoted identifier is safe in a parameterised statement: % doubled
    assert MYSQL.quote("100%") == "`100%%`" and POSTGRES.quote("100%") == '"100%%"'
    assert PhysicalType("bit", None, "bit(5)").declared_length == 5 and PhysicalType("bit", length=7).declared_length == 7
