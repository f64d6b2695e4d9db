"""The binary-log change reader (cutover.binlog) against the real local MariaDB.

The server must run with the binary log in ROW format (``scripts/ensure-services.sh`` starts it so); these
tests fail, not skip, when it does not. Each test writes into its own database ``cutover_binlog_test``
(dropped before and after) and reads only that schema back, so other traffic on the server does not
matter. The central check replays the changes read into a mirror table with plain MySQLdb statements and
compares it with the source: values come back in a form an INSERT accepts, exactly.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import MySQLdb
import pytest

from cutover import binlog
from cutover.binlog import BinlogPosition, ChangeBatch, RowChange
from cutover.connections import MYSQL_TARGET, resolve
from cutover.identifiers import qualified_mysql, quote_mysql
from cutover.samples.hostile import HOSTILE_NAMES

pytestmark = pytest.mark.integration

DB = "cutover_binlog_test"
OTHER_DB = "cutover_binlog_test_other"

#: a table with every awkward type, the primary key ``id``
TYPES_DDL = """
CREATE TABLE {table} (
  id INT PRIMARY KEY,
  txt VARCHAR(100) CHARACTER SET utf8mb4,
  body LONGTEXT,
  bin VARBINARY(64),
  blb BLOB,
  fixed BINARY(6),
  amount DECIMAL(20,6),
  ratio DOUBLE,
  happened DATETIME(6),
  day DATE,
  clock TIME(3),
  doc JSON,
  big BIGINT UNSIGNED,
  tiny TINYINT,
  state ENUM('new','paid','shipped'),
  tags SET('a','b','c'),
  flags BIT(10),
  yr YEAR
) DEFAULT CHARSET=utf8mb4
"""

COLUMNS = ("id", "txt", "body", "bin", "blb", "fixed", "amount", "ratio", "happened", "day", "clock", "doc",
           "big", "tiny", "state", "tags", "flags", "yr")

ROW_1 = (1, "emoji 😀🚀 and 船速", "x" * 5000, b"\x00\x01\x00NUL\x00", b"\x00" * 3 + bytes(range(256)),
         b"a\x00b", Decimal("-12345678901234.123456"), 1.5, dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
         dt.date(1999, 12, 31), dt.timedelta(hours=-5, milliseconds=250), '{"k": [1, 2.5, "é😀"], "n": null}',
         2**64 - 1, -128, "paid", "a,c", 0b1000000001, 2155)
ROW_2 = (2, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None)


def connect(*, autocommit: bool = False, database: str | None = None) -> Any:
    """A MySQLdb connection to the local server (the ``mysql_target`` dev connection)."""
    conn = MySQLdb.connect(**resolve(MYSQL_TARGET).mysql_kwargs(database=database or ""))
    conn.autocommit(autocommit)
    return conn


@pytest.fixture
def db() -> Iterator[Any]:
    """A fresh ``cutover_binlog_test`` database (and its sibling ``..._other``); a connection, autocommit off."""
    conn = connect(autocommit=True)
    cur = conn.cursor()
    for name in (DB, OTHER_DB):
        cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql(name)}")
        cur.execute(f"CREATE DATABASE {quote_mysql(name)} CHARACTER SET utf8mb4")
    conn.autocommit(False)
    try:
        yield conn
    finally:
        conn.rollback()
        conn.autocommit(True)
        for name in (DB, OTHER_DB):
            cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql(name)}")
        conn.close()


def position(conn: Any) -> BinlogPosition:
    return binlog.current_position(conn.cursor())


def read_all(start: BinlogPosition, *, keep_empty: bool = False, **kwargs: Any) -> list[ChangeBatch]:
    """Every batch from ``start`` (schema DB unless told); without the empty ones unless ``keep_empty``:
    other traffic on the server may end a read with an empty batch that only moves the position."""
    kwargs.setdefault("schemas", {DB})
    return [b for b in binlog.read_changes(MYSQL_TARGET, start, **kwargs) if b or keep_empty]


def changes(batches: Sequence[ChangeBatch]) -> list[RowChange]:
    return [c for b in batches for c in b]


def esc(sql_text: str) -> str:
    """Quoted names may hold ``%`` (``100%``): double it where the driver formats parameters."""
    return sql_text.replace("%", "%%")


def insert(cur: Any, table: str, row: Sequence[Any], columns: Sequence[str] = COLUMNS) -> None:
    cols = ", ".join(quote_mysql(c) for c in columns)
    cur.execute(f"INSERT INTO {esc(table)} ({esc(cols)}) VALUES ({', '.join(['%s'] * len(columns))})", tuple(row))


def replay(cur: Any, table: str, batch: Sequence[RowChange], key: str = "id") -> None:
    """Apply changes read from the log to ``table`` with plain parameterised statements."""
    for change in batch:
        if change.kind == "insert":
            assert change.after is not None
            insert(cur, table, list(change.after.values()), list(change.after))
        elif change.kind == "update":
            assert change.before is not None and change.after is not None
            sets = ", ".join(f"{esc(quote_mysql(c))} = %s" for c in change.after)
            cur.execute(f"UPDATE {esc(table)} SET {sets} WHERE {esc(quote_mysql(key))} = %s",
                        (*change.after.values(), change.before[key]))
        else:
            assert change.before is not None
            cur.execute(f"DELETE FROM {esc(table)} WHERE {esc(quote_mysql(key))} = %s", (change.before[key],))


def table_rows(cur: Any, table: str) -> list[tuple[Any, ...]]:
    cur.execute(f"SELECT * FROM {table} ORDER BY 1")
    return list(cur.fetchall())


def as_dict(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(COLUMNS, row, strict=True))


# ------------------------------------------------------------------------------------ positions, status

def test_position_orders_by_file_number_then_offset() -> None:
    a = BinlogPosition("mysql-bin.000009", 900)
    b = BinlogPosition("mysql-bin.000010", 4)
    assert a < b and b > a and max(a, b) == b
    assert BinlogPosition("mysql-bin.999999", 5) < BinlogPosition("mysql-bin.1000000", 4)
    assert BinlogPosition("mysql-bin.000010", 4) < BinlogPosition("mysql-bin.000010", 120)
    assert str(b) == "mysql-bin.000010:4"
    assert BinlogPosition.parse(str(a)) == a
    assert BinlogPosition.from_dict(a.to_dict()) == a
    assert BinlogPosition.from_dict({"file": "mysql-bin.000001", "pos": "77"}) == BinlogPosition("mysql-bin.000001", 77)
    for bad in ({"file": "x"}, {"pos": 4}, {"file": "", "pos": 4}, {"file": "x.000001", "pos": 0}):
        with pytest.raises(ValueError):
            BinlogPosition.from_dict(bad)
    with pytest.raises(ValueError):
        BinlogPosition.parse("mysql-bin.000001")


def test_mysql8_binary_json_becomes_json_text() -> None:
    """MySQL 8 JSON as the library decodes it (bytes keys and strings, Decimal, opaque dates) → JSON text."""
    decoded = {b"k": [1, Decimal("2.50"), b"\xc3\xa9\xf0\x9f\x98\x80", None, True, 1.5],
               b"when": dt.datetime(2024, 1, 2, 3, 4, 5, 600000), b"q": b'say "hi"'}
    assert binlog.json_text(decoded) == (
        '{"k": [1, 2.50, "é😀", null, true, 1.5], "when": "2024-01-02 03:04:05.600000", "q": "say \\"hi\\""}'
    )
    assert binlog.json_text(None) == "null" and binlog.json_text([]) == "[]"


def test_local_server_has_a_row_based_binlog() -> None:
    conn = connect(autocommit=True)
    try:
        status = binlog.require_binlog(conn.cursor())
        assert status["log_bin"] and status["format"] == "ROW" and status["row_image"] == "FULL"
        assert status["row_metadata"] == "FULL" and not status["compressed"]
        assert status["flavor"] == "mariadb" and status["server_id"] == 1
        assert status["position"] is not None and status["position"] <= position(conn)
        assert binlog.binlog_problems(status) == []
    finally:
        conn.close()


class _FakeCursor:
    """Answers SHOW GLOBAL VARIABLES / SHOW MASTER STATUS like a server with the given settings."""

    def __init__(self, variables: dict[str, str], master: tuple[Any, ...] | None) -> None:
        self.variables, self.master = variables, master
        self._rows: list[Any] = []

    def execute(self, query: str, params: Any = None) -> None:
        if query.startswith("SHOW GLOBAL VARIABLES"):
            self._rows = [(k, v) for k, v in self.variables.items() if k in params]
        elif query == "SHOW MASTER STATUS":
            self._rows = [self.master] if self.master else []
        else:  # pragma: no cover
            raise AssertionError(query)

    def fetchall(self) -> list[Any]:
        return list(self._rows)

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None


GOOD = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL",
        "server_id": "1", "version": "10.11.19-MariaDB-log", "version_comment": "Debian", "log_bin_compress": "OFF"}


@pytest.mark.parametrize(
    ("change", "master", "expected"),
    [
        ({"log_bin": "OFF"}, None, ["binary log is off", "--log-bin=mysql-bin", "ensure-services.sh"]),
        ({"binlog_format": "MIXED"}, ("mysql-bin.000001", 4), ["binlog_format is 'MIXED', not ROW",
                                                              "SET GLOBAL binlog_format = 'ROW'"]),
        ({"binlog_format": "STATEMENT"}, ("mysql-bin.000001", 4), ["'STATEMENT', not ROW"]),
        ({"binlog_row_image": "MINIMAL"}, ("mysql-bin.000001", 4), ["binlog_row_image is 'MINIMAL', not FULL"]),
        ({"binlog_row_metadata": "NO_LOG"}, ("mysql-bin.000001", 4), ["binlog_row_metadata is 'NO_LOG'",
                                                                     "MariaDB ≥ 10.5"]),
        ({"log_bin_compress": "ON"}, ("mysql-bin.000001", 4), ["compressed", "log_bin_compress = OFF"]),
        ({}, None, ["position cannot be read", "BINLOG MONITOR, REPLICATION SLAVE"]),
    ],
)
def test_wrong_settings_raise_a_clear_error(change: dict[str, str], master: tuple[Any, ...] | None,
                                            expected: list[str]) -> None:
    cursor = _FakeCursor({**GOOD, **change}, master)
    with pytest.raises(binlog.BinlogUnavailable) as err:
        binlog.require_binlog(cursor)
    for text in expected:
        assert text in str(err.value)
    good = _FakeCursor(GOOD, ("mysql-bin.000002", 120))
    assert binlog.require_binlog(good)["position"] == BinlogPosition("mysql-bin.000002", 120)


def test_mysql8_settings_are_judged_too() -> None:
    status = binlog.binlog_status(_FakeCursor(
        {**GOOD, "version": "8.0.36", "version_comment": "MySQL Community Server - GPL", "log_bin_compress": "",
         "binlog_row_value_options": "PARTIAL_JSON", "binlog_transaction_compression": "ON",
         "binlog_row_metadata": "MINIMAL"}, ("binlog.000001", 157)))
    assert status["flavor"] == "mysql"
    problems = " | ".join(binlog.binlog_problems(status))
    assert "PARTIAL_JSON" in problems and "binlog_transaction_compression = OFF" in problems
    assert "MySQL ≥ 8.0.14" in problems


def test_session_binlog_format_is_not_the_servers(db: Any) -> None:
    """A MIXED session does not fool the check (global values are judged), and its changes are refused."""
    cur = db.cursor()
    cur.execute(f"CREATE TABLE {qualified_mysql(DB, 't')} (id INT PRIMARY KEY, v INT)")
    db.commit()
    start = position(db)
    cur.execute("SET SESSION binlog_format = 'STATEMENT'")
    assert binlog.require_binlog(cur)["format"] == "ROW"
    cur.execute(f"INSERT INTO {qualified_mysql(DB, 't')} VALUES (1, 1)")
    db.commit()
    cur.execute("SET SESSION binlog_format = 'ROW'")
    with pytest.raises(binlog.BinlogReadError, match="logged as a statement"):
        read_all(start)


def test_bad_start_positions_are_refused(db: Any) -> None:
    cur = db.cursor()
    cur.execute(f"CREATE TABLE {qualified_mysql(DB, 't')} (id INT PRIMARY KEY, v INT)")
    start = position(db)
    cur.execute(f"INSERT INTO {qualified_mysql(DB, 't')} VALUES (1, 1)")
    db.commit()
    [batch] = read_all(start)
    with pytest.raises(binlog.BinlogPositionPurged, match="no longer has mysql-bin.999999"):
        read_all(BinlogPosition("mysql-bin.999999", 4))
    with pytest.raises(ValueError, match="past the end"):
        read_all(BinlogPosition(start.file, 10**9))
    # inside the transaction: the first event after its GTID event
    cur.execute("SHOW BINLOG EVENTS IN %s FROM %s LIMIT 2", (start.file, start.pos))
    events = cur.fetchall()
    assert events[0][2] == "Gtid"
    with pytest.raises(ValueError, match="inside a transaction"):
        read_all(BinlogPosition(start.file, int(events[1][1])))
    with pytest.raises(TypeError, match="collection of names"):
        binlog.read_changes(MYSQL_TARGET, start, schemas=DB)  # type: ignore[arg-type]
    assert batch.position <= position(db)


def test_missing_privileges_raise_a_clear_error(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user without BINLOG MONITOR is stopped before reading, one without REPLICATION SLAVE at the stream."""
    cur = db.cursor()
    start = position(db)
    users = {"cutover_binlog_none": "SELECT", "cutover_binlog_monitor": "SELECT, BINLOG MONITOR"}
    try:
        for user, grants in users.items():
            cur.execute("DROP USER IF EXISTS %s@'127.0.0.1'", (user,))
            cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY 'pw'", (user,))
            cur.execute(f"GRANT {grants} ON *.* TO %s@'127.0.0.1'", (user,))
            monkeypatch.setenv(f"AIRFLOW_CONN_{user.upper()}", f"mysql://{user}:pw@127.0.0.1:3306/")
        with pytest.raises(binlog.BinlogUnavailable, match="BINLOG MONITOR, REPLICATION SLAVE"):
            binlog.read_changes("cutover_binlog_none", start, schemas={DB})
        reader = binlog.read_changes("cutover_binlog_monitor", start, schemas={DB})
        with pytest.raises(binlog.BinlogUnavailable, match="refused the binlog stream"):
            list(reader)
    finally:
        for user in users:
            cur.execute("DROP USER IF EXISTS %s@'127.0.0.1'", (user,))


