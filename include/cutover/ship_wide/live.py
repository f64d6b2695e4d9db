"""Live sync: follow the narrow table's ingest sequence and keep every built wide table under a second behind.

**What it does.** One loop (:func:`follow`) reads the narrow rows that committed since the last
poll, for *all* built ships at once, by the ingest sequence (``seq_column``, the narrow table's
primary key, so one index range scan), groups them by ship, and for each ship pivots and upserts
them with the sync's own code and rules (:func:`cutover.ship_wide.copy.pivot_chunk`,
:func:`cutover.ship_wide.sync.upsert`, :func:`cutover.ship_wide.copy.store_dead_letters`; a new
channel gets its column, the reader view and the consistency pair follow). Every ship's checkpoint
(``sync_seq``) moves in the same transaction as its rows; one transaction per poll, a savepoint per
ship, so a ship that fails (a lock, a channel limit) is kept for a later poll while the others
commit. It polls every ``poll_s`` (0.2 s by default) on two long-lived connections; when a read
comes back full it reads again at once.

**Rows that commit late.** Sequence numbers are handed out before commit, so a row can become
visible after a higher one was read. Each poll notes the numbers it skipped over (*gaps*, kept as
ranges) and re-reads them (``seq > top OR seq BETWEEN gap.lo AND gap.hi``) for ``gap_timeout_s``; a
gap that never fills was a rolled-back insert. When a late row turns up, every narrow row of its
ship and ``created_time`` up to the poll's top is read again and pivoted together, so the latest row
of each cell still wins (the upsert alone would let the late, older row overwrite a newer one).
The minute ``ship_wide_sync`` (which re-reads an overlap) stays the safety net for a transaction
open longer than the gap timeout, and ``consistency_checks`` keeps watching every pair.

**Locks.** A ship is touched only under its advisory lock (:func:`cutover.ship_wide.sync.lock_key`),
taken with ``pg_try_advisory_xact_lock`` for the poll's transaction: a ship that a verification or
the minute sync holds is not waited for; its rows stay in memory and go in at a later poll (when
too many pile up, the ship is caught up from its checkpoint by :func:`~cutover.ship_wide.sync.sync_ship`
instead). ``lock_timeout`` bounds what a reader's long transaction can hold up (a new column).

**Ships that appear.** The set of built ships is re-read every ``refresh_s``: a ship built since
(``ship_wide_build`` marks it finalized) is first caught up from its checkpoint by ``sync_ship``,
then followed; a ship rolled back with drop is left. :func:`new_ships` finds ships of the narrow
table the migration has not seen at all, and :func:`request_build` records them as the planned units
of the ``ship_wide_build`` run the minute DAG triggers for them.

**Where it starts, how far it got.** The follower starts at the lowest checkpoint of the built ships
(minus ``sync_overlap``) and keeps each checkpoint at the *safe point* (everything of the ship up to it
is in; gaps still open are above it), idle ships included (every ``advance_s``), so a killed follower
resumes from the checkpoints with no loss, and the minute sync only re-reads its overlap.

**What it logs** every ``log_every_s``: narrow rows/s, ships touched, polls, the time from a poll's
read to its commit (p50/p95), and — when the server has ``track_commit_timestamp = on`` — the lag
from each narrow row's commit to its wide row's commit (p50/p95/max).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection, sql

from cutover import control
from cutover.connections import pg_connect, pg_open
from cutover.identifiers import pg_ident
from cutover.ship_wide.config import PIPELINE, TIME_COLUMN, ShipWideConfig
from cutover.ship_wide.copy import ShipWatermark, copy_out, pivot_chunk, store_dead_letters
from cutover.ship_wide.cutover import refresh_reader_view
from cutover.ship_wide.ddl import WideTable, load_wide
from cutover.ship_wide.pivot import CHUNK_COLUMNS, read_chunk
from cutover.ship_wide.plan import check_narrow, session_setup
from cutover.ship_wide.sync import lock_key, sync_ship, upsert

log = logging.getLogger(__name__)

#: the narrow columns a poll reads: the pivot's chunk columns, then the ship
READ_COLUMNS = (*CHUNK_COLUMNS, "ship_id")
#: at most this many open gap ranges are re-read; past it the oldest are given up (logged)
MAX_GAP_RANGES = 10_000
#: the longest a failing ship waits before its next try (it doubles from 1 s)
MAX_BACKOFF_S = 60.0
#: what a poll transaction waits for a table lock (a reader's long transaction) before the ship fails
LOCK_TIMEOUT = "2s"


# --- gaps ---------------------------------------------------------------------------------------


@dataclass
class Gaps:
    """Ingest sequence numbers skipped over by the reads (in-flight or rolled-back inserts), as ranges.

    ``ranges`` holds ``[lo, hi, since]`` (inclusive bounds, monotonic time first seen), sorted by ``lo``
    and disjoint.
    """

    ranges: list[list[float]] = field(default_factory=list)
    given_up: int = 0

    def __len__(self) -> int:
        return len(self.ranges)

    def ids(self) -> int:
        """How many sequence numbers are open."""
        return int(sum(hi - lo + 1 for lo, hi, _ in self.ranges))

    def note_read(self, top: int, seqs: Any, now: float) -> None:
        """Record the holes a read of ``seq > top`` left: ``seqs`` (sorted, all > top) came back."""
        import numpy as np

        if not len(seqs):
            return
        edges = np.concatenate(([top], np.asarray(seqs, dtype=np.int64)))
        jump = np.flatnonzero(np.diff(edges) > 1)
        for i in jump:
            self.ranges.append([int(edges[i]) + 1, int(edges[i + 1]) - 1, now])
        if len(jump):
            self.ranges.sort(key=lambda r: r[0])
        if len(self.ranges) > MAX_GAP_RANGES:
            self.ranges.sort(key=lambda r: r[2])
            drop = len(self.ranges) - MAX_GAP_RANGES
            self.given_up += int(sum(hi - lo + 1 for lo, hi, _ in self.ranges[:drop]))
            log.warning("live sync: more than %d open gaps in the ingest sequence; the %d oldest are given up "
                        "(the minute ship_wide_sync's overlap re-reads them)", MAX_GAP_RANGES, drop)
            self.ranges = sorted(self.ranges[drop:], key=lambda r: r[0])

    def fill(self, seqs: Any) -> None:
        """Remove sequence numbers that turned up (any order)."""
        import numpy as np

        if not len(seqs) or not self.ranges:
            return
        found = np.unique(np.asarray(seqs, dtype=np.int64))
        out: list[list[float]] = []
        for lo, hi, since in self.ranges:
            a, b = np.searchsorted(found, [lo, hi + 1])
            start = lo
            for s in found[a:b]:
                if s > start:
                    out.append([start, int(s) - 1, since])
                start = int(s) + 1
            if start <= hi:
                out.append([start, hi, since])
        self.ranges = out

    def expire(self, now: float, timeout_s: float) -> int:
        """Give up gaps older than ``timeout_s`` (rolled back, or a transaction the safety net takes); returns ids."""
        old = [r for r in self.ranges if now - r[2] > timeout_s]
        if not old:
            return 0
        self.ranges = [r for r in self.ranges if now - r[2] <= timeout_s]
        n = int(sum(hi - lo + 1 for lo, hi, _ in old))
        self.given_up += n
        return n

    def floor(self) -> int | None:
        """The lowest open sequence number (None: no gap)."""
        return int(self.ranges[0][0]) if self.ranges else None

    def bounds(self) -> tuple[list[int], list[int]]:
        """(lows, highs) of the open ranges, for ``unnest``."""
        return [int(r[0]) for r in self.ranges], [int(r[1]) for r in self.ranges]


# --- reading ------------------------------------------------------------------------------------


def read_rows(data: bytes | memoryview) -> Any:
    """Parse a poll's ``COPY … TO STDOUT (FORMAT csv)`` of :data:`READ_COLUMNS` (the chunk reader's types)."""
    return read_chunk(data, READ_COLUMNS)


def merge_rows(tables: Iterable[Any]) -> Any:
    """Concatenate parsed row tables, each sequence number once, in sequence order."""
    import numpy as np
    import pyarrow as pa

    parts = [t for t in tables if t is not None and t.num_rows]
    if not parts:
        return None
    table = pa.concat_tables(parts).unify_dictionaries().combine_chunks() if len(parts) > 1 else parts[0]
    seq = table["seq"].to_numpy()
    _, first = np.unique(seq, return_index=True)  # sorted by seq, duplicates (re-read rows) once
    if len(first) == table.num_rows and bool((np.diff(seq) > 0).all()):
        return table
    return table.take(pa.array(first))


def split_by_ship(table: Any) -> dict[str, Any]:
    """ship id → that ship's rows (the pivot's chunk columns, sequence order kept)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if table is None or not table.num_rows:
        return {}
    enc = pc.dictionary_encode(table["ship_id"]).combine_chunks()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    cols = table.select(list(CHUNK_COLUMNS))
    out: dict[str, Any] = {}
    names = enc.dictionary.to_pylist()
    for part in np.split(order, bounds):
        ship = names[int(codes[part[0]])]
        if ship is not None:
            out[ship] = cols.take(pa.array(part))
    return out


