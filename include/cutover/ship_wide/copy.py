"""Copy: a ship's history, narrow → wide, in bounded chunks, each committed with its watermark.

A chunk is a ``created_time`` range ``(watermark, hi]`` where ``hi`` is the time of the
``chunk_rows``-th narrow row after the watermark (one index probe), so a timestamp is never split
between chunks and every wide row is written exactly once. Each chunk is one transaction on the
target: its wide rows, its dead letters and the new watermark. Two ways to pivot it:

* **in the database** (narrow and wide tables in one database, :mod:`cutover.ship_wide.server_pivot`):
  ``copy_connections`` chunks are pivoted at once, each on its own connection
  (:class:`InDatabaseChunks`); this thread finishes them in order (the few problem times through
  the client pivot) and commits each with its watermark, so the watermark only passes committed
  chunks. Nothing comes to the client but those problem times.
* **in the client**: ``COPY (SELECT …) TO STDOUT`` from the source (the next chunk is read while this
  one is loaded), pivot with pyarrow (:mod:`cutover.ship_wide.pivot`), ``COPY … FROM STDIN``.

A task killed at any point resumes after the last committed chunk: no duplicate, no gap (chunks in
flight behind it roll back with their connections). Client memory is bounded by one chunk (two in the
client pivot: the one loaded and the one read).

The wide table has no primary key while it is loaded (prepare sets it aside, :func:`finalize_ship`
restores it). How far a ship's data went is one checkpoint (unit key = ship id) holding a typed
:class:`ShipWatermark` (keyset position of the history copy, ingest sequences of the sync, whether
the history is complete and the table finalized). *Unit states* are not kept here: the life cycle
keeps them per run in ``cutover.units`` (:mod:`cutover.lifecycle`).

Rows that arrive while the copy runs (new, late, or a new channel) are picked up by the sync, which
starts from ``seq_start`` (minus its overlap): the copy does not need to see them.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from psycopg import Connection, errors, sql

from cutover import control
from cutover.connections import pg_connect
from cutover.identifiers import pg_ident, with_params
from cutover.lifecycle.spec import BatchSession
from cutover.ship_wide.arrival import GIVE_UP_AFTER, ArrivalPatterns, FastChunk, run_fast
from cutover.ship_wide.config import PIPELINE, SMALL_SHIP_ROWS, TIME_COLUMN, ShipWideConfig
from cutover.ship_wide.ddl import (
    ChannelLimitExceeded,
    WideTable,
    add_channels,
    load_wide,
    restore_primary_key,
)
from cutover.ship_wide.pivot import PivotResult, new_channels, pivot, read_chunk
from cutover.ship_wide.plan import session_setup
from cutover.ship_wide.server_pivot import (
    ServerChunk,
    chunk_where,
    pivot_in_database,
    problem_filter,
    same_database,
    supported,
)
from cutover.streaming import Progress, copy_csv

log = logging.getLogger(__name__)

Hook = Callable[[str, int], None]
#: ``on_chunk(conn, rows_read, rows_written)``: called in each chunk's transaction, before its commit,
#: with the running totals (narrow rows read, wide rows written) — the life cycle's unit progress
ChunkCallback = Callable[[Connection[Any], int, int], None]

#: narrow rows read to learn a ship's arrival patterns before its first chunk (the in-database pivot)
PROBE_ROWS = 20_000


class ShipNotPrepared(RuntimeError):
    """The ship's wide table does not exist yet (run prepare first)."""


@dataclass
class ShipWatermark:
    """Where a ship's data stands, stored as the checkpoint's JSON watermark (see :func:`get_state`).

    ``created_time`` is the history copy's keyset position (text of the last copied time, None before
    the first chunk); ``seq_start`` the narrow table's highest ingest sequence when the copy started
    (the sync starts there, minus its overlap); ``sync_seq`` the last synced ingest sequence;
    ``chunks`` the committed chunks; ``history_complete`` that the copy reached the end;
    ``finalized`` that the key is restored and the pair registered (the sync keeps it up to date).
    """

    created_time: str | None = None
    seq_start: int = 0
    sync_seq: int | None = None
    chunks: int = 0
    history_complete: bool = False
    finalized: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON stored in ``cutover.checkpoints.watermark``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShipWatermark:
        """The inverse of :meth:`to_json`; also reads the schema-2 form with a ``phase`` string."""
        phase = data.get("phase")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if phase is not None:
            known.setdefault("history_complete", phase in ("copied", "built"))
            known.setdefault("finalized", phase == "built")
        return cls(**known)


