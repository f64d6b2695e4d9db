"""Reverse replication after a table's switch: PostgreSQL's writes flow back to MySQL, so a rollback loses nothing.

Once a table's readers (and the writers that follow them) use PostgreSQL, MySQL stops being written. From
:func:`start` on, every row PostgreSQL's application writes to the table is captured, and :func:`run`
(the sync DAG, every minute) applies it to the MySQL table; :func:`drain` (the life cycle's
``drain_reverse``, called by rollback before its divergence check) applies everything, uninstalls the
capture and moves the table's forward sync position past it. Writes that still reach MySQL after the
switch (a client that did not re-read its route) are **stray writes**: found in MySQL's binary log,
recorded with their keys (:func:`cutover.control.record_stray_writes`, the status page and the evidence),
logged as errors, and with ``forward_stray_writes`` applied to PostgreSQL too.

**Capture: a trigger-fed change table, not logical decoding** (measured, issue #20). PostgreSQL's logical
decoding (``pgoutput``) needs ``wal_level = logical``: the embedded PostgreSQL and the local PG 15 run with
``replica``, and changing it is a server restart (on a managed Postgres a parameter-group change and a
reboot, plus a replication slot that holds WAL while the applier is down — a full disk if it stays down).
A trigger needs nothing from the server: three ``AFTER … FOR EACH STATEMENT`` triggers with transition
tables (``REFERENCING NEW TABLE / OLD TABLE``) write one row per changed key (``id bigserial, txid xid8,
op, key jsonb, at``) into ``cutover_state.m2p_reverse_changes`` — an update its new key, and its old key
only where the key changed (an anti-join of the two transition tables); they are installed by
:func:`start` and dropped by :func:`drain`. Only the key is captured: the applier reads the row itself.
Measured on the embedded PostgreSQL 16 (2 cores shared with other test runs, so ±30 %; 50,000 rows of
(bigint, text, json, timestamp(6))): bulk INSERT 0.09 s → 0.19 s with the statement triggers (0.41 s with
a row trigger), bulk UPDATE 0.13 → 0.44–0.74 s (row trigger 0.75 s), bulk DELETE 0.03 → 0.12 s (0.33 s);
2,000 single-row autocommit UPDATEs 0.62–0.92 s → 0.70–0.86 s (the commit dominates: within noise).
About 2 µs per inserted row and 6–12 µs per updated row on the writer's side.
**Applied** (reverse.run, the same machine, load 3–5): 7,000–10,600 inserted rows/s, 3,700–5,100
updated rows/s, 6,700–12,700 deleted rows/s, of which the stray-write scan takes over half: it decodes
MySQL's binlog, the applier's own row images included, before it can skip them by server id (a reader
that skipped a transaction by its GTID's server id before decoding its rows would remove that cost).
Writes made by Cutover's own forward sync (``cutover.replaying`` set, :func:`cutover.mysql_to_postgres.
load.refresh_keys`) are not captured, so a forwarded stray write does not come back.

**Which changes a batch takes**: change ids are handed out before commit, so a smaller id can commit after a
larger one was read. A batch takes, in a ``REPEATABLE READ`` snapshot, only the changes of transactions
older than the snapshot's ``xmin`` (every one of them has ended), in id order; the rows of their keys are
read **in that same snapshot**. The batch is described by ``(last_id, last_xmin)``: exactly the changes with
``id <= last_id`` and ``txid < last_xmin``. :func:`drain` takes the rest after the triggers are dropped
(dropping them waits for every writer of the table: no capturing transaction is left in flight).

**Exactly once**: each batch is applied in **one MySQL transaction** that also stores ``(last_id,
last_xmin)`` in MySQL (``<reverse_state_database>.m2p_reverse``, row locked ``FOR UPDATE`` for the whole
batch: two appliers of one table take turns). The applied changes are then deleted from the change
table; a run killed between the two finds them by the stored pair and deletes them without applying
them again. A run killed before the MySQL commit applied nothing.

**Applying**: keys PostgreSQL no longer has are deleted from MySQL, then the rows it has are upserted
(``INSERT … ON DUPLICATE KEY UPDATE``, 500 rows a statement), values converted back to the MySQL column
types from the table's plan (:class:`cutover.mysql_to_postgres.typemap.TableMap`): ``timestamptz`` →
UTC wall clock (the session runs at ``+00:00``), ``interval`` → ``TIME`` text, ``bit(n)`` → its number,
``bytea`` → ``UNHEX``, ``json`` → its text, booleans → 1 / 0. The session runs with ``STRICT_ALL_TABLES``
(a value MySQL cannot hold fails, never truncated), ``foreign_key_checks = 0`` (tables are applied one
by one; PostgreSQL enforced the keys already, and its cascades are captured table by table) and
``server_id = REVERSE_SERVER_ID``, so its transactions are recognisable in the binary log
(:attr:`cutover.binlog.ChangeBatch.origin_server_id` on MariaDB; on MySQL 8, whose GTIDs name the
server's UUID, by the position-table row every applier transaction writes). A row MySQL refuses is
isolated (one savepoint per row) and becomes a dead letter naming table and key; the others apply.

**What cannot be reversed** (the copy's rules that lose information): a zero or partial date the copy
made NULL (``zero_date: null``) and the invalid ENUM value made NULL (``enum_empty: null``) — where
PostgreSQL still holds NULL and MySQL the zero date / invalid value, MySQL's value is **kept** (the row's
other columns are applied): the NULL cannot say whether the application meant it. Columns left out of the
copy (``skip``) keep their MySQL value (new rows: their default); generated columns are MySQL's to compute
(PostgreSQL holds their copied values as plain columns, which its writers do not recompute: the rollback's
divergence check then reports those rows — a known gap).
A ``uuid`` override comes back in lower case; MySQL's CHAR padding and a ``_ci`` key's case follow what
PostgreSQL holds. ``ON DUPLICATE KEY UPDATE`` also matches a secondary UNIQUE key. Two PostgreSQL keys
that MySQL's collation takes for one (``alpha`` and ``ALPHA`` under ``_ci``) become one MySQL row.

**Tables without a key** are refused at :func:`start` (:class:`ReverseUnsupported`): a change cannot be
named row by row, and a whole reload of MySQL from PostgreSQL would undo every stray write silently.
Such a table's rollback is refused by the divergence check until its writes are copied by hand (or
discarded with ``discard_target_writes``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from cutover import binlog, control
from cutover.connections import mysql_connect, pg_connect
from cutover.identifiers import quote_mysql, quote_pg
from cutover.lifecycle.model import UnitKey
from cutover.mysql_to_postgres import load
from cutover.mysql_to_postgres.config import PIPELINE, MysqlToPostgresConfig
from cutover.mysql_to_postgres.typemap import ColumnMap, TableMap, pg_lit

log = logging.getLogger(__name__)

#: the ``server_id`` the applier's MySQL session takes (below the binlog reader's random range 2^31 …)
REVERSE_SERVER_ID = 1_920_200_005
#: the change table in the target's state schema
CHANGES = f"{load.STATE_SCHEMA}.m2p_reverse_changes"
#: the position table in ``cfg.reverse_state_database``
STATE_TABLE = "m2p_reverse"
#: changes (keys) per applied batch, and rows per MySQL statement
BATCH_CHANGES = 5_000
ROWS_PER_STATEMENT = 500
DIRECTION = "reverse"
_OPS = {"INSERT": ("I", "NEW TABLE AS n", ("n",)), "UPDATE": ("U", "OLD TABLE AS o NEW TABLE AS n", ("o", "n")),
        "DELETE": ("D", "OLD TABLE AS o", ("o",))}
#: MySQL errors that are about one row's data (the row becomes a dead letter, the batch goes on)
_ROW_ERRORS = {1048, 1062, 1264, 1265, 1292, 1366, 1406, 1411, 1451, 1452, 1690, 3140, 4025, 1367, 1216, 1217}

Hook = Callable[[str], None]


class ReverseUnsupported(ValueError):
    """The table cannot be reverse-replicated (no key; the message says what the rollback then needs)."""


# ------------------------------------------------------------------------------------------------ helpers

def _key(k: UnitKey | str) -> UnitKey:
    return k if isinstance(k, UnitKey) else UnitKey.parse(k)


def _plan(cfg: MysqlToPostgresConfig, key: UnitKey) -> TableMap:
    from cutover.mysql_to_postgres.build import latest_plans

    tm = latest_plans(cfg, [str(key)]).get(str(key))
    if tm is None:
        raise LookupError(f"mysql_to_postgres table {key.label}: no plan recorded, nothing to reverse-replicate")
    return tm


def _name(key: UnitKey) -> str:
    """The stream's name in ``cutover.streams``: the MySQL table."""
    return key.parts[0]


