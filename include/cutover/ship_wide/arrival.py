"""The in-database pivot's fast path: times whose rows arrive in an order already seen.

The general in-database pivot (:mod:`cutover.ship_wide.server_pivot`) joins every narrow row to the
channel map and evaluates one ``FILTER (WHERE pos = k)`` per column for it: rows × columns work.
Yet a ship's readings for one ``created_time`` nearly always arrive the same way — the same
channels, in the same order, with the same formats — and an index scan returns the rows of one time
in that order (btree ties are kept in heap order). So this path aggregates each time's rows *as they
come*: channels and formats joined into one text each, values into one array per value column (a
handful of cheap appends per row, no join, no per-column test), and compares the time's joined
channels and formats with the **arrival patterns** learned so far (two text comparisons per time,
not per row). When one matches, the pattern says where each column's value sits in the arrays, so
the wide row is a list of subscripts.

**Correctness does not rest on the order.** All aggregates of a time are filled from the same input
stream, so whatever order the rows come in, position *i* of every array holds the same row. A
pattern only *describes* an order; a time is taken by this path only when it matches one exactly
(see :func:`fast_statement` for why the comparison is exact), and otherwise it goes on to the
general statement, which applies every rule (and sends duplicates, bad rows and new channels on to
the client). A pattern is accepted only when it describes a clean time (:func:`pattern_entry`):
distinct channels, each with a column, formats that fit the columns; the time must also carry each
value in exactly its format's column and no other, which two counts check.

Patterns are learned from the first times of a ship (:meth:`ArrivalPatterns.probe`) and from the
times a chunk could not match (the statement returns their most frequent patterns), at most
:data:`MAX_PATTERNS` per ship. Data that never repeats an order only costs the one aggregation pass
before the general statement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection, sql
from psycopg.types.json import Jsonb

from cutover.identifiers import pg_ident, with_params
from cutover.ship_wide.config import FORMAT_COLUMN, TIME_COLUMN, ShipWideConfig, accepted_format
from cutover.ship_wide.ddl import WideTable
from cutover.ship_wide.server_pivot import chunk_settings, chunk_where, sum_nonnulls

#: patterns kept per ship (each is one row of the statement's pattern table)
MAX_PATTERNS = 32
#: a pattern is learned once it has been seen on this many times of a chunk
MIN_TIMES_TO_LEARN = 2
#: chunks in a row in which the fast path took nothing and learned nothing: then it stops for the ship
GIVE_UP_AFTER = 3
#: the probe's patterns must describe at least this share of the probed times, or the fast path is
#: off for the ship from the start (rows stored in random order: each time arrives its own way)
MIN_PROBE_COVERAGE = 0.5
#: joins a time's channels (and formats) into one text, compared in one go; a pattern whose channel
#: ids hold it is never learned, which keeps the join unambiguous (see :func:`fast_statement`)
SEP = "\x1e"
#: a time's rows counted (all, with a channel, with a format) and its channels and formats joined
_JOINED = sql.SQL(
    "count(*) AS n, count(data_channel_id) AS nc, count(value_format) AS nf, "
    "string_agg(data_channel_id, E'\\x1e') AS chs, string_agg(value_format, E'\\x1e') AS fs"
)
#: the value array of each format (from its narrow column), and the pattern's index list into it
_ARRAYS = {"Decimal": "ds", "Integer": "ls", "String": "ss", "Boolean": "bs"}
_TYPED_FORMAT = {"double precision": "Decimal", "bigint": "Integer", "boolean": "Boolean"}


@dataclass(frozen=True)
class Pattern:
    """How one time's rows arrived: their channels and formats, in order."""

    channels: tuple[str, ...]
    formats: tuple[str, ...]


