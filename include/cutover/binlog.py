"""Change data capture from the MySQL / MariaDB binary log: committed row changes, resumable by position.

One reader, shared by the sync stages of ``tenant_split`` and ``mysql_to_postgres``. It reads the server's
binary log over the replication protocol (``mysql-replication``, import name ``pymysqlreplication``) and
yields the row changes of one **committed transaction** at a time::

    from cutover import binlog

    with connections.mysql_connect("mysql_source") as conn:
        start = binlog.current_position(conn.cursor())      # before the bulk copy starts
    ...                                                      # bulk copy
    for batch in binlog.read_changes("mysql_source", start, schemas={"shop"}):
        apply(batch)                                         # batch: list[RowChange]
        save_checkpoint(batch.position)                      # commit both together

``read_changes`` reads from ``start`` up to ``stop_at`` (default: the end of the log when it is called)
and then returns; it never blocks waiting for new writes unless asked to (``idle_timeout_s``). Every
batch carries :attr:`ChangeBatch.position`, the position right after its transaction's commit event: the
safe point to resume from. Reading again from a yielded position neither repeats nor skips a transaction.
A transaction without a matching change is not yielded on its own; when the read ends past the last
yielded batch, a final *empty* batch carries the position reached, so a checkpoint still moves forward
over long stretches of unrelated writes.

Server requirements (checked before reading; :class:`BinlogUnavailable` says which and how to fix):

=============================  =======================================================================
``log_bin``                    ON (``--log-bin``; needs a restart: ``scripts/ensure-services.sh`` does it
                               for the local MariaDB)
``binlog_format``              ROW (row images; a STATEMENT/MIXED log cannot be replayed row by row)
``binlog_row_image``           FULL (before and after images of every column)
``binlog_row_metadata``        FULL (MySQL ≥ 8.0.14, MariaDB ≥ 10.5: column names, charsets and
                               ENUM/SET values are written into the log; without them 1.0.17 names the
                               columns ``UNKNOWN_COL<i>`` and cannot tell text from binary)
compression                    off (MariaDB ``log_bin_compress``, MySQL
                               ``binlog_transaction_compression``: the library cannot read such events)
``binlog_row_value_options``   empty on MySQL (``PARTIAL_JSON`` logs JSON diffs, not values)
privileges                     REPLICATION SLAVE and REPLICATION CLIENT (MariaDB ≥ 10.5: BINLOG
                               MONITOR, REPLICATION SLAVE)
=============================  =======================================================================

Values come back in the form a MySQLdb ``INSERT`` accepts, keyed by the real column names (any
character a name may hold: spaces, quotes, backticks, unicode):

- text columns (any character set the library knows, utf8mb4 with 4-byte characters included) → ``str``;
  binary columns (BINARY, VARBINARY, BLOB) → ``bytes``, NUL bytes kept; ``BINARY(n)`` is padded back to
  ``n`` bytes with ``\\x00`` (the log strips the padding; ``SELECT`` returns it);
- integers → ``int`` (unsigned ones unsigned), DECIMAL → ``decimal.Decimal``, FLOAT/DOUBLE → ``float``
  (a FLOAT is the exact single-precision value, e.g. ``1.100000023841858``: stored back it is the same);
- DATE → ``datetime.date``, DATETIME(n) → naive ``datetime.datetime`` (microseconds kept), TIME →
  ``datetime.timedelta``, TIMESTAMP(n) → naive ``datetime.datetime`` **in UTC** (write it back in a
  session with ``time_zone = '+00:00'``), YEAR → ``int``;
- JSON: on MariaDB, JSON is an alias of LONGTEXT (with a ``json_valid`` check), so the value is the JSON
  *text* exactly as stored (``str``); on MySQL 8, the binary JSON is decoded and turned back into compact
  JSON text (``str``, ``json.dumps`` with ``ensure_ascii=False``; key order is MySQL's storage order);
- SQL NULL → ``None``; GEOMETRY → ``bytes`` (the server's internal SRID + WKB form).

Quirks of ``mysql-replication`` 1.0.17, and what this module does about each:

- **zero and partial dates** (``0000-00-00``, ``2024-00-15``, ``0000-00-00 00:00:00``) come back as
  ``None`` — indistinguishable from NULL. The DATE / DATETIME decoders are patched (once, on first use)
  to return the value as its MySQL literal string instead (``'0000-00-00'``,
  ``'2024-00-15 00:00:00.000000'``), which an ``INSERT`` in a permissive ``sql_mode`` stores as it was;
  a zero TIMESTAMP (stored as 0 seconds) comes back as ``1970-01-01 00:00:00`` and is turned into
  ``'0000-00-00 00:00:00'``.
- **negative TIME with a fraction** (``-04:59:59.750``) comes back wrong (``-04:59:59.250``): the TIME
  decoder is patched too (the server's own unpacking).
- **YEAR 0000** comes back as 1900 (stored as 0, decoded as ``0 + 1900``): turned back into ``0``
  (1900 is not a valid YEAR, so nothing real is lost).
- **BIT(n)** comes back as a string of ``'0'``/``'1'`` characters: turned into an ``int``.
- **SET** comes back as a Python ``set`` (not accepted by MySQLdb), and the empty set as ``None``:
  turned into the comma-separated members in definition order (``'a,c'``), the empty set into ``''``.
- **ENUM**: the member string; the invalid-value index 0 comes back as ``''`` as MySQL shows it.
- **MySQL 8 JSON**: the decoder returns ``bytes`` for keys and strings and ``None`` for a JSON ``null``:
  converted to JSON text as said above.
- **row filters**: the library filters tables by bare name only; ``schemas`` and ``tables`` are
  applied together here (a table of that name in one of those schemas), names compared exactly.

What is refused with :class:`BinlogReadError` rather than guessed (nothing is dropped silently):
events written while ``binlog_row_metadata`` was not FULL (no column names), statement-logged changes in
a transaction (a writer session with ``binlog_format`` STATEMENT/MIXED), a rolled-back transaction that
still holds logged row changes (non-transactional tables), XA transactions with changes, compressed
events, incident events and partial JSON updates.

DDL (``ALTER TABLE``) is not reported; row images always carry the column names of the table as it was
when the row was written, so a column added or renamed mid-stream shows in the following images.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Generator, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypedDict

from cutover.connections import CutoverConnectionError, resolve

log = logging.getLogger(__name__)

ChangeKind = Literal["insert", "update", "delete"]

#: MySQL error codes the reader turns into clear errors.
_ER_PARSE = 1064
_ER_ACCESS_DENIED = (1044, 1045, 1142, 1227, 1370)
_ER_MASTER_FATAL_READING_BINLOG = 1236

#: Event type codes (not decoded by the library) that mean rows would be lost if skipped.
_FATAL_EVENT_TYPES: dict[int, str] = {
    0x14: "PRE_GA_WRITE_ROWS", 0x15: "PRE_GA_UPDATE_ROWS", 0x16: "PRE_GA_DELETE_ROWS",
    0x1A: "INCIDENT (the server lost events: the replica stream is broken)",
    0x28: "TRANSACTION_PAYLOAD (binlog_transaction_compression=ON)",
    0xA5: "QUERY_COMPRESSED (log_bin_compress=ON)",
    0xA6: "WRITE_ROWS_COMPRESSED_V1", 0xA7: "UPDATE_ROWS_COMPRESSED_V1", 0xA8: "DELETE_ROWS_COMPRESSED_V1",
    0xA9: "WRITE_ROWS_COMPRESSED (log_bin_compress=ON)", 0xAA: "UPDATE_ROWS_COMPRESSED (log_bin_compress=ON)",
    0xAB: "DELETE_ROWS_COMPRESSED (log_bin_compress=ON)",
}

#: ``SHOW BINLOG EVENTS`` types a resume position may point at: the first event of a transaction or an
#: event between transactions (anything else is the middle of a transaction).
_BOUNDARY_EVENT_TYPES = frozenset({
    "Gtid", "Anonymous_Gtid", "Query", "Rotate", "Stop", "Format_desc", "Gtid_list", "Binlog_checkpoint",
    "Previous_gtids", "Start_encryption", "Heartbeat",
})

_MARIADB_FL_STANDALONE = 0x01  # MariaDB GTID event flag: a statement outside any transaction (DDL)
_FILE_RE = re.compile(r"^(?P<base>.*)\.(?P<num>[0-9]+)$")
_EPOCH = datetime.datetime(1970, 1, 1)


class BinlogUnavailable(RuntimeError):
    """The server cannot serve a row-based change stream (binlog off, wrong format, missing privileges,
    position purged). The message says what is wrong and how to fix it."""


class BinlogPositionPurged(BinlogUnavailable):
    """The start position's binary log file is gone (purged or expired): changes since then are lost to
    this reader; the units must be copied again."""


class BinlogReadError(RuntimeError):
    """The log holds something this reader cannot turn into row changes without guessing (the message names
    the position and the table)."""


@functools.total_ordering
@dataclass(frozen=True)
class BinlogPosition:
    """A position in the binary log: ``file`` (e.g. ``mysql-bin.000003``) and byte offset ``pos`` (≥ 4).

    Ordered by log file (base name, then sequence number compared as a number) and then offset, so
    ``mysql-bin.000009:900 < mysql-bin.000010:4``. Positions of differently named logs compare by name.
    ``str()`` gives ``mysql-bin.000003:1234``; :meth:`parse` reads it back.
    """

    file: str
    pos: int

    def __post_init__(self) -> None:
        if not isinstance(self.file, str) or not self.file or "/" in self.file:
            raise ValueError(f"binlog position: bad file name {self.file!r}")
        if isinstance(self.pos, bool) or not isinstance(self.pos, int) or self.pos < 4:
            raise ValueError(f"binlog position {self.file}: offset must be an int >= 4, not {self.pos!r}")
        m = _FILE_RE.match(self.file)
        # the sort key, computed once: a catch-up compares positions for every change it routes
        object.__setattr__(self, "_sort", (self.file, -1, self.pos) if m is None else (m["base"], int(m["num"]), self.pos))

    def _key(self) -> tuple[str, int, int]:
        return self._sort  # type: ignore[no-any-return,attr-defined]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, BinlogPosition):
            return NotImplemented
        return self._sort < other._sort  # type: ignore[no-any-return,attr-defined]

    def __le__(self, other: object) -> bool:
        if not isinstance(other, BinlogPosition):
            return NotImplemented
        return self._sort <= other._sort  # type: ignore[no-any-return,attr-defined]

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, BinlogPosition):
            return NotImplemented
        return self._sort > other._sort  # type: ignore[no-any-return,attr-defined]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, BinlogPosition):
            return NotImplemented
        return self._sort >= other._sort  # type: ignore[no-any-return,attr-defined]

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"

    def to_dict(self) -> dict[str, Any]:
        """``{"file": str, "pos": int}`` (JSON-ready, e.g. for a checkpoint)."""
        return {"file": self.file, "pos": self.pos}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinlogPosition:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming the missing or bad field."""
        try:
            return cls(file=data["file"], pos=int(data["pos"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"binlog position: expected {{'file': str, 'pos': int}}, got {data!r}") from exc

    @classmethod
    def parse(cls, text: str) -> BinlogPosition:
        """Inverse of ``str()``: ``'mysql-bin.000003:1234'``."""
        file, sep, pos = text.rpartition(":")
        if not sep or not pos.isdigit():
            raise ValueError(f"binlog position: expected 'file:pos', got {text!r}")
        return cls(file, int(pos))


@dataclass(frozen=True)
class RowChange:
    """One row changed by a committed transaction.

    ``before`` / ``after``: the full row image keyed by column name (``None`` for the missing side: an
    insert has no ``before``, a delete no ``after``). ``position``: the position right after the commit
    of the transaction that made the change — the same for every change of a batch, and the safe point
    to resume from once the whole batch is applied (never a position inside the transaction).
    ``timestamp``: when the statement started on the server, Unix seconds.
    """

    kind: ChangeKind
    schema: str
    table: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    position: BinlogPosition
    timestamp: int


class ChangeBatch(list[RowChange]):
    """The row changes of one committed transaction, in log order (a ``list`` of :class:`RowChange`).

    ``position``: right after the transaction's commit — resume from here. ``timestamp``: the commit
    event's time (Unix seconds; 0 for an empty batch). ``gtid``: the transaction's GTID when the server logs one (MariaDB
    ``domain-server-seq``, MySQL ``uuid:n``), else ``None``. An empty batch only carries the position
    reached past transactions that held no matching change.
    """

    def __init__(self, changes: Collection[RowChange], *, position: BinlogPosition, timestamp: int,
                 gtid: str | None = None) -> None:
        super().__init__(changes)
        self.position = position
        self.timestamp = timestamp
        self.gtid = gtid

    @property
    def origin_server_id(self) -> int | None:
        """The ``server_id`` of the session that wrote the transaction, from a MariaDB GTID
        (``domain-server-seq``; a session may set its own ``server_id`` to mark its writes, e.g. reverse
        replication's applier, so that a reader tells them from the application's). None on MySQL (a
        GTID names the server's UUID) or without a GTID."""
        if not self.gtid or ":" in self.gtid:
            return None
        parts = self.gtid.split("-")
        return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None

    def __repr__(self) -> str:
        return f"ChangeBatch({len(self)} changes, position={self.position}, gtid={self.gtid})"


class BinlogStatus(TypedDict):
    """What :func:`binlog_status` reports (global values: what new writer sessions use)."""

    flavor: Literal["mariadb", "mysql"]
    version: str
    log_bin: bool
    format: str | None
    row_image: str | None
    row_metadata: str | None
    row_value_options: str | None
    compressed: bool
    server_id: int | None
    position: BinlogPosition | None
    position_error: str | None


# --------------------------------------------------------------------------------------------- status

def _error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a MySQLdb / PyMySQL error, else None."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _privilege_hint(flavor: str) -> str:
    grants = "BINLOG MONITOR, REPLICATION SLAVE" if flavor == "mariadb" else "REPLICATION CLIENT, REPLICATION SLAVE"
    return f"GRANT {grants} ON *.* TO the reader's user"


def _show_status(cursor: Any) -> tuple[Any, ...] | None:
    """The first row of ``SHOW MASTER STATUS`` (MariaDB, MySQL ≤ 8.3) or ``SHOW BINARY LOG STATUS`` (8.2+)."""
    try:
        cursor.execute("SHOW MASTER STATUS")
    except Exception as exc:
        if _error_code(exc) != _ER_PARSE:
            raise
        cursor.execute("SHOW BINARY LOG STATUS")
    row = cursor.fetchone()
    if row is None:
        return None
    return tuple(row.values()) if isinstance(row, Mapping) else tuple(row)


def current_position(cursor: Any) -> BinlogPosition:
    """The end of the binary log now: where a reader started now begins (``SHOW MASTER STATUS``).

    ``cursor``: a DB-API cursor on the server (MySQLdb or PyMySQL, tuple or dict rows). Raises
    :class:`BinlogUnavailable` when the server has no binary log or the user may not see it.
    """
    try:
        row = _show_status(cursor)
    except Exception as exc:
        if _error_code(exc) in _ER_ACCESS_DENIED:
            raise BinlogUnavailable(
                f"cannot read the binary log position: {exc}. Grant REPLICATION CLIENT (MariaDB ≥ 10.5: "
                "BINLOG MONITOR) to the user"
            ) from exc
        raise
    if row is None:
        raise BinlogUnavailable(
            "the server has no binary log (SHOW MASTER STATUS is empty: @@log_bin = 0). Start it with "
            "--log-bin=mysql-bin --server-id=1 --binlog-format=ROW --binlog-row-image=FULL "
            "--binlog-row-metadata=FULL (scripts/ensure-services.sh does it for the local MariaDB)"
        )
    return BinlogPosition(str(row[0]), int(row[1]))


def consistent_snapshot(cursor: Any) -> BinlogPosition:
    """Open a read-only consistent snapshot on ``cursor``'s session and return the binlog position it
    shows: every transaction committed before that position is visible in the snapshot, none after it.

    This is the *fence* a proof stands on (the idea of Vitess VDiff: both sides compared at one
    replication position): read the source inside this snapshot, catch the target up with
    :func:`read_changes` (``stop_at=`` the returned position: the batch ending there is the last one)
    and no further, and both sides show the same moment.

    MariaDB: ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` and the session's ``binlog_snapshot_file`` /
    ``binlog_snapshot_position`` status (exact: taken under the binlog commit lock, as
    ``mariadb-dump --single-transaction --master-data`` uses it). MySQL 8: a brief
    ``FLUSH TABLES WITH READ LOCK`` (needs RELOAD) around the snapshot and ``SHOW MASTER STATUS``, as
    ``mysqldump --single-transaction --source-data`` does. The session stays in the snapshot until the
    caller ends it (``rollback()``); it is set to REPEATABLE READ (a snapshot needs it). Raises
    :class:`BinlogUnavailable` when the server has no binary log.
    """
    cursor.execute("SELECT @@version")
    version = str((cursor.fetchone() or [""])[0])
    cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    if "mariadb" in version.lower():
        cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        cursor.execute("SHOW SESSION STATUS WHERE Variable_name IN ('binlog_snapshot_file', 'binlog_snapshot_position')")
        found = {}
        for row in cursor.fetchall():
            values = tuple(row.values()) if isinstance(row, Mapping) else tuple(row)
            found[str(values[0]).lower()] = str(values[1] or "")
        file, pos = found.get("binlog_snapshot_file", ""), found.get("binlog_snapshot_position", "0")
        if not file or not pos.isdigit() or int(pos) < 4:
            cursor.execute("ROLLBACK")
            raise BinlogUnavailable("the server shows no binlog snapshot position (@@log_bin = 0?): start it with "
                                    "--log-bin (scripts/ensure-services.sh does it for the local MariaDB)")
        return BinlogPosition(file, int(pos))
    cursor.execute("FLUSH TABLES WITH READ LOCK")
    try:
        cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        position = current_position(cursor)
    finally:
        cursor.execute("UNLOCK TABLES")
    return position


def binlog_status(cursor: Any) -> BinlogStatus:
    """The server's binary-log settings and current position (see :class:`BinlogStatus`).

    Never raises for a missing setting: ``position`` is None (and ``position_error`` says why) when the
    log is off or the user lacks REPLICATION CLIENT. :func:`binlog_problems` judges the result.
    """
    names = ("log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "binlog_row_value_options",
             "binlog_transaction_compression", "log_bin_compress", "server_id", "version", "version_comment")
    cursor.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN (" + ", ".join(["%s"] * len(names)) + ")", names)
    found: dict[str, str] = {}
    for row in cursor.fetchall():
        key, value = (tuple(row.values()) if isinstance(row, Mapping) else tuple(row))[:2]
        found[str(key).lower()] = "" if value is None else str(value)
    version = found.get("version", "")
    flavor: Literal["mariadb", "mysql"] = (
        "mariadb" if "mariadb" in (version + found.get("version_comment", "")).lower() else "mysql"
    )
    log_bin = found.get("log_bin", "OFF").upper() in ("ON", "1")
    position: BinlogPosition | None = None
    position_error: str | None = None
    if log_bin:
        try:
            position = current_position(cursor)
        except BinlogUnavailable as exc:
            position_error = str(exc)
    else:
        position_error = "@@log_bin = 0"
    upper = {k: v.upper() for k, v in found.items()}
    return BinlogStatus(
        flavor=flavor,
        version=version,
        log_bin=log_bin,
        format=upper.get("binlog_format"),
        row_image=upper.get("binlog_row_image"),
        row_metadata=upper.get("binlog_row_metadata"),
        row_value_options=upper.get("binlog_row_value_options"),
        compressed=upper.get("log_bin_compress") in ("ON", "1")
        or upper.get("binlog_transaction_compression") in ("ON", "1"),
        server_id=int(found["server_id"]) if found.get("server_id", "").isdigit() else None,
        position=position,
        position_error=position_error,
    )


def binlog_problems(status: Mapping[str, Any]) -> list[str]:
    """Why a server with this :func:`binlog_status` cannot feed :func:`read_changes` (empty: it can).

    Each entry names the setting, its value and the fix.
    """
    flavor = status.get("flavor", "mysql")
    if not status.get("log_bin"):
        return [
            "the binary log is off (@@log_bin = 0): restart the server with --log-bin=mysql-bin --server-id=1 "
            "--binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL "
            "(scripts/ensure-services.sh does it for the local MariaDB)"
        ]
    problems: list[str] = []
    if status.get("format") != "ROW":
        problems.append(
            f"binlog_format is {status.get('format')!r}, not ROW: changes are logged as statements that cannot "
            "be read back as rows. SET GLOBAL binlog_format = 'ROW' (and in my.cnf; sessions already open keep "
            "their format until they reconnect)"
        )
    if status.get("row_image") != "FULL":
        problems.append(
            f"binlog_row_image is {status.get('row_image')!r}, not FULL: row images would miss columns. "
            "SET GLOBAL binlog_row_image = 'FULL' (and in my.cnf)"
        )
    if status.get("row_metadata") != "FULL":
        what = "MariaDB ≥ 10.5" if flavor == "mariadb" else "MySQL ≥ 8.0.14"
        problems.append(
            f"binlog_row_metadata is {status.get('row_metadata')!r}, not FULL: the log would carry no column "
            f"names, charsets or ENUM/SET values. SET GLOBAL binlog_row_metadata = 'FULL' (and in my.cnf; "
            f"needs {what})"
        )
    if status.get("row_value_options"):
        problems.append(
            f"binlog_row_value_options is {status.get('row_value_options')!r}: JSON updates would be logged as "
            "partial diffs. SET GLOBAL binlog_row_value_options = ''"
        )
    if status.get("compressed"):
        fix = "log_bin_compress = OFF" if flavor == "mariadb" else "binlog_transaction_compression = OFF"
        problems.append(f"the binary log is compressed, which this reader cannot decode: SET GLOBAL {fix}")
    if status.get("position") is None:
        problems.append(
            f"the binary log position cannot be read ({status.get('position_error')}): {_privilege_hint(flavor)}"
        )
    return problems


def require_binlog(cursor: Any) -> BinlogStatus:
    """:func:`binlog_status`, raising :class:`BinlogUnavailable` listing every problem when there is one."""
    status = binlog_status(cursor)
    problems = binlog_problems(status)
    if problems:
        raise BinlogUnavailable(f"{status['flavor']} {status['version']}: " + "; ".join(problems))
    return status


def _binary_logs(cursor: Any) -> dict[str, int]:
    """``SHOW BINARY LOGS`` as ``{file: size in bytes}``."""
    cursor.execute("SHOW BINARY LOGS")
    out: dict[str, int] = {}
    for row in cursor.fetchall():
        values = tuple(row.values()) if isinstance(row, Mapping) else tuple(row)
        out[str(values[0])] = int(values[1])
    return out


def _check_start(cursor: Any, start: BinlogPosition, flavor: str) -> None:
    """Raise unless ``start`` is in a log the server still has, at a transaction boundary."""
    try:
        logs = _binary_logs(cursor)
    except Exception as exc:
        if _error_code(exc) in _ER_ACCESS_DENIED:
            raise BinlogUnavailable(f"cannot list the binary logs: {exc}. {_privilege_hint(flavor)}") from exc
        raise
    if start.file not in logs:
        first = min((BinlogPosition(f, 4) for f in logs), default=None)
        raise BinlogPositionPurged(
            f"binlog position {start}: the server no longer has {start.file} (oldest: {first and first.file}); "
            "the changes since then are lost to this reader: copy the units again and start from a new position"
        )
    if start.pos > logs[start.file]:
        raise ValueError(f"binlog position {start}: past the end of {start.file} ({logs[start.file]} bytes)")
    if start.pos == logs[start.file]:
        return
    try:
        cursor.execute("SHOW BINLOG EVENTS IN %s FROM %s LIMIT 1", (start.file, start.pos))
        row = cursor.fetchone()
    except Exception as exc:
        if _error_code(exc) in _ER_ACCESS_DENIED:
            raise BinlogUnavailable(f"cannot read the binary log: {exc}. {_privilege_hint(flavor)}") from exc
        raise ValueError(f"binlog position {start}: not the start of an event ({exc})") from exc
    if row is not None:
        values = tuple(row.values()) if isinstance(row, Mapping) else tuple(row)
        if str(values[2]) not in _BOUNDARY_EVENT_TYPES:
            raise ValueError(
                f"binlog position {start}: inside a transaction (the event there is {values[2]}); resume only "
                "from a position read by current_position() or carried by a ChangeBatch"
            )


# ----------------------------------------------------------------------------------- library patches

def _date_literal(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}"


def _read_date(self: Any) -> Any:
    """DATE: ``datetime.date``, or the literal string when it is no valid date (``0000-00-00``)."""
    import datetime as dt

    raw = self.packet.read_uint24()
    year, month, day = raw >> 9, (raw >> 5) & 0x0F, raw & 0x1F
    try:
        return dt.date(year, month, day)
    except ValueError:
        return _date_literal(year, month, day)


def _read_datetime(self: Any) -> Any:
    """Old (pre-5.6) DATETIME: ``datetime.datetime``, or the literal string when it is no valid date."""
    import datetime as dt

    value = self.packet.read_uint64()
    date, clock = divmod(value, 1_000_000)
    year, month_day = divmod(date, 10_000)
    month, day = divmod(month_day, 100)
    hour, rest = divmod(clock, 10_000)
    minute, second = divmod(rest, 100)
    try:
        return dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return f"{_date_literal(year, month, day)} {hour:02d}:{minute:02d}:{second:02d}"


def _read_datetime2(self: Any, column: Any) -> Any:
    """DATETIME(n): ``datetime.datetime`` with microseconds, or the literal string when it is no valid date."""
    import datetime as dt

    data = self.packet.read_int_be_by_size(5)
    year_month = (data >> 22) & 0x1FFFF
    year, month = divmod(year_month, 13)
    day, hour = (data >> 17) & 0x1F, (data >> 12) & 0x1F
    minute, second = (data >> 6) & 0x3F, data & 0x3F
    micro = self._RowsEvent__read_fsp(column)
    try:
        return dt.datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        text = f"{_date_literal(year, month, day)} {hour:02d}:{minute:02d}:{second:02d}"
        fsp = int(getattr(column, "fsp", 0) or 0)
        return text + (f".{micro:06d}"[: fsp + 1] if fsp else "")


def _read_time2(self: Any, column: Any) -> Any:
    """TIME(n): ``datetime.timedelta``, right for negative times with a fraction too.

    The stored form is MySQL's packed ``(seconds part << 24) + microseconds`` with an offset, split as
    3 bytes + the fraction bytes; 1.0.17 negates the 3-byte part alone, so ``-04:59:59.750`` came back as
    ``-04:59:59.250``. This decodes it as the server's ``my_time_packed_from_binary`` does.
    """
    import datetime as dt

    fsp = int(getattr(column, "fsp", 0) or 0)
    if fsp >= 5:
        packed = int.from_bytes(self.packet.read(6), "big") - 0x800000000000
    else:
        intpart = int.from_bytes(self.packet.read(3), "big") - 0x800000
        frac = 0
        if fsp in (1, 2):
            frac = self.packet.read(1)[0]
            if intpart < 0 and frac:
                intpart, frac = intpart + 1, frac - 0x100
            frac *= 10_000
        elif fsp in (3, 4):
            frac = int.from_bytes(self.packet.read(2), "big")
            if intpart < 0 and frac:
                intpart, frac = intpart + 1, frac - 0x10000
            frac *= 100
        packed = (intpart << 24) + frac
    sign, packed = (-1 if packed < 0 else 1), abs(packed)
    hms, micro = packed >> 24, packed & 0xFFFFFF
    return sign * dt.timedelta(hours=(hms >> 12) & 0x3FF, minutes=(hms >> 6) & 0x3F, seconds=hms & 0x3F,
                               microseconds=micro)


@functools.cache
def _patch_library() -> None:
    """Make the 1.0.x row decoder return zero / partial dates as literal strings instead of ``None``, and
    negative fractional TIME values right.

    Replaces four private decoders of ``pymysqlreplication.row_event.RowsEvent`` (once per process).
    Raises :class:`RuntimeError` when the library no longer has them (a version this module was not
    checked against).
    """
    from pymysqlreplication.row_event import RowsEvent

    replacements = {"__read_date": _read_date, "__read_datetime": _read_datetime, "__read_datetime2": _read_datetime2,
                    "__read_time2": _read_time2}
    for name, func in replacements.items():
        attr = f"_RowsEvent{name}"
        if not hasattr(RowsEvent, attr) or not hasattr(RowsEvent, "_RowsEvent__read_fsp"):
            raise RuntimeError(
                f"pymysqlreplication.row_event.RowsEvent has no {attr}: cutover.binlog was checked against "
                "mysql-replication 1.0.17 only"
            )
        setattr(RowsEvent, attr, func)
    _cache_table_maps()
    _fast_row_images()


#: distinct table-map events remembered per process (each is one table definition under one table id)
TABLE_MAP_CACHE_SIZE = 4096
_TABLE_MAPS: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
#: attributes of a decoded TableMapEvent that belong to its stream, not to its content (not cached)
_TABLE_MAPS_LOCK = threading.Lock()
_STREAM_ATTRS = frozenset({"packet", "table_map", "_ctl_connection", "timestamp"})


def _cache_table_maps() -> None:
    """Decode each distinct table-map event once per process instead of once per transaction.

    MySQL/MariaDB log a ``TABLE_MAP_EVENT`` before the rows of every table in every transaction, and
    ``mysql-replication`` 1.0.17 parses it in full each time (column metadata, the optional metadata with
    every column's name and charset, a ``Table`` object): for small transactions that is about half of
    all decoding time (measured with cProfile: 4.7 of 9.5 s for 15k one-row transactions). The event's
    payload (table id, schema, table, column types, metadata, null bitmap, optional metadata) is the whole
    of what the parser reads, so two events with equal payloads (and the same stream filters) decode to
    the same result: the second one takes the first one's attributes (the same ``Table`` object) and
    only registers it in its stream's table map. A changed definition (``ALTER TABLE``) logs another
    payload. Bounded to :data:`TABLE_MAP_CACHE_SIZE` entries (least recently used dropped).
    """
    from pymysqlreplication.event import BinLogEvent
    from pymysqlreplication.row_event import TableMapEvent

    if getattr(TableMapEvent, "_cutover_cached", False):
        return
    original = TableMapEvent.__init__

    def cached_init(self: Any, from_packet: Any, event_size: int, table_map: dict[int, Any], ctl_connection: Any,
                    **kwargs: Any) -> None:
        raw = from_packet.packet  # pymysql's MysqlPacket: the event's bytes and the read position
        start = raw._position
        key = (bytes(raw._data[start:start + event_size]), _names_key(kwargs.get("only_tables")),
               _names_key(kwargs.get("only_schemas")), _names_key(kwargs.get("ignored_tables")),
               _names_key(kwargs.get("ignored_schemas")), bool(kwargs.get("freeze_schema")),
               bool(kwargs.get("optional_meta_data")))
        with _TABLE_MAPS_LOCK:
            hit = _TABLE_MAPS.get(key)
            if hit is not None:
                _TABLE_MAPS.move_to_end(key)
        if hit is None or (kwargs.get("freeze_schema") and hit.get("table_id") in table_map):
            original(self, from_packet, event_size, table_map, ctl_connection, **kwargs)
            with _TABLE_MAPS_LOCK:
                _TABLE_MAPS[key] = {k: v for k, v in self.__dict__.items() if k not in _STREAM_ATTRS}
                if len(_TABLE_MAPS) > TABLE_MAP_CACHE_SIZE:
                    _TABLE_MAPS.popitem(last=False)
            return
        BinLogEvent.__init__(self, from_packet, event_size, table_map, ctl_connection, **kwargs)
        self.__dict__.update(hit)
        if self._processed:
            table_map[self.table_id] = self.table_obj

    TableMapEvent.__init__ = cached_init  # type: ignore[method-assign]
    TableMapEvent._cutover_cached = True  # type: ignore[attr-defined]


def _names_key(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


# fast-path kinds of a column in a row image (see _fast_row_images)
_K_STRUCT, _K_INT24, _K_TEXT, _K_BYTES, _K_YEAR, _K_DECIMAL, _K_LIBRARY = range(7)
_DECIMAL_BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)  # bytes of a group of 0…9 leftover digits


def _decimal_layout(precision: int, scale: int) -> tuple[int, tuple[tuple[int, int], ...], int]:
    """A ``DECIMAL(precision, scale)``'s binary layout: (bytes, groups, groups before the point), each
    group (bytes, digits) with digits 0 for the leading integral group (printed without padding). The
    format: MySQL's ``decimal2bin`` (strings/decimal.cc), as ``mysql-replication`` reads it."""
    integral = precision - scale
    groups: list[tuple[int, int]] = []
    if _DECIMAL_BYTES[integral % 9]:
        groups.append((_DECIMAL_BYTES[integral % 9], 0))
    groups += [(4, 9)] * (integral // 9)
    before = len(groups)
    groups += [(4, 9)] * (scale // 9)
    if _DECIMAL_BYTES[scale % 9]:
        groups.append((_DECIMAL_BYTES[scale % 9], scale % 9))
    return sum(b for b, _ in groups), tuple(groups), before


def _read_decimal(data: bytes, pos: int, layout: tuple[int, tuple[tuple[int, int], ...], int]) -> Decimal:
    """One ``DECIMAL`` value at ``data[pos:]`` (see :func:`_decimal_layout`): the same text, hence the
    same ``Decimal`` (sign, digits and exponent), as the library's ``__read_new_decimal``."""
    size, groups, before = layout
    raw = bytearray(data[pos:pos + size])
    if len(raw) != size:
        raise BinlogReadError("binlog: a DECIMAL value ends outside its row image")
    negative = not raw[0] & 0x80
    raw[0] ^= 0x80
    if negative:
        raw = bytearray(b ^ 0xFF for b in raw)
    parts = ["-"] if negative else []
    at = 0
    for i, (n, digits) in enumerate(groups):
        if i == before:
            parts.append(".")
        value = int.from_bytes(raw[at:at + n], "big")
        at += n
        parts.append(str(value) if digits == 0 else f"{value:0{digits}d}")
    if before == len(groups):
        parts.append(".")
    return Decimal("".join(parts))


def _row_plan(columns: list[Any]) -> list[tuple[str, int, Any, int, Any]] | None:
    """Per column of a table map: ``(name, kind, how, size, column)`` for :func:`_fast_row_images`, or
    None when a column has no name (the library's own path looks names up)."""
    import codecs
    import struct

    from pymysqlreplication.constants import FIELD_TYPE
    from pymysqlreplication.row_event import RowsEvent

    fixed = {FIELD_TYPE.TINY: (1, "b"), FIELD_TYPE.SHORT: (2, "h"), FIELD_TYPE.LONG: (4, "i"),
             FIELD_TYPE.LONGLONG: (8, "q"), FIELD_TYPE.FLOAT: (4, "f"), FIELD_TYPE.DOUBLE: (8, "d")}
    plan: list[tuple[str, int, Any, int, Any]] = []
    for c in columns:
        if not c.name:
            return None
        t = c.type
        if t in fixed:
            size, code = fixed[t]
            if c.unsigned and t not in (FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE):
                code = code.upper()
            plan.append((c.name, _K_STRUCT, struct.Struct("<" + code).unpack_from, size, c))
        elif t == FIELD_TYPE.INT24:
            plan.append((c.name, _K_INT24, not c.unsigned, 3, c))
        elif t == FIELD_TYPE.YEAR:
            plan.append((c.name, _K_YEAR, None, 1, c))
        elif t in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING, FIELD_TYPE.BLOB):
            size = c.length_size if t == FIELD_TYPE.BLOB else (2 if c.max_length > 255 else 1)
            encoding = "utf-8" if c.character_set_name is None else RowsEvent.charset_to_encoding(c.character_set_name)
            if encoding is None:  # a charset the library cannot name an encoding for: its own path
                plan.append((c.name, _K_LIBRARY, None, 0, c))
                continue
            try:
                codecs.lookup(encoding)
            except LookupError:  # the library keeps such values as bytes (``binary``, ``swe7``)
                plan.append((c.name, _K_BYTES, None, size, c))
                continue
            plan.append((c.name, _K_TEXT, encoding, size, c))
        elif t == FIELD_TYPE.NEWDECIMAL and 0 < c.precision <= 65 and 0 <= c.decimals <= min(30, c.precision):
            layout = _decimal_layout(c.precision, c.decimals)
            plan.append((c.name, _K_DECIMAL, layout, layout[0], c))
        else:  # dates and times, JSON, ENUM, SET, BIT, GEOMETRY: the library's decoders
            plan.append((c.name, _K_LIBRARY, None, 0, c))
    return plan


def _fast_row_images() -> None:
    """Decode row images column by column from the event's bytes, with a per-table plan built once.

    ``mysql-replication`` 1.0.17 reads every value through a chain of type tests and two wrapper calls
    per read (cProfile: 8 of 10 s of a catch-up's decoding). Its ``_read_column_data`` is replaced for
    full row images (``binlog_row_image = FULL``: every column present) of ordinary row events: integers,
    floats, ``YEAR`` and strings / blobs are read here straight from the packet's buffer, exactly as the
    library reads them (the same struct formats, length prefixes and text decoding, strict), decimals
    by the same digit groups (:func:`_read_decimal`); every other type (temporal types, JSON, ENUM, SET,
    BIT, geometry) goes through the library's own decoders, so their values and ``none_sources`` stay
    the library's. Anything else (a
    minimal image, a partial JSON update, a column without a name, data pushed back into the wrapper)
    takes the library's path unchanged.
    """
    from pymysqlreplication.constants import BINLOG
    from pymysqlreplication.row_event import RowsEvent

    if getattr(RowsEvent, "_cutover_fast", False):
        return
    original = RowsEvent._read_column_data
    RowsEvent.charset_to_encoding = staticmethod(functools.lru_cache(maxsize=512)(RowsEvent.charset_to_encoding))
    partial = BINLOG.PARTIAL_UPDATE_ROWS_EVENT
    null_source = "null"

    def read_column_data(self: Any, cols_bitmap: Any, row_image_type: Any = None) -> dict[str, Any]:
        wrapper = self.packet
        info = self.table_map[self.table_id]
        plan = info.__dict__.get("_cutover_plan", False)
        if plan is False:
            plan = info.__dict__["_cutover_plan"] = _row_plan(self.columns)
            info.__dict__["_cutover_full"] = (((1 << len(self.columns)) - 1).to_bytes((len(self.columns) + 7) // 8, "little"))
        if (plan is None or self.event_type == partial or cols_bitmap != info.__dict__["_cutover_full"]
                or wrapper._BinLogPacketWrapper__data_buffer):
            return original(self, cols_bitmap, row_image_type)  # type: ignore[no-any-return]
        self.is_partial_json_update = False
        raw = wrapper.packet
        data = raw._data
        nulls = (len(plan) + 7) // 8
        pos = raw._position
        null_bitmap = data[pos:pos + nulls]
        pos += nulls
        values: dict[str, Any] = {}
        none_sources = self._RowsEvent__none_sources
        for i, (name, kind, how, size, column) in enumerate(plan):
            if null_bitmap[i >> 3] & (1 << (i & 7)):
                values[name] = None
                none_sources[name] = null_source
                continue
            if kind == _K_STRUCT:
                values[name] = how(data, pos)[0]
                pos += size
            elif kind == _K_TEXT or kind == _K_BYTES:
                n = int.from_bytes(data[pos:pos + size], "little")
                pos += size
                chunk = data[pos:pos + n]
                if len(chunk) != n:
                    raise BinlogReadError(f"binlog: row image of {self.schema}.{self.table} ends inside column {name!r}")
                pos += n
                values[name] = chunk.decode(how) if kind == _K_TEXT else chunk
            elif kind == _K_INT24:
                values[name] = int.from_bytes(data[pos:pos + 3], "little", signed=how)
                pos += 3
            elif kind == _K_YEAR:
                values[name] = data[pos] + 1900
                pos += 1
            elif kind == _K_DECIMAL:
                values[name] = _read_decimal(data, pos, how)
                pos += size
            else:  # the library reads it from where the packet stands
                wrapper.read_bytes += pos - raw._position
                raw._position = pos
                values[name] = self._RowsEvent__read_values_name(column, null_bitmap, i, False, cols_bitmap,
                                                                 column.unsigned, i)
                pos = raw._position
        if pos > len(data):
            raise BinlogReadError(f"binlog: row image of {self.schema}.{self.table} is longer than its event")
        wrapper.read_bytes += pos - raw._position
        raw._position = pos
        return values

    read_column_data.__wrapped__ = original  # type: ignore[attr-defined]
    RowsEvent._read_column_data = read_column_data  # type: ignore[method-assign]
    RowsEvent._cutover_fast = True  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------ value conversion

def json_text(value: Any) -> str:
    """MySQL 8 binary JSON as decoded by the library → compact JSON text, as MySQL prints it.

    Keys and strings arrive as UTF-8 ``bytes``; DECIMAL members keep their digits; DATE / DATETIME / TIME
    members (opaque JSON values) become strings; ``None`` (a JSON ``null``) becomes ``'null'``. Separators
    are MySQL's (``", "`` and ``": "``); non-ASCII characters are kept as they are.
    """
    import datetime as dt

    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, dict):
        items = (
            json.dumps(k.decode("utf-8") if isinstance(k, bytes) else str(k), ensure_ascii=False) + ": " + json_text(v)
            for k, v in value.items()
        )
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(json_text(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    if isinstance(value, dt.datetime):
        return json.dumps(value.isoformat(sep=" "))
    if isinstance(value, dt.date | dt.time | dt.timedelta):
        return json.dumps(value.isoformat() if not isinstance(value, dt.timedelta) else str(value))
    return json.dumps(value, ensure_ascii=False)


def _column_converter(column: Any, flavor: str) -> Any:
    """A function fixing one column's decoded value (see the module docstring's quirks), or None."""
    from pymysqlreplication.constants import FIELD_TYPE as T

    kind = column.type
    if kind in (T.TIMESTAMP, T.TIMESTAMP2):
        # 0 seconds (naive UTC 1970-01-01 00:00:00) is the zero TIMESTAMP: the valid range starts 1 s later
        return lambda v: "0000-00-00 00:00:00" if v == _EPOCH else v
    if kind == T.YEAR:
        return lambda v: 0 if v == 1900 else v
    if kind == T.BIT:
        return lambda v: int(v, 2) if isinstance(v, str) else v
    if kind == T.SET:
        members = list(column.set_values or [])
        return lambda v: ",".join(m for m in members if m in v) if isinstance(v, set | frozenset) else v
    if kind == T.JSON and flavor == "mysql":
        return json_text
    if kind == T.STRING and getattr(column, "max_length", 0):
        width = int(column.max_length)
        return lambda v: v.ljust(width, b"\x00") if isinstance(v, bytes) else v
    return None


# ------------------------------------------------------------------------------------------ reading

def _reader_server_id(conn_id: str) -> int:
    """A replica server id for one reader: unique per call (pid, thread, time), in 2^31 … 2^32 - 2."""
    seed = f"{conn_id}:{os.getpid()}:{threading.get_ident()}:{time.time_ns()}:{os.urandom(8).hex()}"
    digest = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "big")
    return 2**31 + digest % (2**31 - 1)


def _as_names(value: Collection[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"{what} must be a collection of names, not the string {value!r}")
    return frozenset(value)


def read_changes(
    conn_id: str,
    start: BinlogPosition,
    *,
    schemas: Collection[str] | None = None,
    tables: Collection[str] | None = None,
    stop_at: BinlogPosition | None = None,
    max_changes: int | None = None,
    server_id: int | None = None,
    idle_timeout_s: float = 0.0,
    read_timeout_s: float = 120.0,
) -> Generator[ChangeBatch, None, None]:
    """Committed row changes from ``start`` on, one :class:`ChangeBatch` (transaction) at a time.

    ``conn_id``: a MySQL/MariaDB Airflow connection id (:func:`cutover.connections.resolve`); its user needs
    REPLICATION SLAVE and REPLICATION CLIENT. ``start``: a transaction boundary — a position from
    :func:`current_position` or a yielded :attr:`ChangeBatch.position`. ``schemas`` / ``tables``: only
    changes of tables named in ``tables`` (any name when None) inside schemas named in ``schemas`` (any
    when None); names compared exactly. ``stop_at``: read up to this position (default: the end of the log
    when this function is called); the batch that reaches or crosses it is the last one (a batch is never
    split). ``max_changes``: stop after the transaction that brings the number of yielded changes to at least
    this many. ``server_id``: the replica id the reader registers with (default: a random id in
    2^31 … 2^32 - 2; two readers with the same id cut each other off). ``idle_timeout_s``: when the log
    ends before ``stop_at``, keep polling until this many seconds pass without a change of the watched tables (0: return
    at the end). ``read_timeout_s``: socket read timeout of the replication connection.

    The server's settings and ``start`` are checked when this function is called (before the first batch):
    :class:`BinlogUnavailable` (settings, privileges), :class:`BinlogPositionPurged` (``start`` expired),
    ``ValueError`` (``start`` not at a transaction boundary). While reading, :class:`BinlogReadError` is
    raised for content that cannot be turned into rows (see the module docstring). Closing the returned
    generator early (``close()``, or leaving a ``for`` loop) closes the replication connection; resume from
    the last batch applied.
    """
    import MySQLdb

    info = resolve(conn_id)
    if not info.is_mysql:
        raise CutoverConnectionError(f"connection {conn_id!r} is {info.conn_type!r}, not mysql")
    if max_changes is not None and max_changes < 1:
        raise ValueError(f"max_changes must be >= 1, not {max_changes}")
    schema_set = _as_names(schemas, "schemas")
    table_set = _as_names(tables, "tables")
    _patch_library()
    conn = MySQLdb.connect(**info.mysql_kwargs(database=""))
    try:
        cur = conn.cursor()
        status = require_binlog(cur)
        _check_start(cur, start, status["flavor"])
    finally:
        conn.close()
    assert status["position"] is not None
    target = stop_at if stop_at is not None else status["position"]
    settings = {
        "host": info.host or "127.0.0.1",
        "port": int(info.port or 3306),
        "user": info.login or "root",
        "password": info.password,
        "charset": "utf8mb4",
        "connect_timeout": 10,
        "read_timeout": read_timeout_s,
    }
    return _Reader(
        settings=settings, conn_id=conn_id, flavor=status["flavor"], start=start, target=target,
        schemas=schema_set, tables=table_set, max_changes=max_changes,
        server_id=server_id if server_id is not None else _reader_server_id(conn_id),
        idle_timeout_s=idle_timeout_s,
    ).batches()


@dataclass
class _Reader:
    """The state of one :func:`read_changes` call (see there)."""

    settings: dict[str, Any]
    conn_id: str
    flavor: str
    start: BinlogPosition
    target: BinlogPosition
    schemas: frozenset[str] | None
    tables: frozenset[str] | None
    max_changes: int | None
    server_id: int
    idle_timeout_s: float

    def batches(self) -> Generator[ChangeBatch, None, None]:
        """Open the stream at the last safe position, read transactions, reopen while waiting for ``target``."""
        safe = self.start  # after the last complete transaction read
        yielded = self.start  # the position of the last batch handed out
        total = 0
        last_progress = time.monotonic()
        while safe < self.target:
            before, done = total, False
            with closing(self._read_from(safe)) as transactions:
                for batch in transactions:
                    safe = max(safe, batch.position)
                    if batch:
                        total += len(batch)
                        yielded = safe
                        yield batch
                    if self.target <= safe or (self.max_changes is not None and total >= self.max_changes):
                        done = True
                        break
            if done or safe >= self.target:
                break
            # the end of the log came before the target: wait for more, up to idle_timeout_s without a change
            # of the watched tables (other schemas' transactions move the position but are no progress: on
            # a busy server they would keep the reader waiting for ever)
            if total > before:
                last_progress = time.monotonic()
            if time.monotonic() - last_progress >= self.idle_timeout_s:
                break
            time.sleep(min(0.2, self.idle_timeout_s))
        if safe > yielded:
            yield ChangeBatch([], position=safe, timestamp=0)

    def _stream(self, at: BinlogPosition) -> Any:
        from pymysqlreplication import BinLogStreamReader

        return BinLogStreamReader(
            connection_settings=dict(self.settings),
            server_id=self.server_id,
            resume_stream=True,
            blocking=False,
            log_file=at.file,
            log_pos=at.pos,
            only_schemas=sorted(self.schemas) if self.schemas is not None else None,
            only_tables=sorted(self.tables) if self.tables is not None else None,
            filter_non_implemented_events=False,
            enable_logging=False,
            is_mariadb=False,  # True would make 1.0.17 ignore log_file/log_pos and start from the oldest log
        )

    def _read_from(self, at: BinlogPosition) -> Generator[ChangeBatch, None, None]:
        """Transactions from ``at`` to the end of the log; empty batches mark boundaries without changes."""
        import pymysql
        from pymysqlreplication import event as ev
        from pymysqlreplication import row_event as rev

        stream = self._stream(at)
        file = at.file
        pending: list[tuple[ChangeKind, str, str, dict[str, Any] | None, dict[str, Any] | None, int]] = []
        in_txn = False
        gtid: str | None = None
        try:
            while True:
                try:
                    event = stream.fetchone()
                except pymysql.err.MySQLError as exc:
                    raise self._stream_error(exc, BinlogPosition(file, max(4, stream.log_pos or 4))) from exc
                if event is None:
                    return
                end = int(getattr(event.packet, "log_pos", 0) or 0)
                here = BinlogPosition(file, end) if end >= 4 else None

                if isinstance(event, ev.RotateEvent):
                    file = event.next_binlog
                    if not in_txn and not pending and event.position >= 4:
                        rotated = BinlogPosition(file, event.position)
                        if rotated > at:
                            yield ChangeBatch([], position=rotated, timestamp=event.timestamp)
                    continue
                if isinstance(event, rev.TableMapEvent):
                    continue
                if isinstance(event, rev.RowsEvent):
                    pending.extend(self._rows(event, here))
                    continue
                if isinstance(event, ev.XidEvent):
                    batch = self._commit(pending, here, event.timestamp, gtid, what="XID")
                    pending, in_txn, gtid = [], False, None
                    yield batch
                    continue
                if isinstance(event, ev.MariadbGtidEvent):
                    self._no_pending(pending, here, "a new transaction started before the last one committed")
                    gtid = event.gtid
                    in_txn = not (event.flags & _MARIADB_FL_STANDALONE)
                    continue
                if isinstance(event, ev.GtidEvent):
                    gtid = event.gtid
                    continue
                if isinstance(event, ev.QueryEvent):
                    query = event.query.strip()
                    word = query.split(None, 1)[0].upper() if query else ""
                    head = " ".join(query.upper().split()[:2])
                    if word == "BEGIN" or head == "XA START":
                        self._no_pending(pending, here, "BEGIN before the last transaction committed")
                        in_txn = True
                    elif word == "COMMIT":
                        batch = self._commit(pending, here, event.timestamp, gtid, what="COMMIT")
                        pending, in_txn, gtid = [], False, None
                        yield batch
                    elif word == "ROLLBACK" and head != "ROLLBACK TO":
                        self._no_pending(
                            pending, here,
                            "a transaction logged with ROLLBACK holds row changes (it modified non-transactional "
                            "tables, whose changes persist while the others were undone); resync those tables",
                        )
                        in_txn, gtid = False, None
                        if here is not None:
                            yield ChangeBatch([], position=here, timestamp=event.timestamp)
                    elif word in ("SAVEPOINT", "RELEASE") or head in ("ROLLBACK TO", "XA END"):
                        pass
                    elif head in ("XA PREPARE", "XA COMMIT", "XA ROLLBACK"):
                        self._no_pending(pending, here, "XA transactions are not supported")
                        in_txn = False
                        if here is not None and head != "XA PREPARE":
                            yield ChangeBatch([], position=here, timestamp=event.timestamp)
                    elif in_txn:
                        schema = event.schema.decode("utf-8", "replace") if isinstance(event.schema, bytes) \
                            else str(event.schema)
                        if self._may_concern(schema, query):
                            raise BinlogReadError(
                                f"binlog {here}: a change logged as a statement inside a transaction (schema "
                                f"{schema!r}: {query[:200]!r}): the writer's session used binlog_format "
                                "STATEMENT/MIXED; set binlog_format=ROW for every writer and copy the units again"
                            )
                        log.warning("binlog %s: statement-logged change in schema %r ignored (not read)", here, schema)
                    else:  # DDL or another statement on its own: a boundary
                        self._no_pending(pending, here, "a statement outside a transaction interrupted row changes")
                        if here is not None:
                            yield ChangeBatch([], position=here, timestamp=event.timestamp)
                    continue
                if isinstance(event, ev.XAPrepareEvent):
                    self._no_pending(pending, here, "XA transactions are not supported")
                    in_txn = False
                    continue
                if isinstance(event, ev.NotImplementedEvent):
                    name = _FATAL_EVENT_TYPES.get(event.event_type)
                    if name is not None:
                        raise BinlogReadError(f"binlog {here}: event {name} cannot be read; rows would be lost")
                    continue
                if (
                    not in_txn and not pending and here is not None
                    and isinstance(event, ev.FormatDescriptionEvent | ev.MariadbGtidListEvent
                                   | ev.MariadbBinLogCheckPointEvent | ev.PreviousGtidsEvent | ev.StopEvent)
                    and here > at
                ):
                    yield ChangeBatch([], position=here, timestamp=event.timestamp)
        finally:
            stream.close()

    def _may_concern(self, schema: str, query: str) -> bool:
        """Whether a statement-logged change (default schema ``schema``) may touch a watched schema: yes
        unless it ran in another schema and names none of the watched ones (a conservative text match)."""
        if self.schemas is None or not schema or schema in self.schemas:
            return True
        text = query.lower()
        return any(name.lower() in text for name in self.schemas)

    def _stream_error(self, exc: BaseException, near: BinlogPosition) -> Exception:
        code = _error_code(exc)
        if code in _ER_ACCESS_DENIED:
            return BinlogUnavailable(
                f"connection {self.conn_id!r}: the server refused the binlog stream ({exc}). {_privilege_hint(self.flavor)}"
            )
        if code == _ER_MASTER_FATAL_READING_BINLOG:
            return BinlogPositionPurged(
                f"connection {self.conn_id!r}: the server cannot send the binary log near {near} ({exc}): it was "
                "purged or the position is invalid; copy the units again and start from a new position"
            )
        return BinlogReadError(f"connection {self.conn_id!r}: binlog stream failed near {near}: {exc}")

    @staticmethod
    def _no_pending(pending: list[Any], here: BinlogPosition | None, why: str) -> None:
        if pending:
            first = pending[0]
            raise BinlogReadError(f"binlog {here}: {why} (pending changes of {first[1]}.{first[2]})")

    def _rows(self, event: Any, here: BinlogPosition | None) -> Iterator[
        tuple[ChangeKind, str, str, dict[str, Any] | None, dict[str, Any] | None, int]
    ]:
        from pymysqlreplication import row_event as rev

        schema, table = event.schema, event.table
        if (self.schemas is not None and schema not in self.schemas) or (
            self.tables is not None and table not in self.tables
        ):
            return
        if isinstance(event, rev.PartialUpdateRowsEvent):
            raise BinlogReadError(
                f"binlog {here}: {schema}.{table}: a partial JSON update (binlog_row_value_options=PARTIAL_JSON); "
                "SET GLOBAL binlog_row_value_options = '' and copy the table again"
            )
        table_info = event.table_map[event.table_id]
        if not getattr(table_info, "column_name_flag", False):
            raise BinlogReadError(
                f"binlog {here}: {schema}.{table}: written without column names (binlog_row_metadata was not "
                "FULL when this change was logged); start from a position logged after it was set"
            )
        by_flavor = table_info.__dict__.setdefault("_cutover_converters", {})  # per decoded table map
        converters = by_flavor.get(self.flavor)
        if converters is None:
            converters = by_flavor[self.flavor] = [(c.name, _column_converter(c, self.flavor)) for c in event.columns]

        def image(values: dict[str, Any], none_sources: Mapping[str, str]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, convert in converters:
                value = values[name]
                if value is None and none_sources.get(name) == "empty set":
                    value = ""
                elif convert is not None and value is not None:
                    value = convert(value)
                out[name] = value
            return out

        ts = int(event.timestamp)
        for row in event.rows:
            if isinstance(event, rev.WriteRowsEvent):
                yield ("insert", schema, table, None, image(row["values"], row.get("none_sources", {})), ts)
            elif isinstance(event, rev.DeleteRowsEvent):
                yield ("delete", schema, table, image(row["values"], row.get("none_sources", {})), None, ts)
            else:
                yield (
                    "update", schema, table,
                    image(row["before_values"], row.get("before_none_sources", {})),
                    image(row["after_values"], row.get("after_none_sources", {})),
                    ts,
                )

    @staticmethod
    def _commit(pending: list[tuple[ChangeKind, str, str, dict[str, Any] | None, dict[str, Any] | None, int]],
                here: BinlogPosition | None, timestamp: int, gtid: str | None, *, what: str) -> ChangeBatch:
        if here is None:
            raise BinlogReadError(f"binlog: a {what} event without a log position")
        changes = [RowChange(kind, s, t, b, a, here, ts) for kind, s, t, b, a, ts in pending]
        return ChangeBatch(changes, position=here, timestamp=int(timestamp), gtid=gtid)


__all__ = [
    "BinlogPosition",
    "BinlogPositionPurged",
    "BinlogReadError",
    "BinlogStatus",
    "BinlogUnavailable",
    "ChangeBatch",
    "RowChange",
    "binlog_problems",
    "binlog_status",
    "current_position",
    "json_text",
    "read_changes",
    "require_binlog",
]