def _select(cfg: ShipWideConfig, *, alias: str = "") -> sql.Composed:
    """``SELECT <READ_COLUMNS> FROM narrow [alias]`` (the sequence column as ``seq``, the ship as text)."""
    a = sql.SQL(f"{alias}.") if alias else sql.SQL("")
    items: list[sql.Composable] = []
    for c in READ_COLUMNS:
        if c == "seq":
            items.append(sql.SQL("{}{} AS seq").format(a, pg_ident(cfg.seq_column)))
        elif c == "ship_id":
            items.append(sql.SQL("{}ship_id::text AS ship_id").format(a))
        else:
            items.append(sql.SQL("{}{}").format(a, pg_ident(c)))
    return sql.SQL("SELECT {} FROM {}{}").format(
        sql.SQL(", ").join(items), pg_ident(cfg.schema, cfg.narrow_table), sql.SQL(f" {alias}") if alias else sql.SQL(""))


def poll_query(cfg: ShipWideConfig, top: int, limit: int, gaps: Gaps) -> tuple[sql.Composed, list[Any]]:
    """The poll's one read: ``seq > top`` (the next ``limit`` in order) plus every row inside an open gap."""
    seq = pg_ident(cfg.seq_column)
    q = sql.SQL("({} WHERE {} > %s ORDER BY {} LIMIT %s)").format(_select(cfg), seq, seq)
    params: list[Any] = [int(top), int(limit)]
    if gaps.ranges:
        lows, highs = gaps.bounds()
        q = q + sql.SQL(" UNION ALL ({} JOIN unnest(%s::bigint[], %s::bigint[]) AS g(lo, hi) "
                        "ON n.{} BETWEEN g.lo AND g.hi)").format(_select(cfg, alias="n"), seq)
        params += [lows, highs]
    return q, params


