"""Move rows MySQL → PostgreSQL: keyset chunks rendered by MySQL as COPY text, loaded with ``COPY``.

**Read**: ``SELECT <one COPY line per row>, <key columns> FROM t WHERE <after last key> ORDER BY key
LIMIT chunk_rows`` on a read-only session (UTC, utf8mb4, default sql_mode). Every value is rendered
by the server (:mod:`cutover.mysql_to_postgres.typemap`) and arrives as bytes: the client does no
per-value work, and a second thread reads the next chunk while the current one is written, so memory
holds at most two chunks.

**Write**: one ``COPY … FROM STDIN`` per chunk in text format — MySQL already wrote the text, so the
client passes bytes through (the binary format would need every value decoded and re-encoded in
Python) — in the same PostgreSQL transaction as the chunk's
checkpoint row (``cutover_state.m2p_checkpoints`` in the target database) and the unit's progress — a
killed task resumes after the last committed chunk, with no duplicate and no gap.

**Dead letters**: when PostgreSQL refuses a chunk (a value its column cannot hold: invalid UTF-8, a NUL
character in text, a zero date under ``dead_letter``, an invalid ENUM value), the chunk is bisected
behind savepoints until each refused row stands alone; refused rows go to ``cutover.dead_letters``
(table, key, PostgreSQL's error, the row's text) and every other row loads.

**Tables without a key** are read whole from one consistent snapshot (``START TRANSACTION WITH
CONSISTENT SNAPSHOT``, MariaDB's ``binlog_snapshot_*`` position) and written in one transaction.

**Refresh** (:func:`refresh_keys`): the rows of given keys read again through the same rendering and
upserted (``INSERT … ON CONFLICT DO UPDATE`` from a staging table); keys MySQL no longer has are
deleted. The binlog and watermark syncs both apply changes through it, so a value crosses the same
way in the copy and in the sync.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cutover.connections import mysql_connect, resolve
from cutover.identifiers import quote_mysql, quote_pg
from cutover.keyset import after_key, after_params, decode_key, encode_key
from cutover.mysql_to_postgres.typemap import TableMap, count_flags, line_expr, rule_flags_expr

log = logging.getLogger(__name__)

STATE_SCHEMA = "cutover_state"
#: PostgreSQL SQLSTATE classes that mean "this row's data does not fit": 22 data exception, 23 integrity
ROW_ERROR_CLASSES = ("22", "23")


class SourceChanged(RuntimeError):
    """The source table no longer matches the plan (a column gone or renamed): plan again."""


def ensure_state(conn: Any) -> None:
    """Create the target's state tables (checkpoints, sync positions) when missing. A cheap catalog read
    first: the DDL (an ``ALTER TABLE`` takes an exclusive lock) runs only when something is missing, so
    parallel copies and a running sync do not queue behind each other here."""
    ready = conn.execute(
        f"""SELECT to_regclass('{STATE_SCHEMA}.m2p_checkpoints') IS NOT NULL AND EXISTS (
              SELECT 1 FROM information_schema.columns WHERE table_schema = '{STATE_SCHEMA}'
                AND table_name = 'm2p_positions' AND column_name = 'watermark_key') AND EXISTS (
              SELECT 1 FROM information_schema.columns WHERE table_schema = '{STATE_SCHEMA}'
                AND table_name = 'm2p_checkpoints' AND column_name = 'rule_counts')""").fetchone()[0]
    if ready:
        return
    conn.execute(f"""
        CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA};
        CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.m2p_checkpoints (
            unit_key text PRIMARY KEY, last_key text, rows_read bigint NOT NULL DEFAULT 0,
            rows_written bigint NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false,
            start_position text, start_watermark text, updated_at timestamptz NOT NULL DEFAULT now());
        CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.m2p_positions (
            unit_key text PRIMARY KEY, mode text NOT NULL, position text, watermark text,
            changes_applied bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now());
        ALTER TABLE {STATE_SCHEMA}.m2p_positions ADD COLUMN IF NOT EXISTS watermark_key text;
        ALTER TABLE {STATE_SCHEMA}.m2p_checkpoints ADD COLUMN IF NOT EXISTS rule_counts jsonb""")


@contextmanager
def source_session(conn_id: str, *, snapshot: bool = False) -> Iterator[Any]:
    """A MySQLdb connection in UTC with utf8mb4 and the default escapes (what the renderings assume);
    ``snapshot``: inside ``START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY``."""
    with mysql_connect(conn_id, database="") as conn:
        cur = conn.cursor()
        cur.execute("SET time_zone = '+00:00', NAMES utf8mb4, SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
        if snapshot:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        cur.close()
        yield conn


def same_database(a: str, b: str) -> bool:
    """Whether two PostgreSQL connection ids reach the same database (then progress joins the chunk's transaction)."""
    try:
        return resolve(a).pg_conninfo() == resolve(b).pg_conninfo()
    except Exception:  # noqa: BLE001
        return False


@dataclass
class Chunk:
    """Rows read from MySQL: their COPY lines (bytes, no trailing newline), keys and rule flags (one
    ``b"0"`` / ``b"1"`` string per row, :func:`cutover.mysql_to_postgres.typemap.rule_flags_expr`; empty
    when the table has no value-changing rule)."""

    lines: list[bytes]
    keys: list[tuple[Any, ...]]
    flags: list[bytes] = field(default_factory=list)

    def copied_flags(self, dead: list[tuple[tuple[Any, ...], str, str]]) -> list[bytes]:
        """The flags of the rows that were written (``dead``: the refused rows, by key)."""
        if not dead or not self.flags:
            return self.flags
        refused = {tuple(k) for k, _, _ in dead}
        return [f for f, k in zip(self.flags, self.keys, strict=True) if tuple(k) not in refused]


@dataclass
class Written:
    """What a write did: rows loaded and the refused rows ``(key, error, line)``."""

    rows: int = 0
    dead: list[tuple[tuple[Any, ...], str, str]] = field(default_factory=list)


def select_sql(tm: TableMap, database: str, where: str = "", *, order: bool = True, limit: int | None = None,
               flags: bool = False) -> str:
    """``SELECT CAST(<line> AS BINARY), <key…>[, <rule flags>] FROM db.t [WHERE …] [ORDER BY key] [LIMIT n]``
    — with every literal ``%`` doubled, ready for ``%s`` parameters in ``where``. ``flags``: add the row's
    rule flags last (when the table has a value-changing rule), computed by MySQL in the same read."""
    table = f"{quote_mysql(database)}.{quote_mysql(tm.source)}"
    keys = [quote_mysql(k) for k in tm.key]
    fx = rule_flags_expr(tm) if flags else None
    head = (f"SELECT CAST({line_expr(tm)} AS BINARY)" + "".join(", " + k for k in keys)
            + (f", {fx}" if fx else "") + f" FROM {table}")
    head = head.replace("%", "%%")
    sql = head + (f" WHERE {where}" if where else "")
    if order and keys:
        sql += " ORDER BY " + ", ".join(keys).replace("%", "%%")
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql


def read_chunk(cur: Any, tm: TableMap, database: str, last: tuple[Any, ...] | None, limit: int) -> Chunk:
    """The next ``limit`` rows after key ``last`` (``None``: from the start), in key order, with their rule flags."""
    if last is None:
        cur.execute(select_sql(tm, database, limit=limit, flags=True), ())
    else:
        cur.execute(select_sql(tm, database, after_key(tm.key, escape_percent=True), limit=limit, flags=True),
                    after_params(last))
    rows = cur.fetchall()
    n = len(tm.key)
    flagged = rule_flags_expr(tm) is not None
    return Chunk([bytes(r[0]) for r in rows], [tuple(r[1:1 + n]) for r in rows],
                 [_flag_bytes(r[1 + n]) for r in rows] if flagged else [])


def _flag_bytes(v: Any) -> bytes:
    return bytes(v) if isinstance(v, bytes | bytearray) else str(v).encode("ascii")


def _copy(cur: Any, target: str, columns: str, lines: Sequence[bytes]) -> None:
    with cur.copy(f"COPY {target} ({columns}) FROM STDIN") as cp:
        cp.write(b"\n".join([*lines, b""]))


def _row_error(exc: BaseException) -> bool:
    state = getattr(getattr(exc, "diag", None), "sqlstate", None) or ""
    return str(state)[:2] in ROW_ERROR_CLASSES


def write_lines(conn: Any, target: str, columns: str, chunk: Chunk, load: Callable[[Any, Sequence[bytes]], None] | None = None) -> Written:
    """COPY ``chunk`` into ``target`` inside ``conn``'s open transaction; refused rows are isolated by
    bisection behind savepoints and returned as dead (every other row is written). Errors that are not
    about a row's data (connection lost, missing table) propagate."""
    do = load or (lambda cur, lines: _copy(cur, target, columns, lines))
    out = Written()
    todo = [(0, len(chunk.lines))] if chunk.lines else []
    while todo:  # a stack, not recursion: no reference cycle keeps earlier chunks alive until a full GC
        lo, hi = todo.pop()
        try:
            with conn.transaction():
                do(conn.cursor(), chunk.lines[lo:hi])
            out.rows += hi - lo
        except Exception as exc:
            if not _row_error(exc):
                raise
            if hi - lo == 1:
                out.dead.append((chunk.keys[lo], f"{type(exc).__name__}: {str(exc).strip()}",
                                 chunk.lines[lo].decode("utf-8", "backslashreplace")))
                continue
            mid = (lo + hi) // 2
            todo.append((mid, hi))
            todo.append((lo, mid))
    return out


def target_name(schema: str, tm: TableMap) -> str:
    """The quoted ``schema.table`` of a mapped table."""
    return f"{quote_pg(schema)}.{quote_pg(tm.target)}"


def column_list(tm: TableMap) -> str:
    """The quoted target column list, in COPY field order."""
    return ", ".join(quote_pg(c.target) for c in tm.columns)


def key_text(key: Sequence[Any]) -> str:
    """A key as the dead-letter table shows it."""
    return encode_key(list(key))


def record_dead(conn: Any, pipeline: str, unit_key: str, table: str, dead: list[tuple[tuple[Any, ...], str, str]],
                run_id: str | None = None) -> None:
    """Write refused rows to ``cutover.dead_letters`` (table, key, error, the row's COPY text)."""
    from cutover import control

    if not dead:
        return
    control.add_dead_letters(conn, pipeline, run_id, unit_key, [
        control.DeadLetter(source=table, record_key=key_text(k), reason=err, payload={"table": table, "row": line.replace("\x00", "\\0")})
        for k, err, line in dead])


def read_checkpoint(conn: Any, unit_key: str) -> dict[str, Any] | None:
    """The unit's checkpoint row (``last_key`` decoded), or None."""
    row = conn.execute(f"SELECT last_key, rows_read, rows_written, done, start_position, start_watermark, rule_counts "
                       f"FROM {STATE_SCHEMA}.m2p_checkpoints WHERE unit_key = %s", (unit_key,)).fetchone()
    if row is None:
        return None
    return {"last_key": decode_key(row[0]), "rows_read": int(row[1]), "rows_written": int(row[2]), "done": bool(row[3]),
            "start_position": row[4], "start_watermark": row[5], "rule_counts": dict(row[6] or {})}


def write_checkpoint(conn: Any, unit_key: str, *, last_key: Sequence[Any] | None, rows_read: int, rows_written: int,
                     done: bool, start_position: str | None = None, start_watermark: str | None = None,
                     rule_counts: dict[str, dict[str, int]] | None = None) -> None:
    """Upsert the unit's checkpoint (in the caller's transaction: the chunk's); ``rule_counts``: the running
    ``{column: {rule label: values changed}}`` of the rows copied so far (kept when None)."""
    from psycopg.types.json import Jsonb

    conn.execute(
        f"""INSERT INTO {STATE_SCHEMA}.m2p_checkpoints AS c (unit_key, last_key, rows_read, rows_written, done,
                                                            start_position, start_watermark, rule_counts)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (unit_key) DO UPDATE SET last_key = EXCLUDED.last_key, rows_read = EXCLUDED.rows_read,
              rows_written = EXCLUDED.rows_written, done = EXCLUDED.done,
              start_position = coalesce(c.start_position, EXCLUDED.start_position),
              start_watermark = coalesce(c.start_watermark, EXCLUDED.start_watermark),
              rule_counts = coalesce(EXCLUDED.rule_counts, c.rule_counts), updated_at = now()""",
        (unit_key, None if last_key is None else encode_key(list(last_key)), rows_read, rows_written, done,
         start_position, start_watermark, None if rule_counts is None else Jsonb(rule_counts)))


def prefetch(read: Callable[[Any], Chunk | None], first: Any) -> Iterator[Chunk]:
    """Chunks from ``read(after)`` on a helper thread, one ahead of the consumer (``read`` returns None at
    the end; ``after`` is the previous chunk). Errors of the reader are raised in the consumer."""
    q: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def work() -> None:
        prev = first
        try:
            while not stop.is_set():
                ch = read(prev)
                q.put(ch)
                if ch is None:
                    return
                prev = ch
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    t = threading.Thread(target=work, name="cutover-m2p-read", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def refresh_keys(src_cur: Any, conn: Any, tm: TableMap, database: str, schema: str,
                 keys: Sequence[tuple[Any, ...]], rule_counts: dict[str, dict[str, int]] | None = None,
                 ) -> tuple[int, int, list[tuple[tuple[Any, ...], str, str]]]:
    """Make the target's rows of ``keys`` equal MySQL's now, in ``conn``'s open transaction (with
    ``cutover.replaying`` set, so ON UPDATE triggers stay quiet): rows MySQL has are upserted, the others
    deleted. Returns ``(upserted, deleted, dead letters)``; the values rules changed in the upserted rows
    are added to ``rule_counts`` when given. Needs the target's primary key (after finalize)."""
    if not keys:
        return 0, 0, []
    uniq = list(dict.fromkeys(tuple(k) for k in keys))
    kcols = [quote_mysql(k) for k in tm.key]
    found = Chunk([], [])
    counting = rule_counts is not None and rule_flags_expr(tm) is not None
    n = len(tm.key)
    for i in range(0, len(uniq), 1000):
        part = uniq[i:i + 1000]
        row = "(" + ", ".join(["%s"] * len(kcols)) + ")"
        where = "(" + ", ".join(kcols).replace("%", "%%") + ") IN (" + ", ".join([row] * len(part)) + ")"
        src_cur.execute(select_sql(tm, database, where, order=False, flags=counting), [v for k in part for v in k])
        for r in src_cur.fetchall():
            found.lines.append(bytes(r[0]))
            found.keys.append(tuple(r[1:1 + n]))
            if counting:
                found.flags.append(_flag_bytes(r[1 + n]))
    conn.execute("SELECT set_config('cutover.replaying', 'on', true)")
    tgt = target_name(schema, tm)
    cols = column_list(tm)
    tkeys = [quote_pg(tm.column(k).target) for k in tm.key]
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS cutover_m2p_stage (LIKE {tgt}) ON COMMIT DROP")
    conn.execute("TRUNCATE cutover_m2p_stage")
    upd = ", ".join(f"{quote_pg(c.target)} = EXCLUDED.{quote_pg(c.target)}" for c in tm.columns
                    if c.source not in tm.key) or f"{tkeys[0]} = EXCLUDED.{tkeys[0]}"

    def load(cur: Any, lines: Sequence[bytes]) -> None:
        cur.execute("TRUNCATE cutover_m2p_stage")
        _copy(cur, "cutover_m2p_stage", cols, lines)
        cur.execute(f"INSERT INTO {tgt} ({cols}) SELECT {cols} FROM cutover_m2p_stage "
                    f"ON CONFLICT ({', '.join(tkeys)}) DO UPDATE SET {upd}")

    w = write_lines(conn, tgt, cols, found, load=load)
    if counting and rule_counts is not None:
        count_flags(tm, found.copied_flags(w.dead), rule_counts)
    conn.execute("DROP TABLE IF EXISTS cutover_m2p_stage")
    present = {_norm(k) for k in found.keys}
    gone = [k for k in uniq if _norm(k) not in present]
    deleted = 0
    for i in range(0, len(gone), 500):
        part = gone[i:i + 500]
        row = "(" + ", ".join(["%s"] * len(tkeys)) + ")"
        head = f"DELETE FROM {tgt} WHERE ({', '.join(tkeys)}) IN ".replace("%", "%%")  # names may hold %
        cur = conn.execute(head + f"({', '.join([row] * len(part))})", [v for k in part for v in k])
        deleted += cur.rowcount
    return w.rows, deleted, w.dead


def _norm(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """A key compared across the binlog's and the SELECT's Python values: bytes and str alike, otherwise
    **exactly** — never by case. Under a case-insensitive collation MySQL's ``SELECT … WHERE k IN
    ('alpha-1', 'ALPHA-1')`` returns the one row it has (``ALPHA-1``); the target keeps each key byte for
    byte, so ``alpha-1`` is gone and must be deleted there (a case-folding comparison kept it: a stale row)."""
    out = []
    for v in key:
        if isinstance(v, bytes | bytearray):
            v = bytes(v).decode("utf-8", "surrogateescape")
        out.append(v)
    return tuple(out)


#: an ICU collation ignoring case and accents (level 1): the target-side match for MySQL's ``_ci`` / ``_ai``
TWIN_COLLATION = f"{STATE_SCHEMA}.m2p_level1"


def _twin_collation(conn: Any) -> str | None:
    """The level-1 ICU collation (created once in the state schema), or None when PostgreSQL has no ICU."""
    if conn.execute("SELECT to_regcollation(%s) IS NOT NULL", (TWIN_COLLATION,)).fetchone()[0]:
        return TWIN_COLLATION
    try:
        with conn.transaction():
            conn.execute(f"CREATE COLLATION IF NOT EXISTS {TWIN_COLLATION} "
                         "(provider = icu, locale = 'und-u-ks-level1', deterministic = false)")
    except Exception as exc:  # noqa: BLE001 - built without ICU: case folding only
        log.info("no ICU collation for key twins (%s): lower() is used", exc)
        return None
    return TWIN_COLLATION


def collation_twins(conn: Any, tm: TableMap, schema: str, keys: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Target rows whose key MySQL would take for one of ``keys`` (equal under the key columns' collations:
    case- and accent-insensitive, trailing spaces ignored under PAD SPACE) but which differ from every one
    of them byte for byte — e.g. ``alpha-1`` left behind when MySQL's row became ``ALPHA-1``. The match is
    meant to be at least as broad as MySQL's (ICU level 1; without ICU, lower case with accents stripped
    after NFD decomposition — MySQL's own foldings such as ``ß`` = ``s`` in ``general_ci`` are not all
    reproduced there): :func:`refresh_keys` on the result asks
    MySQL, which keeps a twin it really has and deletes the others. Empty when no key column is text
    under a collation that can make two different values equal. One scan of the target table per call."""
    from cutover.mysql_to_postgres.typemap import collation_rules

    cols = [tm.column(k) for k in tm.key]
    rules = [collation_rules(c.collation) for c in cols]
    if not keys or not any(pad or ins for pad, ins in rules):
        return []
    coll = _twin_collation(conn) if any(ins for _, ins in rules) else None
    match, exact = [], []
    for i, (c, (pad, ins)) in enumerate(zip(cols, rules, strict=True)):
        t, u = f"t.{quote_pg(c.target).replace('%', '%%')}", f"u.c{i}"
        if not (pad or ins):
            match.append(f"{t} = {u}::{c.pg_type}")
            continue
        a, b = (f"rtrim({t}::text, ' ')", f"rtrim({u}, ' ')") if pad else (f"{t}::text", u)
        if ins:
            a, b = (f"{a} COLLATE {coll}", b) if coll else (_folded(a), _folded(b))
        match.append(f"{a} = {b}")
        exact.append(f"{t}::text = {u}")
    arrays = ", ".join("%s::text[]" for _ in cols)
    names = ", ".join(f"c{i}" for i in range(len(cols)))
    sel = ", ".join(f"t.{quote_pg(c.target).replace('%', '%%')}" for c in cols)
    sql = (f"SELECT DISTINCT {sel} FROM {target_name(schema, tm).replace('%', '%%')} t "
           f"JOIN unnest({arrays}) AS u({names}) ON {' AND '.join(match)} WHERE NOT ({' AND '.join(exact)})")
    params = [[None if k[i] is None else _key_text(k[i]) for k in keys] for i in range(len(cols))]
    return [tuple(r) for r in conn.execute(sql, params).fetchall()]


def _folded(expr: str) -> str:
    """``expr`` without case and accents, where PostgreSQL has no ICU: lower case of its canonical
    decomposition (NFD) with the combining marks (U+0300–U+036F) removed."""
    return f"lower(regexp_replace(normalize({expr}, NFD), '[' || chr(768) || '-' || chr(879) || ']', '', 'g'))"


def _key_text(v: Any) -> str:
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8", "surrogateescape")
    return str(v)


def reload_whole(src_conn: Any, conn: Any, tm: TableMap, database: str, schema: str, chunk_rows: int,
                 rule_counts: dict[str, dict[str, int]] | None = None,
                 ) -> tuple[int, list[tuple[tuple[Any, ...], str, str]]]:
    """Replace the target table's rows with the source's, read from ``src_conn``'s open snapshot, in
    ``conn``'s open transaction (tables without a key). Returns ``(rows written, dead letters)``; the
    values rules changed in the written rows are added to ``rule_counts`` when given."""
    tgt, cols = target_name(schema, tm), column_list(tm)
    conn.execute("SELECT set_config('cutover.replaying', 'on', true)")
    conn.execute(f"DELETE FROM {tgt}")
    import MySQLdb.cursors

    cur = src_conn.cursor(MySQLdb.cursors.SSCursor)
    counting = rule_counts is not None and rule_flags_expr(tm) is not None
    cur.execute(select_sql(tm, database, order=False, flags=counting), ())
    written, n = 0, 0
    dead: list[tuple[tuple[Any, ...], str, str]] = []
    while True:
        rows = cur.fetchmany(chunk_rows)
        if not rows:
            break
        n += 1
        ch = Chunk([bytes(r[0]) for r in rows], [(f"row {written + len(dead) + i + 1}",) for i in range(len(rows))],
                   [_flag_bytes(r[-1]) for r in rows] if counting else [])
        w = write_lines(conn, tgt, cols, ch)
        written += w.rows
        dead.extend(w.dead)
        if counting and rule_counts is not None:
            count_flags(tm, ch.copied_flags(w.dead), rule_counts)
    cur.close()
    return written, dead