# ------------------------------------------------------------------------------------------ changes

def test_insert_update_delete_round_trip_every_type(db: Any) -> None:
    """Each change carries exact before/after images; replayed into a mirror, the mirror equals the source."""
    cur = db.cursor()
    src, mirror = qualified_mysql(DB, "src"), qualified_mysql(DB, "mirror")
    cur.execute(TYPES_DDL.format(table=src))
    cur.execute(TYPES_DDL.format(table=mirror))
    db.commit()
    start = position(db)
    insert(cur, src, ROW_1)
    insert(cur, src, ROW_2)
    db.commit()
    cur.execute(f"UPDATE {src} SET txt = %s, bin = %s, amount = amount + 1, doc = NULL, tags = '' WHERE id = 1",
                ("👍 updated", b"\x00\x00"))
    db.commit()
    cur.execute(f"UPDATE {src} SET txt = 'was null', happened = '1970-01-01 00:00:00.000001' WHERE id = 2")
    db.commit()
    cur.execute(f"DELETE FROM {src} WHERE id = 2")
    db.commit()

    batches = read_all(start, tables={"src"})
    assert [len(b) for b in batches] == [2, 1, 1, 1]
    ins1, ins2, upd1, upd2, dele = changes(batches)
    assert (ins1.kind, ins1.schema, ins1.table, ins1.before) == ("insert", DB, "src", None)
    assert ins1.after == as_dict(ROW_1) | {"fixed": b"a\x00b\x00\x00\x00"}  # BINARY(6) padded as stored
    assert ins2.after == as_dict(ROW_2)
    assert isinstance(ins1.after["amount"], Decimal) and isinstance(ins1.after["doc"], str)
    assert ins1.after["doc"] == ROW_1[11]  # MariaDB JSON is LONGTEXT: the text exactly as written
    assert upd1.kind == "update" and upd1.before == ins1.after
    assert upd1.after == ins1.after | {"txt": "👍 updated", "bin": b"\x00\x00", "amount": ROW_1[6] + 1,
                                       "doc": None, "tags": ""}
    assert upd2.before == ins2.after and upd2.after is not None
    assert upd2.after["happened"] == dt.datetime(1970, 1, 1, 0, 0, 0, 1)
    assert dele.kind == "delete" and dele.after is None and dele.before == upd2.after
    for batch in batches:
        assert all(c.position == batch.position for c in batch)
        assert batch.gtid and batch.timestamp > 0
    assert batches == sorted(batches, key=lambda b: b.position) and batches[-1].position <= position(db)

    for batch in batches:
        replay(cur, mirror, batch)
    db.commit()
    assert table_rows(cur, mirror) == table_rows(cur, src)
    assert len(table_rows(cur, src)) == 1