def times_query(cfg: ShipWideConfig, ship_type: str, time_type: str, pairs: list[tuple[str, str]],
                upto: int) -> tuple[sql.Composed, list[Any]]:
    """Every narrow row of the given (ship, created_time) pairs with ``seq <= upto`` (a late row's neighbours)."""
    q = sql.SQL("{} JOIN unnest(%s::text[]::{}[], %s::text[]::{}[]) AS p(s, t) ON n.ship_id = p.s "
                "AND n.created_time = p.t WHERE n.{} <= %s").format(
        _select(cfg, alias="n"), sql.SQL(ship_type), sql.SQL(time_type), pg_ident(cfg.seq_column))
    return q, [[s for s, _ in pairs], [t for _, t in pairs], int(upto)]


# --- the follower -------------------------------------------------------------------------------


@dataclass
class _Ship:
    """What the follower keeps per built ship between polls."""

    ship_id: str
    unit: str
    joined: bool  # caught up from its checkpoint (or followed from the start)
    wide: WideTable | None = None
    pending: list[Any] = field(default_factory=list)  # rows read but not in yet (locked, failing)
    pending_rows: int = 0
    retry_at: float = 0.0
    failures: int = 0
    last_error: str | None = None


@dataclass
class _Window:
    """Figures of the current log window."""

    started: float
    rows: int = 0
    polls: int = 0
    ships: set[str] = field(default_factory=set)
    apply_s: list[float] = field(default_factory=list)
    lag_s: list[float] = field(default_factory=list)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