def get_state(conn: Connection[Any], cfg: ShipWideConfig, ship_id: str) -> ShipWatermark | None:
    """The ship's stored watermark, or None when it was never copied."""
    cp = control.get_checkpoint(conn, PIPELINE, cfg.unit(ship_id))
    return ShipWatermark.from_json(cp.watermark) if cp else None


def narrow_select(cfg: ShipWideConfig) -> sql.Composed:
    """``SELECT seq, created_time, channel, format, values FROM narrow`` (to add a WHERE to)."""
    return sql.SQL(
        "SELECT {seq} AS seq, created_time, data_channel_id, value_format, double_v, long_v, str_v, bool_v FROM {tbl}"
    ).format(seq=pg_ident(cfg.seq_column), tbl=pg_ident(cfg.schema, cfg.narrow_table))


def copy_out(conn: Connection[Any], query: sql.Composable, params: list[Any]) -> bytes:
    """``COPY (query) TO STDOUT (FORMAT csv)`` into one bytes buffer (one chunk).

    PostgreSQL sends one message per row; psycopg 3 hands each to Python, which costs more than the
    server spends producing it. psycopg2's ``copy_expert`` collects them in C, about 4x faster, so it
    is used (on its own connection to the same server, same session settings) when installed.
    """
    stmt = with_params(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query))  # run with parameters
    fast = _psycopg2_conn(conn)
    if fast is not None:
        rendered = _render(conn, stmt, params)
        buf = io.BytesIO()
        with fast.cursor() as cur:
            cur.copy_expert(rendered, buf, size=1 << 20)
        return buf.getvalue()
    out = bytearray()
    with conn.cursor() as cur:
        with cur.copy(stmt, params) as cp:
            for block in cp:
                out += block
    return bytes(out)


def _render(conn: Connection[Any], stmt: sql.Composed, params: list[Any]) -> str:
    """The statement with its parameters merged as literals (client-side, as psycopg 3 does for COPY)."""
    from psycopg import ClientCursor

    with ClientCursor(conn) as cc:
        return cc.mogrify(stmt, params)


_FAST: dict[int, tuple[str, Any]] = {}  # id of a psycopg 3 connection -> (its dsn, psycopg2 connection)


def _psycopg2_conn(conn: Connection[Any]) -> Any:
    """A psycopg2 connection to the same server as ``conn`` (one per ``conn``, until :func:`close_fast`), or None."""
    key, dsn = id(conn), conn.info.dsn
    known = _FAST.get(key)
    if known is not None and known[0] == dsn and not known[1].closed:
        return known[1]
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - psycopg2-binary is pinned in requirements.txt
        return None
    fast = psycopg2.connect(dsn + (f" password={conn.info.password}" if conn.info.password else ""))
    fast.autocommit = True
    with fast.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'; SET extra_float_digits = 1; SET DateStyle = 'ISO, MDY'")
    if known is not None:
        known[1].close()
    _FAST[key] = (dsn, fast)
    weakref.finalize(conn, _drop_fast, key, fast)  # closed with ``conn`` at the latest
    return fast


def _drop_fast(key: int, fast: Any) -> None:
    fast.close()
    if key in _FAST and _FAST[key][1] is fast:
        del _FAST[key]


def close_fast() -> None:
    """Close the psycopg2 side connections, if any."""
    for _, fast in _FAST.values():
        fast.close()
    _FAST.clear()


def copy_in(conn: Connection[Any], table: sql.Composable, res: PivotResult) -> int:
    """``COPY table (columns) FROM STDIN (FORMAT csv)`` the pivoted rows; checks the count."""
    if not res.wide_rows:
        return 0
    return copy_csv(conn, table, res.columns, res.csv, expected=res.wide_rows)


def store_dead_letters(conn: Connection[Any], unit: str, run_id: str | None, letters: list[control.DeadLetter]) -> int:
    """Store dead letters not stored before for this ship (a re-read row is reported once)."""
    if not letters:
        return 0
    seen = {
        r[0] for r in conn.execute(
            f"SELECT record_key FROM {control.SCHEMA}.dead_letters WHERE pipeline = %s AND unit_key = %s "
            "AND record_key = ANY(%s)",
            (PIPELINE, unit, [d.record_key for d in letters]),
        ).fetchall()
    }
    fresh = [d for d in letters if d.record_key not in seen]
    return control.add_dead_letters(conn, PIPELINE, run_id, unit, fresh)