@dataclass
class FastChunk:
    """What the fast path did with one chunk, and what it leaves to the general statement."""

    wide_rows: int  # times inserted
    narrow_rows: int  # narrow rows of those times
    leftover: list[Any]  # times it did not take (native values, for ``= ANY(%s)``)
    last_time: str | None  # the chunk's greatest created_time (text)
    unmatched: list[tuple[Pattern, int]] = field(default_factory=list)  # frequent unmatched patterns, times


def pattern_entry(wide: WideTable, pattern: Pattern) -> dict[str, Any] | None:
    """The pattern as a row of the statement's pattern table, or None when it cannot describe a clean time.

    The row holds the joined channels and formats to compare with, their count and, per value array
    (one per format), the position in the time's rows of each column's value: for every column of
    the table (in :func:`table_columns` order), the 1-based position of its channel when the channel
    arrives in this pattern with that format, else null.
    """
    chs, fmts = pattern.channels, pattern.formats
    if len(set(chs)) != len(chs) or len(chs) != len(fmts) or any(SEP in ch for ch in chs):
        return None
    where: dict[str, tuple[int, str]] = {}
    for i, (ch, fmt) in enumerate(zip(chs, fmts, strict=True), start=1):
        col = wide.columns.get(ch)
        if fmt not in FORMAT_COLUMN or col is None or col not in wide.types:
            return None
        want = accepted_format(wide.types[col])
        if want is not None and want != fmt:
            return None
        where[col] = (i, fmt)
    entry: dict[str, Any] = {"chs": SEP.join(chs), "fs": SEP.join(fmts), "n": len(chs)}
    cols = table_columns(wide)
    for fmt, arr in _ARRAYS.items():
        entry[arr[0] + "x"] = [where[c][0] if c in where and where[c][1] == fmt else None for c in cols]
    return entry


def table_columns(wide: WideTable) -> list[str]:
    """The columns the fast path fills (every channel column; the key is not in ``types``), in table order."""
    return list(wide.types)


def _cell(pg_type: str, k: int) -> sql.Composable:
    """Column ``k``'s value (0-based) for a time ``g`` matched to pattern ``p``: its own format's array
    at its channel's position (null when the channel is not in the pattern)."""
    def sub(fmt: str) -> sql.Composable:
        arr = _ARRAYS[fmt]
        return sql.SQL("g.{}[p.{}[{}]]").format(sql.Identifier(arr), sql.Identifier(arr[0] + "x"), sql.Literal(k + 1))

    fmt = _TYPED_FORMAT.get(pg_type)
    if fmt is not None:
        return sub(fmt)
    # a text column takes every format, as VALUE_TEXT_SQL writes it
    return sql.SQL("coalesce({}::text, {}::text, {}, {}::text)").format(
        sub("Decimal"), sub("Integer"), sub("String"), sub("Boolean"))