def _tag(key: UnitKey) -> str:
    return hashlib.sha1(str(key).encode("utf-8")).hexdigest()[:16]


def _function(key: UnitKey, op: str) -> str:
    return f"{load.STATE_SCHEMA}.{quote_pg(f'm2p_rev_{_tag(key)}_{op.lower()}')}"


def _trigger(op: str) -> str:
    return quote_pg(f"cutover_m2p_reverse_{op.lower()}")


def _state(cfg: MysqlToPostgresConfig) -> str:
    return f"{quote_mysql(cfg.reverse_state_database)}.{quote_mysql(STATE_TABLE)}"


def jsonable(v: Any) -> Any:
    """A value as JSON can hold it (a key for the stray-write list, a dead letter's row)."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return _time_text(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return "\\x" + bytes(v).hex()
    return str(v)


def _time_text(td: dt.timedelta) -> str:
    """A ``timedelta`` as MySQL TIME text (``-838:59:59.000000`` … ``838:59:59.000000``)."""
    us = abs(td.days * 86_400_000_000 + td.seconds * 1_000_000 + td.microseconds)
    sign = "-" if td < dt.timedelta(0) else ""
    s, us = divmod(us, 1_000_000)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{s:02d}.{us:06d}"


def _read_expr(c: ColumnMap, expr: str) -> str:
    """The PostgreSQL expression that reads ``expr`` (a value of ``c``) in a form :func:`_to_mysql` turns
    into what MySQL stores."""
    t = c.pg_type.lower()
    if t in ("json", "jsonb", "uuid") or t.startswith("bit"):
        return f"({expr})::text"
    if "with time zone" in t or t == "timestamptz":
        return f"(({expr}) AT TIME ZONE 'UTC')"
    return expr


def _to_mysql(c: ColumnMap, v: Any) -> Any:
    """A value read by :func:`_read_expr` as the MySQL parameter of ``c`` (see :func:`_placeholder`)."""
    if v is None:
        return None
    if isinstance(v, dt.timedelta):
        return _time_text(v)
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()
    if c.pg_type.lower().startswith("bit") and isinstance(v, str):
        return int(v, 2) if v else 0
    return v


def _placeholder(c: ColumnMap) -> str:
    return "UNHEX(%s)" if c.pg_type.lower() == "bytea" else "%s"


def _keep_when_null(c: ColumnMap) -> str | None:
    """The MySQL condition (on the stored value) under which a NULL from PostgreSQL keeps MySQL's value:
    the copy made that value NULL and cannot say what it was (zero dates, the invalid ENUM value)."""
    q = quote_mysql(c.source).replace("%", "%%")
    if c.rule == "zero_date: null":
        return f"(MONTH({q}) = 0 OR DAYOFMONTH({q}) = 0 OR YEAR({q}) = 0)"
    if c.rule == "enum_empty: null":
        return f"({q} + 0 = 0)"
    return None


@contextmanager
def _applier(cfg: MysqlToPostgresConfig) -> Any:
    """The applier's MySQL session: marked ``server_id``, UTC, strict, no foreign-key checks."""
    with mysql_connect(cfg.reverse_conn_id, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"SET SESSION server_id = {int(REVERSE_SERVER_ID)}")
        cur.execute("SET time_zone = '+00:00', NAMES utf8mb4, SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', "
                    "SESSION foreign_key_checks = 0")
        cur.close()
        yield conn