def pivot_chunk(
    conn: Connection[Any], cfg: ShipWideConfig, wide: WideTable, data: Any,
    before_new_columns: Callable[[], None] | None = None,
) -> tuple[PivotResult, dict[str, str]]:
    """Pivot a chunk (COPY bytes, or already parsed by :func:`read_chunk`), adding columns for channels
    seen for the first time (same transaction; ``before_new_columns`` is called first)."""
    chunk = read_chunk(data) if isinstance(data, bytes | memoryview) else data
    fresh = new_channels(chunk, wide.columns)
    if fresh and before_new_columns is not None:
        before_new_columns()
    added = add_channels(conn, cfg, wide, fresh)
    if added:
        log.info("ship %s: new channels → columns %s", wide.ship_id, added)
    res = pivot(chunk, wide.columns, wide.types, ship_id=wide.ship_id,
                source=f"{cfg.schema}.{cfg.narrow_table}", seq_name=cfg.seq_column)
    return res, added


def chunk_upper(src: Connection[Any], cfg: ShipWideConfig, ship_id: str, lo: str | None) -> str | None:
    """The upper bound of the chunk after ``lo``: the time of the ``chunk_rows``-th narrow row after it
    (None: fewer rows are left, the chunk is the rest). One walk of the (ship_id, created_time) index.

    A chunk ``(lo, hi]`` holds every row of its last time, so a time is never split between chunks.
    (The text form is taken outside: inside, it would be computed for every skipped row, and an output
    column named ``created_time`` would make ORDER BY sort by that text instead of walking the index.)
    """
    where, params = chunk_where(ship_id, lo, None)
    row = src.execute(
        with_params(sql.SQL("SELECT upper::text FROM (SELECT created_time AS upper FROM {}{} ORDER BY created_time "
                            "OFFSET %s LIMIT 1) b").format(pg_ident(cfg.schema, cfg.narrow_table), where)),
        [*params, cfg.chunk_rows - 1],
    ).fetchone()
    return row[0] if row else None


@dataclass
class _Chunk:
    """One chunk of the in-database pivot: its bounds, the connection whose transaction holds it, its result."""

    lo: str | None
    hi: str | None  # None: the last chunk (everything after lo)
    conn: Connection[Any]
    future: Future[tuple[FastChunk | None, ServerChunk | None]]