def fast_statement(cfg: ShipWideConfig, wide: WideTable, where: sql.Composable) -> sql.Composed:
    """The fast chunk statement over the rows of one chunk (``where``, from :func:`chunk_where`).

    Parameters: patterns (jsonb), those of ``where``, the number of unmatched patterns to return. Returns one row: wide rows inserted, their
    narrow rows, the times left for the general statement, the most frequent unmatched patterns, the
    chunk's last time.

    **Why a taken time is clean.** Its ``n`` rows have no NULL channel or format (``count`` of each
    is ``n``) and their joined texts equal the pattern's, whose ``n`` channels hold no :data:`SEP`:
    so the rows carry exactly the pattern's channels and formats, in its order (one more separator
    inside a value would need one more part). Each of its channels is distinct, has a column and
    fits it (:func:`pattern_entry`). Every row has a value in its format's column (the ``n``
    channel cells are all set) and in no other (the four arrays hold ``n`` values in all).
    """
    cols = table_columns(wide)
    names = [f"a{k}" for k in range(len(cols))]
    arrays = sql.SQL(", ").join(
        sql.SQL("array_agg({}) AS {}").format(sql.Identifier(FORMAT_COLUMN[f]), sql.Identifier(a)) for f, a in _ARRAYS.items()
    )
    total = sql.SQL(" + ").join(sql.SQL("num_nonnulls(VARIADIC g.{})").format(sql.Identifier(a)) for a in _ARRAYS.values())
    ok = sql.SQL("(matched AND vals = n AND {} = n)").format(sum_nonnulls(names))
    return sql.SQL(
        """WITH p AS MATERIALIZED (SELECT * FROM jsonb_to_recordset(%s::jsonb)
                      AS p(chs text, fs text, n int, dx int[], lx int[], sx int[], bx int[])),
        g AS (SELECT created_time, {joined}, {arrays}
              FROM (SELECT * FROM {narrow}{where} ORDER BY created_time) n GROUP BY created_time),
        v AS MATERIALIZED (
              SELECT g.created_time, g.n, g.chs, g.fs, p.n IS NOT NULL AS matched, {total} AS vals{cells}
              FROM g LEFT JOIN LATERAL (SELECT * FROM p WHERE p.n = g.n AND p.chs = g.chs AND p.fs = g.fs LIMIT 1) p
                ON g.nc = g.n AND g.nf = g.n),
        ins AS (INSERT INTO {wide} ({tcol}{cols}) SELECT created_time{anames} FROM v WHERE {ok} RETURNING 1),
        u AS (SELECT chs, fs, n, count(*) AS times FROM v WHERE NOT {ok} AND chs IS NOT NULL
              GROUP BY chs, fs, n ORDER BY times DESC LIMIT %s)
        SELECT (SELECT count(*) FROM ins),
               coalesce(sum(n) FILTER (WHERE {ok}), 0),
               coalesce(array_agg(created_time) FILTER (WHERE NOT {ok}), '{{}}'),
               (SELECT coalesce(jsonb_agg(jsonb_build_array(chs, fs, n, times)), '[]') FROM u),
               max(created_time)::text
        FROM v"""
    ).format(
        joined=_JOINED,
        arrays=arrays,
        narrow=pg_ident(cfg.schema, cfg.narrow_table),
        where=where,
        total=total,
        cells=sql.SQL("").join(
            sql.SQL(", {} AS {}").format(_cell(wide.types[c], k), sql.Identifier(a))
            for k, (c, a) in enumerate(zip(cols, names, strict=True))),
        wide=wide.ident,
        tcol=pg_ident(TIME_COLUMN),
        cols=sql.SQL("").join(sql.SQL(", ") + pg_ident(c) for c in cols),
        anames=sql.SQL("").join(sql.SQL(", ") + sql.Identifier(a) for a in names),
        ok=ok,
    )


def _patterns(rows: list[Any]) -> list[tuple[Pattern, int]]:
    """(pattern, times) from rows of (joined channels, joined formats, count, times); a join that
    does not split back into ``count`` parts (a channel id holding :data:`SEP`) is skipped."""
    out = []
    for chs, fs, n, times in rows:
        pat = Pattern(tuple(chs.split(SEP)), tuple(fs.split(SEP)))
        if len(pat.channels) == len(pat.formats) == int(n):
            out.append((pat, int(times)))
    return out