def ensure_state(cfg: MysqlToPostgresConfig) -> None:
    """Create the change table (PostgreSQL, target) and the position table (MySQL, reverse connection)."""
    with pg_connect(cfg.target_conn_id) as conn:
        load.ensure_state(conn)
        if conn.execute("SELECT to_regclass(%s) IS NULL", (CHANGES,)).fetchone()[0]:
            conn.execute(f"""CREATE TABLE IF NOT EXISTS {CHANGES} (
                id bigserial PRIMARY KEY, unit_key text NOT NULL, txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
                op "char" NOT NULL, key jsonb NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())""")
            conn.execute(f"CREATE INDEX IF NOT EXISTS m2p_reverse_changes_unit ON {CHANGES} (unit_key, id)")
    with mysql_connect(cfg.reverse_conn_id, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_mysql(cfg.reverse_state_database)} "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        cur.execute(f"""CREATE TABLE IF NOT EXISTS {_state(cfg)} (
            unit_key VARCHAR(700) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
            last_id BIGINT NOT NULL DEFAULT 0, last_xmin BIGINT UNSIGNED NOT NULL DEFAULT 0,
            applied BIGINT NOT NULL DEFAULT 0, updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB""")


def _same_server(cfg: MysqlToPostgresConfig) -> None:
    """The reverse connection must reach the source's server and see its table database."""
    seen = []
    for conn_id in (cfg.source_conn_id, cfg.reverse_conn_id):
        with mysql_connect(conn_id, database="") as conn:
            cur = conn.cursor()
            cur.execute("SELECT @@server_id, @@port, @@hostname")
            seen.append(tuple(cur.fetchone()))
    if seen[0] != seen[1]:
        raise ValueError(f"reverse_conn_id {cfg.reverse_conn_id!r} reaches another server ({seen[1]}) than "
                         f"source_conn_id {cfg.source_conn_id!r} ({seen[0]}): reverse replication must write the source")


def _install(cfg: MysqlToPostgresConfig, key: UnitKey, tm: TableMap) -> None:
    """(Re)create the three statement triggers of the table (idempotent)."""
    tgt = load.target_name(cfg.target_schema, tm)
    cols = [quote_pg(tm.column(k).target) for k in tm.key]
    with pg_connect(cfg.target_conn_id) as conn:
        same = " AND ".join(f"n.{c} = o.{c}" for c in cols)
        for op, (code, refs, aliases) in _OPS.items():
            # an update captures its new key, and its old key only where the key changed (an anti-join)
            sel = " UNION ALL ".join(f"SELECT TG_ARGV[0], '{code}', jsonb_build_array({', '.join(f'{a}.{c}' for c in cols)}) "
                                     f"FROM {a}" + (f" WHERE NOT EXISTS (SELECT FROM n WHERE {same})" if a == "o" and op == "UPDATE"
                                                    else "") for a in ("n", "o") if a in aliases)
            body = (f"BEGIN IF coalesce(current_setting('cutover.replaying', true), '') = 'on' THEN RETURN NULL; END IF; "
                    f"INSERT INTO {CHANGES} (unit_key, op, key) {sel}; RETURN NULL; END")
            conn.execute(f"CREATE OR REPLACE FUNCTION {_function(key, op)}() RETURNS trigger LANGUAGE plpgsql AS {pg_lit(body)}")
            conn.execute(f"CREATE OR REPLACE TRIGGER {_trigger(op)} AFTER {op} ON {tgt} REFERENCING {refs} "
                         f"FOR EACH STATEMENT EXECUTE FUNCTION {_function(key, op)}({pg_lit(str(key))})")


def _uninstall(cfg: MysqlToPostgresConfig, key: UnitKey, tm: TableMap) -> None:
    """Drop the triggers (waits for every writer of the table to end) and their functions."""
    tgt = load.target_name(cfg.target_schema, tm)
    with pg_connect(cfg.target_conn_id) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (tgt,)).fetchone()[0]
        for op in _OPS:
            if exists:
                conn.execute(f"DROP TRIGGER IF EXISTS {_trigger(op)} ON {tgt}")
            conn.execute(f"DROP FUNCTION IF EXISTS {_function(key, op)}()")