def test_quirky_values_round_trip(db: Any) -> None:
    """Zero and partial dates, YEAR 0000, BIT, SET, ENUM, TIMESTAMP: values a MySQLdb INSERT stores back."""
    cur = db.cursor()
    cols = ("id", "d", "dt6", "dt0", "ts", "yr", "b1", "b64", "s", "e", "f", "t0", "t1", "t4", "t6")
    ddl = ("CREATE TABLE {} (id INT PRIMARY KEY, d DATE, dt6 DATETIME(6), dt0 DATETIME, ts TIMESTAMP(3) NULL, "
           "yr YEAR, b1 BIT(1), b64 BIT(64), s SET('x','y','z'), e ENUM('one','two'), f FLOAT, "
           "t0 TIME, t1 TIME(1), t4 TIME(4), t6 TIME(6))")
    src, mirror = qualified_mysql(DB, "q"), qualified_mysql(DB, "q_mirror")
    cur.execute(ddl.format(src))
    cur.execute(ddl.format(mirror))
    db.commit()
    start = position(db)
    cur.execute("SET SESSION sql_mode = '', time_zone = '+00:00'")
    rows = [
        (1, "0000-00-00", "0000-00-00 00:00:00", "0000-00-00 00:00:00", "0000-00-00 00:00:00", "0000", 1,
         2**64 - 1, "", "", 1.1, "-838:59:59", "-00:00:00.5", "-12:00:00.0001", "-00:00:01.000001"),
        (2, "2024-00-15", "2024-05-00 01:02:03.000045", "2024-00-00 10:11:12", "2024-05-06 07:08:09.123", 1901,
         0, 5, "x,z", "two", -0.0, "838:59:59", "23:59:59.9", "-01:02:03.4567", "-838:59:58.999999"),
    ]
    for row in rows:
        insert(cur, src, row, cols)
    db.commit()
    [batch] = read_all(start, tables={"q"})
    first, second = (c.after for c in batch)
    assert first == {"id": 1, "d": "0000-00-00", "dt6": "0000-00-00 00:00:00.000000", "dt0": "0000-00-00 00:00:00",
                     "ts": "0000-00-00 00:00:00", "yr": 0, "b1": 1, "b64": 2**64 - 1, "s": "", "e": "",
                     "f": pytest.approx(1.1), "t0": -dt.timedelta(hours=838, minutes=59, seconds=59),
                     "t1": -dt.timedelta(milliseconds=500), "t4": -dt.timedelta(hours=12, microseconds=100),
                     "t6": -dt.timedelta(seconds=1, microseconds=1)}
    assert second == {"id": 2, "d": "2024-00-15", "dt6": "2024-05-00 01:02:03.000045", "dt0": "2024-00-00 10:11:12",
                      "ts": dt.datetime(2024, 5, 6, 7, 8, 9, 123000), "yr": 1901, "b1": 0, "b64": 5, "s": "x,z",
                      "e": "two", "f": 0.0, "t0": dt.timedelta(hours=838, minutes=59, seconds=59),
                      "t1": dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=900000),
                      "t4": -dt.timedelta(hours=1, minutes=2, seconds=3, microseconds=456700),
                      "t6": -dt.timedelta(hours=838, minutes=59, seconds=58, microseconds=999999)}
    replay(cur, mirror, batch)
    db.commit()
    cur.execute(f"SELECT {', '.join(f'CAST({c} AS CHAR)' for c in cols)} FROM {src} ORDER BY id")
    expected = cur.fetchall()
    cur.execute(f"SELECT {', '.join(f'CAST({c} AS CHAR)' for c in cols)} FROM {mirror} ORDER BY id")
    assert cur.fetchall() == expected