class ArrivalPatterns:
    """The patterns learned for one ship's copy, and the fast path that uses them."""

    def __init__(self, cfg: ShipWideConfig, wide: WideTable) -> None:
        self.cfg = cfg
        self.wide = wide
        self.entries: dict[Pattern, dict[str, Any]] = {}
        self._columns: tuple[str, ...] = ()
        self.idle_chunks = 0  # chunks in a row that the fast path did not help

    @property
    def active(self) -> bool:
        """False once the fast path has not helped :data:`GIVE_UP_AFTER` chunks in a row: rows that never
        arrive the same way twice only cost it an aggregation pass per chunk."""
        return self.idle_chunks < GIVE_UP_AFTER

    def disable(self) -> None:
        """Turn the fast path off for this ship (every chunk goes to the general statement)."""
        self.idle_chunks = GIVE_UP_AFTER

    def observe(self, fc: FastChunk) -> int:
        """Learn from a chunk's result (its frequent unmatched patterns); returns the patterns added."""
        added = self.learn(fc.unmatched)
        self.idle_chunks = 0 if fc.narrow_rows or added else self.idle_chunks + 1
        return added

    def _sync_columns(self) -> None:
        """Rebuild the entries when the table gained columns (a new channel during the copy)."""
        cols = tuple(table_columns(self.wide))
        if cols != self._columns:
            self._columns = cols
            for pat in list(self.entries):
                entry = pattern_entry(self.wide, pat)
                if entry is None:
                    del self.entries[pat]
                else:
                    self.entries[pat] = entry

    def learn(self, candidates: list[tuple[Pattern, int]]) -> int:
        """Add the candidates seen on at least :data:`MIN_TIMES_TO_LEARN` times that describe a clean time;
        returns how many."""
        self._sync_columns()
        added = 0
        for pat, times in candidates:
            if len(self.entries) >= MAX_PATTERNS:
                break
            if times < MIN_TIMES_TO_LEARN or pat in self.entries:
                continue
            entry = pattern_entry(self.wide, pat)
            if entry is not None:
                self.entries[pat] = entry
                added += 1
        return added

    def probe(self, conn: Connection[Any], lo: str | None, *, rows: int) -> int:
        """Learn the patterns of the times among the next ``rows`` narrow rows after ``lo``; returns how
        many. When the patterns learned describe less than :data:`MIN_PROBE_COVERAGE` of those times
        (rows stored in random order, so each time's rows come in their own order), the fast path is
        turned off for the ship at once instead of after :data:`GIVE_UP_AFTER` wasted chunks."""
        where, params = chunk_where(self.wide.ship_id, lo, None)
        q = sql.SQL(
            """SELECT chs, fs, n, count(*) AS times, sum(count(*)) OVER () AS all_times FROM (
                 SELECT created_time, {joined}
                 FROM (SELECT * FROM {narrow}{where} ORDER BY created_time LIMIT %s) n GROUP BY created_time) g
               WHERE nc = n AND nf = n
               GROUP BY chs, fs, n ORDER BY times DESC LIMIT %s"""
        ).format(joined=_JOINED, narrow=pg_ident(self.cfg.schema, self.cfg.narrow_table), where=where)
        chunk_settings(conn)
        got = conn.execute(with_params(q), [*params, rows, MAX_PATTERNS]).fetchall()
        found = _patterns([r[:4] for r in got])
        added = self.learn(found)  # a pattern seen once may be the last time, cut by the limit
        probed = int(got[0][4]) if got else 0
        covered = sum(t for p, t in found if p in self.entries)
        if probed >= 2 * MIN_TIMES_TO_LEARN and covered < MIN_PROBE_COVERAGE * probed:
            self.disable()
        return added

    def statement(self, lo: str | None, hi: str | None) -> tuple[sql.Composed, list[Any]]:
        """The fast statement of the chunk ``(lo, hi]`` with its parameters, as the patterns are now
        (built here, so the chunk can run in another thread while the patterns keep learning)."""
        self._sync_columns()
        where, params = chunk_where(self.wide.ship_id, lo, hi)
        return (fast_statement(self.cfg, self.wide, where),
                [Jsonb(list(self.entries.values())), *params, MAX_PATTERNS])


def run_fast(conn: Connection[Any], stmt: sql.Composed, params: list[Any]) -> FastChunk:
    """Run a fast statement from :meth:`ArrivalPatterns.statement` in ``conn``'s transaction."""
    chunk_settings(conn)
    row = conn.execute(with_params(stmt), params).fetchone()
    assert row is not None
    return FastChunk(wide_rows=int(row[0]), narrow_rows=int(row[1]), leftover=list(row[2]), last_time=row[4],
                     unmatched=_patterns(row[3]))