class InDatabaseChunks:
    """A ship's chunks pivoted inside PostgreSQL, ``cfg.copy_connections`` at a time, handed out in order.

    Each chunk runs in its own transaction on its own connection: first the fast path
    (:mod:`cutover.ship_wide.arrival`), then the general statement for the times it left. The copy
    takes the chunks in order, finishes each (problem times, checkpoint) and commits it, so the
    checkpoint only moves forward over committed chunks; the chunks behind it are still working, or
    done and waiting for their turn. Adding a column needs every other chunk's transaction out of
    the way: :meth:`drain` rolls them back and they are pivoted again.
    """

    def __init__(self, cfg: ShipWideConfig, wide: WideTable, patterns: ArrivalPatterns, src: Connection[Any],
                 conns: list[Connection[Any]], lo: str | None, *, whole: bool = False) -> None:
        self.cfg, self.wide, self.patterns, self.src = cfg, wide, patterns, src
        self.free = deque(conns)
        self.whole = whole  # the ship is one chunk: no bound to look up, pivoted on the calling thread
        self.inflight: deque[_Chunk] = deque()
        self.next_lo, self.more = lo, True
        self.pool = ThreadPoolExecutor(max_workers=len(conns), thread_name_prefix=f"ship-{wide.ship_id}-pivot")

    def _fill(self) -> None:
        while self.more and self.free:
            lo = self.next_lo
            hi = None if self.whole else chunk_upper(self.src, self.cfg, self.wide.ship_id, lo)
            fast = self.patterns.statement(lo, hi) if self.patterns.active else None
            conn = self.free.popleft()
            if self.whole:  # one chunk, nothing to overlap with: pivot it on this thread
                done: Future[tuple[FastChunk | None, ServerChunk | None]] = Future()
                try:
                    done.set_result(self._pivot(conn, lo, hi, fast))
                except Exception as exc:  # noqa: BLE001 - raised by next(), as a pool's future would
                    done.set_exception(exc)
                self.inflight.append(_Chunk(lo, hi, conn, done))
            else:
                self.inflight.append(_Chunk(lo, hi, conn, self.pool.submit(self._pivot, conn, lo, hi, fast)))
            self.next_lo, self.more = hi, hi is not None

    def _pivot(self, conn: Connection[Any], lo: str | None, hi: str | None,
               fast: tuple[sql.Composed, list[Any]] | None) -> tuple[FastChunk | None, ServerChunk | None]:
        if fast is None:  # the fast path gave up on this ship: the general statement takes the chunk
            return None, pivot_in_database(conn, self.cfg, self.wide, lo=lo, hi=hi)
        fc = run_fast(conn, *fast)
        return fc, (pivot_in_database(conn, self.cfg, self.wide, fc.leftover) if fc.leftover else None)

    def next(self) -> tuple[_Chunk, FastChunk | None, ServerChunk | None]:
        """The next chunk in order, pivoted (its transaction open on ``chunk.conn``; the copy stops
        asking after the last one, whose ``hi`` is None)."""
        self._fill()
        chunk = self.inflight[0]
        fc, rest = chunk.future.result()
        return chunk, fc, rest

    def done(self, chunk: _Chunk) -> None:
        """The chunk is committed: its connection takes the next chunk."""
        assert self.inflight[0] is chunk
        self.inflight.popleft()
        self.free.append(chunk.conn)
        self._fill()

    def drain(self) -> None:
        """Roll back every chunk in flight after the current one; they are pivoted again after it."""
        later = list(self.inflight)[1:]
        for c in later:
            c.future.exception()  # wait for it, whatever it did
            c.conn.rollback()
            self.inflight.remove(c)
            self.free.append(c.conn)
        if later:
            self.next_lo, self.more = later[0].lo, True
            log.info("ship %s: %d chunk(s) in flight rolled back to add a column; they run again",
                     self.wide.ship_id, len(later))

    def close(self) -> None:
        """Stop what is in flight (a failure or a kill): cancel the statements, wait for the threads."""
        for c in self.inflight:
            if not c.future.done():
                c.conn.cancel_safe()
        self.pool.shutdown(wait=True, cancel_futures=True)


def open_pair(cfg: ShipWideConfig, session: BatchSession | None, stack: ExitStack) -> tuple[Connection[Any], Connection[Any]]:
    """(source autocommit, target) connections with :func:`session_setup` applied: the batch session's
    (set up once per connection) or new ones closed with ``stack`` (the target's work is committed
    when ``stack`` closes without an error)."""
    if session is None:
        src = stack.enter_context(pg_connect(cfg.source_conn_id, autocommit=True))
        tgt = stack.enter_context(pg_connect(cfg.target_conn_id))
        session_setup(src)
        session_setup(tgt)
        tgt.commit()
        return src, tgt
    pair = []
    for conn_id, auto in ((cfg.source_conn_id, True), (cfg.target_conn_id, False)):
        conn = session.pg(conn_id, autocommit=auto)
        if session.cache.get(("ship_wide.setup", id(conn))) is not conn:
            session_setup(conn)
            if not auto:
                conn.commit()
            session.cache[("ship_wide.setup", id(conn))] = conn
        pair.append(conn)
    return pair[0], pair[1]