class Follower:
    """The live sync's state and one poll at a time (:func:`follow` runs it); see the module docstring."""

    def __init__(self, cfg: ShipWideConfig, *, run_id: str | None = None, poll_s: float = 0.2,
                 gap_timeout_s: float = 120.0, refresh_s: float = 5.0, advance_s: float = 10.0,
                 log_every_s: float = 30.0, read_rows_limit: int | None = None,
                 hook: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.cfg, self.run_id = cfg, run_id
        self.poll_s, self.gap_timeout_s, self.refresh_s, self.advance_s = poll_s, gap_timeout_s, refresh_s, advance_s
        self.log_every_s = log_every_s
        self.limit = read_rows_limit or cfg.chunk_rows
        self.hook = hook  # tests: ("applied" | "committed", {...}) before / after a poll's commit
        self.ships: dict[str, _Ship] = {}
        self.gaps = Gaps()
        self.top = 0
        self.src: Connection[Any] | None = None
        self.tgt: Connection[Any] | None = None
        self.ship_type = self.time_type = "text"
        self.commit_ts = False
        self._refreshed = self._advanced = -math.inf
        self._window = _Window(time.monotonic())
        self.totals: dict[str, Any] = {"polls": 0, "narrow_rows": 0, "wide_rows": 0, "dead_letters": 0,
                                       "late_rows": 0, "new_columns": [], "ships_joined": 0, "locked_skips": 0,
                                       "errors": 0}

    # connections -------------------------------------------------------------------------------

    def open(self) -> None:
        """Open the two connections, read the narrow table's types, place the start of the stream."""
        self.src = pg_open(self.cfg.source_conn_id, autocommit=True)
        self.tgt = pg_open(self.cfg.target_conn_id)
        session_setup(self.src)
        session_setup(self.tgt)
        self.tgt.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        control.ensure_schema(self.tgt)
        self.tgt.commit()
        cols = check_narrow(self.src, self.cfg)
        self.ship_type, self.time_type = cols["ship_id"], cols[TIME_COLUMN]
        row = self.src.execute("SELECT current_setting('track_commit_timestamp')").fetchone()
        self.commit_ts = bool(row and row[0] == "on")
        starts = self._built()
        if starts:
            self.top = max(min(starts.values()) - self.cfg.sync_overlap, 0)
            for ship in starts:
                self.ships[ship] = _Ship(ship, self.cfg.unit(ship), joined=True)
        else:
            self.top = self._max_seq()
        self._refreshed = time.monotonic()
        log.info("live sync of %s.%s: %d built ship(s), following from %s %s (poll every %.2f s, gaps re-read "
                 "for %.0f s%s)", self.cfg.schema, self.cfg.narrow_table, len(self.ships), self.cfg.seq_column,
                 f"{self.top:,}", self.poll_s, self.gap_timeout_s,
                 ", lag from commit measured (track_commit_timestamp)" if self.commit_ts else "")

    def close(self) -> None:
        """Close the connections (what was not committed rolls back)."""
        from cutover.ship_wide.copy import close_fast

        for conn in (self.src, self.tgt):
            if conn is not None and not conn.closed:
                conn.close()
        close_fast()

    def _max_seq(self) -> int:
        assert self.src is not None
        row = self.src.execute(sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(
            pg_ident(self.cfg.seq_column), pg_ident(self.cfg.schema, self.cfg.narrow_table))).fetchone()
        return int(row[0]) if row else 0

    def _built(self) -> dict[str, int]:
        """Built (finalized) ships of the narrow table → the sequence their sync starts after."""
        assert self.tgt is not None
        prefix = self.cfg.unit("")
        rows = self.tgt.execute(
            f"""SELECT unit_key, coalesce((watermark->>'sync_seq')::bigint, (watermark->>'seq_start')::bigint, 0)
                FROM {control.SCHEMA}.checkpoints WHERE pipeline = %s AND starts_with(unit_key, %s)
                  AND (watermark->>'finalized' = 'true' OR watermark->>'phase' = 'built')""",
            (PIPELINE, prefix)).fetchall()
        self.tgt.commit()
        return {r[0][len(prefix):]: int(r[1]) for r in rows}

    # the loop ----------------------------------------------------------------------------------

    def refresh(self, now: float) -> None:
        """Re-read the built ships: new ones join (caught up from their checkpoint), removed ones leave."""
        built = self._built()
        for ship in list(self.ships):
            if ship not in built:
                log.info("live sync: ship %s is no longer built (rolled back?): no longer followed", ship)
                del self.ships[ship]
        for ship in built:
            if ship not in self.ships:
                self.ships[ship] = _Ship(ship, self.cfg.unit(ship), joined=False)
        for s in self.ships.values():
            if not s.joined and s.retry_at <= now:
                self._join(s, now)
        self._refreshed = now

    def _join(self, s: _Ship, now: float) -> None:
        """Catch a ship up from its checkpoint (its rows the stream passed while it was not followed)."""
        try:
            out = sync_ship(self.cfg, s.ship_id, run_id=self.run_id, wait=False)
        except Exception as exc:  # noqa: BLE001 - the ship waits, the others go on
            self._failed(s, now, exc)
            return
        if out.get("skipped"):
            s.retry_at = now + self.refresh_s
            if out.get("why") != "locked":
                log.info("live sync: ship %s not caught up (%s)", s.ship_id, out.get("why"))
            return
        s.joined, s.pending, s.pending_rows, s.wide, s.failures = True, [], 0, None, 0
        self.totals["ships_joined"] += 1
        log.info("live sync: ship %s caught up from its checkpoint (%s narrow rows) and followed from now on",
                 s.ship_id, f"{out.get('narrow_rows', 0):,}")

    def _failed(self, s: _Ship, now: float, exc: BaseException) -> None:
        s.failures += 1
        s.retry_at = now + min(MAX_BACKOFF_S, 2.0 ** (s.failures - 1))
        s.last_error = f"{type(exc).__name__}: {exc}"
        s.wide = None  # reload its table and map next time (another session may have changed them)
        self.totals["errors"] += 1
        log.error("live sync: ship %s failed (try %d, next in %.0f s): %s", s.ship_id, s.failures,
                  s.retry_at - now, s.last_error)

    def safe_point(self) -> int:
        """Every narrow row up to here is read (open gaps are above it)."""
        floor = self.gaps.floor()
        return self.top if floor is None else min(self.top, floor - 1)

    def poll(self) -> int:
        """Read what committed since the last poll and move it into the wide tables; returns narrow rows read."""
        assert self.src is not None and self.tgt is not None
        now = time.monotonic()
        if now - self._refreshed >= self.refresh_s:
            self.refresh(now)
        expired = self.gaps.expire(now, self.gap_timeout_s)
        if expired:
            log.info("live sync: %d sequence number(s) never committed within %.0f s: given up (rolled back, or "
                     "left to the minute sync)", expired, self.gap_timeout_s)
        q, params = poll_query(self.cfg, self.top, self.limit, self.gaps)
        t_read = time.monotonic()
        rows = read_rows(copy_out(self.src, q, params))
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        seq = rows["seq"].to_numpy()
        fresh = seq > self.top
        n_fresh = int(fresh.sum())
        late = rows.filter(~fresh) if n_fresh < rows.num_rows else None
        if n_fresh:
            stream = np.sort(seq[fresh])
            self.gaps.note_read(self.top, stream, t_read)
            self.top = int(stream[-1])
        if late is not None:
            self.gaps.fill(late["seq"].to_numpy())
            self.totals["late_rows"] += late.num_rows
            late_ships = [sh for sh in pc.unique(late["ship_id"]).to_pylist() if sh in self.ships]
            if late_ships:  # the late rows' (ship, time) neighbours up to the top, so the latest row still wins
                keep = late.filter(pc.is_in(late["ship_id"], value_set=pa.array(late_ships, pa.string())))
                pairs = sorted({(sh, t) for sh, t in zip(keep["ship_id"].to_pylist(), keep[TIME_COLUMN].to_pylist(),
                                                          strict=True) if t is not None})
                if pairs:
                    tq, tp = times_query(self.cfg, self.ship_type, self.time_type, pairs, self.top)
                    rows = merge_rows([rows, read_rows(copy_out(self.src, tq, tp))])
        by_ship = split_by_ship(rows)
        self.totals["polls"] += 1
        self._window.polls += 1
        self._window.rows += len(seq)
        self.totals["narrow_rows"] += len(seq)
        work: dict[str, Any] = {}
        for ship, s in self.ships.items():
            if not s.joined:
                continue  # its rows come with its catch-up
            parts = [*s.pending, by_ship.get(ship)] if s.pending else [by_ship.get(ship)]
            if s.pending and s.retry_at > now:
                s.pending = [merge_rows(parts)]
                s.pending_rows = s.pending[0].num_rows
                continue
            merged = merge_rows(parts)
            if merged is not None:
                work[ship] = merged
        if work:
            self._apply(work, t_read)
        if now - self._advanced >= self.advance_s:
            self._advance_idle(now)
        self._maybe_log()
        return len(seq)

    def _apply(self, work: dict[str, Any], t_read: float) -> None:
        """One transaction: per ship (under its try-lock, in a savepoint) pivot, upsert, dead letters, checkpoint."""
        assert self.tgt is not None
        tgt, cfg = self.tgt, self.cfg
        now = time.monotonic()
        ships = list(work)
        got = tgt.execute(
            "SELECT k FROM unnest(%s::text[]) AS k WHERE pg_try_advisory_xact_lock(hashtextextended(k, 0))",
            ([lock_key(cfg, s) for s in ships],)).fetchall()
        held = {r[0] for r in got}
        units = {cfg.unit(s): s for s in ships if lock_key(cfg, s) in held}
        cps = {r[0]: r for r in tgt.execute(
            f"SELECT unit_key, watermark, rows_done FROM {control.SCHEMA}.checkpoints WHERE pipeline = %s "
            "AND unit_key = ANY(%s)", (PIPELINE, list(units))).fetchall()}
        safe = self.safe_point()
        done: list[str] = []
        lags: list[float] = []
        for ship in ships:
            s, rows = self.ships[ship], work[ship]
            if lock_key(cfg, ship) not in held:
                self.totals["locked_skips"] += 1
                self._keep(s, rows)
                continue
            cp = cps.get(s.unit)
            state = ShipWatermark.from_json(cp[1]) if cp else None
            if state is None or not state.finalized:
                log.info("live sync: ship %s is no longer built (%s): no longer followed", ship,
                         "no checkpoint" if state is None else "not finalized")
                del self.ships[ship]
                continue
            try:
                with tgt.transaction():  # a savepoint: a failing ship rolls back alone
                    out = self._apply_ship(s, rows, state, safe, int(cp[2]) if cp else 0)
            except Exception as exc:  # noqa: BLE001 - the ship keeps its rows and is retried later
                self._keep(s, rows)
                self._failed(s, now, exc)
                continue
            s.pending, s.pending_rows, s.failures, s.last_error = [], 0, 0, None
            done.append(ship)
            self.totals["wide_rows"] += out["wide_rows"]
            self.totals["dead_letters"] += out["dead_letters"]
            self.totals["new_columns"] += out["new_columns"]
            if out.get("commit_ts") is not None:
                lags.append(out["commit_ts"])
        if self.hook is not None:
            self.hook("applied", {"ships": done, "top": self.top})
        server_now = None
        if self.commit_ts and lags:
            row = tgt.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
            server_now = float(row[0]) if row else None
        tgt.commit()
        t_done = time.monotonic()
        if done:
            self._window.ships.update(done)
            self._window.apply_s.append(t_done - t_read)
            if server_now is not None:
                self._window.lag_s += [server_now - c for c in lags]
        if self.hook is not None:
            self.hook("committed", {"ships": done, "top": self.top})

    def _apply_ship(self, s: _Ship, rows: Any, state: ShipWatermark, safe: int, rows_done: int) -> dict[str, Any]:
        assert self.tgt is not None
        tgt, cfg = self.tgt, self.cfg
        if s.wide is None:
            s.wide = load_wide(tgt, cfg, s.ship_id)
            if s.wide is None:
                raise RuntimeError(f"ship {s.ship_id!r}: its wide table is missing")
        wide = s.wide
        res, added = pivot_chunk(tgt, cfg, wide, rows)
        if added:
            refresh_reader_view(tgt, cfg, wide)
            tgt.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")  # refresh_reader_view raised it
            from cutover.ship_wide.pair import register_ship

            register_ship(tgt, cfg, wide)  # the consistency pair compares the new column too
        written = upsert(tgt, wide, res)
        dead = store_dead_letters(tgt, s.unit, self.run_id, res.dead)
        state.sync_seq = max(state.sync_seq or 0, safe)
        control.set_checkpoint(tgt, PIPELINE, s.unit, state.to_json(), rows_done=rows_done + res.narrow_rows,
                               run_id=self.run_id)
        out: dict[str, Any] = {"wide_rows": written, "dead_letters": dead, "new_columns": list(added.values())}
        if self.commit_ts:
            got = tgt.execute(
                sql.SQL("SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)))::float8 FROM {} "
                        "WHERE {} = ANY(%s)").format(pg_ident(cfg.schema, cfg.narrow_table), pg_ident(cfg.seq_column)),
                ([int(x) for x in rows["seq"].to_numpy()[-50:]],)).fetchone()
            out["commit_ts"] = float(got[0]) if got and got[0] is not None else None
        return out

    def _keep(self, s: _Ship, rows: Any) -> None:
        """Keep a ship's rows for a later poll; past ``chunk_rows`` the ship is caught up from its checkpoint instead."""
        s.pending = [rows]
        s.pending_rows = rows.num_rows
        if s.pending_rows > self.cfg.chunk_rows:
            log.warning("live sync: ship %s has %s rows waiting; it will be caught up from its checkpoint",
                        s.ship_id, f"{s.pending_rows:,}")
            s.pending, s.pending_rows, s.joined = [], 0, False

    def _advance_idle(self, now: float) -> None:
        """Move the checkpoint of every followed ship with nothing waiting to the safe point (one statement)."""
        assert self.tgt is not None
        self._advanced = now
        safe = self.safe_point()
        units = [s.unit for s in self.ships.values() if s.joined and not s.pending and not s.failures]
        if not units or safe <= 0:
            return
        self.tgt.execute(
            f"""UPDATE {control.SCHEMA}.checkpoints SET watermark = jsonb_set(watermark, '{{sync_seq}}', to_jsonb(%s::bigint)),
                    updated_at = now()
                WHERE pipeline = %s AND unit_key = ANY(%s) AND watermark->>'finalized' = 'true'
                  AND coalesce((watermark->>'sync_seq')::bigint, -1) < %s
                  AND pg_try_advisory_xact_lock(hashtextextended(%s::text || ':' || unit_key, 0))""",
            (safe, PIPELINE, units, safe, PIPELINE))
        self.tgt.commit()

    def _maybe_log(self, *, force: bool = False) -> None:
        w = self._window
        elapsed = time.monotonic() - w.started
        if not force and elapsed < self.log_every_s:
            return
        parts = [f"{w.rows / max(elapsed, 1e-9):,.0f} narrow rows/s", f"{len(w.ships)} ship(s) touched",
                 f"{w.polls} polls"]
        if w.apply_s:
            parts.append(f"read→committed p50 {_pct(w.apply_s, 0.5):.3f} s p95 {_pct(w.apply_s, 0.95):.3f} s")
        if w.lag_s:
            parts.append(f"lag from narrow commit p50 {_pct(w.lag_s, 0.5):.3f} s p95 {_pct(w.lag_s, 0.95):.3f} s "
                         f"max {max(w.lag_s):.3f} s")
        waiting = sum(1 for s in self.ships.values() if s.pending)
        failing = sorted(s.ship_id for s in self.ships.values() if s.failures)
        parts.append(f"{len(self.gaps)} open gap(s), {waiting} ship(s) waiting, {len(failing)} failing"
                     + (f" ({', '.join(failing[:5])})" if failing else ""))
        log.info("live sync (last %.0f s): %s", elapsed, "; ".join(parts))
        self._window = _Window(time.monotonic())

    def run(self, stop_after_s: float, stop: threading.Event | None = None) -> dict[str, Any]:
        """Poll until ``stop_after_s`` passed (or ``stop`` is set); returns the totals."""
        t0 = time.monotonic()
        deadline = t0 + stop_after_s
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            started = time.monotonic()
            n = self.poll()
            if n >= self.limit:
                continue  # a full read: more is waiting
            pause = self.poll_s - (time.monotonic() - started)
            if pause > 0:
                if stop is not None:
                    stop.wait(min(pause, max(deadline - time.monotonic(), 0)))
                else:
                    time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        self._advance_idle(time.monotonic())
        self._maybe_log(force=True)
        failing = {s.ship_id: s.last_error for s in self.ships.values() if s.failures}
        return {**self.totals, "seconds": round(time.monotonic() - t0, 3), "ships": len(self.ships),
                "top": self.top, "open_gaps": self.gaps.ids(), "given_up_gap_ids": self.gaps.given_up,
                "failing": failing}


def follow(cfg: ShipWideConfig, *, stop_after_s: float, poll_s: float = 0.2, gap_timeout_s: float = 120.0,
           refresh_s: float = 5.0, log_every_s: float = 30.0, run_id: str | None = None,
           stop: threading.Event | None = None, hook: Callable[[str, dict[str, Any]], None] | None = None,
           ) -> dict[str, Any]:
    """Follow the narrow table for ``stop_after_s`` seconds, keeping every built ship's wide table current.

    Returns the totals (polls, narrow rows read, wide rows written, dead letters, late rows, new
    columns, ships joined, lock skips, errors, ships failing now). A ship that fails does not stop the
    others; the follower raises only when a connection breaks (the task's retry resumes from the
    checkpoints). ``hook(stage, {...})`` is for tests: ``"applied"`` before a poll's commit,
    ``"committed"`` after it.
    """
    f = Follower(cfg, run_id=run_id, poll_s=poll_s, gap_timeout_s=gap_timeout_s, refresh_s=refresh_s,
                 log_every_s=log_every_s, hook=hook)
    try:
        f.open()
        return f.run(stop_after_s, stop)
    finally:
        f.close()


# --- ships that appear after the build --------------------------------------------------------

#: the marker of a build run recorded by :func:`request_build` and not yet started by Airflow
REQUESTED_BY = "ship_wide_sync"
#: build settings a requested build takes over from the table's last build
BUILD_SETTINGS = ("text_columns", "chunk_rows", "pivot", "parallelism", "copy_connections")


def narrow_ships(conn: Connection[Any], cfg: ShipWideConfig) -> list[str]:
    """Distinct ship ids of the narrow table, one index probe per ship (a loose scan of ``(ship_id, created_time)``)."""
    tbl = pg_ident(cfg.schema, cfg.narrow_table)
    q = sql.SQL(
        """WITH RECURSIVE s(id) AS (
               (SELECT ship_id FROM {t} WHERE ship_id IS NOT NULL ORDER BY ship_id LIMIT 1)
               UNION ALL
               SELECT (SELECT ship_id FROM {t} WHERE ship_id > s.id ORDER BY ship_id LIMIT 1) FROM s WHERE s.id IS NOT NULL)
           SELECT id::text FROM s WHERE id IS NOT NULL""").format(t=tbl)
    return [r[0] for r in conn.execute(q).fetchall()]


def new_ships(cfg: ShipWideConfig, *, now: dt.datetime | None = None,
              request_timeout: dt.timedelta = dt.timedelta(hours=1)) -> list[str]:
    """Ships of the narrow table that the migration has not seen: no checkpoint, no reader switch, and no
    unit in any ``ship_wide_build`` run (a failed one waits for a person: its error is on *Migration
    status*). A build requested by :func:`request_build` that Airflow never started within
    ``request_timeout`` no longer counts. Empty until at least one ship of the table is built: the
    first build of a table is a person's decision, not the sync's.
    """
    now = now or dt.datetime.now(dt.UTC)
    prefix = cfg.unit("")
    with pg_connect(cfg.target_conn_id) as conn:
        control.ensure_schema(conn)
        built = conn.execute(
            f"""SELECT EXISTS (SELECT FROM {control.SCHEMA}.checkpoints WHERE pipeline = %s AND starts_with(unit_key, %s)
                  AND (watermark->>'finalized' = 'true' OR watermark->>'phase' = 'built'))""",
            (PIPELINE, prefix)).fetchone()
        if not (built and built[0]):
            return []
        known = {r[0][len(prefix):] for r in conn.execute(
            f"""SELECT unit_key FROM {control.SCHEMA}.checkpoints WHERE pipeline = %(p)s AND starts_with(unit_key, %(x)s)
                UNION SELECT unit_key FROM {control.SCHEMA}.switches WHERE pipeline = %(p)s AND starts_with(unit_key, %(x)s)
                UNION SELECT u.unit_key FROM {control.SCHEMA}.units u LEFT JOIN {control.SCHEMA}.runs r USING (run_id)
                  WHERE u.pipeline = %(p)s AND starts_with(u.unit_key, %(x)s)
                    AND NOT coalesce(r.state = 'running' AND r.params->>'requested_by' = %(by)s
                                     AND r.started_at < %(stale)s, false)""",
            {"p": PIPELINE, "x": prefix, "by": REQUESTED_BY, "stale": now - request_timeout}).fetchall()}
    with pg_connect(cfg.source_conn_id) as src:
        present = narrow_ships(src, cfg)
    return [s for s in present if s not in known]


def build_conf(cfg: ShipWideConfig, ships: list[str]) -> dict[str, Any]:
    """The ``ship_wide_build`` conf for ``ships``: the settings of the table's last planned build run."""
    conf: dict[str, Any] = {"units": list(ships), "schema": cfg.schema, "dry_run": False}
    with pg_connect(cfg.target_conn_id) as conn:
        control.ensure_schema(conn)
        row = conn.execute(
            f"""SELECT params->'config' FROM {control.SCHEMA}.runs WHERE pipeline = %s AND kind = 'build'
                  AND planned_at IS NOT NULL AND params->'config'->>'schema' = %s
                  AND coalesce(params->'config'->>'narrow_table', %s) = %s
                ORDER BY started_at DESC LIMIT 1""",
            (PIPELINE, cfg.schema, cfg.narrow_table, cfg.narrow_table)).fetchone()
    last = (row[0] if row else None) or {}
    conf.update({k: last[k] for k in BUILD_SETTINGS if last.get(k) is not None})
    return conf


def request_build(cfg: ShipWideConfig, ships: list[str], run_id: str, conf: dict[str, Any]) -> None:
    """Record the build run that will be triggered for ``ships`` (its units ``planned``), so that the next
    minute does not ask again while Airflow has it queued. The build's own plan replaces the record."""
    from cutover.lifecycle import state
    from cutover.lifecycle.model import PlannedUnit, UnitKey

    with pg_connect(cfg.target_conn_id) as conn:
        state.start(conn, run_id, PIPELINE, kind="build", dag_id="ship_wide_build",
                    params={**conf, "requested_by": REQUESTED_BY})
        state.record_plan(conn, run_id, PIPELINE, [
            PlannedUnit(UnitKey(cfg.scope, (s,)), 0, {"requested_by": REQUESTED_BY}) for s in ships])


def requested(cfg: ShipWideConfig, run_id: str) -> list[str] | None:
    """The ships of a build requested under ``run_id`` and not yet started (None: no such request)."""
    with pg_connect(cfg.target_conn_id) as conn:
        control.ensure_schema(conn)
        row = conn.execute(
            f"SELECT params->>'requested_by' FROM {control.SCHEMA}.runs WHERE run_id = %s AND state = 'running'",
            (run_id,)).fetchone()
        if not row or row[0] != REQUESTED_BY:
            return None
        prefix = cfg.unit("")
        keys = conn.execute(f"SELECT unit_key FROM {control.SCHEMA}.units WHERE run_id = %s ORDER BY unit_key",
                            (run_id,)).fetchall()
    return [k[0][len(prefix):] for k in keys if k[0].startswith(prefix)]


def build_requests(cfg: ShipWideConfig, run_id: str, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """What the minute DAG triggers: ``[]`` or one ``{"trigger_run_id", "conf"}`` for the ships that appeared.

    Idempotent per ``run_id`` (a retried task asks for the same run again; the trigger skips a run
    that already exists).
    """
    ships = requested(cfg, run_id)
    if ships is None:
        ships = new_ships(cfg, now=now)
        if not ships:
            return []
        conf = build_conf(cfg, ships)
        request_build(cfg, ships, run_id, conf)
        log.info("ships that appeared after the build: %s; ship_wide_build run %s requested", ", ".join(ships[:20])
                 + (" …" if len(ships) > 20 else ""), run_id)
    else:
        conf = build_conf(cfg, ships)
    return [{"trigger_run_id": run_id, "conf": conf}] if ships else []


__all__ = ["Follower", "Gaps", "build_conf", "build_requests", "follow", "merge_rows", "narrow_ships", "new_ships",
           "read_rows", "request_build", "requested", "split_by_ship"]