def test_transactions_are_batches(db: Any) -> None:
    """A multi-statement transaction is one batch; a rolled-back one yields nothing."""
    cur = db.cursor()
    t, u = qualified_mysql(DB, "t"), qualified_mysql(DB, "u")
    cur.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(10))")
    cur.execute(f"CREATE TABLE {u} (id INT PRIMARY KEY, v VARCHAR(10))")
    db.commit()
    start = position(db)
    cur.execute(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')")
    cur.execute(f"UPDATE {t} SET v = 'c' WHERE id = 1")
    cur.execute(f"INSERT INTO {u} VALUES (1, 'u')")
    cur.execute(f"DELETE FROM {t} WHERE id = 2")
    db.commit()
    cur.execute(f"INSERT INTO {t} VALUES (3, 'gone')")
    cur.execute(f"DELETE FROM {u}")
    db.rollback()
    cur.execute(f"INSERT INTO {t} VALUES (4, 'd')")
    db.commit()
    batches = read_all(start)
    assert [[(c.kind, c.table) for c in b] for b in batches] == [
        [("insert", "t"), ("insert", "t"), ("update", "t"), ("insert", "u"), ("delete", "t")],
        [("insert", "t")],
    ]
    assert batches[1][0].after == {"id": 4, "v": "d"}
    assert all(c.after is None or c.after["v"] != "gone" for c in changes(batches))


def test_table_maps_decoded_once_follow_a_changed_definition(db: Any) -> None:
    """The table-map cache (one decode per distinct table definition per process) never serves an old
    definition: after ``ALTER TABLE`` (a column renamed, one added, a type changed) the rows carry the new
    names, in this stream and in a second one started later; a stream filtered to another table reads
    none of them although the cached map is the same bytes."""
    cur = db.cursor()
    t = qualified_mysql(DB, "tm")
    cur.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(10))")
    db.commit()
    start = position(db)
    for i in range(1, 4):
        cur.execute(f"INSERT INTO {t} VALUES (%s, %s)", (i, f"a{i}"))
        db.commit()
    cur.execute(f"ALTER TABLE {t} CHANGE v w VARCHAR(20), ADD COLUMN n BIGINT NULL")
    db.commit()
    for i in range(4, 7):
        cur.execute(f"INSERT INTO {t} VALUES (%s, %s, %s)", (i, f"b{i}", i * 10))
        db.commit()
    cur.execute(f"UPDATE {t} SET w = 'c1' WHERE id = 1")
    db.commit()
    for _ in range(2):  # the second read meets every table map in the cache
        got = [(c.kind, c.before, c.after) for c in changes(read_all(start, tables={"tm"}))]
        assert got[:3] == [("insert", None, {"id": i, "v": f"a{i}"}) for i in range(1, 4)]
        assert got[3:6] == [("insert", None, {"id": i, "w": f"b{i}", "n": i * 10}) for i in range(4, 7)]
        assert got[6] == ("update", {"id": 1, "w": "a1", "n": None}, {"id": 1, "w": "c1", "n": None})
    assert changes(read_all(start, tables={"not_tm"})) == []
    assert binlog._TABLE_MAPS, "the table maps were cached"