def copy_history(
    cfg: ShipWideConfig, ship_id: str, *, run_id: str | None = None, rows_total: int | None = None,
    hook: Hook | None = None, on_chunk: ChunkCallback | None = None, session: BatchSession | None = None,
) -> dict[str, Any]:
    """Copy a ship's narrow history into its wide table, resuming after the last committed chunk.

    ``hook(stage, chunk_number)`` is called with ``"loaded"`` (before the commit) and ``"committed"``;
    tests raise from it to simulate a task killed mid-copy. ``on_chunk`` records progress in the
    chunk's transaction (see :data:`ChunkCallback`). ``session``: the life cycle's batch session,
    whose connections the ships of a batch share (else the copy opens its own). ``rows_total``: the
    planned narrow rows; a ship planned at no more than ``chunk_rows`` is pivoted in the database as
    one chunk (no bound looked up, one connection), and one under :data:`SMALL_SHIP_ROWS` skips the
    arrival patterns. Returns counts for the task log / XCom, with ``rows_done`` (narrow rows read)
    and ``rows_written`` (wide rows written), both running totals over every run that worked on the ship.
    """
    with ExitStack() as own:
        src, tgt = open_pair(cfg, session, own)
        wide = load_wide(tgt, cfg, ship_id)
        if wide is None:
            raise ShipNotPrepared(f"ship {ship_id!r}: wide table missing, run prepare first")
        unit = cfg.unit(ship_id)
        cp = control.get_checkpoint(tgt, PIPELINE, unit)
        state = ShipWatermark.from_json(cp.watermark) if cp else None
        rows_done = cp.rows_done if cp else 0
        rows_written = cp.rows_written if cp else 0
        if state is not None and state.history_complete:
            log.info("ship %s: history already copied (%d chunks), nothing to do", ship_id, state.chunks)
            tgt.commit()
            return {"ship_id": ship_id, "skipped": True, "finalized": state.finalized, "rows_done": rows_done,
                    "rows_written": rows_written}
        if state is None:  # stored with the first chunk (a copy that commits nothing leaves nothing)
            top = src.execute(sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(
                pg_ident(cfg.seq_column), pg_ident(cfg.schema, cfg.narrow_table))).fetchone()
            state = ShipWatermark(seq_start=int(top[0]) if top else 0)
        tgt.commit()
        server = use_server_pivot(cfg, src, tgt, wide)
        whole = server and state.created_time is None and rows_total is not None and rows_total <= cfg.chunk_rows
        log.info("ship %s: history copy, pivot in the %s, chunks of %s narrow rows", ship_id,
                 "database (same server as the narrow table)" if server else "client (COPY out → pyarrow → COPY in)",
                 f"{cfg.chunk_rows:,}")
        base = narrow_select(cfg)
        table = pg_ident(cfg.schema, cfg.narrow_table)
        progress = Progress(f"ship {ship_id} history copy", rows_total - rows_done if rows_total else None)
        finalized: dict[str, Any] | None = None  # a ship taken in one chunk is finalized with it
        stats = {"chunks": 0, "narrow_rows": 0, "wide_rows": 0, "dead_letters": 0, "superseded": 0, "new_columns": 0,
                 "client_rows": 0, "fast_rows": 0}
        patterns = ArrivalPatterns(cfg, wide)
        if server and rows_total is not None and rows_total < SMALL_SHIP_ROWS:
            patterns.disable()
        elif server:
            patterns.probe(tgt, state.created_time, rows=PROBE_ROWS)
            tgt.commit()
            log.info("ship %s: %d arrival patterns learned from its first times (%s); %d chunk(s) at a time", ship_id,
                     len(patterns.entries), "fast path on" if patterns.active else
                     "they cover too few times: the general statement takes every chunk", cfg.copy_connections)

        def fetch(reader: Connection[Any], lo: str | None, hi: str | None) -> Any:
            """Read and parse the chunk ``(lo, hi]`` (source only)."""
            cond, params = chunk_where(ship_id, lo, hi)
            return read_chunk(copy_out(reader, base + cond + sql.SQL(" ORDER BY created_time"), params))

        def load_client(conn: Connection[Any], data: Any,
                        before_new_columns: Callable[[], None] | None = None) -> tuple[PivotResult, dict[str, str], int]:
            res, added = pivot_chunk(conn, cfg, wide, data, before_new_columns)
            copy_in(conn, wide.ident, res)
            return res, added, store_dead_letters(conn, unit, run_id, res.dead)

        # Client path: the next ``copy_connections`` chunks are read from the source and parsed, each
        # by its reader thread on its own connection (pyarrow releases the GIL), while this one is
        # pivoted and loaded, so the source's COPY OUT and the parse overlap the pivot and the target's
        # COPY IN (``copy_connections`` + 1 chunks in memory at most). Commits and checkpoints stay on
        # this thread, in chunk order.
        # In-database path: ``copy_connections`` chunks are pivoted at once (InDatabaseChunks); this
        # thread finishes and commits them in order.
        n_readers = 0 if server else cfg.copy_connections
        reader = ThreadPoolExecutor(max_workers=max(n_readers, 1), thread_name_prefix=f"ship-{ship_id}-reader")
        with ExitStack() as extra:
            conns = [tgt] + [extra.enter_context(pg_connect(cfg.target_conn_id))
                             for _ in range(cfg.copy_connections - 1 if server and not whole else 0)]
            readers = deque(extra.enter_context(pg_connect(cfg.source_conn_id, autocommit=True)) for _ in range(n_readers))
            for c in [*conns[1:], *readers]:
                session_setup(c)
                if not c.autocommit:
                    c.commit()
            chunks = InDatabaseChunks(cfg, wide, patterns, src, conns, state.created_time, whole=whole) if server else None
            reads: deque[tuple[str | None, Connection[Any], Future[Any]]] = deque()
            read_lo, more_to_read = state.created_time, not server

            def read_ahead() -> None:
                """Start reading the next chunks, one per idle reader."""
                nonlocal read_lo, more_to_read
                while more_to_read and readers:
                    r = readers.popleft()
                    hi = chunk_upper(src, cfg, ship_id, read_lo)
                    reads.append((hi, r, reader.submit(fetch, r, read_lo, hi)))
                    read_lo, more_to_read = hi, hi is not None

            try:
                read_ahead()
                while True:
                    lo = state.created_time
                    conn = tgt
                    added: dict[str, str] = {}
                    if chunks is not None:
                        chunk, fc, rest = chunks.next()
                        conn, lo, hi = chunk.conn, chunk.lo, chunk.hi
                        if fc is not None:
                            was_active = patterns.active
                            patterns.observe(fc)
                            if was_active and not patterns.active:
                                log.info("ship %s: the fast path took no time of the last %d chunks; the general "
                                         "statement takes the rest of the ship", ship_id, GIVE_UP_AFTER)
                        fast_rows = fc.narrow_rows if fc else 0
                        stats["fast_rows"] += fast_rows
                        narrow = fast_rows + (rest.narrow_rows if rest else 0)
                        wide_rows = (fc.wide_rows if fc else 0) + (rest.wide_rows if rest else 0)
                        superseded, dead, last = 0, 0, fc.last_time if fc else None
                        if rest and rest.problem_times:  # duplicates, bad rows, new channels: the client's careful pivot
                            extra_where, more = problem_filter(rest.problem_times)
                            where, params = chunk_where(ship_id, lo, hi)
                            q = base + where + extra_where + sql.SQL(" ORDER BY created_time")
                            res, added, dead = load_client(conn, read_chunk(copy_out(src, q, params + more)), chunks.drain)
                            narrow += res.narrow_rows
                            wide_rows += res.wide_rows
                            superseded = res.superseded
                            stats["client_rows"] += res.narrow_rows
                    else:
                        hi, r, future = reads.popleft()
                        data = future.result()
                        readers.append(r)
                        read_ahead()
                        res, added, dead = load_client(tgt, data)
                        del data
                        narrow, wide_rows, superseded, last = res.narrow_rows, res.wide_rows, res.superseded, res.last_time
                    done = hi is None
                    # rows without a time fall in no chunk: they are dead letters, not lost (the index on
                    # (ship_id, created_time) answers the probe, so a ship without any costs no COPY)
                    untimed = sql.SQL(" WHERE ship_id = %s AND created_time IS NULL")
                    if done and src.execute(with_params(sql.SQL("SELECT EXISTS (SELECT FROM {}{})").format(table, untimed)),
                                            [ship_id]).fetchone() == (True,):
                        res, _, d = load_client(conn, read_chunk(copy_out(src, base + untimed, [ship_id])))
                        narrow += res.narrow_rows
                        dead += d
                    state.created_time = hi or last or lo
                    state.chunks += 1
                    state.history_complete = done
                    rows_done += narrow
                    rows_written += wide_rows
                    if done and whole:  # the whole ship in this transaction: finalize it here too
                        finalized = finalize_in(conn, cfg, wide, state, rows_done, session)
                    control.set_checkpoint(conn, PIPELINE, unit, state.to_json(), rows_done=rows_done, run_id=run_id,
                                           rows_written=rows_written)
                    if on_chunk is not None:
                        on_chunk(conn, rows_done, rows_written)
                    stats["chunks"] += 1
                    if hook:
                        hook("loaded", stats["chunks"])
                    conn.commit()
                    if chunks is not None:
                        chunks.done(chunk)
                    for k, v in (("narrow_rows", narrow), ("wide_rows", wide_rows), ("dead_letters", dead),
                                 ("superseded", superseded), ("new_columns", len(added))):
                        stats[k] += v
                    progress.add(narrow)
                    if hook:
                        hook("committed", stats["chunks"])
                    if done:
                        break
            except errors.ProgramLimitExceeded as exc:  # a text-heavy row over 8160 bytes: the chunk rolled back
                raise ChannelLimitExceeded(
                    f"ship {ship_id!r}: a wide row does not fit a PostgreSQL page ({str(exc).splitlines()[0]}); "
                    f"nothing of the chunk after {state.created_time} was committed. Split the ship's channels "
                    "or keep its readers on the narrow table."
                ) from exc
            finally:
                if chunks is not None:
                    chunks.close()
                reader.shutdown(wait=True, cancel_futures=True)
                close_fast()
        progress.finish()
        return {"ship_id": ship_id, "skipped": False, "rows_done": rows_done, "rows_written": rows_written,
                "pivot": "server" if server else "client", "finalized": finalized, **stats}