def _require_key(key: UnitKey, tm: TableMap) -> TableMap:
    """``tm`` when it has a key; else :class:`ReverseUnsupported`."""
    if not tm.key:
        raise ReverseUnsupported(
            f"table {key.label}: no primary key and no NOT NULL unique key, so its PostgreSQL writes cannot be named row "
            "by row and reverse replication is not started; a rollback then finds them (target divergence) and needs "
            "them copied to MySQL by hand, or discard_target_writes")
    return tm


# ------------------------------------------------------------------------------------------------- start

def start(cfg: MysqlToPostgresConfig, key: UnitKey | str, *, run_id: str,
          source_position: binlog.BinlogPosition | None) -> dict[str, Any]:
    """Start the table's reverse stream (call it at the switch, before writers reach PostgreSQL).

    Installs the capture triggers, records the stream (``cutover.streams``, direction ``reverse``,
    position ``0``) with ``source_position`` — MySQL's binlog position at the switch, where stray-write
    detection begins (None: MySQL's position now) — and creates the MySQL position row. Idempotent: a
    running stream is left as it is (``{"started": False}``); a drained one starts again.
    Returns ``{"unit", "started", "stray_position", "capture"}``. Raises :class:`ReverseUnsupported` for
    a table without a key, ``LookupError`` for a table never planned, ``ValueError`` when
    ``reverse_conn_id`` reaches another server than the source.
    """
    key = _key(key)
    tm = _require_key(key, _plan(cfg, key))
    _same_server(cfg)
    ensure_state(cfg)
    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        st = control.get_stream(conn, PIPELINE, cfg.scope, _name(key), DIRECTION)
    if st is not None and st["state"] == "running":
        _install(cfg, key, tm)  # idempotent: put back a trigger someone dropped
        return {"unit": key.label, "started": False, "stray_position": (st["detail"] or {}).get("stray_position"),
                "capture": "trigger"}
    if source_position is None:
        with mysql_connect(cfg.source_conn_id, database="") as m:
            source_position = binlog.current_position(m.cursor())
    with pg_connect(cfg.target_conn_id) as conn:  # a stream started anew takes only the changes from now on
        conn.execute(f"DELETE FROM {CHANGES} WHERE unit_key = %s", (str(key),))
    with mysql_connect(cfg.reverse_conn_id, database="") as m:
        m.cursor().execute(f"INSERT INTO {_state(cfg)} (unit_key, last_id, last_xmin) VALUES (%s, 0, 0) "
                           "ON DUPLICATE KEY UPDATE last_id = 0, last_xmin = 0, updated_at = CURRENT_TIMESTAMP(6)", (str(key),))
    _install(cfg, key, tm)
    with pg_connect(cfg.control_conn_id) as conn:
        control.report_stream(conn, PIPELINE, cfg.scope, _name(key), DIRECTION, position="0", lag_s=0.0, state="running",
                              detail={"run_id": run_id, "started_at": dt.datetime.now(dt.UTC).isoformat(),
                                      "source_position": str(source_position), "stray_position": str(source_position),
                                      "capture": "trigger", "change_table": CHANGES, "stray_writes": 0})
    log.info("table %s: reverse replication started (stray writes watched from %s)", key.label, source_position)
    return {"unit": key.label, "started": True, "stray_position": str(source_position), "capture": "trigger"}


# --------------------------------------------------------------------------------------------------- apply