def test_fast_row_images_equal_the_librarys_decoding(db: Any) -> None:
    """The fast row-image path (integers, floats, YEAR, text, bytes, decimals read from the event's bytes)
    gives exactly what mysql-replication's own decoders give, for random values at the types' edges:
    the same log read once with the fast path and once with the library's ``_read_column_data``."""
    import random
    from decimal import Decimal

    from pymysqlreplication.row_event import RowsEvent

    rng = random.Random(20)
    cur = db.cursor()
    t = qualified_mysql(DB, "fast")
    decimals = [(1, 0), (5, 2), (9, 0), (10, 9), (18, 4), (19, 0), (20, 10), (30, 30), (65, 30), (65, 0)]
    cols = ", ".join(f"d{i} DECIMAL({p},{sc}) NULL" for i, (p, sc) in enumerate(decimals))
    cur.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, sm SMALLINT, su SMALLINT UNSIGNED, "
                "me MEDIUMINT, mu MEDIUMINT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, f FLOAT, dbl DOUBLE, y YEAR, "
                "vc VARCHAR(300) CHARACTER SET utf8mb4, c CHAR(3) CHARACTER SET latin1, vb VARBINARY(20), tx TEXT, bl BLOB, "
                f"{cols})")
    db.commit()
    start = position(db)

    def dec(p: int, sc: int) -> Decimal | None:
        if rng.random() < 0.1:
            return None
        digits = "".join(rng.choice("0123456789") for _ in range(p)) if rng.random() < 0.5 else "9" * p
        text = (digits[:p - sc] or "0") + ("." + digits[p - sc:] if sc else "")
        return Decimal(("-" if rng.random() < 0.5 else "") + text)

    for i in range(60):
        row = [i, rng.choice([-128, 127, 0]), rng.choice([0, 255]), rng.choice([-32768, 32767]), 65535,
               rng.choice([-8388608, 8388607, -1]), 16777215, rng.choice([-2**63, 2**63 - 1]), 2**64 - 1,
               rng.uniform(-1e6, 1e6), rng.uniform(-1e300, 1e300), rng.choice([1901, 2155, 0]),
               "é€😀" * rng.randint(0, 60), rng.choice(["", "ab", "ÿ"]), bytes(rng.randrange(256) for _ in range(5)),
               "x" * rng.randint(0, 400), bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))),
               *[dec(p, sc) for p, sc in decimals]]
        if rng.random() < 0.2:
            row[rng.randrange(1, 17)] = None
        cur.execute(f"INSERT INTO {t} VALUES ({', '.join(['%s'] * len(row))})", row)
        cur.execute(f"UPDATE {t} SET bi = bi DIV 2, d3 = -d3 WHERE id = %s", (i,))
        db.commit()
    fast = [(c.kind, c.before, c.after) for c in changes(read_all(start, tables={"fast"}))]
    assert getattr(RowsEvent, "_cutover_fast", False)
    plan = RowsEvent._read_column_data
    library = getattr(plan, "__wrapped__", None)
    assert library is not None, "the fast path keeps the library's decoder at hand"
    RowsEvent._read_column_data = library  # type: ignore[method-assign]
    try:
        slow = [(c.kind, c.before, c.after) for c in changes(read_all(start, tables={"fast"}))]
    finally:
        RowsEvent._read_column_data = plan  # type: ignore[method-assign]
    assert len(fast) == 120 and fast == slow
    assert any(a and a["d8"] is not None and a["d8"] < 0 for _, _, a in fast)  # negatives were seen