def use_server_pivot(cfg: ShipWideConfig, src: Connection[Any], tgt: Connection[Any], wide: WideTable) -> bool:
    """Whether the history copy pivots inside PostgreSQL (see :mod:`cutover.ship_wide.server_pivot`)."""
    if cfg.pivot == "client":
        return False
    same = same_database(src, tgt)
    if cfg.pivot == "server" and not same:
        raise ValueError("pivot='server' needs the narrow table and the wide tables in one database: "
                         f"{cfg.source_conn_id} and {cfg.target_conn_id} differ (use pivot='auto' or 'client')")
    return same and supported(wide)


def finalize_in(conn: Connection[Any], cfg: ShipWideConfig, wide: WideTable, state: ShipWatermark, rows_done: int,
                session: BatchSession | None) -> dict[str, Any]:
    """Finalize in ``conn``'s transaction (the caller stores ``state`` and commits): restore the set-aside
    primary key exactly as backed up, ANALYZE its column (ships of :data:`SMALL_SHIP_ROWS` narrow rows
    or more), register the consistency pair, mark ``state`` finalized."""
    from cutover.ship_wide.pair import register_ship  # here: pair imports this package's modules

    restored = restore_primary_key(conn, wide, analyze=rows_done >= SMALL_SHIP_ROWS)
    pair = register_ship(conn, cfg, wide, ensure=session is None or _once(session, "ship_wide.registry"))
    state.finalized = True
    return {"restored": restored, "key": TIME_COLUMN, "consistency_pair": pair}