def _mysql_columns(cur: Any, cfg: MysqlToPostgresConfig, tm: TableMap) -> tuple[set[str], set[str]]:
    """(columns, generated columns) of the MySQL table now."""
    cur.execute("SELECT COLUMN_NAME, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (cfg.source_database, tm.source))
    cols, gen = set(), set()
    for name, extra in cur.fetchall():
        name = name.decode() if isinstance(name, bytes) else str(name)
        extra = (extra.decode() if isinstance(extra, bytes) else str(extra or "")).upper()
        cols.add(name)
        if "GENERATED" in extra or "VIRTUAL" in extra or "PERSISTENT" in extra or "STORED" in extra:
            gen.add(name)
    return cols, gen


def _pending(conn: Any, key: UnitKey, final: bool, limit: int) -> tuple[list[tuple[Any, ...]], int]:
    """(changes ``(id, op, key, at)``, horizon) of one batch, in the open REPEATABLE READ transaction."""
    horizon = conn.execute("SELECT (pg_snapshot_%s(pg_current_snapshot()))::text::bigint"
                           % ("xmax" if final else "xmin")).fetchone()[0]
    rows = conn.execute(f"SELECT id, op, key, at FROM {CHANGES} WHERE unit_key = %s AND txid < %s::text::xid8 "
                        "ORDER BY id LIMIT %s", (str(key), str(horizon), limit)).fetchall()
    return rows, int(horizon)


def _pg_rows(conn: Any, cfg: MysqlToPostgresConfig, tm: TableMap, cols: list[ColumnMap],
             keys: list[list[Any]]) -> list[tuple[list[Any], list[Any] | None]]:
    """Per captured key: (its MySQL key values, the MySQL values of ``cols`` or None when PostgreSQL no
    longer has the row), read in ``conn``'s snapshot."""
    kcols = [tm.column(k) for k in tm.key]
    typed = [f"(k.key->>{i})::{c.pg_type}" for i, c in enumerate(kcols)]
    on = " AND ".join(f"t.{quote_pg(c.target)} = {e}" for c, e in zip(kcols, typed, strict=True))
    sel = [_read_expr(c, e) for c, e in zip(kcols, typed, strict=True)] + ["(t.ctid IS NOT NULL)"]
    sel += [_read_expr(c, f"t.{quote_pg(c.target)}") for c in cols]
    sql = (f"SELECT {', '.join(sel)} FROM jsonb_array_elements(%s::jsonb) AS k(key) "
           f"LEFT JOIN {load.target_name(cfg.target_schema, tm)} t ON {on}")
    out = []
    nk = len(kcols)
    for r in conn.execute(sql.replace("%", "%%").replace("%%s::jsonb", "%s::jsonb"), (json.dumps(keys),)).fetchall():
        k = [_to_mysql(c, v) for c, v in zip(kcols, r[:nk], strict=True)]
        vals = [_to_mysql(c, v) for c, v in zip(cols, r[nk + 1:], strict=True)] if r[nk] else None
        out.append((k, vals))
    return out


def _is_row_error(exc: BaseException) -> bool:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    return bool(args) and isinstance(args[0], int) and args[0] in _ROW_ERRORS


def _write(cur: Any, cfg: MysqlToPostgresConfig, tm: TableMap, cols: list[ColumnMap],
           rows: list[tuple[list[Any], list[Any] | None]]) -> tuple[int, int, list[tuple[list[Any], str, Any]]]:
    """Deletes then upserts in MySQL (the caller's open transaction). Returns (upserted, deleted, refused
    ``(key, error, row)``)."""
    tbl = f"{quote_mysql(cfg.source_database)}.{quote_mysql(tm.source)}".replace("%", "%%")
    kq = ", ".join(quote_mysql(k) for k in tm.key).replace("%", "%%")
    tup = "(" + ", ".join(_placeholder(tm.column(k)) for k in tm.key) + ")"
    gone = [k for k, v in rows if v is None]
    ups: list[tuple[list[Any], list[Any]]] = [(k, v) for k, v in rows if v is not None]
    dead: list[tuple[list[Any], str, Any]] = []
    deleted = 0
    for i in range(0, len(gone), ROWS_PER_STATEMENT):
        part = gone[i:i + ROWS_PER_STATEMENT]
        deleted += cur.execute(f"DELETE FROM {tbl} WHERE ({kq}) IN ({', '.join([tup] * len(part))})",
                               [v for k in part for v in k]) or 0
    names = ", ".join(quote_mysql(c.source) for c in cols).replace("%", "%%")
    row_ph = "(" + ", ".join(_placeholder(c) for c in cols) + ")"
    sets = []
    for c in cols:
        if c.source in tm.key:
            continue
        q = quote_mysql(c.source).replace("%", "%%")
        keep = _keep_when_null(c)
        sets.append(f"{q} = IF(VALUES({q}) IS NULL AND {keep}, {q}, VALUES({q}))" if keep else f"{q} = VALUES({q})")
    if not sets:
        q = quote_mysql(tm.key[0]).replace("%", "%%")
        sets = [f"{q} = {q}"]
    head = f"INSERT INTO {tbl} ({names}) VALUES "
    tail = " ON DUPLICATE KEY UPDATE " + ", ".join(sets)

    def upsert(part: list[tuple[list[Any], list[Any]]]) -> None:
        cur.execute(head + ", ".join([row_ph] * len(part)) + tail, [v for _, vals in part for v in vals])

    upserted = 0
    for i in range(0, len(ups), ROWS_PER_STATEMENT):
        batch = ups[i:i + ROWS_PER_STATEMENT]
        cur.execute("SAVEPOINT cutover_rev")
        try:
            upsert(batch)
            upserted += len(batch)
            continue
        except Exception as exc:
            if not _is_row_error(exc):
                raise
            cur.execute("ROLLBACK TO SAVEPOINT cutover_rev")
        for one in batch:  # isolate the refused rows
            cur.execute("SAVEPOINT cutover_rev")
            try:
                upsert([one])
                upserted += 1
            except Exception as exc:
                if not _is_row_error(exc):
                    raise
                cur.execute("ROLLBACK TO SAVEPOINT cutover_rev")
                dead.append((one[0], f"MySQL refused the row: {exc}", dict(zip([c.source for c in cols],
                                                                               [jsonable(v) for v in one[1]], strict=True))))
    return upserted, deleted, dead


def _apply_unit(cfg: MysqlToPostgresConfig, key: UnitKey, tm: TableMap, *, final: bool = False,
                max_seconds: float = 600.0, hook: Hook | None = None,
                touched: list[tuple[Any, ...]] | None = None) -> dict[str, Any]:
    """Apply the table's captured changes in batches until none is left (or ``max_seconds``); ``touched``
    receives the key (MySQL values, in key order) of every row applied."""
    t0 = time.monotonic()
    out: dict[str, Any] = {"applied": 0, "upserted": 0, "deleted": 0, "dead_letters": 0, "batches": 0, "position": None}
    cols: list[ColumnMap] | None = None
    while time.monotonic() - t0 < max_seconds:
        with _applier(cfg) as m, pg_connect(cfg.target_conn_id) as pg:
            cur = m.cursor()
            if cols is None:
                have, generated = _mysql_columns(cur, cfg, tm)
                missing = [c.source for c in tm.columns if c.source not in have]
                if missing:
                    raise load.SourceChanged(f"MySQL table {tm.source!r} no longer has columns {missing}: "
                                             "reverse replication cannot write them")
                cols = [c for c in tm.columns if c.source not in generated]
            cur.execute(f"SELECT last_id, last_xmin FROM {_state(cfg)} WHERE unit_key = %s FOR UPDATE", (str(key),))
            row = cur.fetchone()
            if row is None:
                raise LookupError(f"table {key.label}: no reverse position in {cfg.reverse_state_database}.{STATE_TABLE} "
                                  "(reverse.start was not run)")
            last_id, last_xmin = int(row[0]), int(row[1])
            with pg.transaction():  # applied before a kill: deleted, never applied again
                pg.execute(f"DELETE FROM {CHANGES} WHERE unit_key = %s AND id <= %s AND txid < %s::text::xid8",
                           (str(key), last_id, str(last_xmin)))
            pg.commit()
            pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            pg.execute("SET LOCAL TimeZone = 'UTC'")
            changes, horizon = _pending(pg, key, final, BATCH_CHANGES)
            if not changes:
                m.rollback()
                out["position"] = out["position"] or last_id
                break
            keys = list({json.dumps(c[2]): c[2] for c in changes}.values())
            rows = _pg_rows(pg, cfg, tm, cols, keys)
            pg.commit()
            if touched is not None:
                touched.extend(tuple(k) for k, _ in rows)
            up, de, dead = _write(cur, cfg, tm, cols, rows)
            new_id = int(changes[-1][0])
            cur.execute(f"UPDATE {_state(cfg)} SET last_id = %s, last_xmin = %s, applied = applied + %s, "
                        "updated_at = CURRENT_TIMESTAMP(6) WHERE unit_key = %s", (new_id, horizon, len(changes), str(key)))
            if hook:
                hook("applied")
            m.commit()
            if hook:
                hook("committed")
            pg.execute(f"DELETE FROM {CHANGES} WHERE unit_key = %s AND id <= %s AND txid < %s::text::xid8",
                       (str(key), new_id, str(horizon)))
            if dead:
                _dead(cfg, key, tm, dead)
                for k, err, _r in dead:
                    log.error("table %s: reverse replication refused key %s: %s", key.label, k, err)
        out["applied"] += len(changes)
        out["upserted"] += up
        out["deleted"] += de
        out["dead_letters"] += len(dead)
        out["batches"] += 1
        out["position"] = new_id
    return out


def _dead(cfg: MysqlToPostgresConfig, key: UnitKey, tm: TableMap, dead: list[tuple[list[Any], str, Any]]) -> None:
    with pg_connect(cfg.control_conn_id) as conn:
        control.add_dead_letters(conn, PIPELINE, None, str(key), [
            control.DeadLetter(source=f"postgres {cfg.target_schema}.{tm.target} → mysql {tm.source}",
                               record_key=load.key_text(k), reason=err, payload={"table": tm.source, "row": r})
            for k, err, r in dead])


def _lag(cfg: MysqlToPostgresConfig, key: UnitKey) -> float:
    """Seconds since the oldest change still waiting was written (0: none waits)."""
    with pg_connect(cfg.target_conn_id) as conn:
        v = conn.execute(f"SELECT extract(epoch FROM clock_timestamp() - min(at)) FROM {CHANGES} WHERE unit_key = %s",
                         (str(key),)).fetchone()[0]
    return round(float(v), 3) if v is not None else 0.0


# --------------------------------------------------------------------------------------------- stray writes

def _strays(cfg: MysqlToPostgresConfig, key: UnitKey, tm: TableMap, *, forward: bool,
            stop_at: binlog.BinlogPosition | None = None, all_since_switch: bool = False) -> dict[str, Any]:
    """Find (and record once) the writes MySQL's binlog holds for the table since the stream's stray
    position that the applier did not make; ``forward``: apply them to PostgreSQL too. ``all_since_switch``
    (the drain): read from the switch's position, so the strays recorded earlier without being forwarded are
    forwarded now too (and marked so); each is still recorded once."""
    with pg_connect(cfg.control_conn_id) as conn:
        st = control.get_stream(conn, PIPELINE, cfg.scope, _name(key), DIRECTION)
    if st is None or not (st["detail"] or {}).get("stray_position"):
        return {"found": 0}
    detail = st["detail"] or {}
    recorded_upto = binlog.BinlogPosition.parse(detail["stray_position"])
    start_pos = binlog.BinlogPosition.parse(detail.get("source_position") or detail["stray_position"]) if all_since_switch \
        else recorded_upto
    writes: list[dict[str, Any]] = []
    keys: list[tuple[Any, ...]] = []
    earlier = 0
    reached = start_pos
    for batch in binlog.read_changes(cfg.source_conn_id, start_pos, schemas=[cfg.source_database, cfg.reverse_state_database],
                                     tables=[tm.source, STATE_TABLE], stop_at=stop_at):
        reached = max(reached, batch.position)
        if not batch:
            continue
        mine = batch.origin_server_id == REVERSE_SERVER_ID or any(
            ch.schema == cfg.reverse_state_database and ch.table == STATE_TABLE for ch in batch)
        if mine:
            continue
        for ch in batch:
            if ch.schema != cfg.source_database or ch.table != tm.source:
                continue
            images = [im for im in (ch.after, ch.before) if im is not None]
            seen: list[tuple[Any, ...]] = []
            for im in images:
                k = tuple(im.get(c) for c in tm.key)
                if k not in seen:
                    seen.append(k)
            for k in seen:
                keys.append(k)
                if not recorded_upto < batch.position:
                    earlier += 1  # recorded by an earlier run: forwarded now, not recorded again
                    continue
                writes.append({"table": tm.source, "kind": ch.kind, "key": [jsonable(v) for v in k] if len(k) > 1
                               else jsonable(k[0]), "position": str(batch.position), "forwarded": forward})
    if keys:
        for w in writes:
            log.error("table %s: stray write to MySQL after the switch: %s key %s at %s%s", key.label, w["kind"], w["key"],
                      w["position"], " (forwarded to PostgreSQL)" if forward else "")
        if forward:
            with load.source_session(cfg.source_conn_id) as src, pg_connect(cfg.target_conn_id) as conn:
                scur = src.cursor()
                _u, _d, dead = load.refresh_keys(scur, conn, tm, cfg.source_database, cfg.target_schema, keys)
                load.record_dead(conn, PIPELINE, str(key), tm.source, dead)
                scur.close()
    with pg_connect(cfg.control_conn_id) as conn:  # recorded once: the records and the new position together
        if forward and earlier:
            conn.execute(f"""UPDATE {control.SCHEMA}.stray_writes SET forwarded = true WHERE pipeline = %s AND scope = %s
                             AND name = %s AND NOT forwarded""", (PIPELINE, cfg.scope, _name(key)))
        control.record_stray_writes(conn, PIPELINE, cfg.scope, _name(key), writes)
        reached = max(reached, recorded_upto)
        total = int((st["detail"] or {}).get("stray_writes") or 0) + len(writes)
        control.report_stream(conn, PIPELINE, cfg.scope, _name(key), DIRECTION, position=None, lag_s=st.get("lag_s"),
                              state=st["state"], detail={"stray_position": str(reached), "stray_writes": total})
    return {"found": len(writes), "forwarded": len(keys) if forward else 0, "position": str(reached)}


# ---------------------------------------------------------------------------------------------------- run

def _running(cfg: MysqlToPostgresConfig, keys: Sequence[UnitKey | str] | None) -> list[UnitKey]:
    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        streams = {s["name"]: s for s in control.list_streams(conn, PIPELINE)
                   if s["scope"] == cfg.scope and s["direction"] == DIRECTION}
    if keys is None:
        return [UnitKey(cfg.scope, (n,)) for n, s in sorted(streams.items()) if s["state"] == "running"]
    return [k for k in (_key(x) for x in keys) if (s := streams.get(_name(k))) is not None and s["state"] == "running"]


def run(cfg: MysqlToPostgresConfig, keys: Sequence[UnitKey | str] | None = None, *, max_seconds: float = 600.0,
        hook: Hook | None = None) -> dict[str, Any]:
    """Apply every running reverse stream's changes (of ``keys``; default all in ``cfg``'s scope) to MySQL,
    then look for stray writes. Returns ``{"tables": {label: {"applied", "upserted", "deleted",
    "dead_letters", "position", "lag_s", "stray_writes"}}, "seconds", "changes_per_s"}``; ``hook(stage)``
    is called with ``applied`` (MySQL written, not committed) and ``committed`` per batch (tests).
    Streams not running (never started, drained) are left out. ``applied`` counts captured changes (a key
    change is two: its old and its new key). A table that fails is reported on its stream (``last_error``)
    and the others go on; ``RuntimeError`` at the end names the failed ones."""
    t0 = time.monotonic()
    tables: dict[str, Any] = {}
    failed: dict[str, str] = {}
    total = 0
    for key in _running(cfg, keys):
        tm = _plan(cfg, key)
        try:
            res = _apply_unit(cfg, key, tm, max_seconds=max(1.0, max_seconds - (time.monotonic() - t0)), hook=hook)
            lag = _lag(cfg, key)
            with pg_connect(cfg.control_conn_id) as conn:  # the lag first: the stray scan reads MySQL's binlog
                control.report_stream(conn, PIPELINE, cfg.scope, _name(key), DIRECTION,
                                      position=None if res["position"] is None else str(res["position"]), lag_s=lag,
                                      applied=res["applied"], state="running",
                                      detail={"last_run_at": dt.datetime.now(dt.UTC).isoformat(), "last_error": None})
            stray = _strays(cfg, key, tm, forward=cfg.forward_stray_writes)
        except Exception as exc:
            with pg_connect(cfg.control_conn_id) as conn:  # still running: the next run tries again from its position
                control.report_stream(conn, PIPELINE, cfg.scope, _name(key), DIRECTION, position=None, lag_s=None,
                                      state="running", detail={"last_error": f"{type(exc).__name__}: {exc}"[:2000]})
            log.exception("table %s: the reverse stream failed (the next run goes on from its position)", key.label)
            failed[key.label] = f"{type(exc).__name__}: {exc}"
            continue
        tables[key.label] = {**res, "lag_s": lag, "stray_writes": stray.get("found", 0)}
        total += res["applied"]
    if failed:  # the other tables were applied
        raise RuntimeError("reverse replication failed for " + "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:10]))
    secs = time.monotonic() - t0
    return {"tables": tables, "seconds": round(secs, 3), "changes_per_s": round(total / secs, 1) if secs > 0 else 0.0}


def drain(cfg: MysqlToPostgresConfig, keys: Sequence[UnitKey | str], *,
          touched: dict[str, list[tuple[Any, ...]]] | None = None) -> dict[str, Any]:
    """Bring MySQL level with PostgreSQL for ``keys`` and stop their reverse streams (rollback's
    ``drain_reverse``): apply what is captured, drop the triggers (waiting for the table's writers), apply
    the rest, record the stray writes up to MySQL's position now **and apply them to PostgreSQL** (MySQL is
    the side readers go back to: the copy must mirror it), move the table's forward sync position
    (``m2p_positions``) to that position, mark the stream ``drained``. Returns ``{unit label: {"applied":
    n, "position": last change id, "stray_writes": n, "forward_position": "file:pos"}}`` (a unit with no
    running stream: ``{"applied": 0, "position": None, "skipped": why}``). ``touched`` receives, per unit
    key, the keys of the rows the drain applied (MySQL values, in key order: what a rollback re-proves)."""
    out: dict[str, Any] = {}
    running = {str(k) for k in _running(cfg, keys)}
    for key in (_key(k) for k in keys):
        if str(key) not in running:
            out[key.label] = {"applied": 0, "position": None, "skipped": "no reverse stream running"}
            continue
        tm = _plan(cfg, key)
        mine = touched.setdefault(str(key), []) if touched is not None else None
        first = _apply_unit(cfg, key, tm, touched=mine)
        _uninstall(cfg, key, tm)
        rest = _apply_unit(cfg, key, tm, final=True, touched=mine)
        with mysql_connect(cfg.source_conn_id, database="") as m:
            here = binlog.current_position(m.cursor())
        with pg_connect(cfg.control_conn_id) as conn:  # strays recorded but not forwarded: read again from the switch
            behind = conn.execute(f"""SELECT EXISTS (SELECT FROM {control.SCHEMA}.stray_writes WHERE pipeline = %s
                                      AND scope = %s AND name = %s AND NOT forwarded)""",
                                  (PIPELINE, cfg.scope, _name(key))).fetchone()[0]
        stray = _strays(cfg, key, tm, forward=True, stop_at=here, all_since_switch=bool(behind))
        with pg_connect(cfg.target_conn_id) as conn:
            load.ensure_state(conn)
            conn.execute(f"UPDATE {load.STATE_SCHEMA}.m2p_positions SET position = %s, updated_at = now() "
                         "WHERE unit_key = %s AND mode = 'binlog'", (str(here), str(key)))
            conn.execute(f"DELETE FROM {CHANGES} WHERE unit_key = %s", (str(key),))
        applied = first["applied"] + rest["applied"]
        position = rest["position"] if rest["position"] is not None else first["position"]
        with pg_connect(cfg.control_conn_id) as conn:
            control.report_stream(conn, PIPELINE, cfg.scope, _name(key), DIRECTION, position=str(position), lag_s=0.0,
                                  applied=applied, state="drained",
                                  detail={"drained_at": dt.datetime.now(dt.UTC).isoformat(), "forward_position": str(here)})
        out[key.label] = {"applied": applied, "position": position, "stray_writes": stray.get("found", 0),
                          "forward_position": str(here), "dead_letters": first["dead_letters"] + rest["dead_letters"]}
        log.info("table %s: reverse stream drained (%d changes applied, forward sync from %s)", key.label, applied, here)
    return out


def stop(cfg: MysqlToPostgresConfig, key: UnitKey | str) -> None:
    """Uninstall the capture without applying (a table dropped or rebuilt); the stream is marked ``stopped``."""
    key = _key(key)
    tm = _plan(cfg, key)
    _uninstall(cfg, key, tm)
    with pg_connect(cfg.control_conn_id) as conn:
        control.report_stream(conn, PIPELINE, cfg.scope, _name(key), DIRECTION, position=None, lag_s=None, state="stopped")


__all__ = ["REVERSE_SERVER_ID", "ReverseUnsupported", "drain", "ensure_state", "run", "start", "stop"]
