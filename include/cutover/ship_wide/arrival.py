"""The in-database pivot's fast path: times whose rows arrive in an order already seen.

The general in-database pivot (:mod:`cutover.ship_wide.server_pivot`) joins every narrow row to the
channel map and evaluates one ``FILTER (WHERE pos = k)`` per column for it: rows × columns work.
Yet a ship's readings for one ``created_time`` nearly always arrive the same way — the same
channels, in the same order, with the same formats — and an index scan returns the rows of one time
in that order (btree ties are kept in heap order). So this path aggregates each time's rows *as they
come* into arrays (channels, formats, and one array per value column: a handful of cheap appends per
row, no join, no per-column test) and compares the time's (channels, formats) with the **arrival
patterns** learned so far (a hash join, once per time, not per row). When one matches, the pattern
says where each column's value sits in the arrays, so the wide row is a list of subscripts.

**Correctness does not rest on the order.** All arrays of a time are filled from the same input
stream, so whatever order the rows come in, position *i* of every array holds the same row. A
pattern only *describes* an order; a time is taken by this path only when its arrays match one
exactly, and otherwise it goes on to the general statement, which applies every rule (and sends
duplicates, bad rows and new channels on to the client). A pattern is accepted only when it
describes a clean time (see :func:`pattern_entry`): distinct channels, each with a column, formats
that fit the columns; the time must also carry each value in exactly its format's column and no
other, checked by comparing the NULL positions of the four value arrays with the pattern's.

Patterns are learned from the first times of a ship (:func:`probe_patterns`) and from the times a
chunk could not match (the statement returns their most frequent patterns), at most
:data:`MAX_PATTERNS` per ship. Data that never repeats an order only costs the one aggregation pass
before the general statement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection, sql
from psycopg.types.json import Jsonb

from cutover.identifiers import pg_ident
from cutover.ship_wide.config import FORMAT_COLUMN, TIME_COLUMN, ShipWideConfig, accepted_format
from cutover.ship_wide.ddl import WideTable
from cutover.ship_wide.server_pivot import chunk_where

#: patterns kept per ship (each is one row of the statement's pattern table)
MAX_PATTERNS = 32
#: a pattern is learned once it has been seen on this many times of a chunk
MIN_TIMES_TO_LEARN = 2
#: the value arrays, in FORMAT_COLUMN's order: array name, narrow column
_ARRAYS = {"Decimal": "ds", "Integer": "ls", "String": "ss", "Boolean": "bs"}
_TYPED_ARRAY = {"double precision": "ds", "bigint": "ls", "boolean": "bs"}


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
    leftover: list[Any]  # whole times that matched no pattern (native values, for ``= ANY(%s)``)
    last_time: str | None  # the greatest whole created_time read (text; the new watermark)
    rows_read: int  # narrow rows read (fewer than the limit: the end of the ship)
    read_until: str | None  # the greatest created_time read (text)
    unmatched: list[tuple[Pattern, int]] = field(default_factory=list)  # frequent unmatched patterns, times


def pattern_entry(wide: WideTable, pattern: Pattern) -> dict[str, Any] | None:
    """The pattern as a row of the statement's pattern table, or None when it cannot describe a clean time.

    The row holds the channels and formats to compare with, the NULL positions each value array
    must show (1-based, as ``array_positions(…, NULL)`` returns them) and, per column of the table
    (in :func:`table_columns` order), the position of its channel (null: not in this pattern).
    """
    chs, fmts = pattern.channels, pattern.formats
    if len(set(chs)) != len(chs) or len(chs) != len(fmts):
        return None
    where: dict[str, int] = {}
    for i, (ch, fmt) in enumerate(zip(chs, fmts, strict=True), start=1):
        col = wide.columns.get(ch)
        if fmt not in FORMAT_COLUMN or col is None or col not in wide.types:
            return None
        want = accepted_format(wide.types[col])
        if want is not None and want != fmt:
            return None
        where[col] = i
    entry: dict[str, Any] = {"chs": list(chs), "fs": list(fmts)}
    for fmt, arr in _ARRAYS.items():
        entry[arr[0] + "n"] = [i for i, f in enumerate(fmts, start=1) if f != fmt]
    entry["ix"] = [where.get(c) for c in table_columns(wide)]
    return entry


def table_columns(wide: WideTable) -> list[str]:
    """The columns the fast path fills (every channel column; the key is not in ``types``), in table order."""
    return list(wide.types)


def _value(pg_type: str, k: int) -> sql.Composable:
    """The subscript expression of column ``k`` (0-based) for a time ``g`` matched to a pattern."""
    j = sql.SQL("g.ix[{}]").format(sql.Literal(k + 1))
    arr = _TYPED_ARRAY.get(pg_type)
    if arr is not None:
        return sql.SQL("g.{}[{}]").format(sql.Identifier(arr), j)
    # a text column takes every format, as VALUE_TEXT_SQL writes it
    return sql.SQL("coalesce(g.ds[{j}]::text, g.ls[{j}]::text, g.ss[{j}], g.bs[{j}]::text)").format(j=j)


def fast_statement(cfg: ShipWideConfig, wide: WideTable, *, lower: bool) -> sql.Composed:
    """The fast chunk statement. Parameters: patterns (jsonb), ship id, the lower bound when
    ``lower``, the row limit twice, the number of unmatched patterns to return.

    The chunk is the next ``limit`` narrow rows in time order, as in the general statement; a time
    the limit cuts short is left for the next chunk.
    """
    cols = table_columns(wide)
    narrow = pg_ident(cfg.schema, cfg.narrow_table)
    arrays = sql.SQL(", ").join(
        sql.SQL("array_agg({}) AS {}").format(sql.Identifier(col), sql.Identifier(arr))
        for col, arr in (("data_channel_id", "chs"), ("value_format", "fs"), *(
            (FORMAT_COLUMN[f], a) for f, a in _ARRAYS.items()))
    )
    nulls = sql.SQL(" AND ").join(
        sql.SQL("array_positions(g.{a}, NULL) = p.{n}").format(a=sql.Identifier(a), n=sql.Identifier(a[0] + "n"))
        for a in _ARRAYS.values()
    )
    return sql.SQL(
        """WITH p AS MATERIALIZED (SELECT * FROM jsonb_to_recordset(%s::jsonb)
                      AS p(chs text[], fs text[], dn int[], ln int[], sn int[], bn int[], ix int[])),
        g AS (SELECT created_time, {arrays}
              FROM (SELECT * FROM {narrow}{where} ORDER BY created_time LIMIT %s) n GROUP BY created_time),
        t AS (SELECT coalesce(sum(cardinality(chs)), 0) AS rows, max(created_time) AS last FROM g),
        m AS (SELECT g.*, cardinality(g.chs) AS n, p.ix, p.ix IS NOT NULL AS ok,
                     (t.rows < %s OR g.created_time < t.last) AS whole
              FROM g CROSS JOIN t
              LEFT JOIN LATERAL (SELECT p.ix FROM p WHERE p.chs = g.chs AND p.fs = g.fs AND {nulls} LIMIT 1) p ON true),
        ins AS (INSERT INTO {wide} ({tcol}{cols}) SELECT g.created_time{vals} FROM m g WHERE g.ok AND g.whole
                RETURNING 1),
        u AS (SELECT chs, fs, count(*) AS times FROM m WHERE whole AND NOT ok GROUP BY chs, fs ORDER BY times DESC LIMIT %s)
        SELECT (SELECT count(*) FROM ins),
               coalesce(sum(n) FILTER (WHERE ok AND whole), 0),
               coalesce(array_agg(created_time) FILTER (WHERE whole AND NOT ok), '{{}}'),
               max(created_time) FILTER (WHERE whole)::text,
               (SELECT rows FROM t), (SELECT last FROM t)::text,
               (SELECT coalesce(jsonb_agg(jsonb_build_array(chs, fs, times)), '[]') FROM u)
        FROM m"""
    ).format(
        arrays=arrays,
        narrow=narrow,
        where=chunk_where(lower=lower, upper=False),
        nulls=nulls,
        wide=wide.ident,
        tcol=pg_ident(TIME_COLUMN),
        cols=sql.SQL("").join(sql.SQL(", ") + pg_ident(c) for c in cols),
        vals=sql.SQL("").join(sql.SQL(", ") + _value(wide.types[c], k) for k, c in enumerate(cols)),
    )


def _index_order(conn: Connection[Any]) -> None:
    """Read the chunk through the (ship_id, created_time) index for the rest of the transaction.

    On a small table the planner may prefer a scan and a sort, and a sort does not keep the rows of
    one time in arrival order: every time would look new. (Only speed depends on it, never results.)
    """
    conn.execute("SET LOCAL enable_sort = off")


class ArrivalPatterns:
    """The patterns learned for one ship's copy, and the fast path that uses them."""

    def __init__(self, cfg: ShipWideConfig, wide: WideTable) -> None:
        self.cfg = cfg
        self.wide = wide
        self.entries: dict[Pattern, dict[str, Any]] = {}
        self._columns: tuple[str, ...] = ()

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

    def learn(self, candidates: list[tuple[Pattern, int]], *, min_times: int = MIN_TIMES_TO_LEARN) -> int:
        """Add the candidates seen on at least ``min_times`` times that describe a clean time; returns how many."""
        self._sync_columns()
        added = 0
        for pat, times in candidates:
            if len(self.entries) >= MAX_PATTERNS:
                break
            if times < min_times or pat in self.entries:
                continue
            entry = pattern_entry(self.wide, pat)
            if entry is not None:
                self.entries[pat] = entry
                added += 1
        return added

    def probe(self, conn: Connection[Any], lo: str | None, *, rows: int) -> int:
        """Learn the patterns of the times among the next ``rows`` narrow rows after ``lo``."""
        q = sql.SQL(
            """SELECT chs, fs, count(*) AS times FROM (
                 SELECT created_time, array_agg(data_channel_id) AS chs, array_agg(value_format) AS fs
                 FROM (SELECT * FROM {}{} ORDER BY created_time LIMIT %s) n GROUP BY created_time) g
               GROUP BY chs, fs ORDER BY times DESC LIMIT %s"""
        ).format(pg_ident(self.cfg.schema, self.cfg.narrow_table), chunk_where(lower=lo is not None, upper=False))
        params: list[Any] = [self.wide.ship_id, *([lo] if lo is not None else []), rows, MAX_PATTERNS]
        _index_order(conn)
        found = [(Pattern(tuple(c), tuple(f)), int(n)) for c, f, n in conn.execute(q, params).fetchall()
                 if None not in c and None not in f]
        return self.learn(found)  # a pattern seen once may be the last time, cut by the limit

    def pivot(self, conn: Connection[Any], lo: str | None, *, limit: int) -> FastChunk:
        """Insert the next ``limit`` rows' whole times that match a pattern (in ``conn``'s transaction)."""
        self._sync_columns()
        stmt = fast_statement(self.cfg, self.wide, lower=lo is not None)
        params: list[Any] = [Jsonb(list(self.entries.values())), self.wide.ship_id,
                             *([lo] if lo is not None else []), limit, limit, MAX_PATTERNS]
        _index_order(conn)
        row = conn.execute(stmt, params).fetchone()
        assert row is not None
        unmatched = [(Pattern(tuple(c), tuple(f)), int(n)) for c, f, n in row[6]
                     if None not in c and None not in f]
        return FastChunk(wide_rows=int(row[0]), narrow_rows=int(row[1]), leftover=list(row[2]), last_time=row[3],
                         rows_read=int(row[4]), read_until=row[5], unmatched=unmatched)