def _write_transactions(db: Any, table: str, n: int, first_id: int = 1) -> None:
    cur = db.cursor()
    for i in range(first_id, first_id + n):
        cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", (i, f"v{i}"))
        if i % 3 == 0:
            cur.execute(f"UPDATE {table} SET v = CONCAT(v, '!') WHERE id = %s", (i,))
        db.commit()


def test_resume_from_any_yielded_position_neither_repeats_nor_skips(db: Any) -> None:
    cur = db.cursor()
    t = qualified_mysql(DB, "t")
    cur.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(20))")
    db.commit()
    start = position(db)
    _write_transactions(db, t, 12)
    cur.execute("FLUSH BINARY LOGS")  # the stream crosses into a new log file
    _write_transactions(db, t, 6, first_id=13)
    full = read_all(start)
    assert len(full) == 18 and len({b.position.file for b in full}) == 2
    assert [b.position for b in full] == sorted({b.position for b in full})
    expected = [(c.kind, c.after) for c in changes(full)]

    # stop after every batch (max_changes=1 stops after the first transaction), resume, repeat
    got: list[tuple[str, Any]] = []
    at = start
    for _ in range(100):
        part = read_all(at, max_changes=1)
        if not part:
            break
        assert len(part) == 1
        got += [(c.kind, c.after) for c in part[0]]
        at = part[0].position
    assert got == expected
    assert at == full[-1].position
    # resuming from each yielded position gives exactly the rest
    for i, batch in enumerate(full):
        assert [b.position for b in read_all(batch.position)] == [b.position for b in full[i + 1:]]