def finalize_ship(cfg: ShipWideConfig, ship_id: str, *, run_id: str | None = None,
                  session: BatchSession | None = None) -> dict[str, Any]:
    """Restore the set-aside primary key exactly as backed up, ANALYZE, register the consistency pair,
    and mark the ship built (one transaction, :func:`finalize_in`). A ship the copy took in one chunk
    was finalized in that chunk's transaction (nothing to do). ``session``: the batch's shared
    connections (else its own). ``wide_rows`` in the result is the copy's count of wide rows written."""
    with ExitStack() as own:
        _, tgt = open_pair(cfg, session, own)
        cp = control.get_checkpoint(tgt, PIPELINE, cfg.unit(ship_id))
        state = ShipWatermark.from_json(cp.watermark) if cp else None
        if state is not None and cp is not None and state.finalized:
            from cutover.ship_wide.pair import pair_name

            tgt.commit()
            return {"ship_id": ship_id, "restored": [], "wide_rows": cp.rows_written, "key": TIME_COLUMN,
                    "consistency_pair": pair_name(cfg, ship_id), "finalized": "with the copy"}
        wide = load_wide(tgt, cfg, ship_id)
        if wide is None or state is None or cp is None:
            raise ShipNotPrepared(f"ship {ship_id!r}: nothing copied yet")
        if not state.history_complete:
            raise RuntimeError(f"ship {ship_id!r}: history copy has not finished (watermark {state.created_time})")
        out = finalize_in(tgt, cfg, wide, state, cp.rows_done, session)
        control.set_checkpoint(tgt, PIPELINE, cfg.unit(ship_id), state.to_json(), run_id=run_id)
        tgt.commit()
        return {"ship_id": ship_id, "wide_rows": cp.rows_written, **out}


def _once(session: BatchSession, key: str) -> bool:
    """True the first time ``key`` is asked for in this batch session."""
    if session.cache.get(key):
        return False
    session.cache[key] = True
    return True