def test_a_killed_reader_resumes_where_its_last_batch_ended(db: Any) -> None:
    """Closing the iterator mid-stream (a killed task) and resuming from the last applied batch: no gap."""
    cur = db.cursor()
    t = qualified_mysql(DB, "t")
    cur.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(20))")
    db.commit()
    start = position(db)
    _write_transactions(db, t, 10)
    reader = binlog.read_changes(MYSQL_TARGET, start, schemas={DB})
    applied = [next(reader), next(reader), next(reader)]
    reader.close()
    rest = read_all(applied[-1].position)
    ids = [c.after["id"] for b in applied + rest for c in b if c.kind == "insert" and c.after]
    assert ids == list(range(1, 11))


def test_reading_stops_at_the_end_as_of_the_call(db: Any) -> None:
    cur = db.cursor()
    t = qualified_mysql(DB, "t")
    cur.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(20))")
    db.commit()
    start = position(db)
    _write_transactions(db, t, 3)
    reader = binlog.read_changes(MYSQL_TARGET, start, schemas={DB})  # the end is fixed here
    _write_transactions(db, t, 2, first_id=4)  # written after the call: not read by this reader
    began = time.monotonic()
    first = list(reader)
    assert time.monotonic() - began < 5
    assert [c.after["id"] for c in changes(first) if c.after and c.kind == "insert"] == [1, 2, 3]
    second = read_all(first[-1].position)
    assert [c.after["id"] for c in changes(second) if c.after and c.kind == "insert"] == [4, 5]
    # from the end: nothing, at once
    began = time.monotonic()
    assert read_all(position(db)) == []
    assert time.monotonic() - began < 5


def test_stop_at_and_waiting_for_a_position(db: Any) -> None:
    cur = db.cursor()
    t = qualified_mysql(DB, "t")
    cur.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(20))")
    db.commit()
    start = position(db)
    _write_transactions(db, t, 4)
    full = read_all(start)
    assert [len(b) for b in read_all(start, stop_at=full[1].position)] == [1, 1]
    # a position not yet written: poll up to idle_timeout_s, pick up what arrives meanwhile, then return
    target = BinlogPosition(full[-1].position.file, full[-1].position.pos + 10**9)
    writer = threading.Timer(0.5, lambda: _write_transactions(connect(database=DB), "t", 1, first_id=98))
    began = time.monotonic()
    writer.start()
    try:
        waited = read_all(full[-1].position, stop_at=target, idle_timeout_s=2.0)
    finally:
        writer.join()
    elapsed = time.monotonic() - began
    assert 2.0 <= elapsed < 10
    assert [c.after for c in changes(waited)] == [{"id": 98, "v": "v98"}]


def test_filtering_by_schema_and_table(db: Any) -> None:
    cur = db.cursor()
    for schema in (DB, OTHER_DB):
        for table in ("keep", "skip"):
            cur.execute(f"CREATE TABLE {qualified_mysql(schema, table)} (id INT PRIMARY KEY)")
    db.commit()
    start = position(db)
    for n, (schema, table) in enumerate(
        [(DB, "keep"), (DB, "skip"), (OTHER_DB, "keep"), (OTHER_DB, "skip"), (DB, "keep")], start=1
    ):
        cur.execute(f"INSERT INTO {qualified_mysql(schema, table)} VALUES (%s)", (n,))
        db.commit()
    end = position(db)

    def seen(**kwargs: Any) -> list[tuple[str, str, int]]:
        out = read_all(start, stop_at=end, keep_empty=True, **kwargs)
        assert out[-1].position >= end  # the last batch (maybe empty) carries the position reached
        return [(c.schema, c.table, c.after["id"]) for c in changes(out) if c.after]

    assert seen(schemas={DB}, tables={"keep"}) == [(DB, "keep", 1), (DB, "keep", 5)]
    assert seen(schemas={DB}) == [(DB, "keep", 1), (DB, "skip", 2), (DB, "keep", 5)]
    assert seen(schemas={OTHER_DB, DB}, tables={"skip"}) == [(DB, "skip", 2), (OTHER_DB, "skip", 4)]
    assert seen(schemas=None, tables={"keep"})[:3] == [(DB, "keep", 1), (OTHER_DB, "keep", 3), (DB, "keep", 5)]
    only_other = read_all(start, stop_at=end, keep_empty=True, schemas={OTHER_DB}, tables={"keep"})
    assert [len(b) for b in only_other] == [1, 0]  # the trailing empty batch moves past the rest
    assert only_other[-1].position >= end


def test_hostile_table_and_column_names(db: Any) -> None:
    """Every hostile name as a table and as a column (plus backticks, quotes and emoji values)."""
    cur = db.cursor()
    columns: list[str] = []
    for name in (*HOSTILE_NAMES, "a`b", "`", "id"):
        if name.lower() not in {c.lower() for c in columns}:  # MySQL column names ignore case
            columns.append(name)
    wide = "wide `table` \"x\""
    col_defs = ", ".join(f"{quote_mysql(c)} VARCHAR(40)" for c in columns if c != "id")
    cur.execute(f"CREATE TABLE {qualified_mysql(DB, wide)} (id INT PRIMARY KEY, {col_defs})")
    for name in HOSTILE_NAMES:
        cur.execute(f"CREATE TABLE {qualified_mysql(DB, name)} (id INT PRIMARY KEY, {quote_mysql(name)} TEXT)")
    db.commit()
    start = position(db)
    row = {c: (1 if c == "id" else f"{c}=😀") for c in columns}
    insert(cur, qualified_mysql(DB, wide), list(row.values()), list(row))
    for i, name in enumerate(HOSTILE_NAMES):
        cur.execute(f"INSERT INTO {esc(qualified_mysql(DB, name))} VALUES (%s, %s)", (i, name))
    db.commit()
    cur.execute(f"UPDATE {qualified_mysql(DB, wide)} SET {quote_mysql('a`b')} = 'changed'")
    db.commit()
    insert_batch, update_batch = read_all(start)
    assert [(c.table, c.after) for c in insert_batch] == [(wide, row)] + [
        (name, {"id": i, name: name}) for i, name in enumerate(HOSTILE_NAMES)
    ]
    [update] = update_batch
    assert update.before == row and update.after == row | {"a`b": "changed"}
    picked = read_all(start, tables={"a.b", 'x"; DROP TABLE y; --', "船速"})
    assert sorted(c.table for c in changes(picked)) == sorted(["a.b", 'x"; DROP TABLE y; --', "船速"])
